"""Settings of the label-correction pipeline and the IO manager of its index table."""

import posixpath
import re

import dagster as dg

from ..settings import LABELS_PARTITIONS_PER_RUN
from ..storage.tables import ParquetTables


class LabelCorrectionSettings(dg.ConfigurableResource):
    """Configuration of the label-correction assets; every field can be set from the
    environment as ``MEDIA_ASSETS_LABELS_<FIELD>``.

    Attributes:
        bucket: bucket holding batches, master table and targets (``training-batches``).
        batch_prefix: key prefix of the batches ("" = bucket root).
        batch_pattern: regex a batch key (after the prefix) must match in full; its first
            group is the batch number used for ordering (``batch_(\\d+)_0\\.pickle``).
        master_key: the master embedding table pickle (``rf_video_embeddings.pkl``).
        embedding_column: embedding column when the master table is a DataFrame (``None`` =
            ``embedding`` or the only non-id column).
        targets_key: the targets CSV (``targets.csv``).
        target_columns: CSV columns that are targets, in the batch's column order (empty =
            every column except ``video_id``).
        corrected_prefix: where corrected batches go, same file name (``corrected/``).
        index_key: where the ``label_tables`` IO manager stores ``video_embedding_index`` as
            Parquet (``.media_assets/video_embedding_index.parquet``; must end in ``.parquet``).
        tolerance: minimum cosine similarity of an approximate match (0.9999).
        max_unmatched_share: asset-check bound on the share of unmatched rows per batch (0.05).
        partitions_per_run: batches per run in sensor ranges (500); its variable,
            ``MEDIA_ASSETS_LABELS_PARTITIONS_PER_RUN``, also sets the backfill policy at load
            (:mod:`media_assets.settings`), so both always agree.
        transfer_concurrency: concurrent batch downloads/uploads inside a run (8).
        max_runs_per_tick: cap on run requests one sensor evaluation emits (25; polling).
        events_queue_url: SQS queue of S3 ``ObjectCreated`` notifications for the watched prefix
            (S3 -> SQS or EventBridge -> SQS); set, the sensor reads it instead of listing (event
            mode, see :mod:`media_assets.defs.object_sensor`); ``None`` = polling.
        max_batch_bytes / max_batch_rows: bounds of an untrusted batch pickle: its size in
            bytes (from HEAD, before the download) and, once loaded, its rows and the bytes its
            arrays declare (a pickle can declare an array far larger than itself). 1 GiB and
            1,000,000 rows (:mod:`media_assets.kernels.limits`); a batch over one fails alone,
            named with the bound, and is kept.
    """

    bucket: str = "training-batches"
    batch_prefix: str = ""
    batch_pattern: str = r"batch_(\d+)_0\.pickle"
    master_key: str = "rf_video_embeddings.pkl"
    embedding_column: str | None = None
    targets_key: str = "targets.csv"
    target_columns: list[str] = []
    corrected_prefix: str = "corrected/"
    index_key: str = ".media_assets/video_embedding_index.parquet"
    tolerance: float = 0.9999
    max_unmatched_share: float = 0.05
    partitions_per_run: int = LABELS_PARTITIONS_PER_RUN
    transfer_concurrency: int = 8
    max_runs_per_tick: int = 25
    events_queue_url: str | None = None
    max_batch_bytes: int = 1024**3
    max_batch_rows: int = 1_000_000

    def batch_number(self, key: str) -> int | None:
        """The batch number of ``key``, or ``None`` if ``key`` is not a batch."""
        if not key.startswith(self.batch_prefix):
            return None
        m = re.fullmatch(self.batch_pattern, key[len(self.batch_prefix):])
        if not m:
            return None
        return int(m.group(1)) if m.groups() and m.group(1) and m.group(1).isdigit() else 0

    def corrected_key(self, key: str) -> str:
        """``corrected/<file name>`` for batch ``key``."""
        return self.corrected_prefix + key.rsplit("/", 1)[-1]


@dg.io_manager(required_resource_keys={"object_store", "label_settings"},
               description="`video_embedding_index` as Parquet at `<bucket>/<index_key>` (Dagster's UPathIOManager: local folder or s3://).")
def label_tables_io_manager(init_context) -> ParquetTables:
    """:class:`~media_assets.storage.tables.ParquetTables` that stores ``video_embedding_index``
    at ``label_settings.index_key`` in the batch bucket of the bound ``object_store``.

    Raises:
        ValueError: ``index_key`` does not end in ``.parquet``.
    """
    settings = init_context.resources.label_settings
    folder, name = posixpath.split(settings.index_key)
    if not name.endswith(".parquet"):
        raise ValueError(f"index_key must name a .parquet object, got {settings.index_key!r}")
    return ParquetTables(base_path=init_context.resources.object_store.upath(settings.bucket, folder),
                         names={"video_embedding_index": name.removesuffix(".parquet")})
