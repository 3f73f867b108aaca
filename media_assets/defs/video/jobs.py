"""Jobs of the video pipeline."""

import dagster as dg

from .assets import labeling_frames, mp4_clips
from .partitions import video_partitions

video_conversion_job = dg.define_asset_job(
    "video_conversion",
    selection=dg.AssetSelection.assets(mp4_clips, labeling_frames),
    partitions_def=video_partitions,
    description="Transcode one source video to verified MP4 clips and extract its labeling frames.",
)
