"""The local Dagster instance: where ``DAGSTER_HOME`` is and what its ``dagster.yaml`` says.

``DAGSTER_YAML`` is the project's ``dagster.yaml`` (a test keeps the two equal): Dagster's
stock SQLite storage, the queued run coordinator with the pools, run monitoring and run retries
on. ``media-assets`` writes it into a fresh ``DAGSTER_HOME``; ``make`` copies the project file.
"""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = """\
# Local instance (copied into DAGSTER_HOME by `make`; `media-assets` writes the same file into a
# fresh DAGSTER_HOME): Dagster's stock SQLite storage under DAGSTER_HOME, the queued run
# coordinator with the project's pools, run monitoring and run retries on, telemetry off.
# Production (Postgres, ECS, Kubernetes) instances are described in docs/deployment.md.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 2          # 2 cores: ffmpeg and the models use both
  pools:
    default_limit: 2
run_monitoring:
  enabled: true
  start_timeout_seconds: 180        # a run stuck STARTING (its worker never came up) is failed
  poll_interval_seconds: 30
  # a run that ends without releasing its pool slots (its worker was killed mid-step) frees them
  # after 30 s; without this a killed run holds its ffmpeg/asr slot for ever and the queue stalls
  free_slots_after_run_end_seconds: 30
run_retries:
  enabled: true
  max_retries: 2
  # asset failures are retried by each asset's RetryPolicy; input errors (dg.Failure with
  # allow_retries=False) must not be re-run. Run retries are for runs whose worker died.
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Set ``DAGSTER_HOME`` (default ``./.dagster``, made absolute) and give it a
    ``dagster.yaml`` if it has none. Returns the folder."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").absolute()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return home


def storage_unreachable(exc: BaseException) -> str | None:
    """One line for an instance whose database cannot be reached, else ``None``.

    Walks ``exc``'s cause chain to the driver's ``OperationalError`` (psycopg2 via
    dagster-postgres, or SQLAlchemy's wrapper of it) and returns its first line, which names the
    host and port ("connection to server at "10.0.0.5", port 5432 failed: Connection refused")
    or the user ("password authentication failed for user "dagster""); libpq never puts the
    password in a message.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "OperationalError" and type(exc).__module__.split(".")[0] in ("psycopg2", "sqlalchemy"):
            text = str(getattr(exc, "orig", None) or exc).strip()
            return "cannot reach the Dagster instance's database: " + " ".join(text.split("\n")[0].split())
        exc = exc.__cause__ or exc.__context__
    return None
