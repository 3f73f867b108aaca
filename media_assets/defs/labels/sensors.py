"""``new_batch_sensor``: new batch objects -> partitions, requested as partition ranges."""

import hashlib
import json
import time

import dagster as dg

from ...settings import SENSOR_INTERVAL_S
from ...lib.records import DATA_VERSION_TAG, ranged_run_tags
from ...storage import ObjectInfo, ObjectNotFoundError
from ..object_sensor import ObjectCursor, WatchedPrefix, attention_check, next_objects, run_key_for
from ..reconcile import Attention, attention_evaluation, due, failed_partitions_attention
from .assets import training_batches
from .jobs import label_correction_job, video_embedding_index_job
from .partitions import batch_partitions


def range_request(chunk: list[ObjectInfo]) -> dg.RunRequest:
    """One run over the contiguous partition range ``chunk[0].key .. chunk[-1].key``; the run
    key hashes every key@ETag in it, so re-uploads make new run keys."""
    digest = hashlib.sha1("\n".join(run_key_for(o) for o in chunk).encode()).hexdigest()[:16]
    return dg.RunRequest(
        job_name=label_correction_job.name,
        run_key=f"{chunk[0].key}..{chunk[-1].key}@{digest}",
        tags=ranged_run_tags(chunk[0].key, chunk[-1].key),
    )


def record_arrivals(objects: list[ObjectInfo]) -> list[dg.AssetMaterialization]:
    """One materialization of the external asset ``training_batches`` per new or re-uploaded
    batch object (partition = its key; metadata: ETag, size in bytes, LastModified): the batch
    arrived, so its partition is filled in the UI instead of "Missing". Dagster's way to report
    that an external asset was updated (as ``raw_videos`` and ``audio_objects`` are). No data
    version: a batch's correction records the batch ETag it read in its own metadata.

    Cost: one event-log write per batch, in the daemon, when the batch is first seen: 12.6 ms
    each on the SQLite instance with 13 metadata fields (``benchmarks/dagster_events.py
    --instance sqlite``, its runless row; these records have 3). A first import of 16,889
    batches spends up to about 3.5 minutes of daemon time, once, over two ticks (at most
    ``max_runs_per_tick`` x ``partitions_per_run`` = 12,500 new batches a tick); the daemon
    evaluates sensors one after another, so the other sensors wait that long once."""
    return [dg.AssetMaterialization(asset_key=training_batches.key, partition=o.key, metadata={
        "etag": o.etag, "bytes": dg.MetadataValue.int(o.size), "last_modified": o.last_modified.isoformat()}) for o in objects]


def _watched(settings) -> WatchedPrefix:
    return WatchedPrefix(settings.bucket, settings.batch_prefix, lambda o: settings.batch_number(o.key) is not None, settings.events_queue_url)


def batch_attention(instance: dg.DagsterInstance, resources, listed: list[ObjectInfo] | None = None) -> list[Attention]:
    """The listed batches (default: a fresh listing of the batch prefix) whose correction
    failed for good (:func:`media_assets.defs.reconcile.failed_partitions_attention`)."""
    settings = resources.label_settings
    if listed is None:
        listed = _watched(settings).list(resources.object_store.get_store())
    return failed_partitions_attention(instance, job_name=label_correction_job.name, asset_key=dg.AssetKey("corrected_batches"),
                                       partitions_def=batch_partitions, names={o.key: f"{o.bucket}/{o.key}" for o in listed})


batch_sources_attention = attention_check(
    batch_attention, training_batches.key, {"label_settings"},
    "Every training batch is corrected or on its way. Lists (WARN) each batch whose correction failed for good: bad input "
    "(malformed, unsafe or empty pickle; its own error), a canceled run, or another failure after Dagster's run retries. "
    "Recorded by new_batch_sensor every MEDIA_ASSETS_RECONCILE_INTERVAL_S; executing it lists the batch prefix now.",
)


@dg.sensor(
    name="new_batch_sensor",
    jobs=[label_correction_job, video_embedding_index_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"object_store", "label_settings", "event_queue", "reconcile_settings"},
    description="Polls the batch bucket (or reads its S3 notifications from MEDIA_ASSETS_LABELS_EVENTS_QUEUE_URL). New batches become training_batches partitions, added "
    "in batch-number order and requested as ranges of partitions_per_run (one run each, not one "
    "run per batch); re-uploaded batches get a run of their own. Each new or re-uploaded batch is recorded as a materialization "
    "of its training_batches partition (it arrived). Also records the master table "
    "and targets by ETag (a materialization of each external asset per new version) and requests video_embedding_index when the master table changes.",
)
def new_batch_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = context.resources.label_settings
    store = context.resources.object_store.get_store()
    state = json.loads(context.cursor) if context.cursor else {}
    run_requests: list[dg.RunRequest] = []
    asset_events: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []

    for asset_key, key in (("master_video_embeddings", settings.master_key), ("label_targets", settings.targets_key)):
        try:
            etag = store.head(settings.bucket, key).etag
        except ObjectNotFoundError:
            continue
        if etag != state.get(asset_key):
            state[asset_key] = etag
            # a materialization, not an observation: Dagster takes the current data version of an
            # external (non-observable) asset from its materializations only, so with observations
            # video_embedding_index read "stale" (master at INITIAL) right after it was rebuilt
            asset_events.append(dg.AssetMaterialization(asset_key=asset_key, tags={DATA_VERSION_TAG: etag}, metadata={"etag": etag}))
            if asset_key == "master_video_embeddings":
                run_requests.append(dg.RunRequest(job_name=video_embedding_index_job.name, run_key=f"index@{etag}"))

    n = settings.partitions_per_run
    attention_due = due(context.resources.reconcile_settings, state.get("attention_at"))
    tick = next_objects(context, _watched(settings), ObjectCursor.parse(state.get("objects")), settings.max_runs_per_tick * n,
                        reconcile=attention_due)
    new, cursor = tick.new, tick.cursor
    state["objects"] = cursor.dumps()
    if attention_due:  # every reconciliation interval: the batches that need a person (check on training_batches)
        asset_events.append(attention_evaluation(training_batches.key, batch_attention(context.instance, context.resources, [*tick.passed, *new])))
        state["attention_at"] = time.time()
    existing = set(context.instance.get_dynamic_partitions(batch_partitions.name))
    fresh = sorted((o for o in new if o.key not in existing), key=lambda o: (settings.batch_number(o.key), o.key))
    asset_events += record_arrivals(new)  # the fresh ones and the re-uploaded ones
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
