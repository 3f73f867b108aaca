"""Reconciliation: the source sensors' periodic look for stranded sources.

A cursor sees each upload once. What it cannot see is work that was requested and then lost,
or never requested: so every ``ReconcileSettings.interval_s`` a sensor also takes every object
of its listing that the cursor has already passed and asks Dagster, through the public
instance API, what became of it:

* the job's last asset is materialized for its partition, or a run is in progress: nothing;
* no run was ever made for it (a multipart upload that completed after a later object was
  listed: S3 stamps LastModified at the start of the upload) : it is requested;
* its latest run failed for a reason that is not the input's -- an S3 error, a missing output
  bucket, a run worker lost after Dagster's run retries were spent -- : it is requested again,
  ``retry_delay_s * 2**(n-1)`` seconds after that run ended for the n-th time, at most
  ``max_rerequests`` times (then one warning and it is left);
* its latest run failed on bad input (a step raised ``dg.Failure``, see
  :func:`media_assets.defs.common.input_failure`), was canceled, or Dagster will retry it
  (run tag ``dagster/will_retry``): nothing; bad input was reported by its run once.

Each re-request has run key ``<run key>#rerequest-<n>`` and tag ``media_assets/rerequest``, so
Dagster's run-key deduplication still holds: one request per source, upload and attempt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from ..resources.reconcile import ReconcileSettings

REREQUEST_TAG = "media_assets/rerequest"
PARTITION_TAG = "dagster/partition"  # Dagster's documented run tag of a single-partition run
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run its run retries will re-execute
_DONE = (dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.IN_PROGRESS)
_QUERY_CHUNK = 500  # partition keys per run query


@dataclass(frozen=True)
class Source:
    """What the sensor would request for one source: its partition, run key and run tags."""

    partition_key: str
    run_key: str
    tags: Mapping[str, str] = field(default_factory=dict)


def is_input_failure(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when a step of run ``run_id`` failed by raising ``dg.Failure`` (the input's fault)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return any(r.event_log_entry.dagster_event.step_failure_data.user_failure_data is not None for r in records)


def _latest_runs(instance: dg.DagsterInstance, job_name: str, partition_keys: Sequence[str]) -> dict[str, dg.RunRecord]:
    latest: dict[str, dg.RunRecord] = {}
    for i in range(0, len(partition_keys), _QUERY_CHUNK):
        chunk = list(partition_keys[i : i + _QUERY_CHUNK])
        for record in instance.get_run_records(dg.RunsFilter(job_name=job_name, tags={PARTITION_TAG: chunk})):
            pk = record.dagster_run.tags.get(PARTITION_TAG)
            if pk not in latest or record.create_timestamp > latest[pk].create_timestamp:
                latest[pk] = record
    return latest


def stranded_requests(
    context: dg.SensorEvaluationContext,
    *,
    job_name: str,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    sources: Sequence[Source],
    settings: ReconcileSettings,
    previous_pass: float | None,
) -> list[dg.RunRequest]:
    """Run requests for the ``sources`` whose work is stranded (see the module doc).

    ``asset_key`` is the job's last asset: a source is done when its partition of that asset is
    materialized. ``previous_pass`` (epoch seconds) is when the last pass ran, so that giving up
    on a source is logged once. Cost: one status read, one run query per 500 sources that are
    not done, one event query per failed latest run.
    """
    instance = context.instance
    by_pk = {s.partition_key: s for s in sources}
    status = instance.get_status_by_partition(asset_key, list(by_pk), partitions_def) or {}
    open_pks = [pk for pk in by_pk if status.get(pk) not in _DONE]
    latest = _latest_runs(instance, job_name, open_pks)
    now = time.time()
    requests = []
    for pk in open_pks:
        src, record = by_pk[pk], latest.get(pk)
        if record is None:
            requests.append(dg.RunRequest(partition_key=pk, run_key=src.run_key, tags=dict(src.tags)))
            continue
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE or run.tags.get(WILL_RETRY_TAG) == "true":
            continue
        n = int(run.tags.get(REREQUEST_TAG, "0"))
        ended = record.end_time or record.update_timestamp.timestamp()
        if (n < settings.max_rerequests and now < ended + settings.retry_delay_s * 2**n) or is_input_failure(instance, run.run_id):
            continue
        if n >= settings.max_rerequests:
            if previous_pass is None or ended > previous_pass:
                context.log.warning(f"giving up on {pk!r}: its run {run.run_id} failed after {n} re-requests; re-upload it or re-execute the run")
            continue
        context.log.info(f"re-requesting {pk!r}: run {run.run_id} failed for a non-input reason (re-request {n + 1} of {settings.max_rerequests})")
        requests.append(dg.RunRequest(partition_key=pk, run_key=f"{src.run_key}#rerequest-{n + 1}", tags={**src.tags, REREQUEST_TAG: str(n + 1)}))
    return requests


def due(settings: ReconcileSettings, previous_pass: float | None) -> bool:
    """Whether a reconciliation pass is due, ``interval_s`` after ``previous_pass``."""
    return previous_pass is None or time.time() >= previous_pass + settings.interval_s
