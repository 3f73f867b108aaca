"""Object storage: backends (no Dagster) and the Dagster resource that selects one."""

from .object_store import (
    BucketNotFoundError,
    LocalObjectStore,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    UnsafeKeyError,
    check_key,
    listed_children,
    safe_local_name,
)
from .resource import ObjectStoreResource, object_store_from_env

__all__ = [
    "BucketNotFoundError",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreResource",
    "S3ObjectStore",
    "UnsafeKeyError",
    "check_key",
    "listed_children",
    "object_store_from_env",
    "safe_local_name",
]
