"""Label-correction kernels: restricted unpickling, the batch contract, matching (against
brute force) and correction (against the generator's ground truth)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from media_assets.kernels.labels import (
    MATCH_APPROX,
    MATCH_EXACT,
    BatchFormatError,
    VideoEmbeddingIndex,
    correct_batch,
    master_table_arrays,
    match_embeddings,
    parse_targets_csv,
    target_rows_for_master,
    validate_batch,
)
from media_assets.kernels.safe_pickle import UnsafePickleError, safe_loads
from media_assets.testing.label_data import _Exploit, make_master, write_label_dataset


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "exploit_ran"
    data = pickle.dumps({"video_embeddings": _Exploit(str(marker))})
    with pytest.raises(UnsafePickleError, match="refusing to load global .*system"):
        safe_loads(data)
    assert not marker.exists()
    pickle.loads(data)  # the same bytes with the plain unpickler do run the command
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_contract_types_load(protocol):
    df = pd.DataFrame({"video_id": ["a", "b"], "embedding": [np.ones(3, np.float32), np.zeros(3, np.float32)]})
    batch = {"audio_embeddings": np.zeros((2, 4), np.float32), "video_embeddings": np.ones((2, 3), np.float32),
             "targets": np.arange(2.0), "extra": {"names": ["x", "y"], "n": np.int64(2)}}
    assert safe_loads(pickle.dumps(df, protocol=protocol))["video_id"].tolist() == ["a", "b"]
    back = safe_loads(pickle.dumps(batch, protocol=protocol))
    assert back["video_embeddings"].dtype == np.float32 and back["extra"]["n"] == 2


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b.pop("targets"), "missing key 'targets'"),
    (lambda b: b.update(video_embeddings=np.zeros((3, 8), np.float32)), "video_embeddings has 3 rows"),
    (lambda b: b.update(video_embeddings=np.zeros((4, 9), np.float32)), "d_v=9"),
    (lambda b: b.update(targets=np.array(["a"] * 4)), "targets must be a numeric"),
    (lambda b: b.update(audio_embeddings=[[0.0]] * 4), "audio_embeddings must be a 2-D float array"),
    (lambda b: b.update(audio_embeddings=np.zeros((0, 2), np.float32), video_embeddings=np.zeros((0, 8), np.float32),
                        targets=np.zeros(0)), "0 rows"),
    (lambda b: b["video_embeddings"].__setitem__((2, 3), np.nan), r"video_embeddings has NaN or infinite values in 1 row\(s\), first rows \[2\]"),
    (lambda b: b["targets"].__setitem__(1, np.inf), "targets has NaN or infinite"),
])
def test_batch_contract_errors_name_batch_and_field(mutate, match):
    batch = {"audio_embeddings": np.zeros((4, 2), np.float32), "video_embeddings": np.zeros((4, 8), np.float32), "targets": np.zeros(4)}
    mutate(batch)
    with pytest.raises(BatchFormatError, match=match) as err:
        validate_batch(batch, "batch_7_0.pickle", d_v=8)
    assert "batch_7_0.pickle" in str(err.value)


def test_master_table_dict_and_dataframe_agree():
    rng = np.random.default_rng(1)
    ids, matrix = make_master(50, 16, rng)
    a_ids, a = master_table_arrays({k: v for k, v in zip(ids, matrix)})
    b_ids, b = master_table_arrays(pd.DataFrame({"video_id": ids, "embedding": list(matrix)}))
    assert (a_ids == b_ids).all() and np.array_equal(a, b) and a.dtype == np.float32
    with pytest.raises(BatchFormatError, match="no 'video_id' column"):
        master_table_arrays(pd.DataFrame({"id": ids}))


def test_targets_csv_validation():
    t = parse_targets_csv(b"video_id,a,b\n7,0.5,1\n8,0.25,2\n")
    assert t.ids.tolist() == ["7", "8"] and t.columns == ["a", "b"] and t.values.dtype == np.float64
    with pytest.raises(BatchFormatError, match="more than once"):
        parse_targets_csv(b"video_id,a\n7,1\n7,2\n")
    with pytest.raises(BatchFormatError, match="not numeric"):
        parse_targets_csv(b"video_id,a\n7,x\n")
    with pytest.raises(BatchFormatError, match="not found"):
        parse_targets_csv(b"video_id,a\n7,1\n", ["b"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    ids, matrix = make_master(20_000, 128, rng)
    index = VideoEmbeddingIndex.from_table(VideoEmbeddingIndex.build(ids, matrix).to_table())  # the stored round trip
    q = matrix[rng.integers(0, len(ids), 300)].copy()
    q[:100] += (rng.normal(size=(100, 128)) * 10 ** rng.uniform(-6, -1.5, (100, 1))).astype(np.float32)
    q[100:120] = rng.normal(size=(20, 128)).astype(np.float32)
    for tol in (0.9999, 0.999, 0.99):
        got = match_embeddings(index, q, tolerance=tol)
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        qu = q / np.linalg.norm(q, axis=1, keepdims=True)
        sims = qu @ unit.T
        exact = np.array([np.flatnonzero((matrix == row).all(1))[:1].tolist() or [-1] for row in q]).ravel()
        expect = np.where(exact >= 0, exact, np.where(sims.max(1) >= tol, sims.argmax(1), -1))
        assert np.array_equal(got.master_row, expect), tol
        assert (got.kind[exact >= 0] == MATCH_EXACT).all()
        assert (got.kind[(exact < 0) & (expect >= 0)] == MATCH_APPROX).all()


@pytest.mark.parametrize("dim", [64, 33])
def test_exact_match_survives_fingerprint_collisions_and_duplicate_rows(dim, monkeypatch):
    """Fingerprints only pick candidates; bytes decide. With every fingerprint forced equal
    (all rows collide), duplicate master rows and -0.0 vs 0.0, exact matches still equal a
    byte-by-byte brute force, and a duplicated row resolves to its lowest master row."""
    import media_assets.kernels.labels as labels

    rng = np.random.default_rng(3)
    ids, matrix = make_master(500, dim, rng)
    matrix[10] = matrix[400]  # duplicate: row 10 must win
    matrix[20, 0] = 0.0
    q = matrix[[10, 400, 20, 7]].copy()
    q[2, 0] = -0.0  # equal as floats, different bytes: not an exact match
    q[3, -1] = np.nextafter(q[3, -1], np.float32(2))  # one ulp off: not exact either
    for forced in (False, True):
        if forced:
            monkeypatch.setattr(labels, "_fingerprints", lambda m: np.zeros(len(m), dtype=np.uint64))
        index = VideoEmbeddingIndex.build(ids, matrix)
        got = labels._exact_rows(index, q)
        assert got.tolist() == [10, 10, -1, -1], forced


def test_correct_batch_against_ground_truth(local_store):
    ds = write_label_dataset(local_store, "b", n_videos=3000, dim=48, n_batches=4, malformed=())
    ids, matrix = master_table_arrays(safe_loads(local_store.get_bytes("b", "rf_video_embeddings.pkl")))
    index = VideoEmbeddingIndex.build(ids, matrix)
    targets = parse_targets_csv(local_store.get_bytes("b", "targets.csv"))
    m2t = target_rows_for_master(index, targets)
    for key, expected in ds.expected.items():
        batch = safe_loads(ds.originals[key])
        corrected, report = correct_batch(batch, index, targets, m2t, name=key)
        assert np.array_equal(corrected["targets"], expected), key
        assert np.array_equal(report.kind, ds.kinds[key]), key
        assert corrected["targets"].dtype == batch["targets"].dtype and set(corrected) == set(batch)
        assert np.array_equal(corrected["sample_ids"], batch["sample_ids"])
        assert report.unmatched == (ds.kinds[key] == 0).sum()

