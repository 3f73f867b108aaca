"""``OutputSet`` (commit last, roll back, replace exactly) and the removal of temporary files
that killed writers left in the local store."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest

from media_assets.defs.output_set import OutputSet
from media_assets.storage import LocalObjectStore, listed_children

log = logging.getLogger("test")


def _keys(store, prefix=""):
    return sorted(o.key for o in store.list_objects("out", prefix))


def _write(tmp_path, name, data=b"x"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_commit_replaces_previous_set_and_leftovers(local_store, tmp_path):
    for k in ("v/1.jpg", "v/2.jpg", "v/9.jpg", "v/w/1.jpg"):
        local_store.put_bytes(b"old", "out", k)
    leftovers = listed_children(local_store, "out", "v", ".jpg", numbered=True)
    assert leftovers == ["v/1.jpg", "v/2.jpg", "v/9.jpg"]  # never another video's deeper folder
    with OutputSet(local_store, "out", log, previous=["v/1.jpg", "v/2.jpg"], leftovers=leftovers) as out:
        out.upload(_write(tmp_path, "a"), "v/2.jpg")
        out.upload(_write(tmp_path, "b"), "v/3.jpg")
        out.commit(lambda: local_store.put_bytes(b"{}", "out", "manifest.json"))
    assert _keys(local_store) == ["manifest.json", "v/2.jpg", "v/3.jpg", "v/w/1.jpg"]


def test_failure_before_commit_restores_the_previous_set(local_store, tmp_path):
    local_store.put_bytes(b"old", "out", "v/1.jpg")
    with pytest.raises(RuntimeError, match="encoder crashed"):
        with OutputSet(local_store, "out", log, previous=["v/1.jpg"]) as out:
            out.upload(_write(tmp_path, "a"), "v/1.jpg")
            out.upload(_write(tmp_path, "b"), "v/5.jpg")
            out.wait()
            raise RuntimeError("encoder crashed")
    assert _keys(local_store) == ["v/1.jpg"]


def test_rollback_waits_for_transfers_in_flight(local_store, tmp_path):
    """An upload still running when the block fails must not land after the cleanup."""
    gate = threading.Event()

    class SlowStore(LocalObjectStore):
        def upload(self, src, bucket, key, content_type=None):
            gate.wait(5)
            time.sleep(0.2)
            return super().upload(src, bucket, key, content_type)

    store = SlowStore(local_store.root)
    with pytest.raises(ValueError):
        with OutputSet(store, "out", log, concurrency=4) as out:
            for i in range(4):
                out.upload(_write(tmp_path, f"f{i}"), f"v/{i}.jpg")
            gate.set()
            raise ValueError("bad frame")
    time.sleep(0.5)
    assert _keys(store) == []


def test_temp_files_of_killed_writers_are_removed(local_store):
    """A SIGKILLed writer leaves ``.tmp-pid<pid>-*`` beside the object it was writing; the
    next pass removes those whose process is gone and keeps those of live writers."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    folder = local_store.root / "corrected" / "batches"
    folder.mkdir(parents=True)
    orphan = folder / f".tmp-pid{dead.stdout.strip()}-abc"
    orphan.write_bytes(b"half a pickle")
    live = folder / f".tmp-pid{__import__('os').getpid()}-def"
    live.write_bytes(b"being written")
    assert list(local_store.list_objects("corrected")) == []  # never visible as objects
    assert local_store.remove_orphaned_temp_files() == [orphan]
    assert not orphan.exists() and live.exists()
