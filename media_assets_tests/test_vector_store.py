"""The key-frame vector table (`media_assets.storage.vectors`, LanceDB) under concurrent writers,
a writer killed mid-write, and bad input."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from media_assets.storage.vectors import KeyFrameVectors, rows


def _rows(video: str, n: int, seed: int, dim: int = 16):
    v = np.random.default_rng(seed).normal(size=(n, dim))
    return rows(video, list(range(n)), [float(i) for i in range(n)], [f"file:///{video}/{i}.jpg" for i in range(n)], [None] * n, v)


def _writer(uri: str, video: str, rounds: int) -> None:
    store = KeyFrameVectors(uri)
    for r in range(rounds):
        store.replace_video(video, _rows(video, 5 + r % 3, r))


def _flipper(uri: str) -> None:
    """Replaces video `a` for ever, alternating 3 and 7 rows (killed by the test)."""
    store = KeyFrameVectors(uri)
    r = 0
    while True:
        store.replace_video("a", _rows("a", 3 if r % 2 else 7, r))
        r += 1


def test_concurrent_writers_of_different_videos_lose_nothing(tmp_path):
    """Four processes (as four runs' `key_frame_vectors` steps) create the table at once and
    replace their own video 8 times each: every video ends with exactly its last rows."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), f"video{i}", 8)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = KeyFrameVectors(str(tmp_path))
    assert [store.count(f"video{i}") for i in range(4)] == [6, 6, 6, 6] and store.count() == 24 and store.videos() == 4


def test_a_writer_killed_mid_replace_leaves_the_old_rows_or_the_new(tmp_path):
    """SIGKILL of a process that keeps replacing one video's rows (7, then 3, then 7 ...), at
    three moments: each time the table holds one whole set, never a mix or nothing, and the
    next write succeeds."""
    store = KeyFrameVectors(str(tmp_path))
    store.replace_video("b", _rows("b", 4, 99))
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        proc = ctx.Process(target=_flipper, args=(str(tmp_path),))
        proc.start()
        deadline = time.monotonic() + 60
        while store.count("a") == 0 and time.monotonic() < deadline:  # its first write landed
            time.sleep(0.05)
        time.sleep(0.13 + 0.29 * attempt)  # then somewhere in the stream of writes
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        reader = KeyFrameVectors(str(tmp_path))
        assert reader.count("a") in (3, 7), reader.count("a")
        assert reader.count("b") == 4
    store.replace_video("a", _rows("a", 2, 0))
    assert KeyFrameVectors(str(tmp_path)).count("a") == 2


def test_bad_input_is_refused_with_the_reason(tmp_path):
    store = KeyFrameVectors(str(tmp_path))
    store.replace_video("a", _rows("a", 3, 0, dim=16))
    with pytest.raises(ValueError, match="16-d ones"):
        store.replace_video("b", _rows("b", 3, 0, dim=8))
    with pytest.raises(ValueError, match="other videos"):
        store.replace_video("a", _rows("b", 3, 0))
    with pytest.raises(ValueError, match="same key frames"):
        rows("a", [0, 1], [0.0], ["u"], [None], np.zeros((2, 4)))
    assert store.nearest(np.zeros(16), k=1, exclude_video="a") == []
    assert KeyFrameVectors(str(tmp_path / "empty")).count() == 0
