"""Generator of a realistic label-correction dataset, with ground truth (used by the tests
and by ``benchmarks/label_correction.py``).

Master table: ``n_videos`` clustered embeddings (``n_clusters`` centres + spread), float32.
Targets CSV: ``video_id`` + ``n_targets`` float columns; ``missing_target_share`` of the videos
are absent from it. Batches of ``rows`` rows: each row belongs to a random video and its
embedding is exact (``exact_share``), carries float noise of relative size ``noise`` (cosine
similarity still > 0.99999), or belongs to no video (``unknown_share``). Old targets are random,
so nearly every matched row changes.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from media_assets.storage import ObjectStore


class _Exploit:
    """Unpickling this runs ``os.system`` -- the restricted unpickler must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class LabelDataset:
    ids: np.ndarray
    matrix: np.ndarray
    targets: pd.DataFrame  # video_id + target columns, as written
    expected: dict[str, np.ndarray] = field(default_factory=dict)  # batch key -> expected targets
    kinds: dict[str, np.ndarray] = field(default_factory=dict)  # batch key -> 0 none / 1 exact / 2 approx
    originals: dict[str, bytes] = field(default_factory=dict)  # batch key -> pickled bytes as uploaded
    malformed: dict[str, str] = field(default_factory=dict)  # batch key -> expected error fragment


def make_master(n_videos: int, dim: int, rng: np.random.Generator, n_clusters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    matrix = (centres[rng.integers(0, n_clusters, n_videos)] + 0.35 * rng.normal(size=(n_videos, dim))).astype(np.float32)
    ids = np.array([f"vid_{i:06d}" for i in range(n_videos)])
    return ids, matrix


def write_label_dataset(
    store: ObjectStore,
    bucket: str,
    *,
    n_videos: int = 5000,
    dim: int = 64,
    d_audio: int = 32,
    n_batches: int = 12,
    rows: tuple[int, int] = (64, 256),
    n_targets: int = 2,
    exact_share: float = 0.85,
    unknown_share: float = 0.03,
    noise: float = 1e-4,
    missing_target_share: float = 0.01,
    master_format: str = "dict",
    malformed: Iterable[str] = ("missing_key", "wrong_dim", "row_mismatch", "exploit", "not_pickle", "empty", "nan"),
    exploit_marker: str = "/tmp/media_assets_exploit_ran",
    seed: int = 0,
    batch_numbers: Iterable[int] | None = None,
) -> LabelDataset:
    rng = np.random.default_rng(seed)
    ids, matrix = make_master(n_videos, dim, rng)
    if master_format == "dict":
        table: object = {vid: matrix[i] for i, vid in enumerate(ids)}
    else:
        table = pd.DataFrame({"video_id": ids, "embedding": list(matrix)})
    store.put_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL), bucket, "rf_video_embeddings.pkl")

    values = rng.random((n_videos, n_targets)).round(4)
    has_target = rng.random(n_videos) >= missing_target_share
    targets = pd.DataFrame({"video_id": ids[has_target], **{f"target_{j}": values[has_target, j] for j in range(n_targets)}})
    store.put_bytes(targets.to_csv(index=False).encode(), bucket, "targets.csv")

    ds = LabelDataset(ids=ids, matrix=matrix, targets=targets)
    numbers = list(batch_numbers) if batch_numbers is not None else list(range(1, n_batches + 1))
    for b in numbers:
        n = int(rng.integers(rows[0], rows[1] + 1))
        video = rng.integers(0, n_videos, n)
        u = rng.random(n)
        kind = np.where(u < exact_share, 1, np.where(u < 1 - unknown_share, 2, 0)).astype(np.int8)
        emb = matrix[video].copy()
        noisy = kind == 2
        if noisy.any():
            emb[noisy] += (noise * np.abs(emb[noisy]).mean() * rng.normal(size=(noisy.sum(), dim))).astype(np.float32)
        unknown = kind == 0
        emb[unknown] = (3 * rng.normal(size=(unknown.sum(), dim))).astype(np.float32)
        old = rng.random((n, n_targets)).astype(np.float32)
        old_t = old[:, 0] if n_targets == 1 else old
        expected = old_t.copy()
        gets = (kind > 0) & has_target[video]
        expected[gets] = (values[video[gets], 0] if n_targets == 1 else values[video[gets]]).astype(np.float32)
        batch = {
            "audio_embeddings": rng.normal(size=(n, d_audio)).astype(np.float32),
            "video_embeddings": emb,
            "targets": old_t,
            "sample_ids": np.arange(n, dtype=np.int64) + 1000 * b,
        }
        key = f"batch_{b}_0.pickle"
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        store.put_bytes(data, bucket, key)
        ds.expected[key], ds.kinds[key], ds.originals[key] = expected, kind, data

    bad = {
        "missing_key": ({"audio_embeddings": np.zeros((4, d_audio), np.float32), "targets": np.zeros(4)}, "missing key 'video_embeddings'"),
        "wrong_dim": ({"audio_embeddings": np.zeros((4, d_audio), np.float32), "video_embeddings": np.zeros((4, dim + 1), np.float32), "targets": np.zeros((4, n_targets))}, f"d_v={dim + 1}"),
        "row_mismatch": ({"audio_embeddings": np.zeros((4, d_audio), np.float32), "video_embeddings": np.zeros((5, dim), np.float32), "targets": np.zeros((4, n_targets))}, "has 5 rows"),
        "exploit": ({"audio_embeddings": _Exploit(exploit_marker)}, "refusing to load global"),
        "empty": ({"audio_embeddings": np.zeros((0, d_audio), np.float32), "video_embeddings": np.zeros((0, dim), np.float32),
                   "targets": np.zeros((0, n_targets))}, "0 rows"),
        "nan": ({"audio_embeddings": np.zeros((4, d_audio), np.float32),
                 "video_embeddings": np.where(np.arange(4 * dim).reshape(4, dim) == 5, np.nan, 0).astype(np.float32),
                 "targets": np.zeros((4, n_targets))}, "video_embeddings has NaN"),
    }
    start = (max(numbers) if numbers else 0) + 1
    for i, name in enumerate(malformed):
        key = f"batch_{start + i}_0.pickle"
        if name == "not_pickle":
            data, fragment = b"video_id,target\nthis is a csv, not a pickle\n", "not a loadable batch pickle"
        else:
            obj, fragment = bad[name]
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        store.put_bytes(data, bucket, key)
        ds.originals[key] = data
        ds.malformed[key] = fragment
    return ds


def load_pickle(data: bytes):
    """Trusted load for the test's own output."""
    return pickle.load(io.BytesIO(data))
