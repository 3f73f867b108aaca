"""The Dagster resource that selects and configures the object store.

Environment variables (read once, when the definitions load; see :func:`object_store_from_env`):

``MEDIA_ASSETS_STORAGE``
    ``local`` (default) or ``s3``. ``s3`` is also chosen when ``AWS_ENDPOINT_URL`` is set and
    ``MEDIA_ASSETS_STORAGE`` is not.
``MEDIA_ASSETS_DATA_ROOT``
    Local backend: the folder holding one sub-folder per bucket (default ``./data``).
``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``
    S3 backend: an S3-compatible endpoint (MinIO, moto) and the region. Credentials come from
    the AWS default chain (environment, profile, instance role), never from code.
``MEDIA_ASSETS_S3_MAX_ATTEMPTS``
    botocore "standard" retry mode attempts for throttling/5xx/connection errors (default 5).
"""


import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from .object_store import LocalObjectStore, ObjectStore, S3ObjectStore


class ObjectStoreResource(dg.ConfigurableResource):
    """Object storage for every pipeline: a local folder per bucket, or S3.

    Attributes:
        backend: ``"local"`` or ``"s3"``.
        data_root: local backend root folder; bucket ``b`` key ``k`` is ``<data_root>/b/k``.
        endpoint_url: S3-compatible endpoint (MinIO, moto); ``None`` = AWS.
        region_name: AWS region; ``None`` = the default chain's.
        max_attempts: botocore "standard" retry mode attempts (throttling, 5xx, connection
            errors are retried with exponential backoff).
        multipart_threshold_bytes: S3 uploads/downloads above this size are multipart.
        multipart_chunksize_bytes: part size for multipart transfers (S3 minimum 5 MiB).
    """

    backend: str = "local"
    data_root: str = "data"
    endpoint_url: str | None = None
    region_name: str | None = None
    max_attempts: int = 5
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    multipart_chunksize_bytes: int = 16 * 1024 * 1024

    _store: ObjectStore | None = PrivateAttr(default=None)

    def get_store(self) -> ObjectStore:
        """The configured backend (built once per resource instance).

        Raises:
            ValueError: ``backend`` is neither ``local`` nor ``s3``.
        """
        if self._store is None:
            if self.backend == "local":
                self._store = LocalObjectStore(Path(self.data_root))
            elif self.backend == "s3":
                self._store = S3ObjectStore(
                    # the boto3 client comes from dagster-aws's S3Resource (retry config included)
                    S3Resource(endpoint_url=self.endpoint_url, region_name=self.region_name, max_attempts=self.max_attempts).get_client(),
                    multipart_threshold=self.multipart_threshold_bytes,
                    multipart_chunksize=self.multipart_chunksize_bytes,
                )
            else:
                raise ValueError(f"unknown object store backend {self.backend!r}: expected 'local' or 's3'")
        return self._store

    def upath(self, bucket: str, prefix: str = ""):
        """``upath.UPath`` of ``bucket``/``prefix`` on this backend, for fsspec-based readers and
        writers (Dagster's ``UPathIOManager``): ``<data_root>/<bucket>/<prefix>`` (absolute) on the
        local backend, ``s3://<bucket>/<prefix>`` through s3fs with this resource's endpoint and
        region on S3 (credentials from the AWS default chain, as boto3's).

        Raises:
            ValueError: ``backend`` is neither ``local`` nor ``s3``.
        """
        from upath import UPath

        if self.backend == "local":
            return UPath(Path(self.data_root).resolve() / bucket / prefix)
        if self.backend == "s3":
            options = {"client_kwargs": {"region_name": self.region_name}} if self.region_name else {}
            return UPath(f"s3://{bucket}/{prefix}", endpoint_url=self.endpoint_url, **options)
        raise ValueError(f"unknown object store backend {self.backend!r}: expected 'local' or 's3'")

    def vector_store(self, bucket: str, prefix: str):
        """The key-frame vector table (:class:`media_assets.storage.vectors.KeyFrameVectors`) at
        ``bucket``/``prefix`` on this backend: ``<data_root>/<bucket>/<prefix>`` (absolute) or
        ``s3://<bucket>/<prefix>`` with this resource's endpoint and region (credentials from
        the environment, as boto3's).

        Raises:
            ValueError: ``backend`` is neither ``local`` nor ``s3``.
        """
        from .vectors import KeyFrameVectors

        if self.backend == "local":
            return KeyFrameVectors(str(Path(self.data_root).resolve() / bucket / prefix))
        if self.backend == "s3":
            options = {"region": self.region_name} if self.region_name else {}
            if self.endpoint_url:
                options |= {"endpoint": self.endpoint_url, "allow_http": str(self.endpoint_url.startswith("http://")).lower()}
            return KeyFrameVectors(f"s3://{bucket}/{prefix}", options)
        raise ValueError(f"unknown object store backend {self.backend!r}: expected 'local' or 's3'")


def object_store_from_env(environ: os._Environ | dict | None = None) -> ObjectStoreResource:
    """Build :class:`ObjectStoreResource` from the environment variables in this module's doc."""
    env = os.environ if environ is None else environ
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    backend = env.get("MEDIA_ASSETS_STORAGE") or ("s3" if endpoint else "local")
    return ObjectStoreResource(
        backend=backend,
        data_root=str(Path(env.get("MEDIA_ASSETS_DATA_ROOT", "data")).absolute()),
        endpoint_url=endpoint,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        max_attempts=int(env.get("MEDIA_ASSETS_S3_MAX_ATTEMPTS", "5")),
    )
