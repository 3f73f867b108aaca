"""Decoding audio to mono float32 PCM with ffmpeg, streamed in bounded chunks.

Any container/codec ffmpeg reads is accepted (FLAC, and also MP3 or WAV misnamed ``.flac``:
the content decides, not the name). Stereo is down-mixed and any sample rate resampled
(``-ac 1 -ar <rate>``). Long files are never held whole: :func:`iter_audio_chunks` reads
``chunk_s`` seconds at a time from ffmpeg's stdout, so memory stays at
``chunk_s * sample_rate * 4`` bytes whatever the duration.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .ffmpeg import FFmpegTimeoutError, ffmpeg_exe, ffmpeg_failure
from .limits import AudioLimits, check_audio_limits
from .probe import MediaError, probe


def check_audio(path: str | os.PathLike, limits: AudioLimits | None = None, name: str | None = None) -> float:
    """Duration in seconds of the first audio stream of ``path``, from its header; with
    ``limits``, the header is checked against them (``name``, e.g. the object key, names the
    file in the message).

    Raises:
        MediaError: empty, unreadable, or no decodable audio stream (e.g. a text file named
            ``.flac``: libavformat guesses FLAC from the name but finds no sample rate).
        LimitExceededError: over a bound of ``limits`` (size or declared duration).
    """
    info = probe(path)
    if info.audio is None or info.audio.sample_rate <= 0 or info.audio.channels <= 0:
        raise MediaError(f"{Path(path).name}: no decodable audio stream (container {info.format_name!r})")
    if limits is not None:
        check_audio_limits(name or Path(path).name, info, limits)
    return info.duration_s


def check_decoded_duration(name: str, header_s: float, decoded_s: float) -> None:
    """Refuse a decode that came up short of the duration the file's header declares: a corrupt
    or truncated file (valid header, garbage frames) otherwise decodes to a few or zero samples
    with exit status 0, and its empty transcript looks like a silent recording. Allowed
    shortfall: 1 s or 5 % of the header's duration, whichever is larger (frame padding, a
    header rounded to the block). A header of 0 s (unknown) is not checked.

    Raises:
        MediaError: ``decoded_s`` (seconds of audio decoded) falls short of ``header_s``.
    """
    if header_s > 0 and decoded_s < header_s - max(1.0, 0.05 * header_s):
        raise MediaError(f"{name}: decoded {decoded_s:.2f} s of the {header_s:.2f} s its header declares: "
                         "the file is corrupt or truncated (nothing of it was transcribed)")


def iter_audio_chunks(path: str | os.PathLike, *, sample_rate: int = 16_000, chunk_s: float = 600.0,
                      timeout_s: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start seconds, (n,) float32 mono samples in [-1, 1])`` chunks of ``chunk_s``
    seconds (the last shorter) at ``sample_rate`` Hz. ``timeout_s``: ffmpeg is killed this
    many seconds after it started (the consumer's time between chunks counts too).

    Raises:
        FFmpegError: ffmpeg cannot decode ``path`` (raised after the chunks it did decode).
        FFmpegInterruptedError: ffmpeg was killed or ran out of disk, memory or I/O.
        FFmpegTimeoutError: ffmpeg was still running after ``timeout_s`` seconds.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
           "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = None if timeout_s is None else threading.Timer(timeout_s, kill)
    if timer is not None:
        timer.daemon = True
        timer.start()
    chunk_bytes = int(chunk_s * sample_rate) * 4
    start = 0.0
    try:
        while True:
            data = proc.stdout.read(chunk_bytes)
            if not data:
                break
            samples = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)
            yield start, samples
            start += len(samples) / sample_rate
    finally:
        if timer is not None:
            timer.cancel()
        proc.stdout.close()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        code = proc.wait()
    if killed.is_set() and code < 0:
        raise FFmpegTimeoutError(timeout_s)
    if code != 0:
        raise ffmpeg_failure(cmd, code, stderr)


def decode_audio(path: str | os.PathLike, *, sample_rate: int = 16_000, timeout_s: float | None = None) -> np.ndarray:
    """The whole file as ``(n,) float32`` mono at ``sample_rate`` Hz (for short files); raises
    as :func:`iter_audio_chunks`."""
    chunks = [c for _, c in iter_audio_chunks(path, sample_rate=sample_rate, timeout_s=timeout_s)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def rms_dbfs(x: np.ndarray) -> float:
    """Root-mean-square level of ``x`` in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
