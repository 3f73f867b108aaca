"""``media-assets process``: one pass of Dagster's own machinery over everything pending.

Nothing here evaluates a sensor or executes a run. The driver:

1. takes an exclusive lock on ``DAGSTER_HOME`` (a second ``process`` waits for the first, so
   the instance is created and migrated once and every source is requested once);
2. recovers what a killed pass left: it stops the previous pass's daemon process group if it
   is still alive, and reports every run still STARTING/STARTED/CANCELING as failed
   (``media_assets.lib.records.report_failed``), so Dagster's run retries re-execute it from failure;
3. starts ``dagster-daemon run`` on a workspace of this package (the sensors are on by default,
   the queued run coordinator applies the pools and run limits of ``dagster.yaml``, the default
   run launcher starts each run in its own process, the retry daemon retries dead runs), with
   ``MEDIA_ASSETS_RECONCILE_RETRY_FAILED_BEFORE`` set to the pass's start: sources whose runs
   failed for a non-input reason before the pass are re-requested at once;
4. waits until no run is queued or in progress or about to be retried, and every sensor that
   is on has had a tick that began after the last run ended and requested nothing (read from
   the sensors' tick records in the instance): the pass ends one sensor interval, at most,
   after its last run;
5. stops the daemon and returns what the runs of this pass did, read back through the public
   ``DagsterInstance`` API.

The daemon dies with the pass: it gets SIGKILL from the kernel when the pass's process ends,
even by SIGKILL (Linux ``PR_SET_PDEATHSIG``), so no daemon goes on ticking sensors with no
one watching (its code server follows when its heartbeats stop). A daemon that dies first ends the pass with one line (``PassResult.stopped``)
and the summary of what its runs did.

If a daemon of another process (``make ui``) is already heart-beating on the instance, no
second one is started: the pass waits for that one to become idle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import filelock

from .instance_config import WORKSPACE_YAML, ensure_dagster_home, storage_unreachable
from .lib.records import (ACTIVE, QUIET_TICKS, RunOutcome, collect, daemon_heartbeats, partition_range, report_failed,
                          retry_of, root_run, sensor_states, ticks_since, will_retry)
from .scratch import remove_dead_sockets, remove_orphaned
from .storage import LocalObjectStore, object_store_from_env

__all__ = ["PassResult", "PassStopped", "RunOutcome", "collect", "partitions_of_run", "recover", "run_pass", "sensor_errors",
           "sensors_quiet_since"]

STRANDED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass
class PassResult:
    runs: list[RunOutcome]
    sensor_errors: list[str]
    recovered_runs: list[str]
    seconds: float
    sensor_recovered: list[str] = field(default_factory=list)  # sensors whose failed ticks were followed by a successful one
    fixed_s: float = 0.0  # seconds of the pass with no run queued or in progress (daemon start, sensor ticks, idle check, stop)
    stopped: str | None = None  # why the pass ended before the instance was idle (its daemon died, --timeout), one line

    @property
    def failed(self) -> list[RunOutcome]:
        """Runs that failed and were not retried to success within the pass."""
        retried = {r.retry_of for r in self.runs if r.retry_of}
        return [r for r in self.runs if not r.success and r.run_id not in retried]


class PassStopped(Exception):
    """The pass ends before the instance is idle; the message is the one line to print."""


def _exit_reason(returncode: int) -> str:
    """``exited with status 1`` / ``was killed by SIGKILL`` for a child's return code."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _terminate_with_parent() -> None:
    """In the daemon's child process before exec: ask Linux for SIGKILL when the pass's process
    dies (``prctl(PR_SET_PDEATHSIG)``, prctl(2)), so a killed pass leaves no daemon behind.
    SIGKILL, not SIGTERM: a SIGTERM that reached the daemon while it was still starting (before
    Dagster's handler shuts it down cleanly) was lost in clean-clone test runs under load, and the
    daemon went on ticking; the pass is gone, so there is nothing to shut down cleanly for.
    The daemon's gRPC code server stops by itself once its heartbeats stop.
    A no-op where there is no prctl (macOS): there :func:`recover` stops the orphan next pass."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _pgid_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pgid: int, leader: subprocess.Popen | None = None, grace_s: float = 20.0) -> None:
    """SIGTERM the process group (the daemon shuts down cleanly), SIGKILL what is left.

    ``leader``, if this process started it (the pass's own daemon), gets SIGTERM first, alone:
    the daemon finishes the sensor ticks in flight and then stops the code server it started.
    SIGTERM to the whole group at once stopped that code server under a tick in flight, which
    then failed (gRPC ``UNAVAILABLE``) and read as a sensor failure in the tick history. The
    leader is reaped so its zombie does not hold the group."""

    def alive() -> bool:
        if leader is not None:
            leader.poll()
        return _pgid_alive(pgid)

    if not alive():
        return
    deadline = time.monotonic() + grace_s
    if leader is not None and leader.poll() is None:
        leader.send_signal(signal.SIGTERM)
        while time.monotonic() < deadline and leader.poll() is None:
            time.sleep(0.2)
    if alive():
        os.killpg(pgid, signal.SIGTERM)
    while time.monotonic() < deadline and alive():
        time.sleep(0.2)
    if alive():
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive():
            time.sleep(0.1)


def _other_daemon_alive(instance: dg.DagsterInstance, home: Path, max_age_s: float = 60.0) -> bool:
    """A daemon not started by a pass (``make ui``) heart-beats on the instance: a heartbeat
    younger than ``max_age_s`` and newer than the last daemon a pass stopped."""
    stopped = home / "media_assets" / "daemon.stopped"
    after = float(stopped.read_text()) if stopped.exists() else 0.0
    now = time.time()
    return any(now - beat < max_age_s and beat > after for beat in daemon_heartbeats(instance).values())


def recover(instance: dg.DagsterInstance, home: Path, log: Callable[[str], None]) -> list[str]:
    """Finish what a killed pass left: remove its runs' scratch folders and its processes' gRPC
    sockets, stop its daemon group, report its in-flight runs failed.

    Returns:
        The ids of the runs reported as failed (Dagster's run retries re-execute them).
    """
    orphans = remove_orphaned()  # safe beside live runs: only folders of dead processes
    if orphans:
        log(f"removed {len(orphans)} scratch folder(s) of killed runs")
    sockets = remove_dead_sockets()  # only sockets no live process has bound
    if sockets:
        log(f"removed {len(sockets)} gRPC socket(s) of killed Dagster processes")
    store = object_store_from_env().get_store()
    if isinstance(store, LocalObjectStore):
        temp_files = store.remove_orphaned_temp_files()
        if temp_files:
            log(f"removed {len(temp_files)} temporary file(s) of killed writes in {store.root}")
    state_file = home / "process.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _pgid_alive(state["pgid"]):
            log(f"stopping the daemon of an interrupted pass (process group {state['pgid']})")
            _stop_group(state["pgid"])
        (home / "media_assets").mkdir(exist_ok=True)
        (home / "media_assets" / "daemon.stopped").write_text(repr(time.time()))  # its heartbeats are not a live daemon's
        state_file.unlink()
    elif _other_daemon_alive(instance, home):
        return []  # another daemon (make ui) owns the in-flight runs
    recovered = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=STRANDED)):
        run = record.dagster_run
        report_failed(instance, run, "the run worker is gone: its media-assets process was killed; retried from failure")
        recovered.append(run.run_id)
    if recovered:
        log(f"reported {len(recovered)} run(s) of an interrupted pass as failed; Dagster retries them: {', '.join(r[:8] for r in recovered)}")
    return recovered


def sensors_quiet_since(instance: dg.DagsterInstance, defs: dg.Definitions, after: float) -> bool:
    """True when every sensor that is on has finished a tick that began after ``after`` (epoch
    seconds) and requested no run: nothing is pending that a sensor would still request.

    A sensor whose newest tick failed once is not quiet yet: one failure may be transient (the
    database restarting, the code server busy), so the pass waits for its next tick; two failed
    ticks in a row after ``after`` are a lasting fault (a missing bucket), reported by
    :func:`sensor_errors`."""
    states, missing = sensor_states(instance, defs)
    if missing:
        return False
    for state in states.values():
        finished = [t for t in ticks_since(instance, state, after) if t.status in QUIET_TICKS]  # newest first
        if not any(not t.run_ids for t in finished):
            return False
        if finished[0].status == "FAILURE" and not (len(finished) > 1 and finished[1].status == "FAILURE"):
            return False
    return True


def _error_line(name: str, error) -> str:
    while error.cause is not None:  # Dagster wraps the code's exception: report the code's own
        error = error.cause
    first = (error.message.strip().splitlines() or [""])[0]
    prefix, sep, rest = first.partition(": ")
    return f"{name}: {error.cls_name}: {rest if sep and prefix.endswith(error.cls_name) else first}"


def sensor_errors(instance: dg.DagsterInstance, defs: dg.Definitions, after: float,
                  ended_before: float | None = None) -> tuple[list[str], list[str]]:
    """``(failing, recovered)`` from the sensors' tick records after ``after`` (epoch seconds)
    that ended before ``ended_before`` (default: all). :func:`run_pass` gives the moment it
    began to stop its daemon: a tick that outlives the daemon's clean stop (the group is then
    killed) fails because its code server is gone (gRPC ``UNAVAILABLE``), which says nothing
    about the sensor.

    ``failing``: one line per sensor whose latest finished tick failed, with the error its code
    raised (e.g. ``new_audio_sensor: BucketNotFoundError: bucket 'audio' does not exist``): work
    it would request is still not requested. ``recovered``: one line per sensor whose ticks failed
    (e.g. while PostgreSQL restarted) and whose later tick succeeded, with the count of failed
    ticks and the last error: nothing is left unrequested, but the operator is told."""
    states, _ = sensor_states(instance, defs)
    failing, recovered = [], []
    for name, state in sorted(states.items()):
        finished = [t for t in ticks_since(instance, state, after) if t.status in QUIET_TICKS  # newest first
                    and (ended_before is None or (t.end_timestamp or t.timestamp) < ended_before)]
        failed = [t for t in finished if t.status == "FAILURE" and t.error is not None]
        if not failed:
            continue
        line = _error_line(name, failed[0].error)
        if finished[0] is failed[0]:
            failing.append(line)
        else:
            recovered.append(f"{line} ({len(failed)} failed tick{'s' if len(failed) > 1 else ''}, a later tick succeeded)")
    return failing, recovered


def run_pass(
    *,
    defs: dg.Definitions,
    on_progress: Callable[[str], None] = lambda line: None,
    on_run: Callable[[RunOutcome], None] = lambda run: None,
    on_partitions: Callable[[int, int], None] = lambda done, requested: None,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
) -> PassResult:
    """Run the daemon until everything pending is processed; see the module docstring.

    A pass that cannot finish (``timeout_s`` passed; the daemon exited or stopped
    heart-beating) stops its daemon and returns what its runs did, with the reason in
    ``PassResult.stopped``; the next pass finishes the work.
    """
    home = ensure_dagster_home()
    started, started_at = time.monotonic(), time.time()
    lock = filelock.FileLock(str(home / "process.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        on_progress(f"another media-assets process holds {home}; waiting for it to finish")
        lock.acquire()
    with lock:
        since = dt.datetime.now(dt.timezone.utc)
        with dg.DagsterInstance.get() as instance:  # created and migrated under the lock
            recovered = recover(instance, home, on_progress)
            own_daemon = not _other_daemon_alive(instance, home)
        (home / "workspace.yaml").write_text(WORKSPACE_YAML)
        logs = home / "media_assets"  # beside, not inside, the folders Dagster manages under DAGSTER_HOME
        logs.mkdir(exist_ok=True)
        log_path = logs / "daemon.log"
        daemon = None
        if own_daemon:
            exe = Path(sys.executable).with_name("dagster-daemon")
            with open(log_path, "w") as log_file:
                # what failed for a non-input reason before this pass is re-requested at once:
                # the operator may have fixed the cause (ReconcileSettings.retry_failed_before)
                env = {**os.environ, "MEDIA_ASSETS_RECONCILE_RETRY_FAILED_BEFORE": repr(started_at)}
                daemon = subprocess.Popen(
                    [str(exe), "run", "-w", str(home / "workspace.yaml")],
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
                    preexec_fn=_terminate_with_parent, env=env,
                )
            (home / "process.json").write_text(json.dumps({"pgid": daemon.pid, "started": since.isoformat()}))
        else:
            on_progress("a Dagster daemon is already running on this instance (make ui?); waiting for it to go idle")
        stopped = None
        try:
            _wait_idle(defs, since, daemon, log_path, on_run, on_partitions, timeout_s, poll_s, quiet_after=started_at)
        except PassStopped as exc:
            stopped = str(exc)
        finally:
            stopping_at = time.time()  # ticks that end after this may fail by the daemon's stop
            if daemon is not None:
                _stop_group(daemon.pid, daemon)
                (logs / "daemon.stopped").write_text(repr(time.time()))
                (home / "process.json").unlink(missing_ok=True)
        ended_at = time.time()
        with dg.DagsterInstance.get() as instance:
            runs = collect(instance, since)
            errors, sensors_recovered = sensor_errors(instance, defs, started_at, ended_before=stopping_at)
            busy_s = _busy_seconds(instance, since, started_at, ended_at)
        seconds = time.monotonic() - started
        return PassResult(runs=runs, sensor_errors=errors, sensor_recovered=sensors_recovered, recovered_runs=recovered, seconds=seconds, fixed_s=max(0.0, seconds - busy_s), stopped=stopped)


def _busy_seconds(instance: dg.DagsterInstance, since: dt.datetime, start: float, end: float) -> float:
    """Seconds of ``[start, end]`` (epoch) during which at least one run of the pass was queued,
    starting or in progress: the union of the runs' creation-to-end intervals."""
    spans = sorted((max(r.create_timestamp.timestamp(), start), min(r.end_time or end, end))
                   for r in instance.get_run_records(filters=dg.RunsFilter(created_after=since)))
    total, reach = 0.0, start
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total, reach = total + b - a, b
    return total


def _chain_done(records, root_id: str) -> bool:
    """True when the latest try of the run ``root_id`` (itself or one of its retries) has
    finished and no further retry is announced."""
    chain = [r for r in records if root_run(r.dagster_run) == root_id]
    if not chain:
        return False
    last = max(chain, key=lambda r: r.create_timestamp)
    return last.dagster_run.status not in ACTIVE and not will_retry(last.dagster_run)


def _sensors_ticking(instance: dg.DagsterInstance, since: dt.datetime) -> bool:
    return daemon_heartbeats(instance).get("SENSOR", 0.0) > since.timestamp()


def partitions_of_run(defs: dg.Definitions, instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """How many partitions a run covers: 1 for a single-partition run, the size of its range
    for a ranged (backfill) run, counted by the job's partitions definition; 1 otherwise."""
    span = partition_range(run.tags)
    if span is None:
        return 1
    start, end = span
    try:
        part = defs.resolve_job_def(run.job_name).partitions_def
        if isinstance(part, dg.DynamicPartitionsDefinition):
            keys = instance.get_dynamic_partitions(part.name)
            return keys.index(end) - keys.index(start) + 1
        return len(part.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))) if part else 1
    except (ValueError, dg.DagsterInvariantViolationError):  # a job since removed, a key since deleted: count the run
        return 1


DB_OUTAGE_S = 120.0  # how long the pass keeps polling an instance database it cannot reach


def _wait_idle(defs, since, daemon, log_path, on_run, on_partitions, timeout_s, poll_s, quiet_after: float) -> None:
    """Return once the sensor daemon runs, no run of the pass is active or about to be retried,
    and every sensor that is on has finished a tick that began after the last run of the pass
    ended (or after ``quiet_after``, epoch seconds, the pass's start) and requested nothing
    (:func:`sensors_quiet_since`). Reports each finished run (``on_run``) and partitions
    finished / requested (``on_partitions``)."""
    reported: set[str] = set()
    sizes: dict[str, int] = {}
    last_activity = quiet_after
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    unreachable_since = None
    with dg.DagsterInstance.get() as instance:

        def busy() -> bool:
            """One poll: report what finished; True while the pass is not idle."""
            records = instance.get_run_records(filters=dg.RunsFilter(created_after=since))
            active = [r for r in records if r.dagster_run.status in ACTIVE]
            done = {r.dagster_run.run_id for r in records if r.dagster_run.status not in ACTIVE} - reported
            for r in records:
                if r.dagster_run.run_id not in sizes and not retry_of(r.dagster_run):
                    sizes[r.dagster_run.run_id] = partitions_of_run(defs, instance, r.dagster_run)
            if done:
                outcomes = collect(instance, since, done)  # all read before any is reported: a dropped poll reports none
                reported.update(done)
                for outcome in outcomes:
                    on_run(outcome)
            # a retried run's partitions count once: its root run's size, done when the last try ends
            on_partitions(sum(n for rid, n in sizes.items() if _chain_done(records, rid)), sum(sizes.values()))
            if daemon is None and not _other_daemon_alive(instance, log_path.parent, max_age_s=120):
                raise PassStopped("the Dagster daemon this pass was waiting for stopped heart-beating; run media-assets process again")
            retry_pending = any(will_retry(r.dagster_run) and not any(retry_of(c.dagster_run) == r.dagster_run.run_id for c in records)
                                for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE)
            return bool(active or done or retry_pending or not _sensors_ticking(instance, since))

        while True:
            if daemon is not None and daemon.poll() is not None:
                raise PassStopped(f"dagster-daemon {_exit_reason(daemon.returncode)} before the work was done (its log: {log_path}); "
                                  "run media-assets process again to finish it")
            try:
                activity = busy()
                unreachable_since = None
            except Exception as exc:
                # the instance's database dropped this poll's connection (a restart, a failover):
                # poll again; only a database gone for DB_OUTAGE_S fails the pass
                if storage_unreachable(exc) is None:
                    raise
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > DB_OUTAGE_S:
                    raise
                activity = True
            if activity:
                last_activity = time.time()
            elif sensors_quiet_since(instance, defs, last_activity):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise PassStopped(f"not idle after {timeout_s:.0f} s (--timeout); the next media-assets process finishes the work")
            time.sleep(poll_s)
