"""Polling a bucket for new objects: the cursor rule shared by every sensor.

The cursor is ``{"ts": <ISO LastModified>, "keys": [keys with exactly that LastModified]}``.
An object is new when its LastModified is later than ``ts``, or equal to it and its key is not
in ``keys``. One tick costs one listing of the watched prefix (S3 offers no server-side filter
on LastModified) and O(new objects) work beyond it; the cursor never grows with the number of
objects seen. A re-uploaded object gets a new LastModified and ETag, so it is new again, and
its ``run_key`` (``<key>@<etag>``) differs from the first upload's.

When more than ``limit`` objects are new, the oldest ``limit`` are returned and the cursor
stops right after them; the rest come in the next ticks.

Known limit of any LastModified cursor: S3 stamps LastModified when an upload *starts*, so a
multipart upload that completes after a later object was already listed is older than the
cursor and is missed. Event notifications (S3 -> EventBridge/SQS) avoid that in production.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from ..storage import ObjectInfo
from .reconcile import Source, due, stranded_requests


@dataclass
class ObjectCursor:
    """``ts``/``keys``: the LastModified rule above; ``reconciled_at``: epoch seconds of the
    sensor's last reconciliation pass (:mod:`media_assets.defs.reconcile`)."""

    ts: dt.datetime | None = None
    keys: list[str] = field(default_factory=list)
    reconciled_at: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> ObjectCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(ts=dt.datetime.fromisoformat(data["ts"]) if data.get("ts") else None, keys=list(data.get("keys", [])),
                   reconciled_at=data.get("reconciled_at"))

    def dumps(self) -> str:
        return json.dumps({"ts": self.ts.isoformat() if self.ts else None, "keys": sorted(self.keys), "reconciled_at": self.reconciled_at})

    def is_new(self, obj: ObjectInfo) -> bool:
        if self.ts is None or obj.last_modified > self.ts:
            return True
        return obj.last_modified == self.ts and obj.key not in self.keys


def select_new_objects(
    objects: Iterable[ObjectInfo],
    cursor: ObjectCursor,
    limit: int,
    counts: Callable[[ObjectInfo], bool] = lambda o: True,
) -> tuple[list[ObjectInfo], ObjectCursor]:
    """New objects in (LastModified, key) order up to the ``limit``-th one for which
    ``counts(obj)`` is true (objects that will be skipped do not use up the limit), and the
    cursor advanced past the last one returned."""
    ordered = sorted((o for o in objects if cursor.is_new(o)), key=lambda o: (o.last_modified, o.key))
    new: list[ObjectInfo] = []
    n = 0
    for obj in ordered:
        if n >= limit:
            break
        new.append(obj)
        n += bool(counts(obj))
    if not new:
        return [], cursor
    last_ts = new[-1].last_modified
    keys = [o.key for o in new if o.last_modified == last_ts]
    if cursor.ts == last_ts:
        keys = sorted(set(cursor.keys) | set(keys))
    return new, ObjectCursor(ts=last_ts, keys=keys, reconciled_at=cursor.reconciled_at)


def run_key_for(obj: ObjectInfo) -> str:
    """``<key>@<etag>``: a re-upload (new ETag) is a new run key."""
    return f"{obj.key}@{obj.etag}"


def observe_object(asset_key: dg.AssetKey, partition: str, obj: ObjectInfo) -> dg.AssetObservation:
    """An observation of the object ``obj`` as partition ``partition`` of external ``asset_key``."""
    return dg.AssetObservation(asset_key=asset_key, partition=partition, metadata={
        "object": f"{obj.bucket}/{obj.key}", "size_bytes": dg.MetadataValue.int(obj.size), "etag": obj.etag,
        "last_modified": obj.last_modified.isoformat()})


def partitioned_object_sensor(
    *,
    name: str,
    job: dg.UnresolvedAssetJobDefinition,
    done_asset: dg.AssetKey,
    partitions_def: dg.DynamicPartitionsDefinition,
    list_objects: Callable[[dg.SensorEvaluationContext], Iterable[ObjectInfo]],
    skip_reason: Callable[[dg.SensorEvaluationContext, ObjectInfo], str | None],
    max_runs_per_tick: Callable[[dg.SensorEvaluationContext], int],
    required_resource_keys: set[str],
    description: str,
    partition_key: Callable[[ObjectInfo], str] = lambda o: o.key,
    minimum_interval_seconds: int = 30,
    source_asset: dg.AssetKey | None = None,
) -> dg.SensorDefinition:
    """A sensor that adds one dynamic partition per new object and requests one run for it.

    ``skip_reason(context, obj)`` returns why an object is not a source (wrong suffix, unsafe key) or
    ``None``; skipped objects are logged once and the cursor moves past them. Each new source is
    also reported as an observation of ``source_asset`` (its partition: size, ETag,
    LastModified, URI), so the external asset shows in the UI what is in the bucket. Every
    ``reconcile_settings.interval_s`` it also re-requests stranded sources: objects the cursor
    passed whose partition of ``done_asset`` (the job's last asset) is not materialized, with no
    run or a latest run that failed for a non-input reason (:mod:`media_assets.defs.reconcile`).
    """

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=required_resource_keys | {"reconcile_settings"},
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        previous = ObjectCursor.parse(context.cursor)
        objects = list(list_objects(context))
        new, cursor = select_new_objects(objects, previous, max_runs_per_tick(context), counts=lambda o: skip_reason(context, o) is None)

        def request(obj: ObjectInfo) -> Source:
            tags = {"media_assets/source": f"{obj.bucket}/{obj.key}", "media_assets/etag": obj.etag}
            return Source(partition_key(obj), run_key_for(obj), tags)

        partition_keys: list[str] = []
        run_requests: list[dg.RunRequest] = []
        observations: list[dg.AssetObservation] = []
        for obj in new:
            reason = skip_reason(context, obj)
            if reason:
                context.log.warning(f"skipping {obj.bucket}/{obj.key!r}: {reason}")
                continue
            src = request(obj)
            partition_keys.append(src.partition_key)
            run_requests.append(dg.RunRequest(partition_key=src.partition_key, run_key=src.run_key, tags=dict(src.tags)))
            if source_asset is not None:
                observations.append(observe_object(source_asset, src.partition_key, obj))
        settings = context.resources.reconcile_settings
        if due(settings, previous.reconciled_at):
            # objects requested in earlier ticks only: this tick's requests have no run yet
            passed = [request(o) for o in objects if not previous.is_new(o) and skip_reason(context, o) is None]
            stranded = stranded_requests(context, job_name=job.name, asset_key=done_asset, partitions_def=partitions_def,
                                         sources=passed, settings=settings, previous_pass=previous.reconciled_at)
            run_requests += stranded
            partition_keys += [r.partition_key for r in stranded]
            cursor.reconciled_at = time.time()
        existing = set(context.instance.get_dynamic_partitions(partitions_def.name))
        to_add = sorted({k for k in partition_keys if k not in existing})
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[partitions_def.build_add_request(to_add)] if to_add else [],
            asset_events=observations,
            cursor=cursor.dumps(),
            skip_reason=None if run_requests else "no new objects",
        )

    return _sensor
