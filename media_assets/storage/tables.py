"""Parquet tables through Dagster's IO manager machinery: :class:`ParquetTables`, a
``dagster.UPathIOManager`` (universal_pathlib: a local folder or ``s3://`` through s3fs).

An asset returns a ``pyarrow.Table`` (in a ``dg.Output`` with its metadata); the IO manager
writes it as one zstd-compressed Parquet file per partition at
``<base path>/<table name>/<partition key>.parquet`` and loads it for downstream assets that
take the asset as an input. ``<table name>`` is the IO manager's ``names`` entry for the asset
(so a documented or configured location can differ from the asset key), else the asset key's
path. An input whose metadata has ``media_assets/allow_missing: True`` receives ``None`` when
the table was never written (the asset then builds what it needs itself). Writes are
all-or-nothing for a reader: a local file is written the way the local object store writes
(:func:`~media_assets.storage.object_store.write_atomically`: a temporary file beside it,
renamed into place; the next ``media-assets process`` removes a killed writer's leftovers); an
S3 object appears whole when its PUT completes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from .object_store import BucketNotFoundError, write_atomically

ALLOW_MISSING = "media_assets/allow_missing"


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as one zstd-compressed Parquet file (the one encoding of every table here)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_parquet_bytes(data: bytes) -> pa.Table:
    """The table of a Parquet file held in memory."""
    return pq.read_table(io.BytesIO(data))


class MissingTableError(FileNotFoundError):
    """An input's table was never written (the upstream partition was not materialized)."""


class ParquetTables(dg.UPathIOManager):
    """``pyarrow.Table`` outputs as Parquet under ``base_path`` (see the module docstring).

    Raises (from ``handle_output``): ``TypeError`` when an output is not a ``pyarrow.Table``,
    :class:`~media_assets.storage.BucketNotFoundError` when the S3 bucket does not exist;
    (from ``load_input``): :class:`MissingTableError` naming the path, asset and partition
    when the table is not there.
    """

    extension = ".parquet"

    def __init__(self, base_path: UPath, names: Mapping[str, str] | None = None):
        super().__init__(base_path=base_path)
        self._names = dict(names or {})

    def get_asset_relative_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        name = self._names.get(context.asset_key.to_user_string())
        return UPath(name) if name else super().get_asset_relative_path(context)

    def load_input(self, context: dg.InputContext):
        try:
            return super().load_input(context)
        except MissingTableError:
            if (context.definition_metadata or {}).get(ALLOW_MISSING):
                context.log.warning(f"{context.asset_key.to_user_string()} has no stored table yet; the asset goes on without it")
                return None
            raise

    def make_directory(self, path: UPath) -> None:
        # S3 has no directories, and s3fs' mkdir would create a missing bucket: a missing
        # bucket must stay a clear error, never be created by a write
        if _is_local(path):
            path.mkdir(parents=True, exist_ok=True)

    def dump_to_path(self, context: dg.OutputContext, obj: pa.Table, path: UPath) -> None:
        if not isinstance(obj, pa.Table):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a pyarrow.Table output, got {type(obj).__name__}")
        data = parquet_bytes(obj)
        if not _is_local(path):
            try:
                path.write_bytes(data)  # one PUT: the object appears whole or not at all
            except FileNotFoundError as err:  # s3fs' NoSuchBucket
                raise BucketNotFoundError(path.path.split("/", 1)[0]) from err
            return
        write_atomically(Path(path.path), lambda tmp: tmp.write_bytes(data))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pa.Table:
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            partition = context.asset_partition_keys[0] if context.has_asset_partitions else None
            raise MissingTableError(
                f"no table at {path}: materialize {context.asset_key.to_user_string()}"
                + (f" for partition {partition}" if partition else "") + " first"
            ) from err
        return read_parquet_bytes(data)

    def get_metadata(self, context: dg.OutputContext, obj: pa.Table) -> dict:
        return {"table_rows": dg.MetadataValue.int(obj.num_rows), "table_columns": dg.MetadataValue.int(obj.num_columns)}


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")
