"""Both object-store backends behave the same; S3 runs against moto's HTTP server."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import botocore.awsrequest
import pytest

from media_assets.storage import ObjectNotFoundError, UnsafeKeyError, object_store_from_env


@pytest.fixture(params=["local", "s3"])
def store_and_bucket(request, local_store, s3_buckets):
    if request.param == "local":
        return local_store, "bucket"
    store = request.getfixturevalue("s3_store")
    return store, s3_buckets("bucket")


def test_round_trip_list_head_copy_delete(store_and_bucket, tmp_path):
    store, bucket = store_and_bucket
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    store.upload(src, bucket, "a/b c/ünï.bin")
    store.put_bytes(b"hello", bucket, "a/z.txt")
    store.put_bytes(b"other", bucket, "b/y.txt")

    listed = list(store.list_objects(bucket, "a/"))
    assert [o.key for o in listed] == ["a/b c/ünï.bin", "a/z.txt"]
    assert listed[0].size == 1000 and listed[0].etag and listed[0].last_modified.tzinfo is not None
    assert store.get_bytes(bucket, "a/z.txt") == b"hello"
    assert store.head(bucket, "a/z.txt").size == 5

    dest = store.download(bucket, "a/b c/ünï.bin", tmp_path / "out" / "copy.bin")
    assert dest.read_bytes() == b"x" * 1000
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".tmp-")]

    store.copy(bucket, "a/z.txt", bucket, "c/z.txt")
    assert store.get_bytes(bucket, "c/z.txt") == b"hello"
    store.delete(bucket, "a/z.txt")
    assert not store.exists(bucket, "a/z.txt")
    with pytest.raises(ObjectNotFoundError, match="a/z.txt"):
        store.head(bucket, "a/z.txt")
    with pytest.raises(ObjectNotFoundError):
        store.download(bucket, "missing", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bucket_exists_and_ensure_bucket(store_and_bucket):
    store, bucket = store_and_bucket
    other = f"{bucket}-new-{os.getpid()}"
    assert not store.bucket_exists(other)
    store.ensure_bucket(other)
    store.ensure_bucket(other)  # idempotent
    assert store.bucket_exists(other) and list(store.list_objects(other)) == []


def test_rewrite_changes_etag(store_and_bucket):
    store, bucket = store_and_bucket
    first = store.put_bytes(b"one", bucket, "k")
    second = store.put_bytes(b"two!", bucket, "k")
    assert first.etag != second.etag


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/../../x", "/abs", "a/./b", ""])
def test_local_refuses_keys_escaping_the_bucket(local_store, tmp_path, key):
    with pytest.raises(UnsafeKeyError):
        local_store.put_bytes(b"x", "bucket", key)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()


def test_listing_more_than_1000_keys_on_s3(s3_store, s3_buckets, s3_client):
    bucket = s3_buckets("many")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3_client.put_object(Bucket=bucket, Key=f"p/{i:05d}.avi", Body=b""), range(1105)))
    keys = [o.key for o in s3_store.list_objects(bucket, "p/")]
    assert len(keys) == 1105 and keys[0] == "p/00000.avi" and keys[-1] == "p/01104.avi"


def test_multipart_upload_on_s3(s3_store, s3_buckets, s3_client, tmp_path):
    bucket = s3_buckets("multipart")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    info = s3_store.upload(big, bucket, "big.bin")
    # a multipart ETag is "<md5 of part md5s>-<number of parts>"
    assert info.etag.endswith("-3"), info.etag
    assert s3_store.download(bucket, "big.bin", tmp_path / "back.bin").read_bytes() == big.read_bytes()


def test_flaky_s3_is_retried(s3_store, s3_buckets):
    """A 503 SlowDown on the first attempt is retried by botocore's standard retry mode."""
    bucket = s3_buckets("flaky")
    s3_store.put_bytes(b"data", bucket, "k")
    calls = {"n": 0}

    def fail_once(request, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            return botocore.awsrequest.AWSResponse(request.url, 503, {}, _RawBody(b"<Error><Code>SlowDown</Code></Error>"))
        return None

    s3_store.client.meta.events.register_first("before-send.s3.GetObject", fail_once)
    try:
        assert s3_store.get_bytes(bucket, "k") == b"data"
    finally:
        s3_store.client.meta.events.unregister("before-send.s3.GetObject", fail_once)
    assert calls["n"] == 2


class _RawBody:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **kwargs):
        yield self._data

    def read(self, *args):
        data, self._data = self._data, b""
        return data


def test_backend_selected_from_environment(tmp_path):
    local = object_store_from_env({"MEDIA_ASSETS_DATA_ROOT": str(tmp_path)})
    assert local.backend == "local" and local.data_root == str(tmp_path)
    s3 = object_store_from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert s3.backend == "s3" and s3.endpoint_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="unknown object store backend"):
        object_store_from_env({"MEDIA_ASSETS_STORAGE": "ftp"}).get_store()
