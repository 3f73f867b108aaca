"""Key-frame pipeline: 1 FPS samples, image embeddings, key-frame selection, Step Functions callbacks."""

import dagster as dg

from .assets import key_frames, keyframe_embeddings
from .jobs import keyframes_job
from .sensors import TASK_TOKEN_TAG, new_video_sensor, step_functions_task_failure, step_functions_task_success

defs = dg.Definitions(
    assets=[keyframe_embeddings, key_frames],
    jobs=[keyframes_job],
    sensors=[new_video_sensor, step_functions_task_success, step_functions_task_failure],
)

__all__ = ["TASK_TOKEN_TAG", "defs", "key_frames", "keyframe_embeddings", "keyframes_job", "new_video_sensor"]
