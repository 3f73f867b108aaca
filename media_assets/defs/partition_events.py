"""Per-partition materializations and check evaluations from one run over a partition range,
written in batches.

A run over a range of partitions that reports each partition's own metadata has two public
ways to do it in Dagster 1.13, and both cost more than the work at label-correction scale
(thousands of partitions per run, ~1 ms of I/O per partition in the label benchmark's floor).
`benchmarks/partition_events.py` times all of them, per partition of a ranged run:

- ``context.log_event(AssetMaterialization(partition=...))``: one event-log write per
  partition (8-10 ms per partition on the project's instance, 14-19 ms on Dagster's default);
- ``context.add_asset_metadata(..., partition_key=...)`` plus one ``MaterializeResult``:
  batched writes, but every call re-lists the dynamic partitions to check the key and copies
  the accumulated metadata, so a run costs O(partitions^2) (3.5 s for 500 partitions, 8.7 s
  for 1,000);
- this module: 0.9-1.2 ms per partition.

:class:`PartitionEvents` does what ``log_event`` does, but tags each event with
the batch metadata that Dagster itself attaches to the per-partition materializations of a
ranged output (``dagster._core.execution.plan.execute_step``), so the instance writes each
chunk with one ``store_event_batch`` call (see `media_assets.instance_storage`; without
``DAGSTER_EVENT_BATCH_SIZE`` they are stored one by one, exactly like ``log_event``).
Check evaluations (``AssetCheckEvaluation`` with a partition) are batched the same way.
It relies on Dagster internals (``DagsterEvent.from_step`` with batch metadata, the op
context's event list); `dagster` is pinned in `pyproject.toml` and
`media_assets_tests/test_partition_events.py` checks the result through the public API.
"""

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, generate_event_batch_id

CHUNK = 500  # events per batch write; a crash loses at most this many *records* (the data is written)


class PartitionEvents:
    """Collects the ``AssetMaterialization`` and ``AssetCheckEvaluation`` events of one asset
    step and logs them ``chunk`` at a time, each kind as one event batch (materializations
    first). Call :meth:`flush` before the step ends (a ``with`` block does, also on error).

    Raises:
        ValueError: an event without a partition, or ``chunk`` < 1.
    """

    def __init__(self, context: dg.AssetExecutionContext, chunk: int = CHUNK):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._op_context = context.op_execution_context
        self._chunk = chunk
        self._materializations: list[dg.AssetMaterialization] = []
        self._evaluations: list[dg.AssetCheckEvaluation] = []

    def materialization(self, materialization: dg.AssetMaterialization) -> None:
        self._add(self._materializations, materialization, "materialization")

    def check_evaluation(self, evaluation: dg.AssetCheckEvaluation) -> None:
        self._add(self._evaluations, evaluation, f"check {evaluation.check_name} evaluation")

    def _add(self, pending: list, event, what: str) -> None:
        if event.partition is None:
            raise ValueError(f"{event.asset_key.to_user_string()}: {what} has no partition")
        pending.append(event)
        if len(pending) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        materializations, self._materializations = self._materializations, []
        evaluations, self._evaluations = self._evaluations, []
        step_context = self._op_context._step_execution_context
        for events, to_event in (
            (materializations, lambda m, b: DagsterEvent.asset_materialization(step_context, m, b)),
            (evaluations, lambda e, b: DagsterEvent.from_step(
                DagsterEventType.ASSET_CHECK_EVALUATION, step_context, e, batch_metadata=b,
                message=f"Asset check '{e.check_name}' on '{e.asset_key.to_user_string()}' {'passed' if e.passed else 'did not pass'}.")),
        ):
            batch_id = generate_event_batch_id()
            for i, event in enumerate(events):
                # logs (and so stores) the event; kept in the step's event list as log_event does
                self._op_context._events.append(to_event(event, DagsterEventBatchMetadata(batch_id, i == len(events) - 1)))

    def __enter__(self) -> "PartitionEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
