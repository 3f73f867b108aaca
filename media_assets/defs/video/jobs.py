"""Jobs of the video pipeline."""

import dagster as dg

from .assets import mp4_clips
from .partitions import video_partitions

video_conversion_job = dg.define_asset_job(
    "video_conversion",
    # the video's whole lineage: clips, labeling frames and whatever is defined downstream of
    # the clips (key frames when that pipeline is loaded)
    selection=dg.AssetSelection.assets(mp4_clips).downstream(),
    partitions_def=video_partitions,
    description="Transcode one source video to verified MP4 clips, then everything downstream of them (labeling frames, key frames).",
)
