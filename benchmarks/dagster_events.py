"""What Dagster's public API costs per partition when one ranged run records many partitions
(issue 32: why a 16,889-batch label backfill is bound by event writes), on the project's
SQLite instance and on the production Postgres instance file.

    .venv/bin/python benchmarks/dagster_events.py [--partitions 2000] [--instance sqlite|postgres|both]

Each row is one ranged run of an asset over ``--partitions`` dynamic partitions that does no
work but record each partition, with the label pipeline's metadata (13 fields), in one of the
two public ways:
  log_event      ``context.log_event(AssetMaterialization(partition=...))`` per partition: one
                 event-log write each
  + 1 check      the same, plus one ``AssetCheckEvaluation(partition=...)`` per partition (what
                 ``corrected_batches`` does: its ``batch_verified`` evaluation, pass or fail)
  ranged output  ``context.add_asset_metadata(..., partition_key=...)`` per partition, then one
                 ``MaterializeResult`` for the range: Dagster writes the range's materializations
                 as one batch when ``DAGSTER_EVENT_BATCH_SIZE`` > 0
each with Dagster's defaults and with ``DAGSTER_EVENT_BATCH_SIZE=1000`` and/or
``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true`` (one planned event per run). A last row
is no run: ``DagsterInstance.report_runless_asset_event`` per partition, what the daemon does
with ``new_batch_sensor``'s arrival records (one materialization of ``training_batches`` per
new batch, ``labels/sensors.py:record_arrivals``). Every
row runs in a fresh process (the variables are read by Dagster at import and run creation).
Prints seconds, ms per partition, and the ms per partition extrapolated to 16,889 batches.
On Postgres it also prints the database sessions (connections) opened per partition
(``pg_stat_database.sessions``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [  # (name, mode, environment)
    ("log_event, defaults", "log", {}),
    ("log_event, batch size 1000", "log", {"DAGSTER_EVENT_BATCH_SIZE": "1000"}),
    ("log_event, planned per run", "log", {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"}),
    ("log_event + 1 check evaluation", "log+check", {}),
    ("ranged output, batch size 1000", "output", {"DAGSTER_EVENT_BATCH_SIZE": "1000"}),
    ("sensor arrival records (runless)", "runless", {}),
]
METADATA = {"corrected_key": "corrected/batch_1_0.pickle", "batch_etag": "0123456789abcdef", "rows": 128, "exact_matches": 100,
            "approximate_matches": 20, "unmatched": 8, "matched_without_targets": 0, "targets_changed": 30,
            "unmatched_rows": list(range(8)), "master_etag": "m" * 32, "targets_etag": "t" * 32, "unmatched_share": 0.0625,
            "up_to_date": False}


def child(mode: str, n: int, instance_kind: str) -> None:
    """One ranged run in this process; prints ``{"seconds", "materialized"}`` as JSON."""
    import dagster as dg
    import yaml

    from media_assets.instance_config import DAGSTER_YAML
    from media_assets.lib.records import ranged_run_tags

    parts = dg.DynamicPartitionsDefinition(name="bench_batches")

    @dg.asset(name="recorded", partitions_def=parts, output_required=False)
    def log_each(context):
        for key in context.partition_keys:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=METADATA))
        yield from ()

    @dg.asset(name="recorded", partitions_def=parts)
    def ranged_output(context):
        for key in context.partition_keys:
            context.add_asset_metadata(METADATA, partition_key=key)
        return dg.MaterializeResult()

    @dg.asset_check(asset="recorded", partitions_def=parts, name="verified")  # re-verifies one partition on demand
    def verified(context):
        return dg.AssetCheckResult(passed=True)

    @dg.asset(name="recorded", partitions_def=parts, output_required=False)
    def log_each_checked(context):
        for key in context.partition_keys:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=METADATA))
            context.log_event(dg.AssetCheckEvaluation(asset_key=context.asset_key, check_name="verified", partition=key, passed=True,
                                                      metadata={"unmatched_share": 0.0625}))
        yield from ()

    asset = {"log": log_each, "log+check": log_each_checked, "output": ranged_output}.get(mode, log_each)
    job = dg.Definitions(assets=[asset], asset_checks=[verified] if mode == "log+check" else [], jobs=[dg.define_asset_job("record", selection=[asset])]).resolve_job_def("record")
    keys = [f"batch_{i}_0.pickle" for i in range(n)]

    @contextlib.contextmanager
    def instance():
        if instance_kind == "sqlite":
            with dg.instance_for_test(overrides=yaml.safe_load(DAGSTER_YAML)) as inst:
                yield inst
        else:
            with dg.DagsterInstance.from_config(os.environ["BENCH_DAGSTER_HOME"]) as inst:
                inst.wipe()
                yield inst

    with instance() as inst:
        inst.add_dynamic_partitions("bench_batches", keys)
        started = time.perf_counter()
        if mode == "runless":
            for key in keys:
                inst.report_runless_asset_event(dg.AssetMaterialization(asset_key="recorded", partition=key, metadata=METADATA))
        else:
            result = job.execute_in_process(instance=inst, tags=ranged_run_tags(keys[0], keys[-1]))
            assert result.success
        seconds = time.perf_counter() - started
        materialized = len(inst.get_materialized_partitions(dg.AssetKey("recorded")))
    print(json.dumps({"seconds": seconds, "materialized": materialized}))


def sessions(env: dict) -> int:
    """Sessions the Postgres server has opened so far (all databases)."""
    import psycopg2

    with psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=env["DAGSTER_PG_PORT"], user=env["DAGSTER_PG_USERNAME"],
                          password=env["DAGSTER_PG_PASSWORD"], dbname=env["DAGSTER_PG_DB"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT sum(sessions) FROM pg_stat_database")
        return int(cur.fetchone()[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=2000)
    p.add_argument("--instance", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    sys.path.insert(0, str(ROOT))
    kinds = ["sqlite", "postgres"] if args.instance == "both" else [args.instance]
    print(f"{'instance':<10}{'variant':<34}{'seconds':>9}{'ms/partition':>14}{'16,889 s':>10}{'sessions/partition':>20}")
    for kind in kinds:
        with contextlib.ExitStack() as stack:
            env = {}
            if kind == "postgres":
                from media_assets.testing.postgres_server import postgres_server

                env = stack.enter_context(postgres_server())
                home = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-events-"))
                shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", Path(home) / "dagster.yaml")
                env = {**env, "BENCH_DAGSTER_HOME": home}
            for name, mode, extra in VARIANTS:
                before = sessions(env) if kind == "postgres" else 0
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(args.partitions), kind], env={**os.environ, **env, **extra},
                                     capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                assert row["materialized"] == args.partitions, row
                per = 1000 * row["seconds"] / args.partitions
                opened = f"{(sessions(env) - before) / args.partitions:.1f}" if kind == "postgres" else ""
                print(f"{kind:<10}{name:<34}{row['seconds']:>9.1f}{per:>14.1f}{per * 16.889:>10.0f}{opened:>20}", flush=True)


if __name__ == "__main__":
    main()
