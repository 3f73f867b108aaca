"""Jobs of the key-frame pipeline."""

import dagster as dg

from ..video.partitions import video_partitions
from .assets import key_frames, keyframe_embeddings

keyframes_job = dg.define_asset_job(
    "keyframes",
    selection=dg.AssetSelection.assets(keyframe_embeddings, key_frames),
    partitions_def=video_partitions,
    description="Sample, embed and select the key frames of one video (direct upload or converted clips).",
)
