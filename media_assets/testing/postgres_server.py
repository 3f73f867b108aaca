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


class PostgresServer:
    """One cluster in a temporary folder: :meth:`start`, :meth:`restart` (a fast shutdown and a
    new postmaster on the same port and data, as ``pg_ctl restart -m fast``), :meth:`stop`."""

    def __init__(self, db_name: str = "dagster"):
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.port = _free_port()
        self.db_name = db_name
        self.env = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": "postgres",
                    "DAGSTER_PG_PASSWORD": PASSWORD, "DAGSTER_PG_DB": db_name}
        self.server: subprocess.Popen | None = None

    def init(self) -> None:
        self.sock.mkdir()
        (self.root / "pw").write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            for path in (self.root, self.sock, self.root / "pw"):
                shutil.chown(path, "postgres")
        subprocess.run(_as_server_user([_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
                                        f"--pwfile={self.root / 'pw'}", "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)

    def start(self) -> None:
        with open(self.root / "server.log", "ab") as log:
            self.server = subprocess.Popen(_as_server_user([_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
                                                            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]),
                                           stdout=log, stderr=subprocess.STDOUT)
        self.connect().close()

    def connect(self, dbname: str = "postgres", timeout_s: float = 30):
        import psycopg2

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", password=PASSWORD, dbname=dbname)
            except psycopg2.OperationalError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(self.root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # fast shutdown of the postmaster by its own pid
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        if self.server is not None:
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_postgres(db_name: str = "dagster") -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer` with database ``db_name``; removed afterwards."""
    pg = PostgresServer(db_name)
    try:
        pg.init()
        pg.start()
        conn = pg.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db_name}"')
        conn.close()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)


@contextmanager
def postgres_server(db_name: str = "dagster") -> Iterator[dict[str, str]]:
    """Start a cluster with database ``db_name``; yields the ``DAGSTER_PG_*`` variables that
    ``deploy/dagster.postgres.yaml`` reads. Password authentication (scram-sha-256) is on."""
    with running_postgres(db_name) as pg:
        yield pg.env
