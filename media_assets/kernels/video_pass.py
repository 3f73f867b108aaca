"""One decode of a source video feeding every consumer.

The video pipeline needs three things from each source: the H.264/AAC MP4 clips, every n-th
frame as a labeling JPEG (with its dead-frame thumbnail), and 1 FPS key-frame samples (with
the shot-analysis thumbnails). Made one after the other, the source (or its clips) is decoded
three times. :func:`decode_once` builds one ffmpeg command whose filter graph ``split``\\s the
decoded frames between the encoder (+ segment muxer), the labeling ``select`` branch of
:func:`media_assets.kernels.frames.labeling_branch` and the sampling branch of
:func:`media_assets.kernels.keyframes.sample_branch`, so each frame is decoded once
(ffmpeg's ``-filter_complex`` with ``split``: https://ffmpeg.org/ffmpeg-filters.html#split).

The outputs are the same as the separate passes give on the clips: the same clip boundaries
(the encoder branch is :func:`media_assets.kernels.transcode.encode_output_args`), labeling
frame ``n`` = the n-th decoded source frame (one grid across clip boundaries, as the separate
pass numbers frames from each clip's first source frame), sample ``i`` = the frame on screen
at ``i / fps`` seconds of the source. Labeling frames and samples are cut from the decoded
source rather than from the encoded clips, so they carry one lossy generation less.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .ffmpeg import FileBatches, run_ffmpeg_streaming
from .frames import LabelingStream, SampledFrames, labeling_branch
from .keyframes import SAMPLE_PATTERN, Samples, collect_samples, sample_branch
from .probe import MediaInfo, NoVideoStreamError
from .transcode import EncodeSettings, clip_paths, clip_pattern, encode_output_args, even_size_filter


@dataclass(frozen=True)
class ClipPlan:
    """What the encoder branch makes: see :func:`media_assets.kernels.transcode.transcode_to_mp4`
    (seconds for ``max_duration_s`` and ``clip_s``). ``on_clip`` gets each finished clip file
    (a list of paths, in timeline order) while the encode goes on, the last one when ffmpeg
    has exited; the clips are verified after the pass
    (:func:`media_assets.kernels.transcode.verify_clips`), not before they are handed."""

    stem: str = "video"
    max_duration_s: float = 240.0
    clip_s: float = 120.0
    settings: EncodeSettings = EncodeSettings()
    on_clip: Callable[[list[Path]], None] | None = None


@dataclass(frozen=True)
class LabelingPlan:
    """What the labeling branch makes: every ``every_n``-th frame as JPEG (ffmpeg ``-q:v``
    ``jpeg_quality``) with its 64x36 grey thumbnail (:func:`media_assets.kernels.frames.sample_frames`).
    ``on_batch`` gets them as :class:`~media_assets.kernels.frames.SampledFrames` runs of at
    least ``batch_size`` frames while ffmpeg still decodes (:class:`~media_assets.kernels.frames.LabelingStream`)."""

    every_n: int = 10
    jpeg_quality: int = 2
    on_batch: Callable[[SampledFrames], None] | None = None
    batch_size: int = 16


@dataclass(frozen=True)
class SamplePlan:
    """What the key-frame branch makes: ``fps`` samples/s scaled to ``width`` x ``height`` px
    as JPEG, and the shot analysis at ``analysis_rate`` frames/s if given
    (:func:`media_assets.kernels.keyframes.extract_samples`). ``on_batch`` gets each run of at
    least ``batch_size`` finished sample JPEGs while ffmpeg still decodes."""

    fps: float = 1.0
    width: int = 1024
    height: int = 576
    jpeg_quality: int = 3
    analysis_rate: int | None = None
    on_batch: Callable[[list[Path]], None] | None = None
    batch_size: int = 8


@dataclass
class PassOutputs:
    """What :func:`decode_once` made: ``clips`` (paths in timeline order, not yet verified:
    see :func:`media_assets.kernels.transcode.verify_clips`), ``labeling``
    (:class:`~media_assets.kernels.frames.SampledFrames`) and ``samples``
    (:class:`~media_assets.kernels.keyframes.Samples`); ``None`` for a consumer not asked for."""

    clips: list[Path] | None
    labeling: SampledFrames | None
    samples: Samples | None


def decode_once(src: str | os.PathLike, out_dir: str | os.PathLike, info: MediaInfo, *, clips: ClipPlan | None = None,
                labeling: LabelingPlan | None = None, samples: SamplePlan | None = None, timeout_s: float | None = None) -> PassOutputs:
    """Decode ``src`` once and make the outputs of every plan given, in one ffmpeg process.

    Outputs go to ``out_dir/clips``, ``out_dir/labeling`` and ``out_dir/samples``. Odd frame
    dimensions are made even before the split (as the encode needs), so every consumer sees
    the frames the clips hold. ``timeout_s``: wall-clock limit of the ffmpeg process, seconds.

    Raises:
        ValueError: no plan given, or a plan's parameters are invalid (``every_n < 1``,
            ``analysis_rate`` not a multiple of ``fps``).
        NoVideoStreamError: ``info`` (the probe of ``src``) has no video stream.
        FFmpegError: ffmpeg cannot decode ``src``; nothing of the pass is usable then.
        FFmpegInterruptedError, FFmpegTimeoutError: ffmpeg was killed, ran out of disk or
            memory, or ran past ``timeout_s`` (infrastructure, see ``kernels.ffmpeg``).
        Whatever an ``on_clip`` / ``on_batch`` callback raises (ffmpeg is killed first).
    """
    if clips is None and labeling is None and samples is None:
        raise ValueError("decode_once needs at least one of clips, labeling, samples")
    if info.video is None:
        raise NoVideoStreamError(f"{Path(src).name}: no video stream")
    out_dir = Path(out_dir)
    consumers = [name for name, plan in (("enc", clips), ("lab", labeling), ("kf", samples)) if plan is not None]
    head = ",".join(f for f in (even_size_filter(info), f"split={len(consumers)}" if len(consumers) > 1 else None) if f) or "null"
    graph = [f"[0:v:0]{head}" + "".join(f"[{c}]" for c in consumers)]
    outputs: list[str] = []
    if clips is not None:
        (out_dir / "clips").mkdir(parents=True, exist_ok=True)
        outputs += encode_output_args("[enc]", out_dir / "clips", clips.stem, info, max_duration_s=clips.max_duration_s,
                                      clip_s=clips.clip_s, settings=clips.settings)
    if labeling is not None:
        g, o = labeling_branch("lab", out_dir / "labeling", every_n=labeling.every_n, jpeg_quality=labeling.jpeg_quality)
        graph.append(g)
        outputs += o
    if samples is not None:
        g, o = sample_branch("kf", out_dir / "samples", fps=samples.fps, width=samples.width, height=samples.height,
                             jpeg_quality=samples.jpeg_quality, analysis_rate=samples.analysis_rate)
        graph.append(g)
        outputs += o
    watchers: list = []
    if clips is not None and clips.on_clip is not None:
        watchers.append(FileBatches(out_dir / "clips", clip_pattern(clips.stem, info, clips.max_duration_s), clips.on_clip, batch_size=1))
    frames = None
    if labeling is not None:
        frames = LabelingStream(out_dir / "labeling", every_n=labeling.every_n, on_batch=labeling.on_batch, batch_size=labeling.batch_size)
        watchers.append(frames)
    if samples is not None and samples.on_batch is not None:
        watchers.append(FileBatches(out_dir / "samples", SAMPLE_PATTERN, samples.on_batch, samples.batch_size))
    run_ffmpeg_streaming(["-i", str(src), "-sn", "-dn", "-filter_complex", ";".join(graph), *outputs], watchers, timeout_s=timeout_s)
    return PassOutputs(
        clips=clip_paths(out_dir / "clips", clips.stem, info, clips.max_duration_s) if clips else None,
        labeling=frames.collected() if frames else None,
        samples=collect_samples(out_dir / "samples", fps=samples.fps, analysis_rate=samples.analysis_rate) if samples else None,
    )
