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
cursor. The reconciliation pass (:mod:`media_assets.defs.reconcile`) lists the prefix
periodically and requests every object with no materialized partition and no run, whatever its
LastModified, so such an upload is late, not lost.

**Event mode** (:func:`next_objects`): when the sensor's ``events_queue_url`` is set, a tick
reads S3 ``ObjectCreated`` notifications from that SQS queue instead of listing
(:mod:`media_assets.storage.s3_events`). The receipt handles of a tick's messages are kept in
its cursor and deleted at the start of the next tick: Dagster stores a tick's cursor together
with its run requests, so a message is deleted only after its run request is recorded; a tick
that is lost leaves its messages to come back after the visibility timeout, and their run keys
(``key@ETag``) make Dagster skip what was already requested. Malformed messages are never
deleted (one warning, on their first delivery): the queue's redrive policy moves them to its
dead-letter queue after ``maxReceiveCount`` deliveries. Reconciliation still lists the prefix
every ``reconcile_settings.interval_s``, for anything whose notification never came.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ..settings import SENSOR_INTERVAL_S
from ..storage import BucketNotFoundError, ObjectInfo
from ..storage.s3_events import MalformedEventError, parse_notification
from .reconcile import (ATTENTION_CHECK, Attention, Source, attention_evaluation, attention_result, drained_since, due, needs_attention,
                        stranded_requests)


@dataclass
class ObjectCursor:
    """``ts``/``keys``: the LastModified rule above; ``reconciled_at``: epoch seconds of the
    sensor's last reconciliation pass (:mod:`media_assets.defs.reconcile`); ``pending``: event
    mode, receipt handles of the last tick's messages, deleted by the next tick."""

    ts: dt.datetime | None = None
    keys: list[str] = field(default_factory=list)
    reconciled_at: float | None = None
    pending: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> ObjectCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(ts=dt.datetime.fromisoformat(data["ts"]) if data.get("ts") else None, keys=list(data.get("keys", [])),
                   reconciled_at=data.get("reconciled_at"), pending=list(data.get("pending", [])))

    def dumps(self) -> str:
        data = {"ts": self.ts.isoformat() if self.ts else None, "keys": sorted(self.keys), "reconciled_at": self.reconciled_at}
        if self.pending:
            data["pending"] = self.pending
        return json.dumps(data)

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


@dataclass(frozen=True)
class WatchedPrefix:
    """Where a sensor's sources are: objects under ``bucket``/``prefix`` for which
    ``accepts(obj)`` holds; ``queue_url``: the SQS queue of their notifications (event mode),
    or ``None`` (polling)."""

    bucket: str
    prefix: str
    accepts: Callable[[ObjectInfo], bool] = lambda o: True
    queue_url: str | None = None

    def holds(self, obj: ObjectInfo) -> bool:
        return obj.bucket == self.bucket and obj.key.startswith(self.prefix) and self.accepts(obj)

    def list(self, store) -> list[ObjectInfo]:
        """The accepted objects under the prefix.

        Raises:
            BucketNotFoundError: the bucket does not exist (a typo in its setting), on S3 and on
                the local store alike: a watched bucket that is not there fails the tick,
                it is never read as "nothing new".
        """
        objects = [o for o in store.list_objects(self.bucket, self.prefix) if self.accepts(o)]
        if not objects and not store.bucket_exists(self.bucket):
            raise BucketNotFoundError(self.bucket)
        return objects


@dataclass
class Tick:
    """One tick's sources: ``new`` objects (in LastModified/event-time order), the next
    ``cursor``, and ``passed``: when reconciliation is due, the listed objects earlier ticks
    already took (else ``None``)."""

    new: list[ObjectInfo]
    cursor: ObjectCursor
    passed: list[ObjectInfo] | None


def receive_objects(log, queue, watched: WatchedPrefix) -> tuple[list[ObjectInfo], list[str]]:
    """``(new objects, receipt handles to delete)`` from one receive of ``watched.queue_url``:
    created objects that ``watched`` holds, one per key@ETag; test events and other buckets'
    or prefixes' objects are deleted with the rest; malformed messages are left for the
    dead-letter queue (warned once)."""
    seen: set[str] = set()
    new: list[ObjectInfo] = []
    handles: list[str] = []
    for message in queue.receive(watched.queue_url):
        try:
            notification = parse_notification(message.body)
        except MalformedEventError as err:
            if message.receive_count <= 1:
                log.warning(f"malformed message {message.message_id} in {watched.queue_url}: {err}; "
                            "not deleted: the queue's redrive policy moves it to the dead-letter queue")
            continue
        handles.append(message.receipt_handle)
        for obj in notification.objects:
            if watched.holds(obj) and run_key_for(obj) not in seen:
                seen.add(run_key_for(obj))
                new.append(obj)
    new.sort(key=lambda o: (o.last_modified, o.key))
    return new, handles


def next_objects(context: dg.SensorEvaluationContext, watched: WatchedPrefix, previous: ObjectCursor, limit: int, *,
                 reconcile: bool, counts: Callable[[ObjectInfo], bool] = lambda o: True) -> Tick:
    """The new objects of one tick, by listing (polling, at most ``limit`` counted objects) or
    from the event queue (event mode, at most ``event_queue.max_messages_per_tick`` messages:
    the run queue, not the sensor, limits how many runs go at once). ``reconcile``: also list
    the objects earlier ticks took, for :func:`media_assets.defs.reconcile.stranded_requests`."""
    store = context.resources.object_store.get_store()
    if watched.queue_url is None:
        objects = watched.list(store)
        new, cursor = select_new_objects(objects, previous, limit, counts)
        return Tick(new, cursor, [o for o in objects if not previous.is_new(o)] if reconcile else None)
    queue = context.resources.event_queue
    if previous.pending:  # the previous tick's cursor is stored, so its run requests are recorded
        refused = queue.delete(watched.queue_url, previous.pending)
        if refused:
            context.log.info(f"{len(refused)} messages were already gone from {watched.queue_url} (redelivered; run keys deduplicate them)")
    new, handles = receive_objects(context.log, queue, watched)
    cursor = dataclasses.replace(previous, pending=handles)
    passed = None
    if reconcile:
        taken = {run_key_for(o) for o in new}
        passed = [o for o in watched.list(store) if run_key_for(o) not in taken]
    return Tick(new, cursor, passed)


def run_key_for(obj: ObjectInfo) -> str:
    """``<key>@<etag>``: a re-upload (new ETag) is a new run key."""
    return f"{obj.key}@{obj.etag}"


@dataclass(frozen=True)
class ObjectSource:
    """One kind of source object and the job that processes it, one partition per object.

    ``watched(resources)`` says where the objects are and whether notifications come through
    a queue (:class:`WatchedPrefix`, :func:`next_objects`); ``skip_reason(resources, obj)``
    returns why an object is refused (an unsafe key) or ``None``; ``done_asset`` is the job's
    last asset: a source is processed when its partition of it is materialized.
    ``resources`` is the sensor's or check's ``context.resources``."""

    job: dg.UnresolvedAssetJobDefinition
    done_asset: dg.AssetKey
    partitions_def: dg.DynamicPartitionsDefinition
    watched: Callable[[Any], WatchedPrefix]
    skip_reason: Callable[[Any, ObjectInfo], str | None]
    partition_key: Callable[[ObjectInfo], str] = lambda o: o.key

    def source(self, obj: ObjectInfo) -> Source:
        tags = {"media_assets/source": f"{obj.bucket}/{obj.key}", "media_assets/etag": obj.etag}
        return Source(self.partition_key(obj), run_key_for(obj), tags)

    def attention(self, instance: dg.DagsterInstance, resources: Any, listed: list[ObjectInfo] | None = None) -> list[Attention]:
        """:func:`media_assets.defs.reconcile.needs_attention` over ``listed`` (default: a
        fresh listing of the watched prefix): refused keys, sources whose runs ended for good,
        and partitions whose object is gone before it was processed."""
        if listed is None:
            listed = self.watched(resources).list(resources.object_store.get_store())
        refused = {f"{o.bucket}/{o.key}": why for o in listed if (why := self.skip_reason(resources, o))}
        sources = [self.source(o) for o in listed if f"{o.bucket}/{o.key}" not in refused]
        present = {self.partition_key(o) for o in listed}
        bucket = self.watched(resources).bucket
        gone = {pk: f"{bucket}/{pk}" for pk in instance.get_dynamic_partitions(self.partitions_def.name) if pk not in present}
        return needs_attention(instance, job_name=self.job.name, asset_key=self.done_asset, partitions_def=self.partitions_def,
                               sources=sources, settings=resources.reconcile_settings, refused=refused, gone=gone)


def attention_check(attention: Callable[[dg.DagsterInstance, Any], list[Attention]], asset: dg.AssetKey,
                    required_resource_keys: set[str], description: str) -> dg.AssetChecksDefinition:
    """The ``no_source_needs_attention`` check on ``asset`` (WARN): recorded by the sources'
    sensor on each reconciliation pass; executing it evaluates ``attention(instance,
    resources)`` (e.g. :meth:`ObjectSource.attention`, which lists the prefix) now."""

    @dg.asset_check(asset=asset, name=ATTENTION_CHECK, description=description,
                    required_resource_keys=required_resource_keys | {"object_store", "reconcile_settings"})
    def _check(context) -> dg.AssetCheckResult:  # an AssetCheckExecutionContext (no annotation: this module defers them)
        return attention_result(attention(context.instance, context.resources))

    return _check


def partitioned_object_sensor(
    *,
    name: str,
    source: ObjectSource,
    check_asset: dg.AssetKey,
    max_runs_per_tick: Callable[[Any], int],
    required_resource_keys: set[str],
    description: str,
    minimum_interval_seconds: int = SENSOR_INTERVAL_S,
    observe_listing: bool = False,
) -> dg.SensorDefinition:
    """A sensor that adds one dynamic partition per new object of ``source`` and requests one
    run of its job for it.

    Refused objects (``source.skip_reason``) are logged once and the cursor moves past them.
    The tick records no asset events per object (each is one event write in Dagster's storage,
    ~15 ms on SQLite): the run records its source as it reads it
    (:func:`media_assets.defs.video.assets.record_source`). Every
    ``reconcile_settings.interval_s``, and on the first tick after the job's runs have drained
(:func:`media_assets.defs.reconcile.drained_since`), it also re-requests stranded sources: objects the cursor
    passed whose partition of ``done_asset`` is not materialized, with no run or a latest run
    that failed for a non-input reason (:mod:`media_assets.defs.reconcile`), and records what
    needs a person as the ``no_source_needs_attention`` evaluation of ``check_asset``; with
    ``observe_listing`` (an unpartitioned external ``check_asset``), also an observation of it
    with the listing's ``objects`` and ``bytes``, so the UI shows it observed.
    """

    @dg.sensor(
        name=name,
        job=source.job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=required_resource_keys | {"object_store", "reconcile_settings", "event_queue"},
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        resources = context.resources
        previous = ObjectCursor.parse(context.cursor)
        settings = resources.reconcile_settings
        # at its interval, and once more when the job's runs have drained (the attention check
        # then follows the materializations they made)
        reconcile = due(settings, previous.reconciled_at) or drained_since(context.instance, source.job.name, previous.reconciled_at)
        tick = next_objects(context, source.watched(resources), previous, max_runs_per_tick(resources), reconcile=reconcile,
                            counts=lambda o: source.skip_reason(resources, o) is None)
        new, cursor = tick.new, tick.cursor

        partition_keys: list[str] = []
        run_requests: list[dg.RunRequest] = []
        for obj in new:
            reason = source.skip_reason(resources, obj)
            if reason:
                context.log.warning(f"skipping {obj.bucket}/{obj.key!r}: {reason}")
                continue
            src = source.source(obj)
            partition_keys.append(src.partition_key)
            run_requests.append(dg.RunRequest(partition_key=src.partition_key, run_key=src.run_key, tags=dict(src.tags)))
        asset_events = []
        if reconcile:
            # objects requested in earlier ticks only: this tick's requests have no run yet
            passed = [source.source(o) for o in tick.passed if source.skip_reason(resources, o) is None]
            stranded = stranded_requests(context, job_name=source.job.name, asset_key=source.done_asset, partitions_def=source.partitions_def,
                                         sources=passed, settings=settings, previous_pass=previous.reconciled_at)
            run_requests += stranded
            partition_keys += [r.partition_key for r in stranded]
            # the whole listing (a re-requested source is not listed: its re-request is pending)
            listed = [*tick.passed, *new]
            asset_events.append(attention_evaluation(check_asset, source.attention(context.instance, resources, listed)))
            if observe_listing:
                asset_events.append(dg.AssetObservation(asset_key=check_asset, metadata={
                    "objects": dg.MetadataValue.int(len(listed)), "bytes": dg.MetadataValue.int(sum(o.size for o in listed))}))
            cursor.reconciled_at = time.time()
        existing = set(context.instance.get_dynamic_partitions(source.partitions_def.name))
        to_add = sorted({k for k in partition_keys if k not in existing})
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[source.partitions_def.build_add_request(to_add)] if to_add else [],
            asset_events=asset_events,
            cursor=cursor.dumps(),
            skip_reason=None if run_requests else "no new objects",
        )

    return _sensor
