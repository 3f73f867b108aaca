"""``new_avi_sensor``: new AVI objects in the source bucket -> partitions and runs."""

from __future__ import annotations

import dagster as dg

from ...resources.keyframes import KeyframeSettings, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...storage import ObjectInfo, UnsafeKeyError, check_key
from ..object_sensor import ObjectSource, WatchedPrefix, attention_check, partitioned_object_sensor
from .assets import raw_videos
from .jobs import video_conversion_job
from .partitions import video_partitions


MAX_KEY_BYTES = 1024  # S3's limit on an object key, UTF-8 bytes
MAX_NAME_BYTES = 255  # NAME_MAX of common file systems: one path segment of the local backend


def output_keys(key: str, video: VideoConversionSettings, keyframes: KeyframeSettings) -> list[str]:
    """One key of each kind that source ``key`` derives (clips, labeling frames, manifests,
    samples, key frames, embeddings), with the longest variable parts (frame numbers)."""
    prefix = video.video_prefix(key)
    src = keyframes.source_for(key, video.video_prefix)
    stem = prefix.rpartition("/")[2]
    return [
        key, f"{prefix}/{stem}_000.mp4", f"{prefix}/99999999.jpg", video.manifest_key(key, "frames"),
        src.embeddings_key(), src.out_key("samples", "99999999.jpg"), src.out_key("selected_frames", "99999999.jpg"),
        keyframe_manifest_key(src),
    ]


def key_problem(key: str, derived: list[str]) -> str | None:
    """Why source ``key`` cannot be processed without breaking one of its output names, or
    ``None``: an unsafe key (``..``, absolute, NUL), a control character or ``...`` (Dagster
    partition keys cannot hold them), or a derived key with an empty, ``.`` or ``..`` segment,
    a segment over 255 bytes or a key over 1,024 bytes (UTF-8)."""
    try:
        check_key(key)
    except UnsafeKeyError as err:
        return str(err)
    if "..." in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "key contains '...' or a control character, which Dagster partition keys cannot hold"
    for out in derived:
        if len(out.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            return f"derived key {out[:60]!r}... is over {MAX_KEY_BYTES} bytes"
        for segment in out.split("/"):
            if segment in ("", ".", ".."):
                return f"derived key {out!r} has an empty, '.' or '..' segment"
            if len(segment.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
                return f"derived name {segment[:60]!r}... is over {MAX_NAME_BYTES} bytes"
    return None


def source_skip_reason(resources, obj: ObjectInfo) -> str | None:
    """Why ``obj`` is not processed (see :func:`key_problem`), or ``None``. The object is left
    untouched and the sensor warns once (its cursor moves past it); it is then named by the
    ``no_source_needs_attention`` check until it is renamed."""
    return key_problem(obj.key, output_keys(obj.key, resources.video_settings, resources.keyframe_settings))


def _watched(resources) -> WatchedPrefix:
    s = resources.video_settings
    suffixes = tuple(x.lower() for x in s.source_suffixes)
    # non-video objects never reach the cursor logic, so they are not logged every tick
    return WatchedPrefix(s.source_bucket, s.source_prefix, lambda o: o.key.lower().endswith(suffixes), s.events_queue_url)


AVI_SOURCES = ObjectSource(job=video_conversion_job, done_asset=dg.AssetKey("source_video_removal"), partitions_def=video_partitions,
                           watched=_watched, skip_reason=source_skip_reason)  # listing already filtered by the configured suffixes
_RESOURCES = {"object_store", "video_settings", "keyframe_settings"}

new_avi_sensor = partitioned_object_sensor(
    name="new_avi_sensor",
    source=AVI_SOURCES,
    check_asset=raw_videos.key,
    max_runs_per_tick=lambda resources: resources.video_settings.max_runs_per_tick,
    required_resource_keys=_RESOURCES,
    description="Polls the source bucket (or reads its S3 notifications from MEDIA_ASSETS_VIDEO_EVENTS_QUEUE_URL) for new or re-uploaded AVI objects; adds a videos "
    "partition per object and requests one video_conversion run for it (run key = key@ETag).",
)

avi_sources_attention = attention_check(
    AVI_SOURCES.attention, raw_videos.key, _RESOURCES,
    "Every AVI in the source bucket is processed or on its way. Lists (WARN) each one a person must look at: bad input, "
    "re-requests spent, a canceled run, a refused key; and, for information, each one deleted before it was processed. "
    "Recorded by new_avi_sensor on each reconciliation pass; executing it lists the bucket now.",
)
