"""Jobs of the video pipeline."""

import dagster as dg


video_conversion_job = dg.define_asset_job(
    "video_conversion",
    # the video's whole lineage: clips, labeling frames, key frames (when that pipeline is
    # loaded) and the source's removal after them
    selection=dg.AssetSelection.assets("mp4_clips").downstream(),
    description="Decode one source video once into verified MP4 clips, labeling frames and key-frame samples, then "
    "everything downstream (key frames, the source's removal).",
)
