"""Key frames use the video pipeline's ``videos`` partitions (one per source video)."""

from ..video.partitions import video_partitions

__all__ = ["video_partitions"]
