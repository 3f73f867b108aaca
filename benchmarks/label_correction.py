"""Label-correction benchmark at the original's scale, on the local object store.

    .venv/bin/python benchmarks/label_correction.py [--batches 16889] [--videos 50000] [--dim 512]

Dataset (media_assets/testing/label_data.py): 16,889 batches of 128 rows (video 512-d, audio
128-d float32, 2 targets), 85 % exact embeddings, 12 % with float noise, 3 % unknown; master
table 50,000 x 512. Prints seconds, batches/second and CPU seconds (user + system, this process and its worker
processes) for, in the same run:
  platform   the single-run backfill path: all partitions in ONE `label_correction` run
             (execute_in_process with a partition range, as a BackfillPolicy.multi_run run
             does), on the project's instance configuration (dagster.yaml: Dagster's stock
             SQLite storage); each partition's materialization is logged with `log_event`
  events     Dagster's share alone: an asset that logs the same per-partition
             materializations (same metadata) with no I/O and no matching, plus the
             per-partition planned events at run creation
  I/O floor  read + unpickle + pickle + write every batch, no matching, same thread pool
  naive      the original's per-row Python loop with np.array_equal over the master table,
             timed on a sample of rows and extrapolated
``--planned-events per-run`` runs both rows with Dagster's one-planned-event-per-run switch
(docs/architecture.md, "Large label backfills"). Targets: whole backfill < 600 s; platform <= 1.25x the I/O floor. ``--instance postgres`` runs the
platform and events rows on the production instance file (deploy/dagster.postgres.yaml) against
a PostgreSQL server started for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import concurrent.futures
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.defs.labels import batch_partitions  # noqa: E402
from media_assets.instance_config import DAGSTER_YAML  # noqa: E402
from media_assets.defs.labels import defs as label_defs  # noqa: E402
from media_assets.lib.records import ranged_run_tags, run_events, storage_kind  # noqa: E402
from media_assets.kernels.safe_pickle import safe_loads  # noqa: E402
from media_assets.resources.labels import LabelCorrectionSettings, label_tables_io_manager  # noqa: E402
from media_assets.resources.events import EventQueueResource
from media_assets.resources.reconcile import ReconcileSettings  # noqa: E402
from media_assets.storage import ObjectStoreResource  # noqa: E402
from media_assets.testing.label_data import write_label_dataset  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its reaped child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def measured(results: dict, name: str):
    """Record ``(wall seconds, CPU seconds)`` of the block under ``name``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    yield
    results[name] = (time.perf_counter() - wall, cpu_seconds() - cpu)
    print(f"{name}: {results[name][0]:.1f} s wall, {results[name][1]:.1f} s CPU", flush=True)


def events_only_asset(metadata: dict):
    """The platform's per-partition bookkeeping with nothing else: the same `log_event` per partition."""

    @dg.asset(name="corrected_batches", partitions_def=batch_partitions, output_required=False)
    def bookkeeping(context):
        for key in context.partition_keys:
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=key,
                                                      metadata={**metadata, "corrected_key": "corrected/" + key}))
        yield from ()

    return bookkeeping


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=16_889)
    p.add_argument("--videos", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--naive-rows", type=int, default=6)
    p.add_argument("--transfer-concurrency", type=int, default=LabelCorrectionSettings().transfer_concurrency,
                   help="threads for the platform and the floor alike")
    p.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite",
                   help="postgres: run on deploy/dagster.postgres.yaml against a PostgreSQL server started here (Debian's postgresql)")
    p.add_argument("--postgres", action="store_true", help="the same as --instance postgres")
    p.add_argument("--skip-events-only", action="store_true", help="skip the events-only row")
    p.add_argument("--planned-events", choices=["per-partition", "per-run"], default="per-partition",
                   help="per-run sets DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true (docs/architecture.md: one planned event "
                   "per ranged run instead of one per partition; failed partitions then show as missing)")
    args = p.parse_args()
    if args.planned_events == "per-run":
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"
    args.postgres = args.postgres or args.instance == "postgres"
    results: dict[str, tuple[float, float]] = {}
    # the project's instance configuration (stock SQLite storage), in a temp dir
    instance_config = yaml.safe_load(DAGSTER_YAML)
    stack = contextlib.ExitStack()
    if args.postgres:
        import shutil

        from media_assets.testing.postgres_server import postgres_server

        os.environ.update(stack.enter_context(postgres_server()))
        pg_home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-home-")))
        shutil.copy(Path(__file__).resolve().parents[1] / "deploy" / "dagster.postgres.yaml", pg_home / "dagster.yaml")

    @contextlib.contextmanager
    def new_instance():
        """An empty instance: the project's SQLite configuration, or the Postgres deploy file."""
        if not args.postgres:
            with dg.instance_for_test(overrides=instance_config) as instance:
                yield instance
            return
        with dg.DagsterInstance.from_config(str(pg_home)) as instance:
            instance.wipe()
            yield instance

    with tempfile.TemporaryDirectory(prefix="bench-labels-") as tmp:
        resource_ = ObjectStoreResource(backend="local", data_root=str(Path(tmp) / "data"))
        store = resource_.get_store()
        settings = LabelCorrectionSettings(partitions_per_run=args.batches, transfer_concurrency=args.transfer_concurrency)
        t = time.perf_counter()
        ds = write_label_dataset(store, settings.bucket, n_videos=args.videos, dim=args.dim, d_audio=128,
                                 n_batches=args.batches, rows=(128, 128), exact_share=0.85, unknown_share=0.03,
                                 malformed=(), seed=0)
        keys = list(ds.expected)
        range_tags = ranged_run_tags(keys[0], keys[-1])
        print(f"generated {len(keys)} batches in {time.perf_counter() - t:.0f} s", flush=True)

        # I/O floor: the same transfers and (de)serialisation, no matching
        def copy(key):
            batch = pickle.loads(store.get_bytes(settings.bucket, key))
            store.put_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), settings.bucket, "floor/" + key)

        with measured(results, "bare I/O floor"), concurrent.futures.ThreadPoolExecutor(settings.transfer_concurrency) as pool:
            list(pool.map(copy, keys))

        # the platform: one run over the whole partition range
        resources = {"object_store": resource_, "label_settings": settings, "event_queue": EventQueueResource(), "reconcile_settings": ReconcileSettings()}
        defs = dg.Definitions.merge(label_defs, dg.Definitions(resources=resources))
        with new_instance() as instance:
            print(f"instance: {storage_kind(instance)}", flush=True)
            instance.add_dynamic_partitions(batch_partitions.name, keys)
            dg.materialize(list(label_defs.assets), selection=["video_embedding_index"], instance=instance,
                           resources={**resources, "label_tables": label_tables_io_manager})
            job = defs.resolve_job_def("label_correction")
            with measured(results, "platform (1 run, all partitions)"):
                result = job.execute_in_process(instance=instance, tags=range_tags)
            assert result.success
            planned = list(run_events(instance, result.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED))
            print(f"planned events: {args.planned_events} ({len(planned)} for the run)", flush=True)
            assert len(instance.get_materialized_partitions(dg.AssetKey("corrected_batches"))) == len(keys)
            sample_metadata = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
        wrong = 0
        for key in keys[:: max(1, len(keys) // 200)]:
            corrected = safe_loads(store.get_bytes(settings.bucket, settings.corrected_key(key)))
            wrong += not np.array_equal(corrected["targets"], ds.expected[key])
        print(f"platform: {len(keys)} partitions materialized, {wrong} wrong of 200 sampled", flush=True)

        # Dagster's share: the same per-partition events, nothing else
        sample_metadata.pop("corrected_key")
        bookkeeping = events_only_asset(sample_metadata)
        job = dg.Definitions(assets=[bookkeeping], jobs=[dg.define_asset_job("bookkeeping", selection=[bookkeeping])]).resolve_job_def("bookkeeping")
        if not args.skip_events_only:
            with new_instance() as instance:
                instance.add_dynamic_partitions(batch_partitions.name, keys)
                with measured(results, "events only (no I/O, no matching)"):
                    assert job.execute_in_process(instance=instance, tags=range_tags).success

        # naive reference: the original per-row loop, on a sample of rows
        master = safe_loads(store.get_bytes(settings.bucket, settings.master_key))
        batch = safe_loads(store.get_bytes(settings.bucket, keys[0]))
        t = time.perf_counter()
        for row in batch["video_embeddings"][: args.naive_rows]:
            for vid, emb in master.items():
                if np.array_equal(row, emb):
                    break
        naive_s = (time.perf_counter() - t) / args.naive_rows * 128 * len(keys)

    n, (floor_s, _) = len(keys), results["bare I/O floor"]
    print()
    print(f"{'path':<38}{'seconds':>10}{'CPU s':>9}{'batches/s':>11}{'vs floor':>10}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<38}{wall:>10.1f}{cpu:>9.1f}{n / wall:>11.1f}{wall / floor_s:>10.3f}")
    print(f"{'naive per-row loop (extrapolated)':<38}{naive_s:>10.0f}{'':>9}{n / naive_s:>11.4f}{naive_s / floor_s:>10.0f}")
    platform_s = results["platform (1 run, all partitions)"][0]
    print(f"targets: platform < 600 s -> {'met' if platform_s < 600 else 'MISSED'}; "
          f"<= 1.25x floor -> {'met' if platform_s <= 1.25 * floor_s else 'MISSED'} ({platform_s / floor_s:.2f}x)")
    stack.close()


if __name__ == "__main__":
    main()
