"""Dagster's per-partition bookkeeping in one run over a partition range, four ways.

    .venv/bin/python benchmarks/partition_events.py [--partitions 500,1000]

An asset over a dynamic-partition range that does no work but record one materialization per
partition (the label-correction metadata), timed as a whole run (run creation with its
planned events included), on:
  log_event, default SQLite     `context.log_event` per partition, Dagster's default instance
  log_event, project instance   the same on dagster.yaml's batched SQLite storage (single
                                events are not batched, so this shows the storage alone
                                does not help them)
  add_asset_metadata            `context.add_asset_metadata(partition_key=...)` per partition
                                plus one MaterializeResult (Dagster batches the events, but
                                each call re-lists the dynamic partitions: grows as n^2)
  PartitionEvents               media_assets.defs.partition_events on the project instance
Prints seconds and milliseconds per partition for each size.
"""

import argparse
import sys
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.defs.partition_events import PartitionEvents  # noqa: E402

PARTS = dg.DynamicPartitionsDefinition(name="parts")


def metadata(key: str) -> dict:
    return {"corrected_key": "corrected/" + key, "rows": 128, "exact_matches": 100, "approximate_matches": 20, "unmatched": 8,
            "matched_without_targets": 0, "targets_changed": 100, "unmatched_rows": [1, 5, 77, 100, 101, 120, 127, 3],
            "unmatched_share": 0.0625}


def log_event_asset():
    @dg.asset(name="bookkeeping", partitions_def=PARTS, output_required=False)
    def bookkeeping(context: dg.AssetExecutionContext):
        for key in context.partition_keys:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=metadata(key)))
        yield from ()

    return bookkeeping


def add_asset_metadata_asset():
    @dg.asset(name="bookkeeping", partitions_def=PARTS)
    def bookkeeping(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        for key in context.partition_keys:
            context.add_asset_metadata(metadata=metadata(key), partition_key=key)
        return dg.MaterializeResult()

    return bookkeeping


def partition_events_asset():
    @dg.asset(name="bookkeeping", partitions_def=PARTS, output_required=False)
    def bookkeeping(context: dg.AssetExecutionContext):
        with PartitionEvents(context) as events:
            for key in context.partition_keys:
                events.materialization(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=metadata(key)))
        yield from ()

    return bookkeeping


def timed_run(asset, n: int, overrides: dict | None) -> float:
    job = dg.Definitions(assets=[asset], jobs=[dg.define_asset_job("bookkeeping_job", selection=[asset])]).resolve_job_def("bookkeeping_job")
    keys = [f"batch_{i}_0.pickle" for i in range(1, n + 1)]
    with dg.instance_for_test(overrides=overrides) as instance:
        instance.add_dynamic_partitions(PARTS.name, keys)
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
        seconds = time.perf_counter() - started
        assert result.success
        assert len(instance.get_materialized_partitions(dg.AssetKey("bookkeeping"))) == n
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="500,1000", help="comma-separated partition counts")
    args = p.parse_args()
    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    ways = [
        ("log_event, default SQLite", log_event_asset, None),
        ("log_event, project instance", log_event_asset, project),
        ("add_asset_metadata", add_asset_metadata_asset, project),
        ("PartitionEvents", partition_events_asset, project),
    ]
    rows = []
    for n in (int(x) for x in args.partitions.split(",")):
        for name, make, overrides in ways:
            seconds = timed_run(make(), n, overrides)
            rows.append((name, n, seconds))
            print(f"{name}, {n} partitions: {seconds:.1f} s", flush=True)
    print()
    print(f"{'way':<30}{'partitions':>12}{'seconds':>10}{'ms/partition':>14}")
    for name, n, seconds in rows:
        print(f"{name:<30}{n:>12}{seconds:>10.1f}{seconds / n * 1000:>14.2f}")


if __name__ == "__main__":
    main()
