"""What Dagster's instance has recorded (runs, their events and checks, sensor ticks, daemon
heartbeats), read in this one module for the CLI, the sensors and the tests.

Dagster's public instance API (``@public`` on ``DagsterInstance`` in 1.13) serves runs
(``get_run_records``, ``get_run_by_id``), asset events (``fetch_materializations``) and
partition status; nothing public serves the rest this platform needs, so these are used here
and nowhere else (``media_assets_tests/test_cli.py::test_no_private_dagster_api`` checks it):

* a run's own events: ``DagsterInstance.get_records_for_run`` (paged) for its materializations,
  check evaluations, step failures and RUN_START (the worker's pid); the ``user_failure_data``
  of a step failure is how a ``dg.Failure`` (bad input) is told from a crash;
* a run reported failed or canceled from outside its worker: ``report_run_failed`` /
  ``report_run_canceled`` (what Dagster's own run monitoring calls);
* sensor ticks and states: ``all_instigator_state`` and ``get_ticks`` (what the UI's sensor
  pages read; no public type, so fields are read by name and enum members by ``.value``);
* daemon heartbeats: ``get_daemon_heartbeats``;
* tags Dagster sets and documents only in its source: the partition range of a ranged run,
  ``dagster/will_retry``, ``dagster/root_run_id``, ``dagster/parent_run_id``, the sensor
  daemon's ``dagster/run_key`` and ``dagster/sensor_name``, and ``dagster/data_version`` on a
  materialization (how a runless materialization of an external asset carries its data
  version: Dagster reads an asset's current data version from it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

PARTITION_TAG = "dagster/partition"  # a single-partition run (documented)
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
WILL_RETRY_TAG = "dagster/will_retry"  # a failed run that Dagster's run retries will re-execute
ROOT_RUN_TAG = "dagster/root_run_id"  # every retry of a run names the first try
PARENT_RUN_TAG = "dagster/parent_run_id"  # a retry names the try it re-executes
DATA_VERSION_TAG = "dagster/data_version"  # the data version of an asset event
RUN_KEY_TAG = "dagster/run_key"  # set by the sensor daemon on the runs it launches
SENSOR_NAME_TAG = "dagster/sensor_name"

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


# --- run tags ---------------------------------------------------------------------------------

def partition_range(tags: dict) -> tuple[str, str] | None:
    """``(first, last)`` partition key of a ranged run (a backfill's), else ``None``."""
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return (start, end) if start and end else None


def run_partition(tags: dict) -> str:
    """A run's partition for people: its key, ``first..last`` for a ranged run, else ``""``."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    span = partition_range(tags)
    return f"{span[0]}..{span[1]}" if span else ""


def ranged_run_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the partitions ``first`` to ``last`` (what a backfill with
    ``BackfillPolicy.multi_run`` launches)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def will_retry(run: dg.DagsterRun) -> bool:
    """Dagster's run retries will re-execute this failed run."""
    return run.tags.get(WILL_RETRY_TAG) == "true"


def retry_of(run: dg.DagsterRun) -> str | None:
    """The id of the run this run retries (re-executes), if any."""
    return run.tags.get(PARENT_RUN_TAG)


def root_run(run: dg.DagsterRun) -> str:
    """The id of the first try of this run (itself when it is not a retry)."""
    return run.tags.get(ROOT_RUN_TAG, run.run_id)


# --- a run's events ---------------------------------------------------------------------------

def run_events(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType | None = None,
               limit: int | None = None) -> Iterator[dg.EventLogRecord]:
    """The run's event records of ``event_type`` (``None``: every event, log lines included),
    oldest first, read in pages of 10,000 (at most ``limit``)."""
    cursor, seen = None, 0
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=event_type,
                                            limit=min(10_000, limit - seen) if limit else 10_000)
        for record in page.records:
            yield record
            seen += 1
        if not page.has_more or (limit and seen >= limit):
            return
        cursor = page.cursor


def run_materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[int, dict]]:
    """``{asset: (materializations in the run, metadata values of the last one)}``."""
    out: dict[str, tuple[int, dict]] = {}
    for record in run_events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = record.event_log_entry.asset_materialization
        asset = mat.asset_key.to_user_string()
        out[asset] = (out.get(asset, (0, {}))[0] + 1, {k: getattr(v, "value", v) for k, v in mat.metadata.items()})
    return out


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: the asset check evaluations of the run that did not pass, one
    line each (``asset.check [partition]: description``), by severity (ERROR, WARN)."""
    out: dict[dg.AssetCheckSeverity, list[str]] = {dg.AssetCheckSeverity.ERROR: [], dg.AssetCheckSeverity.WARN: []}
    for record in run_events(instance, run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not ev.passed:
            where = f" [{ev.partition}]" if ev.partition else ""
            out[ev.severity].append(f"{ev.asset_key.to_user_string()}.{ev.check_name}{where}" + (f": {ev.description}" if ev.description else ""))
    return out[dg.AssetCheckSeverity.ERROR], out[dg.AssetCheckSeverity.WARN]


def failure_description(data) -> str | None:
    """The description of the ``dg.Failure`` a step raised (``StepFailureData``), else ``None``
    (the step crashed with another exception)."""
    return data.user_failure_data.description if data.user_failure_data else None


def step_failure_line(data) -> str:
    """One line for people from a step failure: the ``dg.Failure`` description, else the
    exception's message (its cause first)."""
    error = data.error.cause or data.error if data.error else None
    return failure_description(data) or (error.message.strip() if error else "step failed")


def is_input_failure(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when a step of run ``run_id`` failed by raising ``dg.Failure`` (the input's fault)."""
    return any(record.event_log_entry.dagster_event.step_failure_data.user_failure_data is not None
               for record in run_events(instance, run_id, dg.DagsterEventType.STEP_FAILURE))


def run_error(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The first error of run ``run_id``, one line for people: ``step: description`` of the
    step's ``dg.Failure``, else ``step: message`` of its exception (the cause first), else the
    run's failure message; ``None`` when it recorded none."""
    for record in run_events(instance, run_id, dg.DagsterEventType.STEP_FAILURE, limit=1):
        entry = record.event_log_entry
        return f"{entry.step_key}: {step_failure_line(entry.dagster_event.step_failure_data)}"
    for record in run_events(instance, run_id, dg.DagsterEventType.RUN_FAILURE, limit=1):
        entry = record.event_log_entry
        return entry.message or entry.dagster_event.message
    return None


def check_evaluations(instance: dg.DagsterInstance, check: dg.AssetCheckKey, limit: int = 1000) -> list[dg.AssetCheckEvaluation]:
    """The newest ``limit`` recorded evaluations of ``check`` (of any partition), newest first."""
    records = instance.event_log_storage.get_asset_check_execution_history(check, limit=limit)
    return [r.event.dagster_event.asset_check_evaluation_data for r in records if r.event is not None and r.event.dagster_event]


def storage_kind(instance: dg.DagsterInstance) -> str:
    """The class name of the instance's event log storage (``SqliteEventLogStorage``,
    ``PostgresEventLogStorage``, ...)."""
    return type(instance.event_log_storage).__name__


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """``(pid, timestamp)`` of the run's RUN_START event (written by its worker process), or
    ``None`` before the worker started."""
    for record in run_events(instance, run_id, dg.DagsterEventType.RUN_START, limit=1):
        entry = record.event_log_entry
        return (entry.dagster_event.pid, entry.timestamp) if entry.dagster_event.pid is not None else None
    return None


def report_failed(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Record run ``run`` as failed from outside its worker (a run failure, so Dagster's run
    retries re-execute it from the failed step)."""
    instance.report_run_failed(run, message)


def report_canceled(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Record run ``run`` as canceled from outside its worker (its cancel was asked for)."""
    instance.report_run_canceled(run, message)


# --- one run, as the CLI and the tests report it ----------------------------------------------

@dataclass
class RunOutcome:
    """One run: its sensor (``None`` when not launched by one), job, partition (or
    ``first..last`` range), final status, seconds from start to end, the first error line of a
    failed run, the run it retries, the metadata of each asset it materialized (``{asset:
    metadata}``, the last partition's) with ``counts`` (materializations per asset),
    ``failed_checks``: one line per asset check of ERROR severity that did not pass
    (``asset.check [partition]: description``), and ``warned_checks``: the same at WARN."""

    run_id: str
    job: str
    partition: str
    status: str
    seconds: float
    error: str | None = None
    retry_of: str | None = None
    materializations: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)
    sensor: str | None = None

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


def run_outcome(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunOutcome:
    """The :class:`RunOutcome` of one run record (its events read from the instance)."""
    run = record.dagster_run
    start, end = record.start_time, record.end_time
    mats = run_materializations(instance, run.run_id)
    errors, warnings = failed_checks(instance, run.run_id)
    return RunOutcome(
        run_id=run.run_id, job=run.job_name, partition=run_partition(run.tags), status=run.status.value,
        seconds=(end - start) if start and end else 0.0,
        error=run_error(instance, run.run_id) if run.status == dg.DagsterRunStatus.FAILURE else None,
        retry_of=retry_of(run),
        materializations={a: m for a, (_, m) in mats.items()},
        counts={a: n for a, (n, _) in mats.items()},
        failed_checks=errors,
        warned_checks=warnings,
        sensor=run.tags.get(SENSOR_NAME_TAG),
    )


def collect(instance: dg.DagsterInstance, since: dt.datetime | None = None, run_ids: set[str] | None = None) -> list[RunOutcome]:
    """The runs created since ``since`` (all when ``None``; only ``run_ids`` if given), oldest
    first, each as a :class:`RunOutcome`."""
    if run_ids is not None and not run_ids:
        return []
    filters = dg.RunsFilter(created_after=since, run_ids=sorted(run_ids) if run_ids is not None else None)
    records = instance.get_run_records(filters=filters, order_by="create_timestamp", ascending=True)
    return [run_outcome(instance, r) for r in records]


def launched_by(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    """A run with this run key was launched for ``sensor_name`` (the sensor daemon's tags)."""
    return bool(instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: sensor_name}), limit=1))


# --- daemons and sensor ticks -----------------------------------------------------------------

def daemon_heartbeats(instance: dg.DagsterInstance) -> dict[str, float]:
    """``{daemon type: epoch seconds of its latest heartbeat}`` (``SENSOR``, ``BACKFILL``, ...)."""
    return {name: beat.timestamp for name, beat in instance.get_daemon_heartbeats().items()}


_SENSOR_TYPES = ("SENSOR", "AUTO_MATERIALIZE")
QUIET_TICKS = ("SKIPPED", "SUCCESS", "FAILURE")  # tick statuses of a finished tick


@dataclass(frozen=True)
class Tick:
    """One finished or running sensor tick: ``status`` (``STARTED``, ``SKIPPED``, ``SUCCESS``,
    ``FAILURE``), begin and end (epoch seconds), the runs it requested, and its error (a
    ``SerializableErrorInfo``: ``message``, ``cls_name``, ``cause``) when it failed."""

    status: str
    timestamp: float
    end_timestamp: float | None
    run_ids: tuple[str, ...]
    error: object | None


def sensor_states(instance: dg.DagsterInstance, defs: dg.Definitions) -> tuple[dict[str, object], set[str]]:
    """``(states, missing)``: ``{sensor name: stored state}`` of ``defs``' sensors that are on
    (its own and Dagster's automation condition sensor), and the names of sensors on by default
    in code that have no stored state yet (their first tick is still to come)."""
    sensors = defs.get_repository_def().sensor_defs
    ours = {s.name for s in sensors}
    states = [st for st in instance.all_instigator_state() if st.instigator_type.value in _SENSOR_TYPES and st.instigator_name in ours]
    stored = {st.instigator_name for st in states}
    default_on = {s.name for s in sensors if s.default_status == dg.DefaultSensorStatus.RUNNING}
    return {st.instigator_name: st for st in states if st.status.value != "STOPPED"}, default_on - stored


def ticks_since(instance: dg.DagsterInstance, state, after: float) -> list[Tick]:
    """The sensor's ticks that began after ``after`` (epoch seconds), newest first."""
    return [Tick(status=t.status.value, timestamp=t.timestamp, end_timestamp=t.end_timestamp, run_ids=tuple(t.run_ids), error=t.error)
            for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)]
