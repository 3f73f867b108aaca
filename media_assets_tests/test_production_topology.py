"""The production topology as separate processes on 127.0.0.1, all on the Postgres instance file
``deploy/dagster.postgres.yaml``: moto's S3 server, PostgreSQL, the project's code server
(``dagster code-server start``), ``dagster-daemon run`` and ``dagster-webserver`` with a
``deploy/workspace.yaml`` pointing at the gRPC server. The AVI sensor is switched on through the
webserver's GraphQL API; an uploaded AVI becomes a run the daemon launches, and the
code server is killed while it runs (its process group: the run worker goes with it) and restarted,
and later a run worker alone is SIGKILLed. The default run launcher cannot health-check a
worker (the ECS and Kubernetes launchers can): ``run_worker_watchdog`` fails each lost run and
Dagster's run retries finish it, with the deploy files exactly as shipped (no shortened
limit). Every process is stopped by its pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import dagster as dg
import pytest

from media_assets.lib.records import PARTITION_TAG, ROOT_RUN_TAG, run_worker
from media_assets.testing.postgres_server import postgres_server
from media_assets.testing.ui_browser import graphql

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOST_RUN_DEADLINE_S = 360  # the lost run failed and its retry succeeded within 6 minutes
BUCKETS = ["video-avi", "video-mp4", "unlabeled-images", "media", "training-batches", "audio", "audio-dataset", "media-assets-work"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, predicate, timeout_s: float, logs: Path, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


class Processes:
    """Started processes, each in its own session (so its children stop with it)."""

    def __init__(self, logs: Path, env: dict):
        self.logs, self.env, self.procs = logs, env, {}

    def start(self, name: str, cmd: list[str], cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self.procs[name]

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)


START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message }
  }
}"""


@pytest.mark.long(145)
def test_webserver_daemon_code_server_on_postgres(tmp_path, media, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")  # as shipped
    s3_port, grpc_port, web_port = _port(), _port(), _port()
    shutil.copy(ROOT / "deploy" / "workspace.yaml", home / "workspace.yaml")  # the code server's address from the env
    with postgres_server() as pg:
        for name, value in pg.items():  # this process reads the same instance
            monkeypatch.setenv(name, value)
        env = {**os.environ, **pg, "DAGSTER_HOME": str(home), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
               "MEDIA_ASSETS_STORAGE": "s3", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1",
               "MEDIA_ASSETS_CODE_SERVER_HOST": "127.0.0.1", "MEDIA_ASSETS_CODE_SERVER_PORT": str(grpc_port)}
        procs = Processes(logs, env)
        try:
            procs.start("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], tmp_path)
            s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
            _wait("moto's S3 server", lambda: _try(s3.list_buckets), 30, logs)
            for bucket in BUCKETS:
                s3.create_bucket(Bucket=bucket)
            # the schema first, once, as compose's instance-migrate service does: the daemon and
            # the webserver started together on a fresh database raced to create it
            subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, cwd=home, check=True, capture_output=True, timeout=180)
            code_server = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
                           "-m", "media_assets.definitions", "--location-name", "media_assets"]
            procs.start("code_server", code_server, ROOT)
            procs.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")], home)
            procs.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", str(home / "workspace.yaml")], home)
            selector = {"repositoryLocationName": "media_assets", "repositoryName": "__repository__", "sensorName": "new_avi_sensor"}

            def start_sensor():  # SensorNotFoundError until the webserver has loaded the code location
                out = _try(lambda: graphql(f"http://127.0.0.1:{web_port}", START_SENSOR, {"selector": selector})["data"]["startSensor"])
                return out if out and out["__typename"] == "Sensor" else None

            started = _wait("the webserver to switch new_avi_sensor on", start_sensor, 240, logs, 3)
            assert started["sensorState"]["status"] == "RUNNING", started

            with dg.DagsterInstance.from_config(str(home)) as instance:
                # 1. an upload becomes a run the daemon launches; the code server dies mid-run (its
                # run worker with it) and comes back; a retry finishes the work, the AVI goes last
                s3.upload_file(str(media["long"]), "video-avi", "long.avi")
                _wait("the long run to start", lambda: _started(instance, "long.avi"), 300, logs, 1)
                time.sleep(3)
                lost_at = time.monotonic()
                procs.kill("code_server")
                procs.start("code_server", code_server, ROOT)
                _wait("a retry of the lost run to succeed", lambda: _retried_to_success(instance, "long.avi"), LOST_RUN_DEADLINE_S, logs, 3)
                assert time.monotonic() - lost_at < LOST_RUN_DEADLINE_S
                _assert_recovered(s3, instance, "long.avi", "long")

                # 2. the run worker alone is SIGKILLed (the OOM killer's way); the code server lives on.
                # A 10 s video: its run (about 12 s) is still in its steps when the worker that
                # reported RUN_START is killed; the split is already proven by step 1
                s3.upload_file(str(media["bikes"]), "video-avi", "again/bikes.avi")
                _wait("the second run to start", lambda: _started(instance, "again/bikes.avi"), 300, logs, 0.5)
                pid = _wait("the run worker's pid", lambda: _worker_pid(instance, "again/bikes.avi"), 60, logs, 0.5)
                lost_at = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                _wait("a retry of the killed worker's run to succeed", lambda: _retried_to_success(instance, "again/bikes.avi"),
                      LOST_RUN_DEADLINE_S, logs, 3)
                assert time.monotonic() - lost_at < LOST_RUN_DEADLINE_S
                _assert_recovered(s3, instance, "again/bikes.avi", "again/bikes", clips=1, duration_s=10.0)
        finally:
            procs.stop_all()
    assert not procs.procs


def _try(fn):
    try:
        return fn()
    except Exception:
        return None


def _runs(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    return list(reversed(instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: partition}))))  # oldest first


def _started(instance, partition):
    return any(r.status == dg.DagsterRunStatus.STARTED for r in _runs(instance, partition))


def _worker_pid(instance: dg.DagsterInstance, partition: str) -> int | None:
    """The pid in the RUN_START event of the partition's run in progress (its worker writes it)."""
    for run in _runs(instance, partition):
        if run.status == dg.DagsterRunStatus.STARTED:
            worker = run_worker(instance, run.run_id)
            if worker:
                return worker[0]
    return None


def _assert_recovered(s3, instance: dg.DagsterInstance, key: str, prefix: str, clips: int = 3, duration_s: float = 250.0) -> None:
    """The lost run failed and a retry of it succeeded; ``clips`` clips cover the ``duration_s`` source, the
    labeling manifest names every JPEG under the video's prefix (nothing of the dead attempt is
    left), and the source AVI is gone (removed last, by the run's final step)."""
    import json

    runs = _runs(instance, key)
    first, last = runs[0], runs[-1]
    assert first.status == dg.DagsterRunStatus.FAILURE and last.status == dg.DagsterRunStatus.SUCCESS
    assert last.tags.get(ROOT_RUN_TAG) == first.run_id
    made = json.loads(s3.get_object(Bucket="video-mp4", Key=f".manifests/{prefix}/clips.json")["Body"].read())
    assert len(made["clips"]) == clips and abs(sum(c["duration_s"] for c in made["clips"]) - duration_s) < 1.0, made
    frames = json.loads(s3.get_object(Bucket="video-mp4", Key=f".manifests/{prefix}/frames.json")["Body"].read())
    listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="unlabeled-images", Prefix=f"{prefix}/")
              for o in page.get("Contents", [])]
    assert listed and sorted(listed) == sorted(frames["frame_keys"])
    avis = [o["Key"] for o in s3.list_objects_v2(Bucket="video-avi").get("Contents", [])]
    assert key not in avis
    removal = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("source_video_removal"), asset_partitions=[key]), limit=1).records
    clips_mat = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("key_frames"), asset_partitions=[key]), limit=1).records
    assert removal and clips_mat and removal[0].timestamp >= clips_mat[0].timestamp  # the source went last


def _retried_to_success(instance, partition):
    runs = _runs(instance, partition)
    return runs if runs and runs[-1].status == dg.DagsterRunStatus.SUCCESS and len(runs) > 1 else None
