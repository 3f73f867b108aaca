"""Transcoding to H.264/AAC MP4, split into fixed-length clips in the same ffmpeg pass, and
verification of the result by probing.

Splitting: when the source is longer than ``max_duration_s`` (default 240 s, as the original
pipeline), keyframes are forced every ``clip_s`` seconds (``-force_key_frames
expr:gte(t,n_forced*clip_s)``) and the ``segment`` muxer cuts at exactly those keyframes, so
one encode yields clips of ``clip_s`` seconds (the last one shorter). No second encode, no
stream copy at non-keyframes.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .ffmpeg import run_ffmpeg
from .probe import MediaInfo, NoVideoStreamError, probe


class VerificationError(RuntimeError):
    """A transcoded output does not match its source (missing stream, wrong duration)."""


@dataclass(frozen=True)
class EncodeSettings:
    """x264/AAC settings. ``crf`` is x264's constant rate factor (0-51, lower is better;
    23 is x264's default), ``preset`` its speed/size trade-off, ``audio_bitrate`` in bits/s."""

    preset: str = "veryfast"
    crf: int = 23
    audio_bitrate: int = 128_000


@dataclass(frozen=True)
class ClipInfo:
    """One verified MP4 clip: ``start_s``/``duration_s`` in seconds of the source timeline,
    ``n_frames`` video frames, ``size_bytes`` bytes."""

    path: Path
    index: int
    start_s: float
    duration_s: float
    n_frames: int
    size_bytes: int
    video_codec: str
    audio_codec: str | None


def even_size_filter(info: MediaInfo) -> str | None:
    """``scale`` filter that makes odd frame dimensions even (yuv420p needs them), or ``None``."""
    assert info.video is not None
    return "scale=trunc(iw/2)*2:trunc(ih/2)*2" if info.video.width % 2 or info.video.height % 2 else None


def transcode_args(src: Path, dst_dir: Path, stem: str, info: MediaInfo, **encode) -> list[str]:
    """The ffmpeg arguments :func:`transcode_to_mp4` runs (exposed for benchmarks and logs);
    ``encode``: the keyword arguments of :func:`encode_output_args`."""
    args = ["-i", str(src), "-sn", "-dn"]
    even = even_size_filter(info)
    if even:
        args += ["-filter_complex", f"[0:v:0]{even}[v]"]
    return args + encode_output_args("[v]" if even else "0:v:0", dst_dir, stem, info, **encode)


def encode_output_args(
    video: str,
    dst_dir: Path,
    stem: str,
    info: MediaInfo,
    *,
    max_duration_s: float = 240.0,
    clip_s: float = 120.0,
    settings: EncodeSettings = EncodeSettings(),
) -> list[str]:
    """Output arguments of the H.264/AAC encode of :func:`transcode_to_mp4`, taking the video
    from ``video`` (an input stream such as ``0:v:0`` or a filter-graph label ``[v]``) and the
    first audio stream of input 0: one ``<stem>.mp4``, or ``clip_s`` clips ``<stem>_%03d.mp4``
    (forced keyframes + segment muxer) when the source lasts over ``max_duration_s`` seconds."""
    args = ["-map", video, "-fps_mode:v", "passthrough", "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf), "-pix_fmt", "yuv420p"]
    if info.audio is not None:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", str(settings.audio_bitrate)]
    else:
        args += ["-an"]
    if info.duration_s > max_duration_s:
        args += [
            "-force_key_frames", f"expr:gte(t,n_forced*{clip_s:g})",
            "-f", "segment",
            "-segment_time", f"{clip_s:g}",
            "-segment_format", "mp4",
            "-segment_format_options", "movflags=+faststart",
            "-reset_timestamps", "1",
            str(dst_dir / f"{stem}_%03d.mp4"),
        ]
    else:
        args += ["-movflags", "+faststart", "-f", "mp4", str(dst_dir / f"{stem}.mp4")]
    return args


def clip_pattern(stem: str, info: MediaInfo, max_duration_s: float = 240.0) -> str:
    """The glob (``stem`` escaped) of the clips an encode of :func:`encode_output_args` writes."""
    return glob.escape(stem) + ("_[0-9][0-9][0-9].mp4" if info.duration_s > max_duration_s else ".mp4")


def clip_paths(dst_dir: Path, stem: str, info: MediaInfo, max_duration_s: float = 240.0) -> list[Path]:
    """The clips an encode of :func:`encode_output_args` wrote, in timeline order."""
    return sorted(dst_dir.glob(clip_pattern(stem, info, max_duration_s)))


def transcode_to_mp4(
    src: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    stem: str = "video",
    max_duration_s: float = 240.0,
    clip_s: float = 120.0,
    settings: EncodeSettings = EncodeSettings(),
    info: MediaInfo | None = None,
) -> list[Path]:
    """Transcode ``src`` to H.264 (yuv420p) + AAC MP4 with ``+faststart``.

    Sources of at most ``max_duration_s`` seconds give one file ``<stem>.mp4``; longer ones
    give ``<stem>_000.mp4``, ``<stem>_001.mp4``, ... of ``clip_s`` seconds each (the last one
    shorter). A source without audio gives video-only MP4s. ``dst_dir`` should be empty.

    Returns:
        The output paths in timeline order.

    Raises:
        MediaError: ``src`` is empty or not readable media.
        NoVideoStreamError: ``src`` has no video stream.
        FFmpegError: ffmpeg failed (e.g. a corrupt stream it cannot decode at all).
    """
    src, dst_dir = Path(src), Path(dst_dir)
    info = info or probe(src)
    if info.video is None:
        raise NoVideoStreamError(f"{src.name}: no video stream (streams: {'audio' if info.audio else 'none'})")
    dst_dir.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(transcode_args(src, dst_dir, stem, info, max_duration_s=max_duration_s, clip_s=clip_s, settings=settings))
    return clip_paths(dst_dir, stem, info, max_duration_s)


def expected_duration_s(source: MediaInfo) -> float:
    """The duration in seconds a complete decode of ``source`` should give: the larger of the
    container duration and the video stream's indexed frame count / frame rate. (A truncated
    AVI loses its index: libavformat then reports only the duration of the data present,
    while the stream header still records the full frame count.)"""
    duration = source.duration_s
    v = source.video
    if v is not None and v.n_frames and v.frame_rate > 0:
        duration = max(duration, v.n_frames / v.frame_rate)
    return duration


def verify_clips(
    clips: list[Path],
    source: MediaInfo,
    *,
    max_duration_s: float = 240.0,
    clip_s: float = 120.0,
    tolerance_s: float = 1.0,
) -> list[ClipInfo]:
    """Probe every clip and check it against the source.

    Checks: at least one clip; each clip has an H.264 video stream, and an audio stream iff
    the source has one; every clip but the last lasts ``clip_s`` ± ``tolerance_s`` seconds
    (only when the source was split); the clip durations add up to :func:`expected_duration_s`
    ± ``tolerance_s`` seconds. A truncated source whose header promises more than its data
    holds fails the last check.

    Returns:
        One :class:`ClipInfo` per clip, with start times on the source timeline.

    Raises:
        VerificationError: any check fails; the message names the clip and the numbers.
    """
    if not clips:
        raise VerificationError("ffmpeg produced no output clip")
    infos: list[ClipInfo] = []
    start = 0.0
    split = source.duration_s > max_duration_s
    for i, path in enumerate(clips):
        try:
            info = probe(path)
        except Exception as err:  # noqa: BLE001 - any probe failure means an unusable output
            raise VerificationError(f"{path.name}: output is not readable: {err}") from err
        if info.video is None or info.video.codec != "h264":
            raise VerificationError(f"{path.name}: expected an H.264 video stream, found {info.video}")
        if (info.audio is None) != (source.audio is None):
            raise VerificationError(
                f"{path.name}: audio stream {'missing' if info.audio is None else 'unexpected'} "
                f"(source has {'an' if source.audio else 'no'} audio stream)"
            )
        if split and i < len(clips) - 1 and abs(info.duration_s - clip_s) > tolerance_s:
            raise VerificationError(f"{path.name}: lasts {info.duration_s:.3f} s, expected {clip_s:g} s ± {tolerance_s:g} s")
        n_frames = info.video.n_frames or round(info.duration_s * info.video.frame_rate)
        infos.append(
            ClipInfo(
                path=path,
                index=i,
                start_s=start,
                duration_s=info.duration_s,
                n_frames=n_frames,
                size_bytes=info.size_bytes,
                video_codec=info.video.codec,
                audio_codec=info.audio.codec if info.audio else None,
            )
        )
        start += info.duration_s
    total = sum(c.duration_s for c in infos)
    expected = expected_duration_s(source)
    if abs(total - expected) > tolerance_s:
        raise VerificationError(
            f"clips last {total:.3f} s in total but the source lasts {expected:.3f} s "
            f"(tolerance {tolerance_s:g} s): the source is probably truncated or partly undecodable"
        )
    return infos
