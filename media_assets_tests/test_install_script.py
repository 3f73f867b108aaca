"""The container image's install steps (``deploy/install.sh``, what the Dockerfile runs) in a fresh
venv with a fresh model cache: the project installs from its folder with its runtime
dependencies only (no test extras), every offline model loads, and Dagster validates the code
location from the installed package (run outside the source tree).

No container engine runs on the CI machine (podman here cannot start a container: cgroups and
rlimits are not permitted), so this is where the image's steps are proven."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_install_script_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DAGSTER_HOME")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # as the image's /opt/media_assets/cache
    out = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), str(py)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("ok      ") == 3, out.stdout  # media-assets models: base, tiny.en, embedder
    assert (tmp_path / "cache" / "media_assets" / "whisper-base-ct2" / "model.bin").stat().st_size > 100_000_000

    # installed, not imported from the source tree; no test dependency came with it
    where = subprocess.run([str(py), "-c", "import media_assets, importlib.util as u; print(media_assets.__file__, u.find_spec('pytest'), u.find_spec('moto'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1:] == ["None", "None"], where
    home = tmp_path / "home"
    home.mkdir()
    valid = subprocess.run([str(venv / "bin" / "dagster"), "definitions", "validate", "-m", "media_assets.definitions"],
                           cwd=tmp_path, env={**env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert valid.returncode == 0 and "Validation successful" in valid.stdout + valid.stderr, valid.stdout[-2000:] + valid.stderr[-2000:]
