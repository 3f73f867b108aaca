"""Helpers shared by the asset modules: input failures, JSON manifests (the commit point of
assets that write objects themselves, see ``output_set``), Parquet objects, markdown previews."""

import base64
import io
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..storage import ObjectNotFoundError, ObjectStore


def input_failure(message: str, **metadata) -> dg.Failure:
    """A failure that is the input's fault: clear description, no retries."""
    return dg.Failure(description=message, metadata={k: str(v) for k, v in metadata.items()}, allow_retries=False)


def read_manifest(store: ObjectStore, bucket: str, key: str) -> dict | None:
    """The JSON manifest at ``bucket/key``, or ``None`` if it does not exist."""
    try:
        return json.loads(store.get_bytes(bucket, key))
    except ObjectNotFoundError:
        return None


def write_manifest(store: ObjectStore, bucket: str, key: str, manifest: dict) -> None:
    store.put_bytes(json.dumps(manifest, indent=1).encode(), bucket, key, content_type="application/json")


def put_table(store: ObjectStore, bucket: str, key: str, table: pa.Table) -> None:
    """Write ``table`` as one zstd-compressed Parquet object."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    store.put_bytes(buf.getvalue(), bucket, key, content_type="application/vnd.apache.parquet")


def get_table(store: ObjectStore, bucket: str, key: str) -> pa.Table:
    """Read a Parquet object written by :func:`put_table`."""
    return pq.read_table(io.BytesIO(store.get_bytes(bucket, key)))


def preview_markdown(paths: list[Path], n: int = 4, width: int = 160) -> str:
    """Markdown with up to ``n`` inline JPEG thumbnails (``width`` px) spread over ``paths``."""
    cells = []
    for p in paths[:: max(1, len(paths) // n)][:n]:
        with Image.open(p) as img:
            img.draft("RGB", (width, width))
            img = img.convert("RGB")
            img.thumbnail((width, width))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=70)
        cells.append(f"![{p.stem}](data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()})")
    return " ".join(cells) if cells else "_no frame kept_"
