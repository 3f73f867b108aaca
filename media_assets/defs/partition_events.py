"""Per-partition materializations from one run over a partition range, written in batches.

A run over a range of partitions that reports each partition's own metadata has two public
ways to do it in Dagster 1.13, and both cost more than the work at label-correction scale
(thousands of partitions per run, ~1.5 ms of I/O per partition):

- ``context.log_event(AssetMaterialization(partition=...))``: one event-log write per
  partition (~10 ms each on the SQLite instance);
- ``context.add_asset_metadata(..., partition_key=...)`` plus one ``MaterializeResult``:
  batched writes, but every call re-lists the dynamic partitions to check the key and copies
  the accumulated metadata, so a run costs O(partitions^2) (10 s for 1,000 partitions).

:class:`PartitionMaterializations` does what ``log_event`` does, but tags each event with
the batch metadata that Dagster itself attaches to the per-partition materializations of a
ranged output (``dagster._core.execution.plan.execute_step``), so the instance writes each
chunk with one ``store_event_batch`` call (see `media_assets.instance_storage`; without
``DAGSTER_EVENT_BATCH_SIZE`` they are stored one by one, exactly like ``log_event``).
It relies on Dagster internals (``DagsterEvent.asset_materialization`` with batch metadata,
the op context's event list); `dagster` is pinned in `pyproject.toml` and
`media_assets_tests/test_partition_events.py` checks the result through the public API.
"""

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id

CHUNK = 500  # materializations per batch write; a crash loses at most this many *records* (the data is written)


class PartitionMaterializations:
    """Collects ``AssetMaterialization`` events of one asset step and logs them ``chunk`` at a
    time as one event batch. Call :meth:`flush` before the step ends (a ``with`` block does).

    Raises:
        ValueError: an event without a partition, or ``chunk`` < 1.
    """

    def __init__(self, context: dg.AssetExecutionContext, chunk: int = CHUNK):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._op_context = context.op_execution_context
        self._chunk = chunk
        self._pending: list[dg.AssetMaterialization] = []
        self.logged = 0

    def add(self, materialization: dg.AssetMaterialization) -> None:
        if materialization.partition is None:
            raise ValueError(f"{materialization.asset_key.to_user_string()}: materialization has no partition")
        self._pending.append(materialization)
        if len(self._pending) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        step_context = self._op_context._step_execution_context
        batch_id = generate_event_batch_id()
        last = len(pending) - 1
        for i, materialization in enumerate(pending):
            # logs (and so stores) the event; kept in the step's event list as log_event does
            event = DagsterEvent.asset_materialization(step_context, materialization, DagsterEventBatchMetadata(batch_id, i == last))
            self._op_context._events.append(event)
        self.logged += len(pending)

    def __enter__(self) -> "PartitionMaterializations":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
