"""``run_worker_watchdog``: fails a run whose worker process is gone, under Dagster's default run
launcher, so Dagster's run retries re-execute it within a sensor interval or two.

The ECS and Kubernetes run launchers health-check each run's task or pod and fail a lost run
themselves (run monitoring). Dagster's ``DefaultRunLauncher`` cannot: its run worker is a
child process of the code server, and when the code server dies (a crash, a container
restart, the OOM killer) the worker goes with it and the run stays STARTED until
``max_runtime_seconds`` (4 hours in ``deploy/dagster.postgres.yaml``). This sensor runs where
those workers run, in the code server (Dagster evaluates sensors there), so it can tell, also
for runs that an earlier code server started:

* the worker's pid is the ``pid`` of the run's RUN_START event (the worker writes it);
* the worker is alive when a process with that pid exists, is not a zombie, and was created
  before the RUN_START event (a pid the kernel has reused since belongs to a younger process).

A STARTED run whose worker is not alive is reported failed
(``media_assets.lib.records.report_failed``): a run failure, not a step failure, so the instance's
run retries re-execute it from the failed step even with ``retry_on_asset_or_op_failure:
false``. A CANCELING run whose worker is gone is reported canceled (the cancel was asked for).

Assumes what the default launcher implies: the code server that evaluates this sensor runs on
the host of the workers it launched (one code server per code location). Under any other run
launcher the sensor does nothing.
"""

from __future__ import annotations

import time

import dagster as dg
import psutil

from ..lib.records import report_canceled, report_failed, run_worker
from ..settings import SENSOR_INTERVAL_S

_WATCHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_CLOCK_SLACK_S = 1.0  # the process's create time and the event's timestamp come from two clocks' readings


def worker_alive(pid: int, started_at: float) -> bool:
    """True when process ``pid`` exists, is not a zombie and was created by ``started_at`` (epoch
    seconds, the RUN_START event's time): the run's worker, not a later process with its pid."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= started_at + _CLOCK_SLACK_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def lost_runs(instance: dg.DagsterInstance, job_names: set[str]) -> list[dg.DagsterRun]:
    """The STARTED or CANCELING runs of ``job_names`` whose worker process is gone."""
    lost = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_WATCHED, job_name=None)):
        run = record.dagster_run
        if run.job_name not in job_names:
            continue
        worker = run_worker(instance, run.run_id)
        if worker is None or worker_alive(*worker):
            continue
        lost.append(run)
    return lost


def fail_lost_runs(instance: dg.DagsterInstance, job_names: set[str], log) -> list[str]:
    """Report each lost run failed (STARTED) or canceled (CANCELING); returns their ids."""
    done = []
    for run in lost_runs(instance, job_names):
        run = instance.get_run_by_id(run.run_id)  # a worker that just exited wrote its final status first
        if run is None or run.status not in _WATCHED:
            continue
        if run.status == dg.DagsterRunStatus.CANCELING:
            report_canceled(instance, run, "the run's worker process is gone; its cancel is complete")
        else:
            report_failed(instance, run, "the run worker process is gone (its code server stopped, or it was killed); "
                                            "Dagster's run retries re-execute the run")
        log.warning(f"run {run.run_id} ({run.job_name}): worker gone, reported {'canceled' if run.status == dg.DagsterRunStatus.CANCELING else 'failed'}")
        done.append(run.run_id)
    return done


@dg.sensor(
    name="run_worker_watchdog",
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Under the default run launcher, fails each run whose worker process is gone (its code server "
    "died or it was killed), so Dagster's run retries re-execute it; under the ECS or Kubernetes launcher it does "
    "nothing (their run monitoring health-checks each worker).",
)
def run_worker_watchdog(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    instance = context.instance
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return dg.SkipReason(f"{type(instance.run_launcher).__name__} health-checks its run workers itself")
    started = time.monotonic()
    failed = fail_lost_runs(instance, set(context.repository_def.job_names), context.log)
    if failed:
        return dg.SkipReason(f"reported {len(failed)} run(s) with no live worker: {', '.join(failed)} ({time.monotonic() - started:.1f} s)")
    return dg.SkipReason("every run in progress has a live worker")
