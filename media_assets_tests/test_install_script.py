"""The container image's install steps (``deploy/install.sh``, what the Dockerfile runs): the
project installs from its folder with its runtime dependencies only (no test extras), every
offline model loads from a model cache of its own, and Dagster validates the code location from
the installed package (run outside the source tree).

``make test`` runs the script into a fresh ``.venv-runtime`` before the suite (and again, for
the package only, whenever a file of the package changes): the image's environment, built the
image's way on every CI run. This test checks that environment; run without it (plain pytest),
it builds one itself in a temporary folder. No container engine runs on the CI machine (podman
here cannot start a container: cgroups and rlimits are not permitted), so this is where the
image's steps are proven."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / ".venv-runtime"  # built by `make runtime` (a prerequisite of `make test`)


def _env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DAGSTER_HOME")}
    env["XDG_CACHE_HOME"] = str(cache)  # as the image's /opt/media_assets/cache
    return env


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> tuple[Path, Path]:
    """``(venv, model cache)`` that deploy/install.sh built: ``.venv-runtime`` when make built
    it, else a fresh one here."""
    if (RUNTIME / ".installed").exists():
        return RUNTIME, RUNTIME / "cache"
    tmp = tmp_path_factory.mktemp("runtime")
    venv, cache = tmp / "venv", tmp / "cache"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), str(venv / "bin" / "python")], cwd=tmp, env=_env(cache),
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return venv, cache


def test_install_script_in_a_fresh_venv(runtime_venv, tmp_path):
    venv, cache = runtime_venv
    py, env = venv / "bin" / "python", _env(cache)
    models = subprocess.run([str(venv / "bin" / "media-assets"), "models"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert models.returncode == 0, models.stdout[-3000:] + models.stderr[-3000:]
    assert models.stdout.count("ok      ") == 3, models.stdout  # media-assets models: base, tiny.en, embedder
    assert (cache / "media_assets" / "whisper-base-ct2" / "model.bin").stat().st_size > 100_000_000

    # installed, not imported from the source tree; no test dependency came with it
    where = subprocess.run([str(py), "-c", "import media_assets, importlib.util as u; print(media_assets.__file__, u.find_spec('pytest'), u.find_spec('moto'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1:] == ["None", "None"], where
    # the installed package is this source tree's, every file of it (a stale environment fails here)
    installed = Path(where[0]).parent
    source = [p.relative_to(ROOT / "media_assets") for p in (ROOT / "media_assets").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts]
    assert len(source) > 30
    _, mismatch, missing = filecmp.cmpfiles(ROOT / "media_assets", installed, [str(p) for p in source], shallow=False)
    assert not mismatch and not missing, f"installed package differs from the source: {mismatch + missing}"

    home = tmp_path / "home"
    home.mkdir()
    valid = subprocess.run([str(venv / "bin" / "dagster"), "definitions", "validate", "-m", "media_assets.definitions"],
                           cwd=tmp_path, env={**env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert valid.returncode == 0 and "Validation successful" in valid.stdout + valid.stderr, valid.stdout[-2000:] + valid.stderr[-2000:]
