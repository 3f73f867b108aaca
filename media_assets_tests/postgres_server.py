"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a fresh cluster in a
temporary folder, 127.0.0.1 on a free port, stopped by its own postmaster pid.

``initdb`` refuses to run as root, and CI runs as root: then every server command runs as the
package's ``postgres`` user (``runuser -u postgres --``), which owns the temporary folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "media-assets-test"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])) or [shutil.which(name)]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install postgresql (make test does)")
    return found[-1]


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(db_name: str = "dagster") -> Iterator[dict[str, str]]:
    """Start a cluster with database ``db_name``; yields the ``DAGSTER_PG_*`` variables that
    ``deploy/dagster.postgres.yaml`` reads. Password authentication (scram-sha-256) is on."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    (root / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(root / "pw", "postgres")
    subprocess.run(_as_server_user([_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256", f"--pwfile={root / 'pw'}",
                                    "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    port = _free_port()
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(_as_server_user([_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
                                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]),
                              stdout=log, stderr=subprocess.STDOUT)
    env = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USERNAME": "postgres",
           "DAGSTER_PG_PASSWORD": PASSWORD, "DAGSTER_PG_DB": db_name}
    try:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=PASSWORD, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db_name}"')
        conn.close()
        yield env
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():  # fast shutdown of the postmaster by its own pid
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
