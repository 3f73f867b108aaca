"""``media-assets process`` as a user runs it: a subprocess on a fresh data root and
DAGSTER_HOME, with one good and two bad videos in the same pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef


def _cli(env_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MEDIA_ASSETS_DATA_ROOT": str(env_root / "data"),
        "DAGSTER_HOME": str(env_root / "home"),
        "MEDIA_ASSETS_VIDEO_SOURCE_REMOVAL": "keep",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    exe = Path(sys.executable).with_name("media-assets")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def test_process_runs_everything_pending_and_reports_failures(tmp_path, media, monkeypatch):
    src = tmp_path / "data" / "video-avi"
    (src / "cams").mkdir(parents=True)
    shutil.copy(media["bikes"], src / "cams" / "bikes one.avi")
    shutil.copy(media["text"], src / "broken.avi")
    shutil.copy(media["empty"], src / "empty.avi")

    first = _cli(tmp_path, "process")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "3 runs, 2 failed" in first.stdout
    assert "not a readable media container" in first.stdout and "empty file" in first.stdout

    data = tmp_path / "data"
    assert (data / "video-mp4" / "cams" / "bikes one" / "bikes one.mp4").is_file()
    frames = sorted((data / "unlabeled-images" / "cams" / "bikes one").glob("*.jpg"))
    assert len(frames) == 25 and (data / "unlabeled-images" / "cams" / "bikes one" / "240.jpg").exists()
    # sources kept: configured keep, and bad inputs are never removed
    assert (src / "broken.avi").exists() and (src / "cams" / "bikes one.avi").exists()

    # the runs are in the instance the UI reads (its storage config reads DAGSTER_HOME)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert {r.tags["dagster/sensor_name"] for r in runs} == {"new_avi_sensor"}

    # a second pass finds nothing new
    second = _cli(tmp_path, "process")
    assert second.returncode == 0 and "nothing pending" in second.stdout


def test_instance_configs_agree_and_load(tmp_path):
    """The project's dagster.yaml (copied by `make`) and the one the CLI writes into a fresh
    DAGSTER_HOME configure the same batched storage, and both are valid instance configs
    (Dagster rejects e.g. run_queue limits next to concurrency pools)."""
    import yaml

    from media_assets.cli import DEFAULT_DAGSTER_YAML
    from media_assets.instance_storage import BatchedSqliteEventLogStorage

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    assert yaml.safe_load(DEFAULT_DAGSTER_YAML)["storage"] == project["storage"]
    for name, text in (("project", yaml.safe_dump(project)), ("cli", DEFAULT_DAGSTER_YAML)):
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text(text)
        with dg.instance_for_test(temp_dir=str(home), overrides=yaml.safe_load(text)) as instance:
            assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
            assert instance.get_runs() == []


def test_code_location_loads_as_the_ui_loads_it(tmp_path):
    """`dagster definitions validate` on workspace.yaml: the same loading `dagster dev` does
    (one Definitions object at module scope, every asset, job and sensor resolvable)."""
    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "MEDIA_ASSETS_DATA_ROOT": str(tmp_path / "data")}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run([str(exe), "definitions", "validate", "-w", "workspace.yaml"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "All code locations passed validation" in output, output[-3000:]
