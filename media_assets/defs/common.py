"""Helpers shared by the asset modules: input failures, JSON manifests (the commit point of
assets that write objects themselves, see ``output_set``), Parquet objects, markdown previews."""

import base64
import io
import json
import re
from pathlib import Path

import dagster as dg
from PIL import Image

from ..kernels.limits import VideoLimits, check_source_size, check_video
from ..kernels.probe import MediaInfo, probe
from ..scratch import scratch_root
from ..storage import ObjectNotFoundError, ObjectStore


# every asset's retry policy: a step that raised anything but an input failure (S3 or network
# trouble after botocore's own retries, ffmpeg killed or out of disk, a wall-clock limit) runs
# again twice, 2 s then ~4 s later; input failures (``allow_retries=False``) never
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def object_error(name: str, err: Exception, local: Path) -> str:
    """``"<name>: <err>"`` for people: the error of work on ``local``, the scratch copy of the
    object ``name`` (``bucket/key``, or the key where the bucket goes without saying), with
    the copy's path and file name replaced by ``name`` (said once) and any other scratch path
    by ``<scratch file>``: scratch names mean nothing to an operator and change every run."""
    text = str(err).replace(str(local), name).replace(local.name, name).removeprefix(f"{name}: ")
    text = re.sub(re.escape(str(scratch_root())) + r"""/[^\s'"]*""", "<scratch file>", text)
    return f"{name}: {text}"


def input_failure(message: str, **metadata) -> dg.Failure:
    """A failure that is the input's fault: clear description, no retries."""
    return dg.Failure(description=message, metadata={k: str(v) for k, v in metadata.items()}, allow_retries=False)


def download_bounded_video(store: ObjectStore, bucket: str, key: str, dst: Path, limits: VideoLimits,
                           size_bytes: int | None = None) -> tuple[Path, MediaInfo]:
    """Download an untrusted video to ``dst`` and probe it, within ``limits``: its size (bytes,
    ``size_bytes`` or a HEAD) is checked before the download, its header before any decode.

    Raises:
        ObjectNotFoundError: the object is gone.
        LimitExceededError: over a bound (the message names ``bucket/key``, the bound, the setting).
        MediaError: not a readable media container.
    """
    name = f"{bucket}/{key}"
    check_source_size(name, store.head(bucket, key).size if size_bytes is None else size_bytes, limits)
    local = store.download(bucket, key, dst)
    info = probe(local)
    check_video(name, info, limits)
    return local, info


def read_manifest(store: ObjectStore, bucket: str, key: str) -> dict | None:
    """The JSON manifest at ``bucket/key``, or ``None`` if it does not exist."""
    try:
        return json.loads(store.get_bytes(bucket, key))
    except ObjectNotFoundError:
        return None


def write_manifest(store: ObjectStore, bucket: str, key: str, manifest: dict) -> None:
    store.put_bytes(json.dumps(manifest, indent=1).encode(), bucket, key, content_type="application/json")


def _tile(source: Path | Image.Image, width: int) -> Image.Image:
    if isinstance(source, Image.Image):
        img = source.convert("RGB")
    else:
        with Image.open(source) as opened:
            opened.draft("RGB", (width, width))
            img = opened.convert("RGB")
    img.thumbnail((width, width))
    return img


def contact_sheet(tiles: list[tuple[Path | Image.Image, str]], columns: int = 8, width: int = 160) -> bytes:
    """One JPEG with the images of ``tiles`` in a grid, each over its caption (a timestamp, a
    frame index, a drop reason). Returns JPEG bytes (quality 70); ``width`` px per tile."""
    from PIL import ImageDraw, ImageFont

    images = [(_tile(src, width), caption) for src, caption in tiles]
    tile_h = max((img.height for img, _ in images), default=1)
    caption_h = 14
    cols = max(1, min(columns, len(images)))
    rows = -(-len(images) // cols) if images else 1
    sheet = Image.new("RGB", (cols * (width + 4), rows * (tile_h + caption_h + 4)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for n, (img, caption) in enumerate(images):
        x, y = (n % cols) * (width + 4) + 2, (n // cols) * (tile_h + caption_h + 4) + 2
        sheet.paste(img, (x, y))
        draw.text((x, y + tile_h + 1), caption, fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def contact_sheet_markdown(tiles: list[tuple[Path | Image.Image, str]], title: str, columns: int = 8, width: int = 160,
                           total: int | None = None, suffix: str = "") -> str:
    """Markdown for the UI: ``title`` and the :func:`contact_sheet` of ``tiles`` inline (a
    ``data:`` URI, so it shows on every storage backend). When the sheet shows fewer tiles than
    the ``total`` frames it stands for, the title says so: ``title (8 of 175 shown)``; then
    ``suffix``."""
    if total is not None and len(tiles) < total:
        title += f" ({len(tiles)} of {total} shown)"
    title += suffix
    if not tiles:
        return f"**{title}**: none"
    data = base64.b64encode(contact_sheet(tiles, columns, width)).decode()
    return f"**{title}**\n\n![{title}](data:image/jpeg;base64,{data})"


def spread(items: list, n: int) -> list:
    """Up to ``n`` items spread evenly over ``items`` (first and last included when n >= 2)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]
