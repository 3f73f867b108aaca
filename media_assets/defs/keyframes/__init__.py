"""Key-frame pipeline: key-frame selection over the 1 FPS sample embeddings (``keyframe_embeddings``,
an output of the video decode pass in `media_assets.defs.video`), Step Functions callbacks."""

import dagster as dg

from .assets import key_frames, video_uploads
from .jobs import keyframes_job
from .vectors import key_frame_vectors
from .sensors import TASK_TOKEN_TAG, direct_uploads_attention, new_video_sensor, step_functions_task_failure, step_functions_task_success

defs = dg.Definitions(
    assets=[video_uploads, key_frames, key_frame_vectors],
    jobs=[keyframes_job],
    asset_checks=[direct_uploads_attention],
    sensors=[new_video_sensor, step_functions_task_success, step_functions_task_failure],
)

__all__ = ["TASK_TOKEN_TAG", "defs", "key_frame_vectors", "key_frames", "keyframes_job", "new_video_sensor", "video_uploads"]
