"""`correct_batches` (defs/labels/correction.py): every batch once, bad batches reported as
results naming the batch, unexpected errors surface instead of being swallowed."""

import numpy as np
import pytest

from media_assets.defs.labels.correction import correct_batches
from media_assets.kernels.labels import VideoEmbeddingIndex, master_table_arrays, parse_targets_csv, target_rows_for_master
from media_assets.kernels.safe_pickle import safe_loads
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.storage import LocalObjectStore
from media_assets.testing.label_data import load_pickle, write_label_dataset


@pytest.fixture
def dataset(tmp_path):
    store = LocalObjectStore(tmp_path / "data")
    settings = LabelCorrectionSettings(transfer_concurrency=3)
    ds = write_label_dataset(store, settings.bucket, n_videos=3000, n_batches=30, malformed=("not_pickle", "missing_key", "exploit"),
                             exploit_marker=str(tmp_path / "exploit_ran"), seed=5)
    ids, matrix = master_table_arrays(safe_loads(store.get_bytes(settings.bucket, settings.master_key)))
    index = VideoEmbeddingIndex.build(ids, matrix)
    targets = parse_targets_csv(store.get_bytes(settings.bucket, settings.targets_key))
    keys = sorted(list(ds.expected) + list(ds.malformed))
    return store, settings, ds, keys, (index, targets, target_rows_for_master(index, targets)), tmp_path / "exploit_ran"


def test_every_batch_once_and_bad_batches_as_results(dataset):
    store, settings, ds, keys, (index, targets, m2t), marker = dataset
    results = {r.key: r for r in correct_batches(keys, store, settings, index, targets, m2t)}
    assert sorted(results) == keys
    for key, expected in ds.expected.items():
        assert results[key].error is None and results[key].metadata["same_layout"]
        corrected = load_pickle(store.get_bytes(settings.bucket, settings.corrected_key(key)))
        assert np.array_equal(corrected["targets"], expected), key
    for key, fragment in ds.malformed.items():
        assert results[key].metadata is None and key in results[key].error and fragment in results[key].error
        assert not store.exists(settings.bucket, settings.corrected_key(key))
    assert not marker.exists(), "the exploit pickle must not run"


class _FailingStore(LocalObjectStore):
    def get_bytes(self, bucket, key):
        if key == "batch_7_0.pickle":
            raise OSError(5, "Input/output error")
        return super().get_bytes(bucket, key)


def test_unexpected_errors_surface(dataset):
    store, settings, _, keys, (index, targets, m2t), _ = dataset
    with pytest.raises(OSError, match="Input/output error"):
        list(correct_batches(keys, _FailingStore(store.root), settings, index, targets, m2t))
