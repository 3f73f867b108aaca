"""Batched per-partition materializations (defs/partition_events.py) on the batched SQLite
instance storage (instance_storage.py): the instance must end up with the same records as
Dagster's own event-by-event path, in far fewer writes."""

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from media_assets.defs.partition_events import PartitionEvents
from media_assets.instance_storage import BatchedSqliteEventLogStorage

parts = dg.DynamicPartitionsDefinition(name="parts")
FAIL_TAG = "test/fail_partition"


def _asset(batched: bool):
    @dg.asset(name="ranged", partitions_def=parts, output_required=False)
    def ranged(context: dg.AssetExecutionContext):
        bad = context.run.tags.get(FAIL_TAG)
        with PartitionEvents(context, chunk=100) as events:
            for key in context.partition_keys:
                if key == bad:
                    continue
                materialization = dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata={"rows": len(key), "key": key})
                evaluation = dg.AssetCheckEvaluation(asset_key=context.asset_key, check_name="odd_rows", partition=key,
                                                     passed=len(key) % 2 == 1, metadata={"rows": len(key)})
                if batched:
                    events.materialization(materialization)
                    events.check_evaluation(evaluation)
                else:
                    context.log_event(materialization)
                    context.log_event(evaluation)
        if bad:
            raise dg.Failure(f"{bad} failed")
        yield from ()

    return ranged


def _run(instance, batched: bool, keys: list[str], tags: dict | None = None) -> dg.ExecuteInProcessResult:
    asset = _asset(batched)

    @dg.asset_check(asset=asset, name="odd_rows", partitions_def=parts)
    def odd_rows() -> dg.AssetCheckResult:  # evaluated by the asset itself; defined for the UI
        return dg.AssetCheckResult(passed=True)

    selection = dg.AssetSelection.assets(asset).without_checks()
    defs = dg.Definitions(assets=[asset], asset_checks=[odd_rows], jobs=[dg.define_asset_job("ranged_job", selection=selection)])
    job = defs.resolve_job_def("ranged_job")
    return job.execute_in_process(instance=instance, raise_on_error=False, tags={
        ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1], **(tags or {})})


def _records(instance) -> dict[str, tuple]:
    records = instance.fetch_materializations(dg.AssetKey("ranged"), limit=10_000).records
    assert len(records) == len({r.partition_key for r in records}), "a partition was recorded twice"
    return {r.partition_key: (r.asset_materialization.metadata["rows"].value, r.asset_materialization.metadata["key"].value) for r in records}


KEYS = [f"batch_{i}_0.pickle" for i in range(1, 251)]


@pytest.fixture
def plain_instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_batched_storage_matches_event_by_event_storage(instance, plain_instance, monkeypatch):
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    batch_sizes = []
    original = BatchedSqliteEventLogStorage.store_event_batch

    def counting(self, events):
        batch_sizes.append(len(events))
        return original(self, events)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", counting)
    for inst, batched in ((instance, True), (plain_instance, False)):
        inst.add_dynamic_partitions(parts.name, KEYS)
        result = _run(inst, batched, KEYS)
        assert result.success
        assert len(result.get_asset_materialization_events()) == len(KEYS)

    # planned events (250, at run creation), materializations
    # and check evaluations (chunks of 100) went in batches
    batch_sizes.remove(250)  # the planned events
    assert sum(batch_sizes) == 2 * len(KEYS) and max(batch_sizes) <= 100 and len(batch_sizes) <= 6, batch_sizes
    expected = {k: (len(k), k) for k in KEYS}
    assert _records(instance) == _records(plain_instance) == expected
    assert instance.get_materialized_partitions(dg.AssetKey("ranged")) == set(KEYS)
    # the asset's latest-event row points at the last partition written, as event by event
    for inst in (instance, plain_instance):
        latest = inst.get_latest_materialization_event(dg.AssetKey("ranged"))
        assert latest.asset_materialization.partition == KEYS[-1]
        record = inst.get_asset_records([dg.AssetKey("ranged")])[0].asset_entry
        assert record.last_run_id == latest.run_id
    # check evaluations: same per-partition execution records as event by event
    check_key = dg.AssetCheckKey(dg.AssetKey("ranged"), "odd_rows")
    for inst in (instance, plain_instance):
        history = inst.event_log_storage.get_asset_check_execution_history(check_key, limit=1000)
        assert sorted((r.partition, r.status.value) for r in history) == sorted(
            (k, "SUCCEEDED" if len(k) % 2 else "FAILED") for k in KEYS)
    # run-level reads (the run's own log) see every event once
    run_id = instance.get_latest_materialization_event(dg.AssetKey("ranged")).run_id
    logged = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert sorted(e.dagster_event.partition for e in logged) == sorted(KEYS)


def test_failed_partition_is_reported_failed_and_the_rest_materialized(instance):
    """Per-partition planned events are kept (not one range event), so the partition the run
    did not write shows as failed in the partition status, the others as materialized."""
    instance.add_dynamic_partitions(parts.name, KEYS[:30])
    result = _run(instance, True, KEYS[:30], tags={FAIL_TAG: KEYS[7]})
    assert not result.success
    assert instance.get_materialized_partitions(dg.AssetKey("ranged")) == set(KEYS[:30]) - {KEYS[7]}
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    status = get_and_update_asset_status_cache_value(instance, dg.AssetKey("ranged"), parts)
    assert set(status.deserialize_failed_partition_subsets(parts).get_partition_keys()) == {KEYS[7]}


def test_materialization_without_partition_is_refused(instance):
    @dg.asset(partitions_def=parts, output_required=False)
    def unpartitioned_event(context: dg.AssetExecutionContext):
        PartitionEvents(context).materialization(dg.AssetMaterialization(asset_key=context.asset_key))
        yield from ()

    instance.add_dynamic_partitions(parts.name, ["a"])
    result = dg.materialize([unpartitioned_event], instance=instance, partition_key="a", raise_on_error=False)
    assert not result.success
    assert "materialization has no partition" in str(result.failure_data_for_node("unpartitioned_event").error.cause)
