"""Jobs of the label-correction pipeline."""

import dagster as dg

from .assets import corrected_batches, video_embedding_index

label_correction_job = dg.define_asset_job(
    "label_correction",
    selection=dg.AssetSelection.assets(corrected_batches).without_checks(),
    description="Correct the targets of a range of training batches (one run, many partitions).",
)

video_embedding_index_job = dg.define_asset_job(
    "video_embedding_index_job",
    selection=dg.AssetSelection.assets(video_embedding_index),
    description="Rebuild the master embedding index (once per master-table version).",
)
