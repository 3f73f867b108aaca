"""The local Dagster instance: where ``DAGSTER_HOME`` is and what its ``dagster.yaml`` says.

``DAGSTER_YAML`` is the package's ``media_assets/config/dagster.yaml`` (the one copy): Dagster's
stock SQLite storage, the queued run coordinator with the pools, run monitoring and run retries
on. ``media-assets`` writes it into a fresh ``DAGSTER_HOME``; ``make`` copies the same file.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

CONFIG = importlib.resources.files("media_assets.config")
DAGSTER_YAML = CONFIG.joinpath("dagster.yaml").read_text()  # the local instance (media_assets/config/dagster.yaml)
WORKSPACE_YAML = CONFIG.joinpath("workspace.yaml").read_text()  # the package's code location


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
