"""``new_avi_sensor``: new AVI objects in the source bucket -> partitions and runs."""

from __future__ import annotations

import dagster as dg

from ...storage import ObjectInfo, UnsafeKeyError, check_key
from ..object_sensor import partitioned_object_sensor
from .jobs import video_conversion_job
from .partitions import video_partitions


def source_skip_reason(obj: ObjectInfo, suffixes: list[str] | None = None) -> str | None:
    """Why ``obj`` is not a video source, or ``None``. Unsafe keys (``..`` segments, ...) and
    keys Dagster cannot use as partition keys (containing ``...`` or control characters) are
    skipped with a warning in the sensor log; the object itself is left untouched."""
    if suffixes is not None and not obj.key.lower().endswith(tuple(s.lower() for s in suffixes)):
        return f"suffix not in {suffixes}"
    try:
        check_key(obj.key)
    except UnsafeKeyError as err:
        return str(err)
    if "..." in obj.key or any(ord(c) < 32 for c in obj.key):
        return "key contains '...' or a control character, which Dagster partition keys cannot hold"
    return None


def _list_sources(context: dg.SensorEvaluationContext):
    s = context.resources.video_settings
    objects = context.resources.object_store.get_store().list_objects(s.source_bucket, s.source_prefix)
    suffixes = tuple(x.lower() for x in s.source_suffixes)
    # non-video objects never reach the cursor logic, so they are not logged every tick
    return (o for o in objects if o.key.lower().endswith(suffixes))


new_avi_sensor = partitioned_object_sensor(
    name="new_avi_sensor",
    job=video_conversion_job,
    partitions_def=video_partitions,
    list_objects=_list_sources,
    skip_reason=source_skip_reason,  # listing already filtered by the configured suffixes
    max_runs_per_tick=lambda ctx: ctx.resources.video_settings.max_runs_per_tick,
    required_resource_keys={"object_store", "video_settings"},
    description="Polls the source bucket for new or re-uploaded AVI objects; adds a `videos` "
    "partition per object and requests one `video_conversion` run for it (run key = key@ETag).",
)
