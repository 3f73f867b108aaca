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
  ``retry_delay_s * 2**(n-1)`` seconds after that run ended for the n-th time (at once when it
  ended before ``retry_failed_before``: a new ``media-assets process`` pass), at most
  ``max_rerequests`` times (then one warning and it is left);
* its latest run failed on bad input (a step raised ``dg.Failure``, see
  :func:`media_assets.defs.common.input_failure`), was canceled, or Dagster will retry it
  (run tag ``dagster/will_retry``): nothing; bad input was reported by its run once.

Each re-request has run key ``<run key>#rerequest-<n>`` and tag ``media_assets/rerequest``, so
Dagster's run-key deduplication still holds: one request per source, upload and attempt.

What the pass leaves alone is not forgotten: :func:`needs_attention` names every source that
will not be processed without a person -- bad input, re-requests spent, a run a user canceled,
a key the sensor refuses -- and every source deleted before it was processed (not a failure).
The sensors record that list as the evaluation of a WARN asset check
(``no_source_needs_attention``, :func:`attention_evaluation`) on each pass, and
``media-assets process`` prints it.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from ..lib.records import ACTIVE, FINISHED, PARTITION_TAG, is_input_failure, partition_range, run_error, will_retry
from ..resources.reconcile import ReconcileSettings

REREQUEST_TAG = "media_assets/rerequest"
_DONE = (dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.IN_PROGRESS)
_QUERY_CHUNK = 500  # partition keys per run query


@dataclass(frozen=True)
class Source:
    """What the sensor would request for one source: its partition, run key and run tags."""

    partition_key: str
    run_key: str
    tags: Mapping[str, str] = field(default_factory=dict)


def _latest_runs(instance: dg.DagsterInstance, job_name: str, partition_keys: Sequence[str]) -> dict[str, dg.RunRecord]:
    latest: dict[str, dg.RunRecord] = {}
    for i in range(0, len(partition_keys), _QUERY_CHUNK):
        chunk = list(partition_keys[i : i + _QUERY_CHUNK])
        for record in instance.get_run_records(dg.RunsFilter(job_name=job_name, tags={PARTITION_TAG: chunk})):
            pk = record.dagster_run.tags.get(PARTITION_TAG)
            if pk not in latest or record.create_timestamp > latest[pk].create_timestamp:
                latest[pk] = record
    return latest


def _open_sources(instance: dg.DagsterInstance, job_name: str, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
                  partition_keys: Sequence[str]) -> tuple[list[str], dict[str, dg.RunRecord]]:
    """``(partition keys whose asset_key partition is neither materialized nor in progress,
    the latest run of job_name for each of them that has one)``."""
    status = (instance.get_status_by_partition(asset_key, list(partition_keys), partitions_def) or {}) if partition_keys else {}
    open_pks = [pk for pk in partition_keys if status.get(pk) not in _DONE]
    return open_pks, _latest_runs(instance, job_name, open_pks)


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
    open_pks, latest = _open_sources(instance, job_name, asset_key, partitions_def, list(by_pk))
    now = time.time()
    requests = []
    for pk in open_pks:
        src, record = by_pk[pk], latest.get(pk)
        if record is None:
            requests.append(dg.RunRequest(partition_key=pk, run_key=src.run_key, tags=dict(src.tags)))
            continue
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE or will_retry(run):
            continue
        n = int(run.tags.get(REREQUEST_TAG, "0"))
        ended = record.end_time or record.update_timestamp.timestamp()
        wait = 0.0 if ended < settings.retry_failed_before else settings.retry_delay_s * 2**n  # failed before this pass: at once
        if (n < settings.max_rerequests and now < ended + wait) or is_input_failure(instance, run.run_id):
            continue
        if n >= settings.max_rerequests:
            if previous_pass is None or ended > previous_pass:
                context.log.warning(f"giving up on {pk!r}: its run {run.run_id} failed after {n} re-requests; re-upload it or re-execute the run")
            continue
        context.log.info(f"re-requesting {pk!r}: run {run.run_id} failed for a non-input reason (re-request {n + 1} of {settings.max_rerequests})")
        requests.append(dg.RunRequest(partition_key=pk, run_key=f"{src.run_key}#rerequest-{n + 1}", tags={**src.tags, REREQUEST_TAG: str(n + 1)}))
    return requests


def due(settings: ReconcileSettings, previous_pass: float | None) -> bool:
    """Whether a reconciliation pass is due: ``interval_s`` after ``previous_pass``, or at once
    when ``previous_pass`` was before ``settings.retry_failed_before``."""
    return previous_pass is None or previous_pass < settings.retry_failed_before or time.time() >= previous_pass + settings.interval_s


def drained_since(instance: dg.DagsterInstance, job_name: str, previous_pass: float | None) -> bool:
    """Whether a run of ``job_name`` has ended since ``previous_pass`` (epoch seconds) and none
    is queued or in progress: the job's work has drained, so a pass now records the attention
    check after the materializations those runs made (Dagster shows a check evaluated before
    its asset's latest materialization as not evaluated). Under continuous work this is false
    and passes keep to ``interval_s``. Cost: two run-storage queries."""
    if previous_pass is None:
        return False
    if instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=ACTIVE)):
        return False
    since = dt.datetime.fromtimestamp(previous_pass, dt.timezone.utc)
    return bool(instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=FINISHED, updated_after=since), limit=1))


ATTENTION_CHECK = "no_source_needs_attention"
ATTENTION_LISTED = 100  # sources listed in the check's table; the count covers them all


@dataclass(frozen=True)
class Attention:
    """One source a person has to look at (or, ``kind == "deleted"``, be told about).

    Attributes:
        source: ``bucket/key`` of the object (the UTC day for audio).
        kind: ``"bad input"`` (its run failed on the object itself; re-upload a good one),
            ``"retries spent"`` (failed for another reason ``max_rerequests`` times; fix the
            cause, then re-execute the run or re-upload), ``"canceled"`` (a user terminated
            its run; re-execute it or re-upload), ``"refused"`` (the sensor will not process
            this key; rename it), ``"deleted"`` (removed before it was processed: not a
            failure, nothing to do), or ``"not listed"`` (the prefix could not be listed:
            the bucket is missing or storage unreachable).
        reason: one line: the run's error, or why the key is refused.
        run_id: its latest run, if it has one.
    """

    source: str
    kind: str
    reason: str
    run_id: str | None = None

    @property
    def is_problem(self) -> bool:
        return self.kind != "deleted"


def _finished_badly(record: dg.RunRecord | None) -> bool:
    """The run ended and Dagster will not retry it: failed (no ``dagster/will_retry``) or canceled."""
    if record is None:
        return False
    run = record.dagster_run
    if run.status == dg.DagsterRunStatus.CANCELED:
        return True
    return run.status == dg.DagsterRunStatus.FAILURE and not will_retry(run)


def _classify(instance: dg.DagsterInstance, run: dg.DagsterRun, source: str, *, rerun_hint: str, input_reason: str,
              spent_reason: str | None) -> Attention | None:
    """The attention item for ``source`` whose latest run ``run`` ended for good: canceled (with
    ``rerun_hint``), bad input (``input_reason``), or another failure whose retries are spent
    (``spent_reason``; ``None``: retries remain, nothing to report)."""
    if run.status == dg.DagsterRunStatus.CANCELED:
        return Attention(source, "canceled", f"its run was canceled; {rerun_hint}", run.run_id)
    if is_input_failure(instance, run.run_id):
        return Attention(source, "bad input", input_reason, run.run_id)
    if spent_reason is not None:
        return Attention(source, "retries spent", spent_reason, run.run_id)
    return None


def needs_attention(
    instance: dg.DagsterInstance,
    *,
    job_name: str,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    sources: Sequence[Source],
    settings: ReconcileSettings,
    refused: Mapping[str, str] | None = None,
    gone: Mapping[str, str] | None = None,
) -> list[Attention]:
    """Every source that will stay unprocessed unless a person acts, and every source deleted
    before it was processed, sorted by source.

    ``sources``: the listed sources (as :func:`stranded_requests` takes them); ``refused``:
    ``{bucket/key: reason}`` of listed objects the sensor refuses; ``gone``: ``{partition key:
    bucket/key}`` of partitions whose object is no longer listed. A source is listed here when its ``asset_key`` partition
    is not materialized and its latest run of ``job_name`` ended for good: canceled, failed on
    its input, or failed for another reason with ``max_rerequests`` re-requests spent. A source
    with no run yet, a run in progress, or a re-request still to come is not: the sensors
    process it. Cost: as :func:`stranded_requests` over the listed and gone partitions (one
    status read for all of them), plus one event query per listed failure.
    """
    items = [Attention(src, "refused", why) for src, why in (refused or {}).items()]
    by_pk = {s.partition_key: s for s in sources}
    gone = {pk: name for pk, name in (gone or {}).items() if pk not in by_pk}
    open_pks, latest = _open_sources(instance, job_name, asset_key, partitions_def, [*by_pk, *gone])
    for pk in open_pks:
        record = latest.get(pk)
        if pk in gone and record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            # its run found the object gone and made nothing (video_decode's deleted-before-processing path)
            items.append(Attention(gone[pk], "deleted", "removed before it was processed; its run made nothing", record.dagster_run.run_id))
            continue
        if not _finished_badly(record):
            continue
        run = record.dagster_run
        name = by_pk[pk].tags.get("media_assets/source", pk) if pk in by_pk else gone[pk]
        error = run_error(instance, run.run_id) or "no error recorded"
        if pk not in by_pk:
            items.append(Attention(name, "deleted", f"removed before it was processed (last run: {error})", run.run_id))
            continue
        spent = int(run.tags.get(REREQUEST_TAG, "0")) >= settings.max_rerequests
        item = _classify(instance, run, name, rerun_hint="re-execute the run or re-upload the object", input_reason=error,
                         spent_reason=f"{error} (after {settings.max_rerequests} re-requests)" if spent else None)
        if item is not None:
            items.append(item)
    return sorted(items, key=lambda a: (a.source, a.kind))


_ENDED_RUNS_READ = 1000  # newest failed or canceled runs searched for the run of a failed partition


def failed_partitions_attention(instance: dg.DagsterInstance, *, job_name: str, asset_key: dg.AssetKey,
                                partitions_def: dg.DynamicPartitionsDefinition, names: Mapping[str, str]) -> list[Attention]:
    """:func:`needs_attention` for partitions that ranged runs of ``job_name`` materialize (one
    run per partition range, e.g. label batches): each of ``names`` (``{partition key:
    bucket/key}``) whose latest attempt at ``asset_key`` failed (partition status FAILED), with
    the newest failed or canceled run whose partition (or range, in the dynamic partitions'
    order) covers it, unless Dagster will retry that run: bad input (the step raised
    ``dg.Failure``; the reason is the run error's ``- <key>: ...`` line when it lists one), a
    canceled run, or another failure with the run retries spent. Cost: one status read, one
    run query (the newest 1,000 ended runs), two event queries per distinct run named."""
    keys = list(names)
    status = (instance.get_status_by_partition(asset_key, keys, partitions_def) or {}) if keys else {}
    failed = [pk for pk in keys if status.get(pk) == dg.AssetPartitionStatus.FAILED]
    if not failed:
        return []
    order = {pk: i for i, pk in enumerate(instance.get_dynamic_partitions(partitions_def.name))}
    ended = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]),
                                     limit=_ENDED_RUNS_READ)  # newest first

    def covers(record: dg.RunRecord, pk: str) -> bool:
        tags = record.dagster_run.tags
        if PARTITION_TAG in tags:
            return tags[PARTITION_TAG] == pk
        start, end = (order.get(k) for k in (partition_range(tags) or (None, None)))
        return start is not None and end is not None and start <= order[pk] <= end

    errors: dict[str, str] = {}
    items = []
    for pk in failed:
        record = next((r for r in ended if covers(r, pk)), None)
        if not _finished_badly(record):
            continue
        run = record.dagster_run
        if run.run_id not in errors:
            errors[run.run_id] = run_error(instance, run.run_id) or "no error recorded"
        error = errors[run.run_id]
        own = next((line[len(f"- {pk}: "):] for line in error.splitlines() if line.startswith(f"- {pk}: ")), None)
        items.append(_classify(instance, run, names[pk], rerun_hint="re-execute the run or backfill the partition",
                               input_reason=own or error.splitlines()[0],
                               spent_reason=f"{error.splitlines()[0]} (Dagster's run retries spent)"))
    return sorted(items, key=lambda a: a.source)


def _attention_fields(items: Sequence[Attention]) -> dict:
    problems = [a for a in items if a.is_problem]
    kinds = sorted({a.kind for a in items})
    counts = {k: sum(a.kind == k for a in items) for k in kinds}
    def cell(text: str) -> str:  # one table cell: one line, no column separator, cut at a word
        return textwrap.shorten(" ".join(text.split()).replace("|", "/"), 300, placeholder=" …")

    rows = "\n".join(f"| `{a.source}` | {a.kind} | {cell(a.reason)} | {a.run_id[:8] if a.run_id else ''} |"
                      for a in items[:ATTENTION_LISTED])
    table = "| source | kind | reason | last run |\n|---|---|---|---|\n" + rows if items else "nothing to report"
    if len(items) > ATTENTION_LISTED:
        table += f"\n\n({ATTENTION_LISTED} of {len(items)} shown)"
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    return {
        "passed": not problems,
        "description": f"{len(problems)} source(s) need attention ({summary})" if problems
        else ("every source is processed or on its way" + (f"; {summary}" if items else "")),
        "metadata": {"needs_attention": dg.MetadataValue.int(len(problems)),
                     **{k.replace(" ", "_"): dg.MetadataValue.int(n) for k, n in counts.items()},
                     "sources": dg.MetadataValue.md(table)},
    }


def attention_evaluation(asset_key: dg.AssetKey, items: Sequence[Attention]) -> dg.AssetCheckEvaluation:
    """The ``no_source_needs_attention`` evaluation a sensor records for ``items`` (WARN when
    any is a problem; metadata: counts per kind and a table of the first 100)."""
    return dg.AssetCheckEvaluation(asset_key=asset_key, check_name=ATTENTION_CHECK, severity=dg.AssetCheckSeverity.WARN,
                                   **_attention_fields(items))


def attention_result(items: Sequence[Attention]) -> dg.AssetCheckResult:
    """The same as :func:`attention_evaluation`, as the on-demand check op's result."""
    return dg.AssetCheckResult(severity=dg.AssetCheckSeverity.WARN, **_attention_fields(items))
