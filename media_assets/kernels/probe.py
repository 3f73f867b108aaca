"""Probing media files (container, streams, duration) with PyAV (libavformat)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av


class MediaError(ValueError):
    """A file is not usable media: empty, not a container ffmpeg can read, or undecodable."""


class NoVideoStreamError(MediaError):
    """The file is valid media but has no video stream (e.g. an audio-only AVI)."""


@dataclass(frozen=True)
class VideoStreamInfo:
    """First video stream. ``frame_rate`` in frames/second (average rate), ``n_frames`` from
    the container index (``None`` when the container does not record it), sizes in pixels."""

    codec: str
    width: int
    height: int
    frame_rate: float
    n_frames: int | None
    pix_fmt: str | None


@dataclass(frozen=True)
class AudioStreamInfo:
    """First audio stream: codec name, sample rate in Hz, channel count."""

    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found. ``duration_s`` in seconds, ``size_bytes`` in bytes."""

    path: str
    format_name: str
    duration_s: float
    size_bytes: int
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None

    @property
    def n_streams(self) -> int:
        return int(self.video is not None) + int(self.audio is not None)


def _duration_s(container, stream) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the container header of ``path`` and describe its first video and audio stream.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        MediaError: the file is empty (0 bytes) or is not a container libavformat can open
            (e.g. a text file named ``.avi``); the message names the file and the reason.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{path.name}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise MediaError(f"{path.name}: not a readable media container ({err})") from err
    with container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        video = None
        if v is not None:
            rate = v.average_rate or v.guessed_rate or Fraction(0)
            video = VideoStreamInfo(
                codec=v.codec_context.name,
                width=int(v.codec_context.width),
                height=int(v.codec_context.height),
                frame_rate=float(rate),
                n_frames=int(v.frames) if v.frames else None,
                pix_fmt=v.codec_context.pix_fmt,
            )
        audio = None
        if a is not None:
            audio = AudioStreamInfo(
                codec=a.codec_context.name,
                sample_rate=int(a.codec_context.sample_rate or 0),
                channels=int(a.codec_context.channels or 0),
            )
        return MediaInfo(
            path=str(path),
            format_name=container.format.name,
            duration_s=_duration_s(container, v if v is not None else a),
            size_bytes=size,
            video=video,
            audio=audio,
        )
