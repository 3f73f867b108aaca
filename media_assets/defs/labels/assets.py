"""Label-correction assets: master embeddings + targets -> index -> corrected batches.

Batches are never overwritten: corrected copies go to ``corrected_prefix`` with the same file
name. Batches are untrusted pickles and are loaded with the allow-list unpickler.
"""

import concurrent.futures
import pickle
import time

import dagster as dg
import numpy as np
import pyarrow as pa

from ...kernels.labels import (
    BatchFormatError,
    TargetsTable,
    VideoEmbeddingIndex,
    master_table_arrays,
    parse_targets_csv,
    target_rows_for_master,
)
from ...kernels.safe_pickle import safe_loads
from ...resources.labels import LabelCorrectionSettings
from ...storage import ObjectNotFoundError, ObjectStore, ObjectStoreResource
from ...settings import LABELS_PARTITIONS_PER_RUN
from ...storage.tables import ALLOW_MISSING
from ..common import TRANSIENT_RETRY
from .correction import BatchResult, correct_batches, layout
from .partitions import batch_partitions

PARTITIONS_PER_RUN = LABELS_PARTITIONS_PER_RUN


# External inputs: no code here writes them. `new_batch_sensor` records a materialization of
# each per new ETag (data version = ETag): Dagster reads an external asset's current data
# version from its materializations, so the UI shows each version and `video_embedding_index`
# is fresh after its rebuild and stale until the run the sensor requests for a new master version
# (no automation condition as well: it would request a second run for the same version).
master_video_embeddings = dg.AssetSpec(
    "master_video_embeddings",
    description="Master embedding table `rf_video_embeddings.pkl` (video id -> (d_v,) float32). External; recorded per ETag (its data version) by `new_batch_sensor`.",
    kinds={"pickle"},
    group_name="labels",
)

label_targets = dg.AssetSpec(
    "label_targets",
    description="Targets table `targets.csv` (video_id + target columns). External; recorded per ETag (its data version) by `new_batch_sensor`.",
    kinds={"csv"},
    group_name="labels",
)

training_batches = dg.AssetSpec(
    "training_batches",
    description="Raw pickled training batches `batch_<i>_0.pickle` (external). One dynamic partition per key, added by `new_batch_sensor`.",
    partitions_def=batch_partitions,
    kinds={"pickle"},
    group_name="labels",
)


def load_master(store: ObjectStore, settings: LabelCorrectionSettings) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ids, matrix, etag)`` of the master table (restricted unpickler).

    Raises:
        dg.Failure: missing object, unsafe or malformed pickle.
    """
    try:
        info = store.head(settings.bucket, settings.master_key)
        table = safe_loads(store.get_bytes(settings.bucket, settings.master_key))
        ids, matrix = master_table_arrays(table, settings.embedding_column)
    except (ObjectNotFoundError, pickle.UnpicklingError, BatchFormatError, EOFError, ValueError) as err:
        raise dg.Failure(f"master table {settings.bucket}/{settings.master_key}: {err}", allow_retries=False) from err
    return ids, matrix, info.etag


MASTER_ETAG = b"master_etag"  # schema metadata of the index table: the master version it was built from


@dg.asset(
    deps=[master_video_embeddings],
    group_name="labels",
    retry_policy=TRANSIENT_RETRY,
    kinds={"numpy", "parquet"},
    io_manager_key="label_tables",
)
def video_embedding_index(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, label_settings: LabelCorrectionSettings) -> dg.Output:
    """The master table prepared for matching, built once per master-table version: one row
    per video, `video_id` (string) and `embedding` (`fixed_size_list<float32>[d]`), with the
    8-d principal projection `(d, 8) float32` of the exact nearest-neighbour prefilter and the
    master table's ETag in the schema metadata; row fingerprints for the exact lookup and the
    k-d tree are derived on load (`media_assets.kernels.labels.VideoEmbeddingIndex`). Stored by
    the `label_tables` IO manager as Parquet at `index_key`; `corrected_batches` takes it as an
    input."""
    store = object_store.get_store()
    ids, matrix, etag = load_master(store, label_settings)
    table = VideoEmbeddingIndex.build(ids, matrix).to_table()
    table = table.replace_schema_metadata({**table.schema.metadata, MASTER_ETAG: etag.encode()})
    return dg.Output(
        table,
        metadata={"n_videos": len(ids), "dim": int(matrix.shape[1]), "master_etag": etag,
                  "index_key": f"{label_settings.bucket}/{label_settings.index_key}"},
    )


def load_index(store: ObjectStore, settings: LabelCorrectionSettings, stored: pa.Table | None, master_etag: str,
               log) -> VideoEmbeddingIndex:
    """The stored index table if it was built from the master table version ``master_etag``
    (the run's, from :func:`input_versions`); otherwise (never materialized, or the master
    changed since) built here from the master table, with a warning: correctness never depends
    on the index being materialized first.

    Raises:
        dg.Failure: the master table is missing, unsafe or malformed (when it must be read).
    """
    if stored is not None and (stored.schema.metadata or {}).get(MASTER_ETAG) == master_etag.encode():
        return VideoEmbeddingIndex.from_table(stored)
    log.warning("video_embedding_index is missing or older than the master table; building it in this run")
    ids, matrix, _ = load_master(store, settings)
    return VideoEmbeddingIndex.build(ids, matrix)


def load_targets(store: ObjectStore, settings: LabelCorrectionSettings) -> TargetsTable:
    try:
        return parse_targets_csv(store.get_bytes(settings.bucket, settings.targets_key), settings.target_columns or None)
    except (ObjectNotFoundError, BatchFormatError) as err:
        raise dg.Failure(f"targets table {settings.bucket}/{settings.targets_key}: {err}", allow_retries=False) from err


def input_versions(store: ObjectStore, settings: LabelCorrectionSettings) -> dict[str, str]:
    """``{"master_etag", "targets_etag"}``: the versions of the master table and targets a
    correction is made from (recorded in every partition's metadata)."""
    try:
        return {"master_etag": store.head(settings.bucket, settings.master_key).etag,
                "targets_etag": store.head(settings.bucket, settings.targets_key).etag}
    except ObjectNotFoundError as err:
        raise dg.Failure(f"{err}: the master table and targets.csv are both needed", allow_retries=False) from err


def _etag(store: ObjectStore, bucket: str, key: str) -> str | None:
    try:
        return store.head(bucket, key).etag
    except ObjectNotFoundError:
        return None


def up_to_date(context: dg.AssetExecutionContext, store: ObjectStore, settings: LabelCorrectionSettings,
               keys: list[str], versions: dict[str, str]) -> dict[str, dict]:
    """Partitions of ``keys`` whose latest materialization was made from the current batch
    object, master table and targets (same ETags), each with that materialization's metadata:
    a resumed or retried range run skips them."""
    latest: dict[str, dict] = {}
    for i in range(0, len(keys), 1000):  # bounded IN lists (SQLite caps bound parameters)
        cursor = None
        while True:
            result = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=list(keys[i : i + 1000])), limit=10_000, cursor=cursor
            )
            for rec in result.records:  # newest first
                latest.setdefault(rec.partition_key, rec.asset_materialization.metadata)
            if not result.has_more:
                break
            cursor = result.cursor
    candidates = [k for k, meta in latest.items()
                  if all(k2 in meta and meta[k2].value == v for k2, v in versions.items()) and {"batch_etag", "same_layout"} <= set(meta)]
    with concurrent.futures.ThreadPoolExecutor(settings.transfer_concurrency) as pool:
        current = dict(zip(candidates, pool.map(lambda k: _etag(store, settings.bucket, k), candidates)))
    return {k: latest[k] for k in candidates if current[k] == latest[k]["batch_etag"].value}


RUN_TOTALS = ("rows", "exact_matches", "approximate_matches", "unmatched", "targets_changed")


def batch_verification(metadata: dict, max_unmatched_share: float) -> tuple[bool, dg.AssetCheckSeverity, str | None, dict]:
    """``(passed, severity, description, metadata)`` of the `batch_verified` check for one
    batch, from its correction metadata (``same_layout`` bool, ``rows``, ``unmatched`` int).

    A corrected batch whose keys, row count, shapes or dtypes differ from the original's fails
    at ERROR (a correction must change target values only); one whose share of rows with no
    master match is over ``max_unmatched_share`` fails at WARN (the batch is written; its
    unmatched rows keep their targets and are listed in the materialization)."""
    share = round(metadata["unmatched"] / max(metadata["rows"], 1), 4)
    meta = {"same_layout": bool(metadata["same_layout"]), "unmatched_share": share, "bound": max_unmatched_share}
    if not metadata["same_layout"]:
        return False, dg.AssetCheckSeverity.ERROR, "the corrected batch's keys, shapes or dtypes differ from the original's", meta
    if share > max_unmatched_share:
        return False, dg.AssetCheckSeverity.WARN, f"{share:.1%} of rows unmatched, over the {max_unmatched_share:.1%} bound", meta
    return True, dg.AssetCheckSeverity.WARN, None, meta


def _log_verification(context: dg.AssetExecutionContext, key: str, verification: tuple) -> None:
    """Log one batch's :func:`batch_verification` as its `batch_verified` evaluation."""
    passed, severity, description, meta = verification
    context.log_event(dg.AssetCheckEvaluation(asset_key=context.asset_key, check_name="batch_verified", partition=key,
                                              passed=passed, severity=severity, description=description, metadata=meta))


def _record_result(context: dg.AssetExecutionContext, settings: LabelCorrectionSettings, result: BatchResult,
                   failures: dict[str, str], versions: dict[str, str], totals: dict[str, int]) -> None:
    """Record one batch's materialization and its `batch_verified` evaluation (pass or fail);
    add its row counts to the run's ``totals``."""
    key = result.key
    if result.error is not None:
        failures[key] = result.error
        context.log.error(result.error)
        return
    totals["batches_corrected"] += 1
    for name in RUN_TOTALS:
        totals[name] += result.metadata[name]
    verification = batch_verification(result.metadata, settings.max_unmatched_share)
    meta = {**result.metadata, **versions, "unmatched_share": verification[3]["unmatched_share"]}
    context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=meta))
    # one check evaluation per batch, pass or fail, so the UI shows each partition's check
    # status; the two properties are one check: a check evaluation is one event-log write
    # (16.9 ms a batch on SQLite at 2000 partitions, benchmarks/dagster_events.py), and a
    # 16,889-batch backfill pays it per batch
    _log_verification(context, key, verification)


@dg.asset(
    deps=[training_batches, label_targets],
    # loaded by the label_tables IO manager; None when never materialized (then built from the master)
    ins={"video_embedding_index": dg.AssetIn(metadata={ALLOW_MISSING: True})},
    partitions_def=batch_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(PARTITIONS_PER_RUN),
    group_name="labels",
    kinds={"numpy", "pickle"},
    pool="label_correction",
    retry_policy=TRANSIENT_RETRY,
    output_required=False,
)
def corrected_batches(context: dg.AssetExecutionContext, video_embedding_index: pa.Table | None, object_store: ObjectStoreResource,
                      label_settings: LabelCorrectionSettings):
    """Each batch with its targets replaced from `targets.csv`, at `corrected/<file name>`.

    Rows are matched to master videos by exact float32 bytes, else by nearest cosine
    similarity >= `tolerance` (0.9999); unmatched rows keep their targets and are listed in
    the partition's metadata (`unmatched_rows`). One run handles a range of partitions
    (`BackfillPolicy.multi_run(partitions_per_run)`): the index and targets load once per run,
    batches are corrected `transfer_concurrency` at a time (`correction.py`), and every
    partition gets its own materialization (with its counts) and `batch_verified` evaluation,
    pass or fail, logged with `context.log_event` as each batch finishes. A batch that fails (0 rows, NaN values,
    malformed or unsafe pickle) fails only its own partition: the others are corrected and
    recorded, then the run fails naming each failed batch and field. The run's totals (rows
    exact/approximate/unmatched, batches corrected/skipped/failed, batches/s) are one asset
    observation per run. Batches already corrected
    from the same batch, master and targets versions (ETags in their metadata) are not
    corrected again, so a retried or resumed range run does only what is left; each is
    materialized again with its recorded metadata and `up_to_date: true`, so a backfill over
    finished batches reads succeeded.
    """
    settings, store = label_settings, object_store.get_store()
    started = time.perf_counter()
    versions = input_versions(store, settings)
    skipped = up_to_date(context, store, settings, context.partition_keys, versions)
    keys = [k for k in context.partition_keys if k not in skipped]
    if skipped:
        context.log.info(f"{len(skipped)} of {len(context.partition_keys)} batches are already corrected from this batch, "
                         "master table and targets version; not corrected again")
    # each is materialized again with its recorded counts and ETags (up_to_date: true), so a
    # backfill over finished batches reads succeeded, not failed for want of a materialization
    for key, meta in skipped.items():
        context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata={**meta, "up_to_date": True}))
        _log_verification(context, key, batch_verification({k: meta[k].value for k in ("same_layout", "rows", "unmatched")},
                                                           settings.max_unmatched_share))
    index = load_index(store, settings, video_embedding_index, versions["master_etag"], context.log)
    targets = load_targets(store, settings)
    master_to_target = target_rows_for_master(index, targets)
    context.log.info(f"index: {len(index.ids)} videos x {index.dim}; targets: {len(targets.ids)} rows {targets.columns}; {len(keys)} batches")

    failures: dict[str, str] = {}
    totals = dict.fromkeys(("batches_corrected", *RUN_TOTALS), 0)
    for result in correct_batches(keys, store, settings, index, targets, master_to_target):
        _record_result(context, settings, result, failures, versions, totals)
    elapsed = time.perf_counter() - started
    done = totals["batches_corrected"]
    context.log.info(f"corrected {done} of {len(keys)} batches in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.1f} batches/s)")
    # the run's totals, one observation per run (numeric: plottable over runs in the UI)
    context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata={
        **{name: dg.MetadataValue.int(n) for name, n in totals.items()},
        "batches_skipped": dg.MetadataValue.int(len(skipped)), "batches_failed": dg.MetadataValue.int(len(failures)),
        "batches_per_s": dg.MetadataValue.float(round(done / max(elapsed, 1e-9), 2)), "run_s": dg.MetadataValue.float(round(elapsed, 2)),
    }))
    if failures:
        listing = "\n".join(f"- {k}: {v}" for k, v in sorted(failures.items())[:50])
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} batches failed (the others were corrected):\n{listing}",
            metadata={"failed_partitions": sorted(failures)[:500]},
            allow_retries=False,
        )
    # results are logged per partition above; the op itself yields no output
    yield from ()


@dg.asset_check(asset=corrected_batches, partitions_def=batch_partitions, name="batch_verified",
                description="The corrected batch has the original's keys, row count, shapes and dtypes (ERROR when not), "
                "and at most `max_unmatched_share` of its rows found no master video (WARN when over). Evaluated and "
                "recorded for every batch, pass or fail, as `corrected_batches` writes it; executing the check "
                "re-verifies one partition from storage.")
def batch_verified(context: dg.AssetCheckExecutionContext, object_store: ObjectStoreResource, label_settings: LabelCorrectionSettings) -> dg.AssetCheckResult:
    store, key = object_store.get_store(), context.partition_key
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("corrected_batches"), asset_partitions=[key]), limit=1
    ).records
    if not records:
        return dg.AssetCheckResult(passed=False, description="partition not materialized", severity=dg.AssetCheckSeverity.ERROR)
    recorded = records[0].asset_materialization.metadata
    original = safe_loads(store.get_bytes(label_settings.bucket, key))
    corrected = safe_loads(store.get_bytes(label_settings.bucket, label_settings.corrected_key(key)))
    passed, severity, description, meta = batch_verification(
        {"same_layout": layout(original) == layout(corrected), "rows": recorded["rows"].value, "unmatched": recorded["unmatched"].value},
        label_settings.max_unmatched_share)
    return dg.AssetCheckResult(passed=passed, severity=severity, description=description, metadata=meta)
