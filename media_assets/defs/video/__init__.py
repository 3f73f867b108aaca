"""Video conversion pipeline: AVI -> one decode pass (MP4 clips, labeling frames, key-frame
embeddings) -> source removal once every output is verified."""

import dagster as dg

from ...resources.keyframes import keyframe_tables_io_manager
from .assets import raw_videos, source_video_removal
from .decode import video_decode
from .jobs import video_conversion_job
from .partitions import video_partitions
from .sensors import avi_sources_attention, new_avi_sensor

defs = dg.Definitions(
    assets=[raw_videos, video_decode, source_video_removal],
    jobs=[video_conversion_job],
    sensors=[new_avi_sensor],
    asset_checks=[avi_sources_attention],
    resources={"keyframe_tables": keyframe_tables_io_manager},
)

__all__ = ["defs", "source_video_removal", "new_avi_sensor", "raw_videos", "video_conversion_job", "video_decode", "video_partitions"]
