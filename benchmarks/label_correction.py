"""Label-correction benchmark at the original's scale, on the local object store.

    .venv/bin/python benchmarks/label_correction.py [--batches 16889] [--videos 50000] [--dim 512]

Dataset (media_assets_tests/label_data.py): 16,889 batches of 128 rows (video 512-d, audio
128-d float32, 2 targets), 85 % exact embeddings, 12 % with float noise, 3 % unknown; master
table 50,000 x 512. Prints batches/second for, in the same run:
  platform   the single-run backfill path: all partitions in ONE `label_correction` run
             (execute_in_process with a partition range, as a BackfillPolicy.multi_run run does)
  I/O floor  read + unpickle + pickle + write every batch, no matching, same thread pool
  naive      the original's per-row Python loop with np.array_equal over the master table,
             timed on a sample of rows and extrapolated
Targets: whole backfill < 600 s; platform <= 1.25x the I/O floor.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pickle
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.defs.labels import batch_partitions  # noqa: E402
from media_assets.defs.labels import defs as label_defs  # noqa: E402
from media_assets.kernels.safe_pickle import safe_loads  # noqa: E402
from media_assets.resources.labels import LabelCorrectionSettings  # noqa: E402
from media_assets.storage import ObjectStoreResource  # noqa: E402
from media_assets_tests.label_data import write_label_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=16_889)
    p.add_argument("--videos", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--naive-rows", type=int, default=6)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-labels-") as tmp:
        resource = ObjectStoreResource(backend="local", data_root=str(Path(tmp) / "data"))
        store = resource.get_store()
        settings = LabelCorrectionSettings(partitions_per_run=args.batches)
        t = time.perf_counter()
        ds = write_label_dataset(store, settings.bucket, n_videos=args.videos, dim=args.dim, d_audio=128,
                                 n_batches=args.batches, rows=(128, 128), exact_share=0.85, unknown_share=0.03,
                                 malformed=(), seed=0)
        keys = list(ds.expected)
        print(f"generated {len(keys)} batches in {time.perf_counter() - t:.0f} s", flush=True)

        # I/O floor: the same transfers and (de)serialisation, no matching
        def copy(key):
            batch = pickle.loads(store.get_bytes(settings.bucket, key))
            store.put_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), settings.bucket, "floor/" + key)

        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(settings.transfer_concurrency) as pool:
            list(pool.map(copy, keys))
        floor_s = time.perf_counter() - t
        print(f"I/O floor: {floor_s:.1f} s", flush=True)

        # the platform: one run over the whole partition range
        defs = dg.Definitions.merge(label_defs, dg.Definitions(resources={"object_store": resource, "label_settings": settings}))
        # the project's instance configuration (batched SQLite event storage), in a temp dir
        instance_config = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
        with dg.instance_for_test(overrides=instance_config) as instance:
            instance.add_dynamic_partitions(batch_partitions.name, keys)
            dg.materialize(list(label_defs.assets), selection=["video_embedding_index"], instance=instance,
                           resources={"object_store": resource, "label_settings": settings})
            job = defs.resolve_job_def("label_correction")
            t = time.perf_counter()
            result = job.execute_in_process(instance=instance, tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
            platform_s = time.perf_counter() - t
            print(f"platform run: {platform_s:.1f} s, success={result.success}", flush=True)
            assert result.success
            n_mats = len(result.get_asset_materialization_events())
        wrong = 0
        for key in keys[:: max(1, len(keys) // 200)]:
            corrected = safe_loads(store.get_bytes(settings.bucket, settings.corrected_key(key)))
            wrong += not np.array_equal(corrected["targets"], ds.expected[key])
        print(f"platform: {platform_s:.1f} s, {n_mats} partition materializations, {wrong} wrong of 200 sampled", flush=True)

        # naive reference: the original per-row loop, on a sample of rows
        master = safe_loads(store.get_bytes(settings.bucket, settings.master_key))
        batch = safe_loads(store.get_bytes(settings.bucket, keys[0]))
        t = time.perf_counter()
        for row in batch["video_embeddings"][: args.naive_rows]:
            for vid, emb in master.items():
                if np.array_equal(row, emb):
                    break
        naive_row_s = (time.perf_counter() - t) / args.naive_rows
        naive_s = naive_row_s * 128 * len(keys)

    n = len(keys)
    print()
    print(f"{'path':<36}{'seconds':>12}{'batches/s':>12}{'vs floor':>10}")
    print(f"{'platform (1 run, all partitions)':<36}{platform_s:>12.1f}{n / platform_s:>12.1f}{platform_s / floor_s:>10.3f}")
    print(f"{'bare I/O floor':<36}{floor_s:>12.1f}{n / floor_s:>12.1f}{1:>10.3f}")
    print(f"{'naive per-row loop (extrapolated)':<36}{naive_s:>12.0f}{n / naive_s:>12.4f}{naive_s / floor_s:>10.0f}")
    print(f"targets: platform < 600 s -> {'met' if platform_s < 600 else 'MISSED'}; <= 1.25x floor -> {'met' if platform_s <= 1.25 * floor_s else 'MISSED'}")


if __name__ == "__main__":
    main()
