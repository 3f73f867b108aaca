"""Scratch folders for the work of one asset, and the removal of what killed processes left.

Every folder lives under ``<temp dir>/media_assets-scratch/`` and carries the pid of the process
that made it (``<name>-pid<pid>-<random>``). A run that exits cleanly removes its own; a run
that is SIGKILLed cannot, so :func:`remove_orphaned` removes the folders whose process no
longer exists, and :func:`remove_dead_sockets` the Unix sockets that killed Dagster gRPC
servers left in the temp dir. Both run when a run makes its first scratch folder
(:func:`scratch_dir`) and in every ``media-assets process`` pass. No Dagster here.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

import psutil

_PID = re.compile(r"-pid(\d+)-")
SOCKET_MIN_AGE_S = 5.0  # a socket younger than this is never taken (see remove_dead_sockets)
_cleaned = False  # this process has removed what killed processes left (once is enough)


def scratch_root() -> Path:
    return Path(tempfile.gettempdir()) / "media_assets-scratch"


def scratch_dir(name: str) -> tempfile.TemporaryDirectory:
    """A temporary folder named after ``name`` and this process, removed when the ``with``
    block ends. The first one a process makes also removes what killed processes left
    (:func:`remove_orphaned`, :func:`remove_dead_sockets`): each run starts clean."""
    global _cleaned
    if not _cleaned:
        _cleaned = True
        remove_orphaned()
        remove_dead_sockets()
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{name}-pid{os.getpid()}-", dir=root)


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie. A SIGKILLed process stays in the
    process table as a zombie until its parent (or, once that is gone too, init) collects its
    exit status; it can no longer touch its files, so it counts as dead here."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def is_orphaned(name: str) -> bool:
    """True when ``name`` carries a pid (``-pid<pid>-``) of a process that no longer exists
    or is a zombie (killed, not yet reaped)."""
    m = _PID.search(name)
    return bool(m) and not _alive(int(m.group(1)))


def remove_orphaned() -> list[Path]:
    """Remove scratch folders whose process is gone; returns them. Folders of live processes
    (and names without a pid) are left alone."""
    root = scratch_root()
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if is_orphaned(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_dead_sockets() -> list[Path]:
    """Remove the Unix sockets that killed Dagster gRPC servers (the code server a daemon or
    a pass starts) left in the temp dir; returns them.

    Dagster names them like temporary files (``<temp dir>/tmp*``, from
    :func:`tempfile.NamedTemporaryFile`) and unlinks them when the server stops; SIGKILL leaves
    them. A socket is taken only if it is owned by this user and no process has it bound
    (``psutil.net_connections("unix")``, i.e. ``/proc/net/unix`` on Linux): a server's socket is
    bound from its ``bind()`` on, before it listens, so a live one is never removed. Sockets
    made in the last ``SOCKET_MIN_AGE_S`` seconds (by modification time) are left for a later
    call: Linux creates the file inside ``bind()`` a moment before the kernel lists its address.
    """
    candidates = []
    newest = time.time() - SOCKET_MIN_AGE_S
    for path in Path(tempfile.gettempdir()).glob("tmp*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid() and info.st_mtime < newest:
            candidates.append(path)
    if not candidates:
        return []
    bound = {c.laddr for c in psutil.net_connections("unix") if c.laddr}
    removed = []
    for path in candidates:
        if str(path) not in bound:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
