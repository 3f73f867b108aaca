"""Settings of the video conversion pipeline (buckets, clip lengths, sampling, dead frames)."""


from typing import Literal

import dagster as dg

from ..kernels.frames import REPEAT_MAX_BITS, DeadFrameThresholds
from ..kernels.limits import GIB, H264_MAX_FRAME_PIXELS, VideoLimits, time_limit_s
from ..kernels.probe import MediaInfo
from ..kernels.transcode import EncodeSettings


class VideoConversionSettings(dg.ConfigurableResource):
    """Configuration of ``mp4_clips`` and ``labeling_frames``; every field can be set from
    the environment as ``MEDIA_ASSETS_VIDEO_<FIELD>`` (see :mod:`media_assets.resources.env`).

    Attributes:
        source_bucket: bucket the AVI sensor watches (original: ``video-avi``).
        source_prefix: only keys under this prefix are sources.
        source_suffixes: file name suffixes (case-insensitive) that count as sources.
        mp4_bucket: where clips go, under ``<source key without extension>/`` (``video-mp4``).
        labeling_bucket: where labeling frames go (``unlabeled-images``).
        max_duration_s: sources longer than this many seconds are split (240 s, original).
        clip_s: clip length in seconds when splitting (120 s, original).
        duration_tolerance_s: allowed difference, seconds, between clip durations and source.
        x264_preset / x264_crf / audio_bitrate: encoder settings (bits/s for audio).
        every_n_frames: one labeling frame per this many source frames (10, original).
        black_pixel_luma / black_pixel_share / blank_luma_std / frozen_mean_abs_diff:
            dead-frame thresholds, see :mod:`media_assets.kernels.frames`.
        frame_repeats / frame_repeat_max_bits: a live labeling frame whose perceptual hash is
            at most ``frame_repeat_max_bits`` (5 of 64) from an earlier distinct frame of the
            same video repeats it (:class:`media_assets.kernels.frames.RepeatFinder`):
            ``keep`` (default: uploaded as before, flagged in the metadata and the manifest)
            or ``drop`` (not uploaded: human labeling is paid per frame).
        source_removal: ``delete`` the source once every clip is uploaded and verified (the
            original behaviour) or ``keep`` it.
        max_runs_per_tick: cap on run requests one sensor evaluation emits (polling).
        events_queue_url: SQS queue of S3 ``ObjectCreated`` notifications for the watched prefix
            (S3 -> SQS or EventBridge -> SQS); set, the sensor reads it instead of listing (event
            mode, see :mod:`media_assets.defs.object_sensor`); ``None`` = polling.
        upload_concurrency: parallel uploads of frames.
        max_source_bytes / max_source_duration_s / max_frame_pixels / max_frame_rate: bounds
            of an untrusted source (bytes; seconds; width x height in pixels; frames/s),
            checked from HEAD and the container header before any decode; a source over one
            is an input failure naming the bound, and is kept. Defaults and their reasons:
            :mod:`media_assets.kernels.limits` (64 GiB, 6 h, H.264's largest frame, 240 fps).
        ffmpeg_time_base_s / ffmpeg_time_per_media_s: wall-clock limit of each ffmpeg run on a
            source, ``base + per_media * duration`` seconds, scaled up for pixel rates above
            1080p30 (:func:`media_assets.kernels.limits.time_limit_s`); past it ffmpeg is
            killed and the step fails as infrastructure (retried). 4 s per second of 1080p30
            is ~4x slower than a 2-core worker encodes it.
    """

    source_bucket: str = "video-avi"
    source_prefix: str = ""
    source_suffixes: list[str] = [".avi"]
    mp4_bucket: str = "video-mp4"
    labeling_bucket: str = "unlabeled-images"
    max_duration_s: float = 240.0
    clip_s: float = 120.0
    duration_tolerance_s: float = 1.0
    x264_preset: str = "veryfast"
    x264_crf: int = 23
    audio_bitrate: int = 128_000
    every_n_frames: int = 10
    black_pixel_luma: int = 32
    black_pixel_share: float = 0.98
    blank_luma_std: float = 3.0
    frozen_mean_abs_diff: float = 0.5
    frame_repeats: Literal["keep", "drop"] = "keep"
    frame_repeat_max_bits: int = REPEAT_MAX_BITS
    source_removal: Literal["delete", "keep"] = "delete"
    max_runs_per_tick: int = 1000
    events_queue_url: str | None = None
    upload_concurrency: int = 8
    max_source_bytes: int = 64 * GIB
    max_source_duration_s: float = 21_600.0
    max_frame_pixels: int = H264_MAX_FRAME_PIXELS
    max_frame_rate: float = 240.0
    ffmpeg_time_base_s: float = 120.0
    ffmpeg_time_per_media_s: float = 4.0

    def limits(self) -> VideoLimits:
        """The source bounds as :class:`~media_assets.kernels.limits.VideoLimits`."""
        return VideoLimits(max_bytes=self.max_source_bytes, max_duration_s=self.max_source_duration_s,
                           max_frame_pixels=self.max_frame_pixels, max_frame_rate=self.max_frame_rate)

    def ffmpeg_time_limit_s(self, info: MediaInfo) -> float:
        """Wall-clock limit, seconds, of one ffmpeg run over the probed media ``info``."""
        return time_limit_s(info.duration_s, base_s=self.ffmpeg_time_base_s, per_media_s=self.ffmpeg_time_per_media_s, info=info)

    def encode_settings(self) -> EncodeSettings:
        return EncodeSettings(preset=self.x264_preset, crf=self.x264_crf, audio_bitrate=self.audio_bitrate)

    def dead_frame_thresholds(self) -> DeadFrameThresholds:
        return DeadFrameThresholds(
            black_pixel_luma=self.black_pixel_luma,
            black_pixel_share=self.black_pixel_share,
            blank_luma_std=self.blank_luma_std,
            frozen_mean_abs_diff=self.frozen_mean_abs_diff,
        )

    def video_prefix(self, source_key: str) -> str:
        """Folder (key prefix, no trailing ``/``) of one source's outputs: its key without
        the extension, so ``cams/a b.avi`` -> ``cams/a b`` (no collisions across folders)."""
        stem, dot, ext = source_key.rpartition(".")
        return stem if dot and "/" not in ext else source_key

    def manifest_key(self, source_key: str, name: str) -> str:
        """Key of a manifest in ``mp4_bucket``: ``.manifests/<video prefix>/<name>.json``."""
        return f".manifests/{self.video_prefix(source_key)}/{name}.json"
