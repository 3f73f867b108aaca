"""Hive-partitioned Parquet that DuckDB, polars, pyarrow and Hugging Face ``datasets`` all read
with one glob over the dataset root.

Layout: ``<root>/<col1>=<v1>/<col2>=<v2>/.../<basename>``. Values are percent-encoded
(``urllib.parse.quote(v, safe="")``, so ``calls/2026`` -> ``calls%2F2026``) as pyarrow's
``partitioning_flavor="hive"`` writes them, and a null value is the directory
``__HIVE_DEFAULT_PARTITION__``, as Hive and Spark write nulls; DuckDB, polars and pyarrow decode
both. Unlike ``pyarrow.dataset.write_dataset``, the partition columns are *also* kept inside each
file: Hugging Face ``datasets.load_dataset("parquet", data_files=...)`` does not read partition
values from directory names, and the three hive-aware readers give the in-file and the directory
value (they are equal) one column.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def hive_dir(columns: list[str], values: tuple) -> str:
    """``col=value/...`` for one partition (no leading or trailing ``/``)."""
    return "/".join(f"{c}={HIVE_NULL if v is None else urllib.parse.quote(str(v), safe='')}" for c, v in zip(columns, values))


def write_hive_parquet(table: pa.Table, root: Path, partition_by: list[str], basename: str) -> list[Path]:
    """Write ``table`` as one Parquet file per distinct value tuple of ``partition_by``, at
    ``root/<hive_dir>/<basename>``, rows in their original order, zstd-compressed, every file
    with ``table.schema``.

    Returns:
        The written files, sorted.

    Raises:
        KeyError: a ``partition_by`` column is not in the table.
        ValueError: ``basename`` is empty or starts with ``.`` or ``_`` (readers skip such files).
    """
    if not basename or basename[0] in "._":
        raise ValueError(f"basename {basename!r}: must be non-empty and not start with '.' or '_' (readers skip those)")
    for c in partition_by:
        table.schema.field(c)  # raises KeyError with the column name
    groups: dict[tuple, list[int]] = {}
    for i, values in enumerate(zip(*(table[c].to_pylist() for c in partition_by))):
        groups.setdefault(values, []).append(i)
    written = []
    for values, rows in groups.items():
        path = root / hive_dir(partition_by, values) / basename
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(rows, pa.int64())), path, compression="zstd")
        written.append(path)
    return sorted(written)

