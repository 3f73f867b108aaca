"""``docker-compose.yaml`` as shipped, read by a real Compose implementation (Debian's
``docker-compose`` 1.29, whose ``config`` validates the file against the Compose schema and
interpolates it without a Docker engine): closed to the network, no secret in the file, the
start-up order and health checks kept, every image pinned."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from media_assets.instance_config import DAGSTER_YAML

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
SECRETS = ("DAGSTER_PG_PASSWORD", "MINIO_ROOT_PASSWORD")


def _compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        raise RuntimeError("docker-compose is needed to validate docker-compose.yaml: run `make test` (it installs Debian's docker-compose)")
    return exe


def _config(env_file: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "MINIO_ROOT_USER"}
    args = [_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    return subprocess.run([*args, "config"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    """The .env that the documented command, ``deploy/compose-env.sh``, generates."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(["bash", str(ROOT / "deploy" / "compose-env.sh"), str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def rendered(env_file) -> dict:
    proc = _config(env_file)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_refuses_to_start_without_secrets():
    proc = _config(None)
    assert proc.returncode != 0
    assert "deploy/compose-env.sh" in proc.stderr and "Missing mandatory value" in proc.stderr


def test_generated_env_file_is_private_random_and_never_overwritten(env_file, tmp_path):
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert set(SECRETS) <= set(values) and all(len(values[k]) >= 40 for k in SECRETS)
    assert values["DAGSTER_PG_PASSWORD"] != values["MINIO_ROOT_PASSWORD"]
    again = subprocess.run(["bash", str(ROOT / "deploy" / "compose-env.sh"), str(env_file)], capture_output=True, text=True)
    assert again.returncode != 0 and "not overwritten" in again.stderr
    assert ".env" in (ROOT / ".gitignore").read_text().split() and ".env" in (ROOT / ".dockerignore").read_text().split()


def test_every_published_port_is_on_loopback(rendered):
    published = [(name, port) for name, svc in rendered["services"].items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"webserver", "minio"}
    for name, port in published:
        spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}:{port['target']}"
        assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} beyond the host's loopback"


def test_no_literal_secret_in_the_file(env_file):
    """Every password or secret in the file is a required variable (``${VAR:?...}``), never a
    value, and none of the generated values is in the file."""
    raw = yaml.safe_load(COMPOSE.read_text())
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif any(w in path.upper() for w in ("PASSWORD", "SECRET")):
            found.append((path, node))

    walk(raw, "")
    assert len(found) >= 6
    for path, value in found:
        assert isinstance(value, str) and value.startswith("${") and ":?" in value, f"{path} = {value!r} is a literal or has a default"
    text = COMPOSE.read_text()
    for line in env_file.read_text().splitlines():
        if line.startswith(SECRETS):
            assert line.split("=", 1)[1] not in text


def test_start_order_health_and_restarts_are_kept(rendered):
    services = rendered["services"]
    for name in ("code-server", "daemon", "webserver"):
        svc = services[name]
        assert svc["restart"] == "unless-stopped" and svc["healthcheck"]["test"]
        deps = svc["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["buckets"]["condition"] == "service_completed_successfully"
        assert deps["instance-migrate"]["condition"] == "service_completed_successfully"  # one schema creator, no race
        if name != "code-server":
            assert deps["code-server"]["condition"] == "service_healthy"
        mounts = [f"{v['source']}:{v['target']}" if isinstance(v, dict) else v.removesuffix(":rw") for v in svc["volumes"]]
        assert "dagster-storage:/opt/dagster/home/storage" in mounts  # run logs written by the code server, read by the webserver
    assert services["instance-migrate"]["command"] == ["dagster", "instance", "migrate"] and services["instance-migrate"]["restart"] == "no"
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert services["code-server"]["image"] == f"media-assets:{version}"
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"


def test_healthcheck_commands_exist_in_the_installed_dagster():
    """The health checks compose and the image run are commands this Dagster has."""
    bin_dir = Path(os.sys.executable).parent
    for cmd in (["dagster", "api", "grpc-health-check", "--help"], ["dagster-daemon", "liveness-check", "--help"]):
        proc = subprocess.run([str(bin_dir / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    script = (ROOT / "deploy" / "healthcheck.sh").read_text()
    assert "grpc-health-check" in script and "liveness-check" in script and "/server_info" in script
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile and "HEALTHCHECK" in dockerfile


def test_code_server_entrypoint_stops_within_5_s_of_sigterm(tmp_path):
    """The image's code server command (``deploy/code-server.sh``, as compose and the Dockerfile
    run it) exits within 5 s of SIGTERM, and no process of it is left; Dagster's own code server
    takes about a minute, longer than any container stop grace period."""
    import signal
    import socket
    import time

    import psutil

    assert '"/opt/media_assets/src/deploy/code-server.sh"' in (ROOT / "Dockerfile").read_text()
    assert '"/opt/media_assets/src/deploy/code-server.sh"' in COMPOSE.read_text()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(os.sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    # Started as tini starts it in the image: default signal dispositions and an empty signal
    # mask. A child inherits ignored signals and the mask across exec, and a shell cannot trap a
    # signal that was ignored when it started (POSIX, "trap"), so a pytest worker's own state
    # must not decide whether the script sees SIGTERM.
    as_pid_1_starts_it = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                          "[signal.signal(s, signal.SIG_DFL) for s in signal.valid_signals() "
                          "if s not in (signal.SIGKILL, signal.SIGSTOP)]; os.execvp(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([os.sys.executable, "-c", as_pid_1_starts_it, "sh", str(ROOT / "deploy" / "code-server.sh"),
                             "-h", "127.0.0.1", "-p", str(port), "-m", "media_assets.definitions", "--location-name", "media_assets"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ok = subprocess.run([str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)], capture_output=True, env=env)
            if ok.returncode == 0:
                break
            time.sleep(1)
        else:
            raise AssertionError("the code server never answered its health check")
        time.sleep(5)  # the code location is loaded by now
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
        assert len(family) >= 3  # the script, Dagster's proxy server and its code server
        signal_state = [line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if line.startswith("Sig")]
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the script did not exit 30 s after SIGTERM; its signal state: {signal_state}; "
                                 f"family: {[(p.pid, p.status(), p.cmdline()[:3]) for p in psutil.Process(proc.pid).children(recursive=True)]}") from None
        assert time.monotonic() - sent < 5.0
        time.sleep(0.5)
        assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
