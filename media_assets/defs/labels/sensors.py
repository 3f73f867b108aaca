"""``new_batch_sensor``: new batch objects -> partitions, requested as partition ranges."""

import hashlib
import json

import dagster as dg

from ...settings import SENSOR_INTERVAL_S
from ...storage import ObjectInfo, ObjectNotFoundError
from ..object_sensor import ObjectCursor, WatchedPrefix, next_objects, run_key_for
from .jobs import label_correction_job, video_embedding_index_job
from .partitions import batch_partitions

DATA_VERSION_TAG = "dagster/data_version"
# Dagster's documented run tags for one run over a partition range (what a UI backfill with
# BackfillPolicy.multi_run sets on each of its runs)
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_request(chunk: list[ObjectInfo]) -> dg.RunRequest:
    """One run over the contiguous partition range ``chunk[0].key .. chunk[-1].key``; the run
    key hashes every key@ETag in it, so re-uploads make new run keys."""
    digest = hashlib.sha1("\n".join(run_key_for(o) for o in chunk).encode()).hexdigest()[:16]
    return dg.RunRequest(
        job_name=label_correction_job.name,
        run_key=f"{chunk[0].key}..{chunk[-1].key}@{digest}",
        tags={PARTITION_RANGE_START_TAG: chunk[0].key, PARTITION_RANGE_END_TAG: chunk[-1].key},
    )


@dg.sensor(
    name="new_batch_sensor",
    jobs=[label_correction_job, video_embedding_index_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"object_store", "label_settings", "event_queue"},
    description="Polls the batch bucket (or reads its S3 notifications from MEDIA_ASSETS_LABELS_EVENTS_QUEUE_URL). New batches become training_batches partitions, added "
    "in batch-number order and requested as ranges of partitions_per_run (one run each, not one "
    "run per batch); re-uploaded batches get a run of their own. Also observes the master table "
    "and targets by ETag and requests video_embedding_index when the master table changes.",
)
def new_batch_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = context.resources.label_settings
    store = context.resources.object_store.get_store()
    state = json.loads(context.cursor) if context.cursor else {}
    run_requests: list[dg.RunRequest] = []
    asset_events: list[dg.AssetObservation] = []

    for asset_key, key in (("master_video_embeddings", settings.master_key), ("label_targets", settings.targets_key)):
        try:
            etag = store.head(settings.bucket, key).etag
        except ObjectNotFoundError:
            continue
        if etag != state.get(asset_key):
            state[asset_key] = etag
            asset_events.append(dg.AssetObservation(asset_key=asset_key, tags={DATA_VERSION_TAG: etag}, metadata={"etag": etag}))
            if asset_key == "master_video_embeddings":
                run_requests.append(dg.RunRequest(job_name=video_embedding_index_job.name, run_key=f"index@{etag}"))

    n = settings.partitions_per_run
    watched = WatchedPrefix(settings.bucket, settings.batch_prefix, lambda o: settings.batch_number(o.key) is not None, settings.events_queue_url)
    tick = next_objects(context, watched, ObjectCursor.parse(state.get("objects")), settings.max_runs_per_tick * n, reconcile=False)
    new, cursor = tick.new, tick.cursor
    state["objects"] = cursor.dumps()
    existing = set(context.instance.get_dynamic_partitions(batch_partitions.name))
    fresh = sorted((o for o in new if o.key not in existing), key=lambda o: (settings.batch_number(o.key), o.key))
    run_requests += [range_request(fresh[i : i + n]) for i in range(0, len(fresh), n)]
    run_requests += [
        dg.RunRequest(job_name=label_correction_job.name, partition_key=o.key, run_key=run_key_for(o))
        for o in new if o.key in existing
    ]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[batch_partitions.build_add_request([o.key for o in fresh])] if fresh else [],
        asset_events=asset_events,
        cursor=json.dumps(state),
        skip_reason=None if run_requests else "no new batches",
    )
