"""Object stores: one interface, two backends (local directory and S3).

Both backends expose the same operations on ``(bucket, key)`` pairs: ``list_objects``
(with LastModified, size in bytes and an ETag), ``head``, ``download`` to a local path,
``upload`` from a local path (multipart above a threshold on S3), ``put_bytes``,
``get_bytes``, ``delete`` and ``copy``. Nothing here imports Dagster; the Dagster resource
that selects and configures a backend lives in :mod:`media_assets.storage.resource`.

Object keys are untrusted input (they come from whoever uploads to the bucket). The local
backend refuses any key that would resolve outside its bucket folder (``..`` segments,
absolute paths, NUL bytes) with :class:`UnsafeKeyError`; callers never build local paths
from keys (see :func:`safe_local_name`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import boto3.s3.transfer
import botocore.exceptions

from ..scratch import is_orphaned


class ObjectStoreError(RuntimeError):
    """Base class of object-store errors."""


class ObjectNotFoundError(ObjectStoreError, KeyError):
    """Raised when ``bucket/key`` does not exist."""

    def __init__(self, bucket: str, key: str):
        super().__init__(f"object not found: {bucket}/{key}")
        self.bucket = bucket
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class BucketNotFoundError(ObjectStoreError):
    """The bucket does not exist (S3 ``NoSuchBucket``)."""

    def __init__(self, bucket: str):
        super().__init__(f"bucket {bucket!r} does not exist: create it or set the setting that names it")
        self.bucket = bucket


class UnsafeKeyError(ObjectStoreError, ValueError):
    """Raised for a key that could escape its bucket folder or is not a valid object key."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object.

    Attributes:
        bucket: bucket name.
        key: object key (``/``-separated, no leading slash).
        size: size in bytes.
        last_modified: modification time, timezone-aware UTC.
        etag: opaque version tag. S3: the ETag without quotes. Local: ``"<size>-<mtime ns>"``,
            which changes whenever the file is rewritten (a content hash would cost a full
            read per listing).
    """

    bucket: str
    key: str
    size: int
    last_modified: dt.datetime
    etag: str


def check_key(key: str) -> str:
    """Validate an object key and return it unchanged.

    Raises:
        UnsafeKeyError: empty key, leading ``/``, a NUL byte, or a ``.``/``..`` path segment.
    """
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise UnsafeKeyError(f"unsafe object key {key!r}: empty, absolute, NUL or backslash")
    parts = key.split("/")
    if any(p in (".", "..") for p in parts):
        raise UnsafeKeyError(f"unsafe object key {key!r}: contains a '.' or '..' path segment")
    return key


def safe_local_name(key: str, default_suffix: str = "") -> str:
    """A file name for a local copy of ``key`` that can never escape its directory.

    Returns ``<sha1 of key>[:16]`` plus the key's suffix (only if it is short and
    alphanumeric), e.g. ``"3f2a...c1.avi"``.
    """
    suffix = PurePosixPath(key).suffix.lower()
    if not (1 < len(suffix) <= 8 and suffix[1:].isalnum()):
        suffix = default_suffix
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16] + suffix


class ObjectStore(Protocol):
    """The interface both backends implement (:class:`LocalObjectStore`, :class:`S3ObjectStore`).

    Every method validates ``key`` with :func:`check_key` first (:class:`UnsafeKeyError` for an
    empty, absolute or ``.``/``..`` key) before any local path or request is built from it.
    Writes are whole-object and atomic: a reader sees the old object or the new one, never
    part of one. Transient S3 errors are retried by botocore (its ``standard`` retry mode);
    what is still raised after that is the caller's to retry (Dagster's retry policies).
    """

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object of ``bucket`` whose key starts with ``prefix``, in key order (S3's
        listing order), lazily, page by page; temporary files of local writes are skipped.

        Raises:
            BucketNotFoundError: S3, the bucket does not exist (a local store yields nothing).
        """
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """The object's size (bytes), LastModified (UTC) and ETag, without reading it.

        Raises:
            ObjectNotFoundError: no such object (or no such bucket).
        """
        ...

    def exists(self, bucket: str, key: str) -> bool:
        """Whether ``bucket/key`` exists (``False`` for a missing bucket too)."""
        ...

    def bucket_exists(self, bucket: str) -> bool:
        """Whether the bucket exists."""
        ...

    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket if it does not exist (local stores, the demo and tests; production
        buckets are made by their owner)."""
        ...

    def download(self, bucket: str, key: str, dest: Path) -> Path:
        """Copy the object to the local file ``dest`` (parents created); returns ``dest``.

        Raises:
            ObjectNotFoundError: no such object.
        """
        ...

    def upload(self, src: Path, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        """Write the local file ``src`` as ``bucket/key`` (replacing it); the new object's info.

        Raises:
            BucketNotFoundError: the bucket does not exist.
        """
        ...

    def put_bytes(self, data: bytes, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        """Write ``data`` as ``bucket/key`` (replacing it); the new object's info.

        Raises:
            BucketNotFoundError: the bucket does not exist.
        """
        ...

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The object's whole content (for small objects: manifests, pickles, tables).

        Raises:
            ObjectNotFoundError: no such object.
        """
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Delete ``bucket/key``; a missing object is not an error (S3's semantics)."""
        ...

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        """Server-side copy (S3 ``CopyObject``; locally an atomic file copy); the copy's info.

        Raises:
            ObjectNotFoundError: no such source object.
        """
        ...

    def uri(self, bucket: str, key: str) -> str:
        """Where the object lives, for people and readers: ``s3://bucket/key`` or ``file:///...``."""
        ...


TEMP_PREFIX = ".tmp-"  # hidden temporary files of local writes; listings skip them


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Make the local file ``path`` by calling ``write(tmp)`` on a temporary file beside it
    (``.tmp-pid<writer pid>-<random>``), then renaming it into place: a reader sees the old file
    or the new one, never part of one. A killed writer's temporary file is recognised by its
    dead pid and removed by :meth:`LocalObjectStore.remove_orphaned_temp_files`.

    Raises:
        Whatever ``write`` raises (the temporary file is removed first).
    """
    tmp = path.parent / f"{TEMP_PREFIX}pid{os.getpid()}-{uuid.uuid4().hex}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LocalObjectStore:
    """Each bucket is a folder ``<root>/<bucket>``; each key a file below it.

    Writes are atomic per object: data goes to a hidden temporary file in the destination
    folder (``.tmp-pid<writer pid>-<random>``) and is renamed into place, so a reader never
    sees a half-written object. Listing skips those temporary files; those of a killed writer
    are removed by :meth:`remove_orphaned_temp_files`.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    # -- paths -------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise UnsafeKeyError(f"invalid bucket name {bucket!r}")
        return self.root / bucket

    def _path(self, bucket: str, key: str) -> Path:
        check_key(key)
        base = self._bucket_dir(bucket)
        path = (base / key).resolve()
        if base.resolve() not in path.parents:
            raise UnsafeKeyError(f"object key {key!r} escapes bucket folder {base}")
        return path

    def _info(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=st.st_size,
            last_modified=dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=dt.timezone.utc),
            etag=f"{st.st_size}-{st.st_mtime_ns}",
        )

    # -- interface -----------------------------------------------------------------------
    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order."""
        base = self._bucket_dir(bucket)
        if not base.is_dir():
            return
        # Walk only the deepest folder the prefix names, then filter by the full prefix.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / folder if folder else base
        if folder:
            check_key(folder)
        if not start.is_dir():
            return
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(base).as_posix()
                if key.startswith(prefix):
                    found.append((key, path))
        for key, path in sorted(found):
            try:
                yield self._info(bucket, key, path)
            except FileNotFoundError:  # deleted while listing
                continue

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectNotFoundError(bucket, key)
        return self._info(bucket, key, path)

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def bucket_exists(self, bucket: str) -> bool:
        """Whether the bucket's folder exists (writes create it; a watched bucket that does
        not exist is a misconfiguration, as on S3)."""
        return self._bucket_dir(bucket).is_dir()

    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket's folder if it does not exist."""
        self._bucket_dir(bucket).mkdir(parents=True, exist_ok=True)

    def download(self, bucket: str, key: str, dest: Path) -> Path:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectNotFoundError(bucket, key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        return dest

    def remove_orphaned_temp_files(self) -> list[Path]:
        """Remove the temporary files of writes whose process was killed (its pid is gone);
        returns them. Walks every bucket folder: O(objects) stat-free directory reads."""
        removed = []
        for dirpath, _, filenames in os.walk(self.root) if self.root.is_dir() else []:
            for name in filenames:
                if name.startswith(TEMP_PREFIX) and is_orphaned(name):
                    path = Path(dirpath) / name
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def _atomic_write(self, bucket: str, key: str, write) -> ObjectInfo:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, write)
        return self._info(bucket, key, path)

    def upload(self, src: Path, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        return self._atomic_write(bucket, key, lambda tmp: shutil.copyfile(src, tmp))

    def put_bytes(self, data: bytes, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        return self._atomic_write(bucket, key, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectNotFoundError(bucket, key)
        return path.read_bytes()

    def delete(self, bucket: str, key: str) -> None:
        """Delete ``bucket/key``; deleting a missing object is not an error (as on S3).
        Empty parent folders inside the bucket are removed."""
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        base = self._bucket_dir(bucket).resolve()
        parent = path.parent
        while parent != base and base in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        src = self._path(src_bucket, src_key)
        if not src.is_file():
            raise ObjectNotFoundError(src_bucket, src_key)
        return self.upload(src, dst_bucket, dst_key)

    def uri(self, bucket: str, key: str) -> str:
        return self._path(bucket, key).as_uri()


class S3ObjectStore:
    """S3 (or any S3-compatible server) through a boto3 client.

    Uploads and downloads use boto3's managed transfer (``upload_file``/``download_file``),
    which switches to multipart above ``multipart_threshold`` bytes and retries parts.
    Downloads land in a temporary file next to ``dest`` and are renamed into place.
    """

    def __init__(self, client, multipart_threshold: int = 64 * 1024 * 1024, multipart_chunksize: int = 16 * 1024 * 1024, max_concurrency: int = 8):
        self.client = client
        self.transfer_config = boto3.s3.transfer.TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )

    @staticmethod
    def _is_not_found(err: botocore.exceptions.ClientError) -> bool:
        code = str(err.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object under ``prefix`` (ListObjectsV2, 1,000 keys a page).

        Raises:
            BucketNotFoundError: the bucket does not exist.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = iter(paginator.paginate(Bucket=bucket, Prefix=prefix))
            first = next(pages, None)
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise BucketNotFoundError(bucket) from None
            raise
        for page in itertools.chain([first] if first is not None else [], pages):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    bucket=bucket,
                    key=obj["Key"],
                    size=int(obj["Size"]),
                    last_modified=obj["LastModified"].astimezone(dt.timezone.utc),
                    etag=obj.get("ETag", "").strip('"'),
                )

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as err:
            if self._is_not_found(err):
                raise ObjectNotFoundError(bucket, key) from None
            raise
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(r["ContentLength"]),
            last_modified=r["LastModified"].astimezone(dt.timezone.utc),
            etag=r.get("ETag", "").strip('"'),
        )

    def bucket_exists(self, bucket: str) -> bool:
        """HeadBucket: ``False`` on 404 / ``NoSuchBucket``; other errors (403, network) raise."""
        try:
            self.client.head_bucket(Bucket=bucket)
            return True
        except botocore.exceptions.ClientError as err:
            if self._is_not_found(err) or err.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return False
            raise

    def ensure_bucket(self, bucket: str) -> None:
        """CreateBucket (in the client's region) if the bucket does not exist."""
        if self.bucket_exists(bucket):
            return
        region = self.client.meta.region_name
        where = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.client.create_bucket(Bucket=bucket, **where)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
            return True
        except ObjectNotFoundError:
            return False

    def download(self, bucket: str, key: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        try:
            self.client.download_file(bucket, key, tmp, Config=self.transfer_config)
            os.replace(tmp, dest)
        except botocore.exceptions.ClientError as err:
            if self._is_not_found(err):
                raise ObjectNotFoundError(bucket, key) from None
            raise
        finally:
            Path(tmp).unlink(missing_ok=True)
        return dest

    def upload(self, src: Path, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        extra = {"ContentType": content_type} if content_type else None
        self.client.upload_file(str(src), bucket, key, ExtraArgs=extra, Config=self.transfer_config)
        return self.head(bucket, key)

    def put_bytes(self, data: bytes, bucket: str, key: str, content_type: str | None = None) -> ObjectInfo:
        kwargs = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=data, **kwargs)
        return self.head(bucket, key)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as err:
            if self._is_not_found(err):
                raise ObjectNotFoundError(bucket, key) from None
            raise

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        try:
            self.client.copy({"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key, Config=self.transfer_config)
        except botocore.exceptions.ClientError as err:
            if self._is_not_found(err):
                raise ObjectNotFoundError(src_bucket, src_key) from None
            raise
        return self.head(dst_bucket, dst_key)

    def uri(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"


def listed_children(store: ObjectStore, bucket: str, folder: str, suffix: str, *, numbered: bool = False) -> list[str]:
    """Keys directly inside ``folder`` (no deeper ``/``) that end in ``suffix`` (and, with
    ``numbered``, whose name before it is a frame number): the objects a killed run may have
    left in an asset's own output folder. Deeper keys belong to other videos (``a/`` holds
    ``a/b/`` of video ``a/b.avi``) and are never returned."""
    prefix = folder.rstrip("/") + "/"
    names = ((o.key, o.key[len(prefix):]) for o in store.list_objects(bucket, prefix))
    return [key for key, name in names
            if "/" not in name and name.endswith(suffix) and (not numbered or name[: -len(suffix)].isdigit())]
