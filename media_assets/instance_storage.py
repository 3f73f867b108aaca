"""Dagster instance storage for the local instance: SQLite, with batched asset-event writes.

Dagster's SQLite event log writes every event in its own transactions (one in the run's shard,
one more in the cross-run index for asset events), each on a freshly created engine. A single
run over thousands of partitions (label correction: one run per `BackfillPolicy.multi_run`
chunk, up to 16,889 partitions) writes two asset events per partition (materialization
planned, materialization), so the event log, not the work, set the run time:
`benchmarks/partition_events.py` measures 14-19 ms per partition for those two events with
``log_event`` on Dagster's default SQLite instance, and 0.9-1.2 ms with this storage and
`media_assets.defs.partition_events`.

Dagster already hands such events over in batches: per-partition materializations of a
ranged run and the planned events at run creation carry batch metadata, and are passed to
``EventLogStorage.store_event_batch`` when the ``DAGSTER_EVENT_BATCH_SIZE`` environment
variable is > 0. The SQLite storage inherits the default ``store_event_batch`` (one
``store_event`` per event, each opening its own engines and transactions); this module gives
it a real one:

- a batch of asset materializations / observations / planned events of one run (what
  Dagster batches) is written as Dagster's own ``dagster_postgres.PostgresEventLogStorage.
  store_event_batch`` writes it: one multi-row insert per shard, the asset-event tags in
  one insert, and the asset's latest-event row updated once per (asset, event type) with the
  batch's last event;
- any other batch (e.g. per-partition asset check evaluations, which
  `media_assets.defs.partition_events` batches too) goes through Dagster's own
  ``store_event`` for each event, but inside one held connection and transaction per shard.

Single events, reads and the UI's watchers are Dagster's SQLite storage unchanged.

Configure it in ``$DAGSTER_HOME/dagster.yaml`` with :data:`STORAGE_CONFIG_YAML` (the
project's `dagster.yaml` and the one `media-assets` writes into a new DAGSTER_HOME do).

Constructing the storage enables batching in the process (``DAGSTER_EVENT_BATCH_SIZE``
defaults to ``EVENT_BATCH_SIZE`` unless already set; set it to 0 to turn batching off).
This module imports nothing from the rest of `media_assets`, so the webserver and daemon load
it without the pipelines' dependencies.
"""

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from dagster._core.events import BATCH_WRITABLE_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

STORAGE_CONFIG_YAML = """\
storage:
  custom:
    module: media_assets.instance_storage
    class: BatchedSqliteStorage
    config:
      base_dir:
        env: DAGSTER_HOME
"""

EVENT_BATCH_SIZE = 1000  # events per store_event_batch call (Dagster's buffer flushes at this size)

# event types written here in bulk; the rest go through SqliteEventLogStorage.store_event
_BULK_TYPES = frozenset({
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
}) & BATCH_WRITABLE_EVENTS


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose ``store_event_batch`` writes a batch of asset
    materialization / observation / planned events in one transaction per shard (run shard and
    index shard) instead of two per event, and any other batch (e.g. check evaluations) event by
    event through Dagster's own ``store_event`` inside one transaction per shard. Rows written
    are the same as event-by-event storage (`media_assets_tests/test_partition_events.py`
    compares them): each event in its run's shard and mirrored in the index shard with its
    tags, the asset's latest-event row reflecting the last event of each type, check
    executions per partition. A batch that fails is rolled back whole, and Dagster then stores
    its events one by one."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._held = threading.local()  # shard -> connection held by store_event_batch (this thread)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not events:
            return
        bulk = all(e.is_dagster_event and e.dagster_event_type in _BULK_TYPES and e.dagster_event.asset_key for e in events)
        if bulk and len({e.run_id for e in events}) == 1:
            self._store_asset_events_bulk(events)
        else:
            self._store_events_in_held_connections(events)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        held = getattr(self._held, "connections", None)
        if held is None:
            with super()._connect(shard) as conn:
                yield conn
        elif shard in held:
            yield held[shard]  # inside store_event_batch: same connection and transaction
        else:
            with self._open(shard) as conn:  # this thread already holds the lock
                yield conn

    @contextmanager
    def _open(self, shard: str) -> Iterator[Connection]:
        """``SqliteEventLogStorage._connect`` without its lock (the caller holds it)."""
        engine = create_engine(self.conn_string_for_shard(shard), poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        try:
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn
        finally:
            engine.dispose()

    def _store_events_in_held_connections(self, events: Sequence[EventLogEntry]) -> None:
        """Dagster's ``store_event`` for each event, all in one transaction per shard; if any
        event fails, nothing of the batch is written (and Dagster retries event by event)."""
        shards = sorted({e.run_id for e in events}) + [INDEX_SHARD_NAME]
        with self._db_lock, ExitStack() as stack:
            self._held.connections = {shard: stack.enter_context(self._open(shard)) for shard in shards}
            try:
                for event in events:
                    super().store_event(event)
            finally:
                self._held.connections = None

    def _store_asset_events_bulk(self, events: Sequence[EventLogEntry]) -> None:
        rows = [self._event_to_row(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            result = conn.execute(
                SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True),
                rows,
            )
            event_ids = [int(row[0]) for row in result]
            self._store_asset_event_tags(conn, events, event_ids)
            last: dict[tuple[str, DagsterEventType], tuple[EventLogEntry, int]] = {}
            for event, event_id in zip(events, event_ids):
                last[(event.dagster_event.asset_key.to_string(), event.dagster_event_type)] = (event, event_id)
            for event, event_id in sorted(last.values(), key=lambda pair: pair[1]):
                self._store_asset_event(conn, event, event_id)


class BatchedSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (runs, schedules and event log under ``base_dir``) with
    :class:`BatchedSqliteEventLogStorage` as its event log, and event batching switched on in
    this process (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchedSqliteEventLogStorage(_event_logs_directory(base_dir))
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "BatchedSqliteStorage":
        # the parent hard-codes its own class here
        return cls.from_local(inst_data=inst_data, **config_value)
