"""Correct many batches in one run: download, validate, match, upload, with bounded
concurrency.

No Dagster here: :func:`correct_batches` yields one :class:`BatchResult` per batch key, in
completion order, and the asset turns them into per-partition events. Threads, not
processes: a fork-based process pool was tried and timed with `benchmarks/label_correction.py`
(16,889 batches; it had a `--workers` option while the pool existed) and gained nothing on 2
cores (49.0 s with threads, 50.7 s with 2 worker processes), so pool and option were removed.
"""

import concurrent.futures
import pickle
import queue
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...kernels.labels import BatchFormatError, TargetsTable, VideoEmbeddingIndex, check_batch_size, correct_batch
from ...kernels.limits import LimitExceededError, check_size
from ...kernels.safe_pickle import safe_loads
from ...resources.labels import LabelCorrectionSettings
from ...storage import ObjectNotFoundError, ObjectStore


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one batch: ``metadata`` (see :func:`correct_one`) or ``error`` (a message
    naming the batch: malformed, unsafe or missing pickle)."""

    key: str
    metadata: dict | None = None
    error: str | None = None


def layout(batch: dict) -> dict:
    """``{key: (shape, dtype)}`` for arrays, ``{key: type name}`` otherwise."""
    return {str(k): (v.shape, str(v.dtype)) if isinstance(v, np.ndarray) else type(v).__name__ for k, v in batch.items()}


def correct_one(store: ObjectStore, settings: LabelCorrectionSettings, key: str, index: VideoEmbeddingIndex,
                targets: TargetsTable, master_to_target: np.ndarray) -> dict:
    """Download, validate, correct and upload one batch (to ``settings.corrected_key(key)``).

    Returns metadata: ``corrected_key``, ``batch_etag`` (the version corrected), ``rows``, ``exact_matches``, ``approximate_matches``,
    ``unmatched``, ``matched_without_targets``, ``targets_changed``, ``unmatched_rows`` (the
    first 200 row indices) and ``same_layout`` (keys, shapes and dtypes unchanged).

    Raises:
        BatchFormatError: not a loadable pickle, refused by the restricted unpickler, over
            ``max_batch_bytes`` (the object, or the arrays it declares) or ``max_batch_rows``,
            or breaks the batch contract.
        ObjectNotFoundError: the batch object is gone.
    """
    info = store.head(settings.bucket, key)
    etag = info.etag
    try:
        check_size(key, info.size, settings.max_batch_bytes, "MEDIA_ASSETS_LABELS_MAX_BATCH_BYTES")
    except LimitExceededError as err:
        raise BatchFormatError(f"{err}; not downloaded, the object is kept") from err
    data = store.get_bytes(settings.bucket, key)
    try:
        batch = safe_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, MemoryError) as err:
        raise BatchFormatError(f"{key}: not a loadable batch pickle ({err})") from err
    check_batch_size(batch, key, max_bytes=settings.max_batch_bytes, max_rows=settings.max_batch_rows)
    corrected, report = correct_batch(batch, index, targets, master_to_target, tolerance=settings.tolerance, name=key)
    out_key = settings.corrected_key(key)
    store.put_bytes(pickle.dumps(corrected, protocol=pickle.HIGHEST_PROTOCOL), settings.bucket, out_key)
    return {
        "corrected_key": out_key,
        "batch_etag": etag,
        "rows": report.rows,
        "exact_matches": report.exact,
        "approximate_matches": report.approximate,
        "unmatched": report.unmatched,
        "matched_without_targets": report.no_targets,
        "targets_changed": report.targets_changed,
        "unmatched_rows": np.flatnonzero(report.kind == 0).tolist()[:200],
        "same_layout": layout(corrected) == layout(batch),
    }


def _result(store, settings, key, index, targets, master_to_target) -> BatchResult:
    try:
        return BatchResult(key, metadata=correct_one(store, settings, key, index, targets, master_to_target))
    except (BatchFormatError, ObjectNotFoundError) as err:
        return BatchResult(key, error=str(err))


def correct_batches(keys: list[str], store: ObjectStore, settings: LabelCorrectionSettings, index: VideoEmbeddingIndex,
                    targets: TargetsTable, master_to_target: np.ndarray) -> Iterator[BatchResult]:
    """Correct every batch in ``keys`` with ``settings.transfer_concurrency`` threads; yields
    results in completion order. At most two batches per thread are in flight, so memory stays
    flat for any number of keys.

    Raises:
        Whatever unexpected error a batch raised (I/O after retries, a bug); batch-level
        input errors are results with ``error`` set, not exceptions.
    """
    pending = iter(keys)
    finished: queue.SimpleQueue = queue.SimpleQueue()  # futures, as they finish (O(1) per batch)
    with concurrent.futures.ThreadPoolExecutor(settings.transfer_concurrency) as pool:

        def submit_next() -> int:
            key = next(pending, None)
            if key is None:
                return 0
            pool.submit(_result, store, settings, key, index, targets, master_to_target).add_done_callback(finished.put)
            return 1

        in_flight = sum(submit_next() for _ in range(2 * settings.transfer_concurrency))
        while in_flight:
            future = finished.get()
            in_flight += submit_next() - 1
            yield future.result()
