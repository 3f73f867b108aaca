"""Key-frame selection from per-frame image embeddings.

Frames are sampled at 1 FPS and scaled to 1024x576 inside ffmpeg (:func:`extract_samples`);
each sample gets an L2-normalised embedding; :func:`select_keyframes` then keeps a subset.

Modes (``mode=``):

``consecutive``
    The original rule: keep frame 0, and frame *i* when cos(e_i, e_{i-1}) < threshold.
    Every sample inside a gradual transition (dissolve, fade, wipe) differs from its
    predecessor, so blends are kept as extra "key frames".
``last_kept``
    Keep frame *i* when cos(e_i, e_last_kept) < threshold: no drift through slow pans
    (a pan that changes a little per second eventually triggers one new key frame), but
    blends are still kept.
``confirmed`` (default)
    As ``last_kept``, but a candidate is only kept once it is *stable*: the first sample
    j >= i with cos(e_j, e_{j+1}) >= threshold (the picture has settled: it resembles the
    next sample). Mid-transition blends differ from their successor, so the kept frame is
    the first settled frame of the new shot, not a blend. If nothing settles within
    ``max_wait`` samples (a montage of sub-second shots, continuous fast motion), the
    candidate itself is kept, as ``last_kept`` would. The last sample of a video counts as settled. A settled frame that resembles the
    previous key frame again (a flash, a brief occlusion) is not kept. Default because it finds the same
    transitions as ``last_kept`` while keeping about one frame per shot (see
    ``benchmarks/keyframes_quality.py``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ffmpeg import FFmpegError, ffmpeg_exe

MODES = ("confirmed", "last_kept", "consecutive")


@dataclass
class Samples:
    """1 FPS samples of a video: ``paths`` JPEG files (1024x576), ``timestamps_s (n,) float64``
    seconds from the start of the input, ``indices (n,) int64`` sample index (= seconds)."""

    paths: list[Path]
    timestamps_s: np.ndarray
    indices: np.ndarray


def extract_samples(path: str | os.PathLike, out_dir: str | os.PathLike, *, fps: float = 1.0, width: int = 1024,
                    height: int = 576, start_index: int = 0, jpeg_quality: int = 3, skip_bidir: bool = True,
                    on_batch: Callable[[list[Path]], None] | None = None, batch_size: int = 8) -> Samples:
    """Sample ``path`` at ``fps`` frames/s scaled to ``width``x``height`` (``fps=1,scale=1024:576``
    in one ffmpeg pass) as JPEGs ``<index>.jpg`` in ``out_dir``; index = ``start_index`` + i.

    Sample i shows the frame on screen at i/fps seconds (the last frame starting at or before
    it: ``round=up``; ``round=down`` would show the frame up to one interval later). A video
    shorter than 1/fps seconds still yields its first frame.

    ``skip_bidir`` (default) tells the decoder to skip B-frames (``-skip_frame bidir``): a
    sample is then the last I/P frame at or before i/fps -- at most a few frames (x264's
    default: 3 B-frames, 120 ms at 25 fps) earlier -- and decoding is ~30 % faster, which is
    most of the extraction cost. Codecs without B-frames are unaffected.

    ``on_batch``, if given, is called with each run of at least ``batch_size`` finished JPEGs
    (in order) while ffmpeg is still decoding, so work on them (embedding) overlaps decoding.

    Raises:
        FFmpegError: ffmpeg cannot decode ``path``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        *(["-skip_frame", "bidir"] if skip_bidir else []),
        "-i", str(path), "-map", "0:v:0",
        "-vf", f"fps={fps:g}:round=up,scale={width}:{height}",
        "-fps_mode", "vfr", "-q:v", str(jpeg_quality), "-start_number", "0", "-f", "image2", str(out_dir / "s_%08d.jpg"),
    ]
    handed = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                if on_batch is not None:
                    ready = sorted(out_dir.glob("s_*.jpg"))[:-1]  # the newest may still be being written
                    if len(ready) - handed >= batch_size:
                        on_batch(ready[handed:])
                        handed = len(ready)
                        continue
                time.sleep(0.02)
        finally:
            if proc.poll() is None:  # on_batch raised: stop decoding
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise FFmpegError(cmd, proc.returncode, err.read().decode("utf-8", "replace"))
    raw = sorted(out_dir.glob("s_*.jpg"))
    if on_batch is not None and len(raw) > handed:
        on_batch(raw[handed:])
    paths = []
    for i, p in enumerate(raw):
        dst = out_dir / f"{start_index + i}.jpg"
        p.rename(dst)
        paths.append(dst)
    n = len(paths)
    return Samples(paths=paths, timestamps_s=np.arange(n) / fps + start_index / fps, indices=np.arange(n, dtype=np.int64) + start_index)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x (n, d)`` scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def consecutive_similarities(embeddings: np.ndarray) -> np.ndarray:
    """``(n-1,) float32``: cosine similarity of each sample with the next."""
    e = l2_normalize(embeddings)
    return np.einsum("ij,ij->i", e[:-1], e[1:]) if len(e) > 1 else np.zeros(0, np.float32)


def select_keyframes(embeddings: np.ndarray, threshold: float = 0.9, mode: str = "confirmed", max_wait: int = 3) -> list[int]:
    """Indices (into ``embeddings``) of the key frames, ascending; frame 0 (or, in
    ``confirmed`` mode, the first settled frame) is always kept for a non-empty input.

    Args:
        embeddings: ``(n, d)`` float, one row per sample (normalised here).
        threshold: cosine similarity below which a frame counts as different (0.9 as the
            original for Titan embeddings; each embedder documents its calibrated value).
        mode: ``confirmed`` | ``last_kept`` | ``consecutive`` (see module docstring).
        max_wait: ``confirmed`` mode: samples to wait for a candidate to settle.

    Raises:
        ValueError: unknown ``mode``, ``embeddings`` not 2-D.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    e = l2_normalize(embeddings)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got {e.shape}")
    n = len(e)
    if n == 0:
        return []
    if mode == "consecutive":
        sims = consecutive_similarities(e)
        return [0] + [i + 1 for i in np.flatnonzero(sims < threshold).tolist()]
    if mode == "last_kept":
        kept = [0]
        for i in range(1, n):
            if float(e[i] @ e[kept[-1]]) < threshold:
                kept.append(i)
        return kept

    nxt = np.append(consecutive_similarities(e), np.float32(1.0))  # last sample counts as settled

    def settle(i: int) -> int:
        for j in range(i, min(n, i + max_wait + 1)):
            if nxt[j] >= threshold:
                return j
        return i  # never settles (a shot shorter than the sampling step, fast motion): keep it

    kept = [settle(0)]
    i = kept[0] + 1
    while i < n:
        if float(e[i] @ e[kept[-1]]) < threshold:
            j = settle(i)
            if float(e[j] @ e[kept[-1]]) < threshold:  # not just a flash back to the same shot
                kept.append(j)
            i = j + 1
        else:
            i += 1
    return kept
