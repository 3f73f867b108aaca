"""``media-assets process`` as a user runs it: a subprocess on a fresh data root and
DAGSTER_HOME, driving Dagster's own daemon, run queue and run retries. Kill, concurrency and
infrastructure-fault cases use real processes (SIGKILL, two passes at once, moto's S3 server)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from media_assets.lib.records import PARENT_RUN_TAG, SENSOR_NAME_TAG
from media_assets.testing.harness import make_watched_buckets

ROOT = Path(__file__).resolve().parents[1]


def _env(env_root: Path, **extra) -> dict:
    env = {**os.environ, "MEDIA_ASSETS_DATA_ROOT": str(env_root / "data"), "DAGSTER_HOME": str(env_root / "home"),
           "MEDIA_ASSETS_VIDEO_SOURCE_REMOVAL": "keep", **extra}
    if "AWS_ENDPOINT_URL" not in extra:
        env.pop("AWS_ENDPOINT_URL", None)
    if extra.get("MEDIA_ASSETS_STORAGE", "local") == "local":
        make_watched_buckets(env_root / "data")
    return env


def _cli(env_root: Path, *args: str, **extra) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("media-assets")
    return subprocess.run([str(exe), *args], env=_env(env_root, **extra), capture_output=True, text=True, timeout=600)


@pytest.fixture
def own_temp_dir(monkeypatch) -> Iterator[str]:
    """A temp folder of this test's own: this process's ``tempfile`` folder, and the ``TMPDIR`` a
    test gives the processes it starts. Scratch folders live under the temp folder, so those
    of another test's killed runs (tests run side by side) are not seen here."""
    path = tempfile.mkdtemp(prefix="ma-")  # short: Unix socket paths under it stay < 108 bytes
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _instance(env_root: Path, monkeypatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(env_root / "home"))
    return dg.DagsterInstance.get()


@pytest.mark.long(52)
def test_process_runs_everything_pending_and_reports_failures(tmp_path, media, monkeypatch):
    src = tmp_path / "data" / "video-avi"
    (src / "cams").mkdir(parents=True)
    shutil.copy(media["bikes"], src / "cams" / "bikes one.avi")
    shutil.copy(media["text"], src / "broken.avi")
    shutil.copy(media["empty"], src / "empty.avi")

    first = _cli(tmp_path, "process")
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"3 runs, 2 failed, 0 failed checks \(ERROR\), \d+ check warnings \(WARN\), 0 sensor errors", first.stdout), first.stdout
    assert "not a readable media container" in first.stdout and "empty file" in first.stdout
    assert "Video conversion" in first.stdout and "DEBUG" not in first.stdout + first.stderr  # a quiet console

    data = tmp_path / "data"
    assert (data / "video-mp4" / "cams" / "bikes one" / "bikes one.mp4").is_file()
    frames = sorted((data / "unlabeled-images" / "cams" / "bikes one").glob("*.jpg"))
    assert len(frames) == 25 and (data / "unlabeled-images" / "cams" / "bikes one" / "240.jpg").exists()
    # sources kept: configured keep, and bad inputs are never removed
    assert (src / "broken.avi").exists() and (src / "cams" / "bikes one.avi").exists()

    # the runs were launched by the daemon's sensor, through the run queue, and input errors
    # are not retried (no retry run of the two failures)
    with _instance(tmp_path, monkeypatch) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert {r.tags[SENSOR_NAME_TAG] for r in runs} == {"new_avi_sensor"}
        assert not any(PARENT_RUN_TAG in r.tags for r in runs)

    # a second pass finds nothing new
    second = _cli(tmp_path, "process")
    assert second.returncode == 0 and "nothing pending" in second.stdout


def test_instance_config_is_the_projects_and_loads(tmp_path, monkeypatch):
    """The dagster.yaml `make` copies and the one media-assets writes into a fresh DAGSTER_HOME are
    the same file, the package's one copy: stock storage, queued run coordinator, run monitoring
    and run retries; `make ui` loads the package's workspace file."""
    import yaml

    from media_assets.instance_config import DAGSTER_YAML, ensure_dagster_home

    assert DAGSTER_YAML == (ROOT / "media_assets" / "config" / "dagster.yaml").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "cp -u media_assets/config/dagster.yaml" in makefile and "-w $(CURDIR)/media_assets/config/workspace.yaml" in makefile
    assert not (ROOT / "dagster.yaml").exists() and not (ROOT / "workspace.yaml").exists()  # one copy
    home = tmp_path / "fresh-home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert (ensure_dagster_home() / "dagster.yaml").read_text() == DAGSTER_YAML
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=yaml.safe_load(DAGSTER_YAML)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        assert instance.get_runs() == []


# what Dagster does not make public and the platform still needs: read in media_assets/lib/records.py only
NON_PUBLIC = re.compile(r"\.(get_records_for_run|all_logs|report_run_failed|report_run_canceled|get_daemon_heartbeats|get_ticks"
                        r"|all_instigator_state|event_log_storage|run_storage|get_event_records|get_asset_check_execution_history)\b"
                        r"|\buser_failure_data\b")


def test_no_private_dagster_api():
    """Only Dagster's public API: no `dagster._` import anywhere in the package, its tests,
    benchmarks and docs scripts; the instance methods Dagster does not mark public, the
    undocumented event fields and the run tags it documents only in its source appear in
    `media_assets/lib/records.py` alone (the one module that reads Dagster's records)."""
    from media_assets.lib import records

    files = [p for d in ("media_assets", "media_assets_tests", "benchmarks", "docs") for p in (ROOT / d).rglob("*.py")]
    assert not [str(p) for p in files if re.search(r"^\s*(from|import) dagster\._", p.read_text(), re.M)]
    tags = [v for k, v in vars(records).items() if k.endswith("_TAG")]
    assert len(tags) >= 9, tags
    offenders = {str(p.relative_to(ROOT)): hits for p in files if p != Path(records.__file__)
                 if (hits := NON_PUBLIC.findall(p.read_text()) + [t for t in tags if f'"{t}"' in p.read_text()])}
    assert offenders == {}, offenders


def test_code_location_loads_as_the_ui_loads_it(tmp_path):
    """`dagster definitions validate` on workspace.yaml: the same loading `dagster dev` does
    (one Definitions object at module scope, every asset, job and sensor resolvable)."""
    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "MEDIA_ASSETS_DATA_ROOT": str(tmp_path / "data")}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run([str(exe), "definitions", "validate", "-w", "media_assets/config/workspace.yaml"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "All code locations passed validation" in output, output[-3000:]


# Beta/Preview features with no stable replacement in Dagster 1.13: ranged runs for the label
# backfill (`BackfillPolicy`) and per-partition asset checks on `corrected_batches`.
ALLOWED_LOAD_WARNINGS = (
    "Parameter `backfill_policy` of function `asset` is currently in beta",
    "Specifying a partitions_def on an AssetCheckSpec is currently in preview",
)


def test_code_location_loads_without_avoidable_warnings():
    """Loading the code location (what `dagster dev` prints at startup) warns only about the
    two beta/preview features that have no stable API; deprecated parameters and beta APIs with
    a stable alternative (e.g. `observable_source_asset`) are not used."""
    done = subprocess.run([sys.executable, "-W", "always", "-c", "import media_assets.definitions"], cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "always"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    warned = [line for line in done.stderr.splitlines() if re.search(r"\w+Warning: ", line)]
    unexpected = [line for line in warned if not any(allowed in line for allowed in ALLOWED_LOAD_WARNINGS)]
    assert unexpected == [], "\n".join(unexpected)
    assert len(warned) >= 1  # the check above did see the warnings it allows (capture works)

def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _scratch_of_group(name: str, pgid: int) -> list[Path]:
    """Scratch folders of ``name`` made by a process of process group ``pgid``."""
    from media_assets.scratch import scratch_root

    found = []
    for path in scratch_root().glob(f"{name}-pid*"):
        try:
            if os.getpgid(int(path.name.split("-pid")[1].split("-")[0])) == pgid:
                found.append(path)
        except (ProcessLookupError, ValueError):
            continue
    return found


@pytest.mark.long(59)
@pytest.mark.slow
def test_sigkill_mid_run_is_finished_by_the_next_pass(tmp_path, media, monkeypatch, own_temp_dir):
    """SIGKILL the whole pass (driver, daemon, run worker) while the 250 s video is in its decode pass:
    the next pass reports the stranded run failed, Dagster's run retry re-executes it, and the
    source is removed only once every output exists. No run stays STARTED."""
    src = tmp_path / "data" / "video-avi"
    src.mkdir(parents=True)
    shutil.copy(media["long"], src / "long.avi")
    env = _env(tmp_path, MEDIA_ASSETS_VIDEO_SOURCE_REMOVAL="delete", TMPDIR=own_temp_dir)
    exe = Path(sys.executable).with_name("media-assets")
    driver = subprocess.Popen([str(exe), "process"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    home = tmp_path / "home"
    _wait_for(lambda: (home / "process.json").exists(), 120, "the daemon to start")
    with _instance(tmp_path, monkeypatch) as instance:
        _wait_for(lambda: instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])), 240, "a started run")
        pgid = json.loads((home / "process.json").read_text())["pgid"]
        # the pass's daemon re-requests at once what failed before the pass (reconciliation)
        assert b"MEDIA_ASSETS_RECONCILE_RETRY_FAILED_BEFORE=" in Path(f"/proc/{pgid}/environ").read_bytes()
        _wait_for(lambda: _scratch_of_group("video_decode", pgid), 240, "the decode pass at work")
        time.sleep(2)
        os.killpg(driver.pid, signal.SIGKILL)
        os.killpg(pgid, signal.SIGKILL)
        driver.wait()
        assert (src / "long.avi").exists()
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.STARTED]

        done = _cli(tmp_path, "process", MEDIA_ASSETS_VIDEO_SOURCE_REMOVAL="delete", TMPDIR=own_temp_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "reported 1 run(s) of an interrupted pass as failed" in done.stdout
        runs = instance.get_runs()
        assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]
        retry = next(r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS)
        assert retry.tags.get(PARENT_RUN_TAG)  # Dagster's run retry, not a new request
    data = tmp_path / "data"
    assert not (src / "long.avi").exists()
    assert sorted(p.name for p in (data / "video-mp4" / "long").glob("*.mp4")) == ["long_000.mp4", "long_001.mp4", "long_002.mp4"]
    assert (data / "media" / "converted" / "selected_frames" / "long").is_dir()
    assert not list((data / "video-mp4").rglob(".tmp-*")) and not list((data / "unlabeled-images").rglob(".tmp-*"))
    from media_assets.scratch import remove_orphaned

    assert remove_orphaned() == []  # the killed run's scratch folder was removed by the next pass
    assert "scratch folder(s) of killed runs" in done.stdout
    # and the gRPC sockets of the killed daemon's code server and run worker
    assert "gRPC socket(s) of killed Dagster processes" in done.stdout, done.stdout
    assert not [p for p in Path(own_temp_dir).glob("tmp*") if p.is_socket()]


def test_sockets_of_dead_processes_are_removed_and_live_ones_kept(own_temp_dir):
    """A SIGKILLed gRPC server leaves its bound socket file; a live one (bound, listening or
    not yet) keeps its own; other temp files are not touched."""
    import socket

    from media_assets.scratch import remove_dead_sockets

    def server(path: Path, code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(socket.AF_UNIX); "
                                 f"s.bind(sys.argv[1]); {code}; print('up', flush=True); time.sleep(600)", str(path)],
                                stdout=subprocess.PIPE, text=True)

    tmp = Path(own_temp_dir)
    dead, listening, bound = tmp / "tmpdead", tmp / "tmplistening", tmp / "tmpbound"
    killed, alive, starting = server(dead, "s.listen()"), server(listening, "s.listen()"), server(bound, "pass")
    try:
        for proc in (killed, alive, starting):
            assert proc.stdout.readline().strip() == "up"
        killed.kill()
        killed.wait()
        (tmp / "tmpfile").write_text("not a socket")
        assert dead.is_socket() and remove_dead_sockets() == []  # too young: maybe inside bind()
        aged = time.time() - 60
        for path in (dead, listening, bound):
            os.utime(path, (aged, aged), follow_symlinks=False)
        assert remove_dead_sockets() == [dead]
        assert not dead.exists() and listening.is_socket() and bound.is_socket() and (tmp / "tmpfile").exists()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(listening))  # the live server still answers on its socket
    finally:
        for proc in (alive, starting):
            proc.kill()
            proc.wait()


def test_scratch_folders_of_dead_processes_are_removed(own_temp_dir, monkeypatch):
    """By a run's first scratch folder (each run starts clean), and by remove_orphaned (each
    pass); a live process's folder is kept."""
    from media_assets import scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    orphans = [scratch.scratch_root() / f"mp4_clips-pid{dead}-test{i}" for i in (1, 2)]
    (orphans[0] / "x").mkdir(parents=True)
    monkeypatch.setattr(scratch, "_cleaned", False)  # as in a fresh run worker
    with scratch.scratch_dir("labeling_frames") as mine:
        assert not orphans[0].exists() and Path(mine).is_dir()
        (orphans[1] / "x").mkdir(parents=True)
        assert scratch.remove_orphaned() == [orphans[1]] and Path(mine).is_dir()


def test_scratch_folder_of_a_killed_unreaped_process_is_removed(own_temp_dir):
    """A SIGKILLed run worker stays a zombie until its parent, or init once the parent is gone
    too, reaps it: its folder is an orphan already (the next pass cleans it up, not a later one)."""
    import psutil

    from media_assets.scratch import remove_orphaned, scratch_root

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        orphan = scratch_root() / f"video_decode-pid{proc.pid}-test"
        (orphan / "x").mkdir(parents=True)
        assert remove_orphaned() == [] and orphan.exists()  # alive: kept
        proc.kill()  # not waited for: a zombie until proc.wait() below
        _wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 30, "the killed process to be a zombie")
        assert remove_orphaned() == [orphan] and not orphan.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.long(73)
@pytest.mark.slow
def test_two_passes_at_once_on_a_fresh_home(tmp_path, media, monkeypatch):
    """Two `process` started together on a fresh DAGSTER_HOME: the instance is created once, the
    second pass waits for the first, and the video is converted exactly once."""
    src = tmp_path / "data" / "video-avi"
    src.mkdir(parents=True)
    shutil.copy(media["bikes"], src / "bikes.avi")
    exe = Path(sys.executable).with_name("media-assets")
    procs = [subprocess.Popen([str(exe), "process"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert any("waiting for it to finish" in o for o in outs)
    with _instance(tmp_path, monkeypatch) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS  # the second pass requested nothing again
    assert any("nothing pending" in o for o in outs), outs


@pytest.mark.long(90)
@pytest.mark.slow
def test_missing_watched_bucket_fails_only_its_sensor(tmp_path, media, moto_endpoint, s3_client, monkeypatch):
    """On S3 with the audio bucket missing, new_audio_sensor's ticks fail with a line naming the
    bucket; the AVI sensor's run goes on and the summary says what failed. Once the bucket
    exists the next pass is clean, and the sensor counts as recovered, not failing."""
    suffix = f"m{os.getpid()}"
    buckets = {name: f"{name}-{suffix}" for name in ["video-avi", "video-mp4", "unlabeled-images", "media", "training-batches"]}
    for b in buckets.values():
        s3_client.create_bucket(Bucket=b)
    s3_client.upload_file(str(media["bikes"]), buckets["video-avi"], "bikes.avi")
    env = dict(
        MEDIA_ASSETS_VIDEO_SOURCE_BUCKET=buckets["video-avi"], MEDIA_ASSETS_VIDEO_MP4_BUCKET=buckets["video-mp4"],
        MEDIA_ASSETS_VIDEO_LABELING_BUCKET=buckets["unlabeled-images"], MEDIA_ASSETS_KEYFRAMES_DIRECT_BUCKET=buckets["media"],
        MEDIA_ASSETS_KEYFRAMES_OUTPUT_BUCKET=buckets["media"], MEDIA_ASSETS_LABELS_BUCKET=buckets["training-batches"],
        MEDIA_ASSETS_AUDIO_SOURCE_BUCKET=f"audio-{suffix}",
    )
    started = time.time()
    out = _cli(tmp_path, "process", AWS_ENDPOINT_URL=moto_endpoint, MEDIA_ASSETS_STORAGE="s3", **env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(rf"SENSOR FAILED new_audio_sensor: .*audio-{suffix}", out.stdout), out.stdout
    assert re.search(r"1 runs, 0 failed, 0 failed checks \(ERROR\), \d+ check warnings \(WARN\), 1 sensor errors", out.stdout), out.stdout
    assert s3_client.list_objects_v2(Bucket=buckets["video-mp4"], Prefix="bikes/")["KeyCount"] == 1

    # the bucket is created: the next pass is clean, and over both passes the sensor is reported
    # as recovered (its failed ticks followed by a successful one), not as failing
    s3_client.create_bucket(Bucket=f"audio-{suffix}")
    again = _cli(tmp_path, "process", AWS_ENDPOINT_URL=moto_endpoint, MEDIA_ASSETS_STORAGE="s3", **env)
    assert again.returncode == 0 and "nothing pending" in again.stdout and "0 sensor errors" in again.stdout, again.stdout
    from media_assets.definitions import build_definitions
    from media_assets.process import sensor_errors
    with _instance(tmp_path, monkeypatch) as instance:
        failing, recovered = sensor_errors(instance, build_definitions(), after=started)
    assert failing == [], failing
    assert len(recovered) == 1 and recovered[0].startswith("new_audio_sensor: ") and f"audio-{suffix}" in recovered[0], recovered


def _group_alive(pgid: int) -> bool:
    """A process of group ``pgid`` that is not a zombie (a zombie waits for a reaper, it runs nothing)."""
    import psutil

    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


@pytest.mark.slow
def test_daemon_and_pass_never_outlive_each_other(tmp_path):
    """SIGKILL of the daemon ends the pass with one line naming the signal and the summary (exit
    1, no traceback); SIGKILL of the pass makes the kernel stop its daemon (no sensor goes on
    ticking with no one watching)."""
    (tmp_path / "data" / "video-avi").mkdir(parents=True)
    exe = str(Path(sys.executable).with_name("media-assets"))
    home = tmp_path / "home"

    def start() -> tuple[subprocess.Popen, int]:
        driver = subprocess.Popen([exe, "process"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: (home / "process.json").exists(), 120, "the daemon to start")
        return driver, json.loads((home / "process.json").read_text())["pgid"]

    driver, pgid = start()
    os.killpg(pgid, signal.SIGKILL)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1, out + err
    assert "PASS STOPPED dagster-daemon was killed by SIGKILL before the work was done" in out, out
    assert "run media-assets process again" in out and "0 runs, 0 failed" in out and "Traceback" not in err, out + err

    driver, pgid = start()
    driver.kill()
    driver.communicate()
    _wait_for(lambda: not _group_alive(pgid), 60, "the daemon to stop with its pass")


def test_summary_cuts_long_errors_at_a_word():
    from media_assets.cli import ERROR_CELL_CHARS, summary
    from media_assets.process import PassResult, RunOutcome

    error = "failure: " + " ".join(f"word{i:03d}" for i in range(60)) + "; the source object is kept"
    run = RunOutcome(run_id="r" * 36, job="video_conversion", partition="cam/a.avi", status="FAILURE", seconds=1.0, error=error)
    text = summary(PassResult(runs=[run], sensor_errors=[], recovered_runs=[], seconds=2.0))
    line = next(row for row in text.splitlines() if row.startswith("cam/a.avi"))
    cell = line[line.index("failure: "):].rstrip()
    assert cell.endswith(" …") and len(cell) <= ERROR_CELL_CHARS
    assert all(re.fullmatch(r"word\d{3}", w) for w in cell.removeprefix("failure: ").removesuffix(" …").split()), cell
    assert "1 runs, 1 failed" in text


def test_summary_counts_checks_by_severity():
    from media_assets.cli import summary
    from media_assets.process import PassResult, RunOutcome

    run = RunOutcome(run_id="r" * 36, job="audio", partition="2026-12-01", status="SUCCESS", seconds=1.0,
                     failed_checks=["audio_dataset.speech_not_lost [2026-12-01]: 1 file lost its speech"],
                     warned_checks=["corrected_batches.batch_verified [batch_7]: 9.0% of rows unmatched, over the 5.0% bound"])
    text = summary(PassResult(runs=[run], sensor_errors=[], recovered_runs=[], seconds=2.0))
    assert "CHECK FAILED audio_dataset.speech_not_lost [2026-12-01]" in text
    assert "check warning corrected_batches.batch_verified [batch_7]" in text
    assert "1 runs, 0 failed, 1 failed checks (ERROR), 1 check warnings (WARN), 0 sensor errors" in text
