"""``new_audio_sensor``: new audio objects -> a run for each day they fall in."""

import datetime as dt
import hashlib
import json

import dagster as dg

from ..object_sensor import ObjectCursor, run_key_for, select_new_objects
from .jobs import audio_job


@dg.sensor(
    name="new_audio_sensor",
    job=audio_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"object_store", "audio_settings"},
    description="Polls the audio bucket; requests an `audio` run for each UTC day (on LastModified) "
    "that new or re-uploaded objects fall in. A late object re-requests its day.",
)
def new_audio_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = context.resources.audio_settings
    store = context.resources.object_store.get_store()
    limit = settings.max_runs_per_tick * 1000  # objects per tick; days are far fewer
    new, cursor = select_new_objects(store.list_objects(settings.source_bucket, settings.source_prefix), ObjectCursor.parse(context.cursor), limit)
    days: dict[str, list[str]] = {}
    for obj in new:
        days.setdefault(obj.last_modified.astimezone(dt.timezone.utc).date().isoformat(), []).append(run_key_for(obj))
    requests = [
        dg.RunRequest(partition_key=day, run_key=f"{day}@{hashlib.sha1(json.dumps(sorted(keys)).encode()).hexdigest()[:16]}")
        for day, keys in sorted(days.items())
    ]
    return dg.SensorResult(run_requests=requests, cursor=cursor.dumps(), skip_reason=None if requests else "no new audio objects")
