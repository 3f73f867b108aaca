"""Bounds on untrusted uploads, checked before any decode, and wall-clock limits of the work
done on them.

Uploads are untrusted input: a crafted or simply enormous object (a multi-hour 8K file, a tiny
file whose header declares a huge frame or duration) must not hold a worker, its scratch disk
and its memory until something else fails. The bounds are checked from what costs nothing to
read: the object's size (``HeadObject`` or the listing, before the download) and the container
header (:func:`media_assets.kernels.probe.probe`, before the first frame is decoded). A source
over a bound raises :class:`LimitExceededError`, a :class:`~media_assets.kernels.probe.MediaError`:
an input failure, reported once with the bound and the setting that raises it, the object kept.

Work on an accepted source gets a wall-clock limit proportional to its duration
(:func:`time_limit_s`): ffmpeg is killed at it, model steps check it between windows or
batches (:class:`Deadline`). Running past it is not the input's fault (the header was checked;
a stalled read, a starved CPU or a hung mount is the infrastructure's), so it raises
:class:`TimeLimitError`, which is retried.

Defaults (the reasoning; every bound is a setting of its pipeline's resource):

* frame size 35,651,584 px: H.264's largest level (6.2, ITU-T H.264 Table A-1) allows 139,264
  macroblocks of 16x16 px a frame (8192x4352): the MP4 clips are H.264, so no larger frame can
  be encoded to a conforming stream. DCI 8K (8192x4320) and 8K UHD (7680x4320) fit.
* frame rate 240 frames/s: the highest rate phones and action cameras record (slow motion);
  super-slow-motion files from them are stored at 30 frames/s.
* video duration 6 h (21,600 s): longer than any feature film; recorders (dashcams, CCTV,
  body cameras) split continuous footage into files of minutes to an hour.
* video size 64 GiB: 6 h at 24 Mbit/s (Blu-ray 1080p). The source is copied to the worker's
  scratch disk with its clips and frames beside it.
* audio duration 12 h (43,200 s) and size 4 GiB: a day-long meeting or lecture recording;
  12 h of 48 kHz 16-bit stereo is ~8.3 GB as PCM, ~4 GB as FLAC.
* batch pickle 1 GiB and 1,000,000 rows: a training batch is a minibatch of tens to thousands
  of rows; a pickle is held in memory whole (twice, while it is corrected).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .probe import MediaError, MediaInfo

GIB = 1024**3
H264_MAX_FRAME_PIXELS = 139_264 * 256  # H.264 level 6.2 MaxFS (macroblocks) x 16x16 px
REFERENCE_PIXEL_RATE = 1920 * 1080 * 30  # px/s of 1080p30, the unit of the time limit's scale


class LimitExceededError(MediaError):
    """A source is over one of its pipeline's bounds (an input failure: the object is kept).
    The message names the object, the measured value, the bound and the setting."""


class TimeLimitError(RuntimeError):
    """Work on a source ran past its wall-clock limit (infrastructure: retried, never an
    input failure; the source passed its bounds before the work started)."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds of a video source. ``max_bytes`` in bytes, ``max_duration_s`` in seconds,
    ``max_frame_pixels`` width x height in pixels, ``max_frame_rate`` in frames/s.
    ``settings`` is the environment prefix that names each bound's setting in messages."""

    max_bytes: int = 64 * GIB
    max_duration_s: float = 21_600.0
    max_frame_pixels: int = H264_MAX_FRAME_PIXELS
    max_frame_rate: float = 240.0
    settings: str = "MEDIA_ASSETS_VIDEO_"


@dataclass(frozen=True)
class AudioLimits:
    """Bounds of an audio source: ``max_bytes`` in bytes, ``max_duration_s`` in seconds."""

    max_bytes: int = 4 * GIB
    max_duration_s: float = 43_200.0
    settings: str = "MEDIA_ASSETS_AUDIO_"


def _over(name: str, what: str, value: str, bound: str, setting: str) -> LimitExceededError:
    return LimitExceededError(f"{name}: {what} {value} is over the limit of {bound} (setting {setting})")


def check_size(name: str, size_bytes: int, max_bytes: int, setting: str) -> None:
    """Raise before a download when the object's size (bytes, from HEAD or the listing) is over
    ``max_bytes``.

    Raises:
        LimitExceededError: ``size_bytes > max_bytes``; the message names ``setting``.
    """
    if size_bytes > max_bytes:
        raise _over(name, "size", f"{size_bytes:,} bytes", f"{max_bytes:,} bytes", setting)


def check_source_size(name: str, size_bytes: int, limits: VideoLimits | AudioLimits) -> None:
    """:func:`check_size` against a source's ``max_bytes``, named by its setting (``<prefix>MAX_SOURCE_BYTES``).

    Raises:
        LimitExceededError: ``size_bytes > limits.max_bytes``.
    """
    check_size(name, size_bytes, limits.max_bytes, limits.settings + "MAX_SOURCE_BYTES")


def _check_size_and_duration(name: str, info: MediaInfo, limits: VideoLimits | AudioLimits) -> None:
    check_source_size(name, info.size_bytes, limits)
    if info.duration_s > limits.max_duration_s:
        raise _over(name, "duration", f"{info.duration_s:,.1f} s", f"{limits.max_duration_s:,.0f} s",
                    limits.settings + "MAX_SOURCE_DURATION_S")


def check_video(name: str, info: MediaInfo, limits: VideoLimits) -> None:
    """Check a probed video against ``limits`` (size, declared duration, frame size, frame rate).

    Raises:
        LimitExceededError: the first bound the header is over, named with its setting.
    """
    _check_size_and_duration(name, info, limits)
    if info.video is not None:
        v = info.video
        if v.width * v.height > limits.max_frame_pixels:
            raise _over(name, "frame size", f"{v.width}x{v.height} ({v.width * v.height:,} px)", f"{limits.max_frame_pixels:,} px",
                        limits.settings + "MAX_FRAME_PIXELS")
        if v.frame_rate > limits.max_frame_rate:
            raise _over(name, "frame rate", f"{v.frame_rate:g} frames/s", f"{limits.max_frame_rate:g} frames/s",
                        limits.settings + "MAX_FRAME_RATE")


def check_audio_limits(name: str, info: MediaInfo, limits: AudioLimits) -> None:
    """Check a probed audio file against ``limits`` (size, declared duration).

    Raises:
        LimitExceededError: the first bound the header is over, named with its setting.
    """
    _check_size_and_duration(name, info, limits)


def time_limit_s(duration_s: float, *, base_s: float, per_media_s: float, info: MediaInfo | None = None) -> float:
    """Wall-clock limit, seconds, of one piece of work on ``duration_s`` seconds of media:
    ``base_s + per_media_s * duration_s * scale``, where ``scale`` is the video's pixel rate
    (width x height x frame rate of ``info``) over 1080p30's, at least 1 (audio, or smaller
    video: 1). So ``per_media_s`` is wall seconds allowed per second of 1080p30 (or smaller)
    media, and an 8K source gets 16 times as long as a 1080p one of the same duration."""
    scale = 1.0
    if info is not None and info.video is not None and info.video.frame_rate > 0:
        v = info.video
        scale = max(1.0, v.width * v.height * v.frame_rate / REFERENCE_PIXEL_RATE)
    return base_s + per_media_s * max(duration_s, 0.0) * scale


class Deadline:
    """A wall-clock limit for work that is checked between its units (model windows, batches).
    ``limit_s`` seconds from construction (``time.monotonic``); ``what`` names the work."""

    def __init__(self, limit_s: float, what: str):
        self.limit_s, self.what = limit_s, what
        self.at = time.monotonic() + limit_s

    def check(self) -> None:
        """Raises:
            TimeLimitError: the limit has passed."""
        if time.monotonic() > self.at:
            raise TimeLimitError(f"{self.what}: still running after its wall-clock limit of {self.limit_s:,.1f} s; stopped (retried)")
