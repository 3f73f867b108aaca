"""Video conversion pipeline: AVI -> MP4 clips -> labeling frames."""

import dagster as dg

from .assets import labeling_frames, mp4_clips, raw_videos, source_video_removal
from .jobs import video_conversion_job
from .partitions import video_partitions
from .sensors import new_avi_sensor

defs = dg.Definitions(
    assets=[raw_videos, mp4_clips, labeling_frames, source_video_removal],
    jobs=[video_conversion_job],
    sensors=[new_avi_sensor],
)

__all__ = ["defs", "labeling_frames", "mp4_clips", "source_video_removal", "new_avi_sensor", "raw_videos", "video_conversion_job", "video_partitions"]
