"""The commit pattern of every asset that writes objects itself: write the objects, commit by
writing one small object last (a manifest, or the asset's table), roll back on failure,
delete stale objects after the commit.

A partition's outputs are therefore either the previous committed set or the new one: a
failure before the commit removes what this attempt wrote (objects of the previous commit
that it rewrote under the same key stay), and after the commit every object of the previous
set -- or left in the output folder by a killed run -- that the new set does not contain is
removed, so a re-upload replaces the derived set exactly.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

from ..storage import ObjectInfo, ObjectStore


class OutputSet:
    """Objects written to one bucket for one asset partition, committed together.

    Args:
        store: the object store.
        bucket: where the objects go.
        log: a logger (``context.log``) for cleanup warnings.
        previous: keys of the last committed set (from its manifest); they are kept on rollback
            and removed after a commit that does not rewrite them.
        leftovers: further keys to remove after the commit unless rewritten, e.g. what a listing
            of the output folder finds from a killed run that never committed.
        concurrency: parallel transfers (threads).

    Use as a context manager; call :meth:`commit` once, after the last write. Leaving the block
    without a commit (an exception, a ``dg.Failure``) rolls back.
    """

    def __init__(self, store: ObjectStore, bucket: str, log, *, previous: Iterable[str] = (), leftovers: Iterable[str] = (),
                 concurrency: int = 8):
        self.store, self.bucket, self.log = store, bucket, log
        self.previous = set(previous)
        self.leftovers = set(leftovers)
        self.written: list[str] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, concurrency))
        self._futures: list[concurrent.futures.Future] = []
        self.committed = False
        self.abandoned = False

    def upload(self, path: Path, key: str, content_type: str | None = None) -> concurrent.futures.Future[ObjectInfo]:
        """Upload ``path`` to ``key`` in a worker thread; the future gives the stored object's info."""
        return self._submit(key, self.store.upload, path, self.bucket, key, content_type)

    def copy(self, src_bucket: str, src_key: str, key: str) -> concurrent.futures.Future:
        """Server-side copy of ``src_bucket/src_key`` to ``key``, in a worker thread."""
        return self._submit(key, self.store.copy, src_bucket, src_key, self.bucket, key)

    def _submit(self, key: str, fn, *args) -> concurrent.futures.Future:
        if self.committed:
            raise RuntimeError("output set already committed")
        self.written.append(key)
        future = self._pool.submit(fn, *args)
        self._futures.append(future)
        return future

    def wait(self) -> list:
        """Wait for every transfer so far; returns their results in submission order.

        Raises:
            The first transfer's exception (the others are still awaited by the rollback).
        """
        return [f.result() for f in self._futures]

    def commit(self, write_commit_object: Callable[[], object]) -> None:
        """Wait for every transfer, then call ``write_commit_object`` (which writes the manifest
        or table that makes the set visible as done)."""
        self.wait()
        write_commit_object()
        self.committed = True

    def committed_elsewhere(self) -> None:
        """Mark the set committed when the commit object was written by someone else after
        :meth:`wait` -- an IO manager storing the asset's output table -- so that leaving the
        block removes the stale objects instead of rolling back."""
        self.committed = True

    def abandon(self) -> None:
        """Leave every object as it is when the block is left: for a generator closed at its
        ``yield`` while Dagster's IO manager owned the commit (that IO manager rolled back on the
        spot if its write failed; see :class:`~media_assets.resources.keyframes.KeyframeTables`).
        Such a close comes from garbage collection, possibly during a later attempt that rewrote
        the same keys, so removing anything then could delete that attempt's committed objects."""
        self.abandoned = True

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True)  # no transfer may land after the cleanup below
        if self.abandoned:
            return
        written = set(self.written)
        if self.committed:
            self._delete(sorted((self.previous | self.leftovers) - written))
        else:
            self._delete([k for k in self.written if k not in self.previous])

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.store.delete(self.bucket, key)
            except Exception as err:  # noqa: BLE001 - cleanup must not mask the original error
                self.log.warning(f"could not remove {self.bucket}/{key}: {err}")


class OutputSetUploads:
    """Base of a class that writes one asset's objects through ``self.out`` (an
    :class:`OutputSet`) and is used as a context manager: its block is the set's block, so
    leaving it without the set's commit rolls back (:class:`~media_assets.defs.video.clips.ClipUploads`,
    :class:`~media_assets.defs.video.labeling.LabelingUploads`)."""

    out: OutputSet

    def __enter__(self) -> Self:
        self.out.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.out.__exit__(*exc)
