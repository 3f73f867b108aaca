"""``new_audio_sensor``: new audio objects -> a run for each day they fall in."""

import hashlib
import json
import time

import dagster as dg

from ...settings import AUDIO_START_DATE, SENSOR_INTERVAL_S
from ...storage import ObjectInfo
from ..object_sensor import ObjectCursor, WatchedPrefix, attention_check, next_objects, run_key_for
from ..reconcile import Attention, Source, attention_evaluation, due, needs_attention, stranded_requests
from .assets import audio_objects
from .jobs import audio_job
from .partitions import audio_day, audio_partitions, split_by_day_range

DONE_ASSET = dg.AssetKey("audio_dataset")  # the audio job's last asset: a day is processed once it is materialized


@dg.sensor(
    name="new_audio_sensor",
    job=audio_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"object_store", "audio_settings", "reconcile_settings", "event_queue"},
    description="Polls the audio bucket (or reads its S3 notifications from MEDIA_ASSETS_AUDIO_EVENTS_QUEUE_URL); requests an audio run for each UTC day (on LastModified) "
    "that new or re-uploaded objects fall in. A late object re-requests its day; a day whose run "
    "failed for a non-input reason is requested again (reconciliation, every MEDIA_ASSETS_RECONCILE_INTERVAL_S). "
    "Objects on days before MEDIA_ASSETS_AUDIO_START_DATE are named in a warning in the tick's log and not processed.",
)
def new_audio_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = context.resources.audio_settings
    limit = settings.max_runs_per_tick * 1000  # objects per tick; days are far fewer
    previous = ObjectCursor.parse(context.cursor)
    reconcile = context.resources.reconcile_settings
    tick = next_objects(context, WatchedPrefix(settings.source_bucket, settings.source_prefix, queue_url=settings.events_queue_url),
                        previous, limit, reconcile=due(reconcile, previous.reconciled_at))
    new, outside = split_by_day_range(tick.new)
    cursor = tick.cursor
    if outside:
        days = sorted({audio_day(o) for o in outside})
        context.log.warning(
            f"{len(outside)} audio objects fall on days outside the audio partitions ({days[0]} to {days[-1]}; "
            f"the partitions run from MEDIA_ASSETS_AUDIO_START_DATE={AUDIO_START_DATE} to tomorrow, UTC) and are not processed: "
            f"{', '.join(o.key for o in outside[:10])}{' ...' if len(outside) > 10 else ''}. Set MEDIA_ASSETS_AUDIO_START_DATE "
            f"to {days[0]} or earlier to process them.")
    requests = [dg.RunRequest(partition_key=s.partition_key, run_key=s.run_key) for s in _day_sources(new)]
    events: list = _record_days(new)
    if tick.passed is not None:
        passed = _day_sources(split_by_day_range(tick.passed)[0])
        requests += stranded_requests(context, job_name=audio_job.name, asset_key=DONE_ASSET, partitions_def=audio_partitions,
                                      sources=passed, settings=reconcile, previous_pass=previous.reconciled_at)
        events.append(attention_evaluation(audio_objects.key, audio_attention(context.instance, context.resources, [*tick.passed, *tick.new])))
        cursor.reconciled_at = time.time()
    skip = f"no new audio objects on the partitions' days ({len(outside)} outside them)" if outside else "no new audio objects"
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor.dumps(),
                           skip_reason=None if requests else skip)


def audio_attention(instance: dg.DagsterInstance, resources, listed: list[ObjectInfo] | None = None) -> list[Attention]:
    """:func:`media_assets.defs.reconcile.needs_attention` for the audio days of ``listed``
    (default: a fresh listing of the audio prefix): days whose run ended for good, and, as
    refused, objects on days outside the audio partitions."""
    settings = resources.audio_settings
    if listed is None:
        listed = WatchedPrefix(settings.source_bucket, settings.source_prefix).list(resources.object_store.get_store())
    inside, outside = split_by_day_range(listed)
    refused = {f"{o.bucket}/{o.key}": f"its day {audio_day(o)} is outside the audio partitions (MEDIA_ASSETS_AUDIO_START_DATE="
               f"{AUDIO_START_DATE} to tomorrow, UTC)" for o in outside}
    return needs_attention(instance, job_name=audio_job.name, asset_key=DONE_ASSET, partitions_def=audio_partitions,
                           sources=_day_sources(inside), settings=resources.reconcile_settings, refused=refused)


audio_sources_attention = attention_check(
    audio_attention, audio_objects.key, {"audio_settings"},
    "Every audio object is processed or on its way. Lists (WARN) each UTC day whose run failed on its input, spent its "
    "re-requests or was canceled, and each object on a day outside the audio partitions. Recorded by new_audio_sensor "
    "on each reconciliation pass; executing it lists the bucket now.",
)


def _record_days(objects) -> list[dg.AssetMaterialization]:
    """One materialization of the external asset ``audio_objects`` per UTC day of the new
    ``objects`` (how many, bytes, up to 10 keys): the day's data arrived, so its partition is
    filled in the UI."""
    days: dict[str, list] = {}
    for o in objects:
        days.setdefault(audio_day(o), []).append(o)
    return [dg.AssetMaterialization(asset_key=dg.AssetKey("audio_objects"), partition=day, metadata={
        "new_objects": dg.MetadataValue.int(len(objs)), "new_bytes": dg.MetadataValue.int(sum(o.size for o in objs)),
        "examples": [o.key for o in objs[:10]]}) for day, objs in sorted(days.items())]


def _day_sources(objects) -> list[Source]:
    """One source per UTC day (on LastModified) of ``objects``; its run key hashes every
    ``key@ETag`` of that day among them."""
    days: dict[str, list[str]] = {}
    for obj in objects:
        days.setdefault(audio_day(obj), []).append(run_key_for(obj))
    return [Source(day, f"{day}@{hashlib.sha1(json.dumps(sorted(keys)).encode()).hexdigest()[:16]}") for day, keys in sorted(days.items())]
