"""Key-frame vector table at corpus scale: nearest-neighbour queries over 1,000,000 stored
1280-d embeddings (the local embedder's dimension) in the table `key_frame_vectors` writes
(`media_assets.storage.vectors.KeyFrameVectors`, LanceDB on the local disk).

    .venv/bin/python benchmarks/vector_search.py [--rows 1000000] [--dim 1280] [--queries 200]

Data: synthetic, seeded. Real key-frame embeddings cannot be made at this scale here (1 M
frames would take ~3 h of the local model on 2 cores), so the table holds what a corpus of
key frames looks like to a search: 20,000 "scenes" (random unit directions), each seen in
~50 key frames (the scene plus Gaussian noise, cosine ~0.9 to its scene), L2-normalised.
Queries are stored key frames with fresh noise of the same size (a new frame of a known
scene). Ground truth: exact top-10 by brute-force cosine in numpy over all rows.

Prints the write time, the IVF index's build time, then per search method the latency per
query (median and 95th percentile, one query at a time as `similar` and `key_frame_vectors`
ask) and recall@10 against the exact top-10; then the cost of replacing one video's key frames
(100 rows, `replace_video`, then `maintain`: the new rows are searched exactly beside the
index) and of folding new rows into the index (`optimize`, run by `maintain` once new rows are
a tenth of the table).
Target (issue 33): < 50 ms a query with recall@10 >= 0.95; one video's append O(that video).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.storage.vectors import KeyFrameVectors, rows, schema  # noqa: E402


def corpus(n: int, dim: int, scenes: int, seed: int = 0, noise: float = 0.45) -> np.ndarray:
    """``(n, dim) float32`` unit vectors: ``scenes`` random unit directions, each row one of
    them plus Gaussian noise of norm ~``noise`` (cosine ~0.9 to its scene), normalised."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((scenes, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centers[rng.integers(0, scenes, stop - start)] + rng.standard_normal((stop - start, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """``(q, k)`` row indices of the ``k`` largest cosine similarities (rows are unit vectors)."""
    top = np.empty((len(queries), k), np.int64)
    for i in range(0, len(queries), 16):
        sims = queries[i : i + 16] @ data.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        top[i : i + 16] = np.take_along_axis(part, order, axis=1)
    return top


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--scenes", type=int, default=20_000)
    p.add_argument("--nprobes", type=int, nargs="+", default=[10, 20, 30, 40])
    p.add_argument("--skip-exact", action="store_true", help="do not time LanceDB's exact search (~5 s a query at 1,000,000 rows)")
    args = p.parse_args()
    k = 10

    data = corpus(args.rows, args.dim, args.scenes)
    rng = np.random.default_rng(1)
    picked = rng.choice(args.rows, args.queries, replace=False)
    queries = data[picked] + rng.standard_normal((args.queries, args.dim), dtype=np.float32) * np.float32(0.45 / np.sqrt(args.dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    t = time.perf_counter()
    truth = exact_top(data, queries, k)
    print(f"{args.rows:,} rows x {args.dim}: exact top-{k} of {args.queries} queries in numpy: {time.perf_counter() - t:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-vectors-") as tmp:
        store = KeyFrameVectors(tmp)
        table = store.db.create_table("key_frames", schema=schema(args.dim))
        t = time.perf_counter()
        for start in range(0, args.rows, 50_000):
            stop = min(args.rows, start + 50_000)
            n = stop - start
            table.add(pa.table({
                "id": [f"v{i // 100}#{i % 100}" for i in range(start, stop)], "video": [f"v{i // 100}" for i in range(start, stop)],
                "frame_index": pa.array(np.arange(start, stop) % 100), "timestamp_s": pa.array((np.arange(start, stop) % 100).astype(float)),
                "uri": [f"s3://media/v{i // 100}/{i % 100}.jpg" for i in range(start, stop)], "repeat_of": pa.nulls(n, pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(data[start:stop].reshape(-1)), args.dim),
            }, schema=schema(args.dim)))
        print(f"written in {time.perf_counter() - t:.1f} s", flush=True)
        row_of = {f"v{i // 100}#{i % 100}": i for i in range(args.rows)}

        def measure(name: str, nprobes: int, n_queries: int = args.queries) -> None:
            table = store.db.open_table("key_frames")  # the latest version (with the index once built)
            latencies, hits = [], 0
            for q, want in zip(queries[:n_queries], truth[:n_queries]):
                t = time.perf_counter()
                found = table.search(q).distance_type("cosine").limit(k).nprobes(nprobes).select(["id", "_distance"]).to_arrow()
                latencies.append(1000 * (time.perf_counter() - t))
                hits += len({row_of[i] for i in found["id"].to_pylist()} & set(want.tolist()))
            latencies.sort()
            print(f"{name:<28}{statistics.median(latencies):>10.1f}{latencies[max(0, int(0.95 * len(latencies)) - 1)]:>10.1f}"
                  f"{hits / (k * n_queries):>12.3f}", flush=True)

        print(f"{'search':<28}{'p50 ms':>10}{'p95 ms':>10}{'recall@10':>12}")
        if not args.skip_exact:
            measure("exact (no index, 10 queries)", 1, n_queries=10)
        t = time.perf_counter()
        store.build_index()
        print(f"IVF_FLAT index ({int(np.sqrt(args.rows))} lists) built in {time.perf_counter() - t:.1f} s", flush=True)
        for nprobes in args.nprobes:
            measure(f"IVF_FLAT nprobes={nprobes}", nprobes)

        video = corpus(100, args.dim, 100, seed=7)
        t = time.perf_counter()
        store.replace_video("new_video", rows("new_video", list(range(100)), [float(i) for i in range(100)],
                                              [f"s3://media/new/{i}.jpg" for i in range(100)], [None] * 100, video))
        replace_s = time.perf_counter() - t
        t = time.perf_counter()
        done = store.maintain()
        maintain_s = time.perf_counter() - t
        t = time.perf_counter()
        found = store.nearest(video[5], k=1)[0].video
        print(f"one video (100 key frames): replace_video {1000 * replace_s:.0f} ms, maintain {1000 * maintain_s:.0f} ms ({done}); "
              f"a query then {1000 * (time.perf_counter() - t):.0f} ms, finds {found}")
        t = time.perf_counter()
        store._table().optimize()
        print(f"folding new rows into the index and compacting (optimize, once per ~{args.rows // 10:,} new rows): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
