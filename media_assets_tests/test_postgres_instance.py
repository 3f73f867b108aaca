"""The production instance (``deploy/dagster.postgres.yaml``) on a real PostgreSQL server: the
video pipeline on a real AVI and a 500-batch label backfill in one ranged run, checked through
the public ``DagsterInstance`` API (runs, per-partition materializations)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from media_assets.lib.records import PARTITION_TAG, partition_range, storage_kind
from media_assets.defs.labels import batch_partitions
from media_assets.defs.video import video_partitions
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.resources.video import VideoConversionSettings
from media_assets.testing.harness import make_watched_buckets, process_pending
from media_assets.testing.label_data import load_pickle, write_label_dataset
from media_assets.testing.postgres_server import running_postgres
from media_assets_tests.test_label_pipeline import _defs as label_defs
from media_assets_tests.test_video_pipeline import _full_job

DEPLOY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.postgres.yaml"


@pytest.fixture(scope="module")
def pg():
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def pg_env(pg):
    return pg.env


@pytest.fixture
def pg_instance(pg_env, tmp_path, monkeypatch):
    """A DAGSTER_HOME holding the deploy file as is; its connection comes from DAGSTER_PG_*."""
    for name, value in pg_env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.wipe()  # one database per module: each test starts from an empty instance
        yield instance


def test_deploy_file_reads_every_secret_from_the_environment():
    cfg = yaml.safe_load(DEPLOY_YAML.read_text())
    db = cfg["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert {k: v["env"] for k, v in db.items()} == {
        "hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT", "username": "DAGSTER_PG_USERNAME",
        "password": "DAGSTER_PG_PASSWORD", "db_name": "DAGSTER_PG_DB"}
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator" and cfg["run_retries"]["enabled"]
    assert cfg["run_monitoring"]["enabled"] and cfg["telemetry"]["enabled"] is False


def test_video_pipeline_on_postgres(pg_instance, local_resource, media):
    assert storage_kind(pg_instance) == "PostgresEventLogStorage"
    store = local_resource.get_store()
    store.upload(media["bunny"], "video-avi", "bunny.avi")
    pg_instance.add_dynamic_partitions(video_partitions.name, ["bunny.avi"])
    result = _full_job(local_resource, VideoConversionSettings()).execute_in_process(instance=pg_instance, partition_key="bunny.avi")
    assert result.success
    (run,) = pg_instance.get_runs(filters=dg.RunsFilter(job_name="video_conversion"))
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[PARTITION_TAG] == "bunny.avi"
    for asset in ("mp4_clips", "labeling_frames", "keyframe_embeddings", "key_frames", "source_video_removal"):
        (rec,) = pg_instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=["bunny.avi"]), limit=10).records
        assert rec.run_id == run.run_id
    assert store.exists("video-mp4", "bunny/bunny.mp4") and not store.exists("video-avi", "bunny.avi")
    assert any(o.key.startswith("bunny/") for o in store.list_objects("unlabeled-images"))


@pytest.mark.long(34)
def test_500_batch_label_backfill_on_postgres(pg_instance, local_resource, tmp_path):
    """One ranged run corrects 500 batches; every partition has its own materialization."""
    store = local_resource.get_store()
    settings = LabelCorrectionSettings(partitions_per_run=500)
    ds = write_label_dataset(store, settings.bucket, n_videos=2000, n_batches=500, rows=(16, 32), malformed=())
    outcomes = process_pending(label_defs(local_resource, settings), pg_instance)
    assert [(o.job, o.success) for o in outcomes] == [("video_embedding_index_job", True), ("label_correction", True)]
    runs = pg_instance.get_runs(filters=dg.RunsFilter(job_name="label_correction", statuses=[dg.DagsterRunStatus.SUCCESS]))
    assert len(runs) == 1 and partition_range(runs[0].tags)[0] == "batch_1_0.pickle"
    keys = pg_instance.get_dynamic_partitions(batch_partitions.name)
    good = set(ds.expected)
    assert len(keys) == len(good) == 500
    mats = pg_instance.fetch_materializations(dg.AssetKey("corrected_batches"), limit=10_000).records
    assert {m.partition_key for m in mats} == good and len(mats) == len(good)
    assert all(m.run_id == runs[0].run_id for m in mats)
    for key in list(good)[:50]:
        corrected = load_pickle(store.get_bytes(settings.bucket, settings.corrected_key(key)))
        assert (corrected["targets"] == ds.expected[key]).all(), key


BIN = Path(sys.executable).parent


def _process(home: Path, data: Path, pg_env: dict, **overrides) -> subprocess.Popen:
    """``media-assets process`` on a DAGSTER_HOME holding the deploy file."""
    home.mkdir(exist_ok=True)
    make_watched_buckets(data)
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    env = {**os.environ, **pg_env, **overrides, "DAGSTER_HOME": str(home), "MEDIA_ASSETS_DATA_ROOT": str(data), "MEDIA_ASSETS_STORAGE": "local"}
    return subprocess.Popen([str(BIN / "media-assets"), "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_unreachable_postgres_is_one_clear_line(tmp_path, pg_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    out, err = _process(tmp_path / "home", tmp_path / "data", pg_env, DAGSTER_PG_PORT=str(closed_port)).communicate(timeout=300)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("error: cannot reach the Dagster instance's database") and f'"127.0.0.1", port {closed_port}' in lines[0]


def test_wrong_postgres_password_is_named_without_the_password(tmp_path, pg_env):
    proc = _process(tmp_path / "home", tmp_path / "data", pg_env, DAGSTER_PG_PASSWORD="wrong-secret-4711")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    (line,) = err.strip().splitlines()
    assert 'password authentication failed for user "postgres"' in line
    assert "wrong-secret-4711" not in out + err


def _pass_until_a_run_is(status: dg.DagsterRunStatus, tmp_path: Path, data: Path, avi: Path, pg, pg_instance) -> subprocess.Popen:
    """``media-assets process`` on ``avi`` (put in ``data/video-avi/``), returned once a run of
    it has ``status``."""
    (data / "video-avi").mkdir(parents=True)
    shutil.copy(avi, data / "video-avi" / avi.name)
    proc = _process(tmp_path / "home", data, pg.env)
    deadline = time.monotonic() + 300
    while not pg_instance.get_runs(filters=dg.RunsFilter(statuses=[status])):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    return proc


@pytest.mark.long(84)
@pytest.mark.slow
def test_postgres_restart_mid_run_and_outage_while_the_pass_waits(tmp_path, pg, pg_instance, media):
    """Two database faults in one pass over a 250 s AVI. PostgreSQL restarts (fast shutdown:
    every connection dropped) while the run converts it; then, after the run succeeded and while
    the pass polls the instance for quiet, PostgreSQL is down for 15 s -- longer than
    dagster-postgres' own connection retries (about 6 s). The pass keeps polling (a database
    gone for up to 120 s is an outage, not the end of the pass) and ends normally: the video
    converted once, its AVI removed, the run reported once."""
    data = tmp_path / "data"
    proc = _pass_until_a_run_is(dg.DagsterRunStatus.STARTED, tmp_path, data, media["long"], pg, pg_instance)
    time.sleep(2)
    pg.restart()
    deadline = time.monotonic() + 600
    while not pg_instance.get_runs(filters=dg.RunsFilter(job_name="video_conversion", statuses=[dg.DagsterRunStatus.SUCCESS])):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    pg.stop()
    time.sleep(15)
    assert proc.poll() is None, proc.communicate()
    pg.start()
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    runs = pg_instance.get_runs(filters=dg.RunsFilter(job_name="video_conversion"))
    assert runs[0].status == dg.DagsterRunStatus.SUCCESS  # the newest: the run itself or its retry
    assert f"{len(runs)} runs, 0 failed" in out, out[-3000:]  # a run the restart failed counts once, retried to success
    assert sorted(p.name for p in (data / "video-mp4" / "long").glob("*.mp4")) == ["long_000.mp4", "long_001.mp4", "long_002.mp4"]
    assert not (data / "video-avi" / "long.avi").exists()
    mats = pg_instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("mp4_clips"), asset_partitions=["long.avi"]), limit=10).records
    assert len(mats) == 1, "converted twice"
