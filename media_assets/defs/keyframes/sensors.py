"""``new_video_sensor`` (direct uploads) and the Step Functions callback sensors."""

import dagster as dg

from ...lib.records import run_materializations, step_failure_line
from ...resources.step_functions import StepFunctionsResource
from ...settings import SENSOR_INTERVAL_S
from ..object_sensor import ObjectSource, WatchedPrefix, attention_check, partitioned_object_sensor
from ..video.jobs import video_conversion_job
from ..video.partitions import video_partitions
from ..video.sensors import source_skip_reason
from .assets import video_uploads
from .jobs import keyframes_job

TASK_TOKEN_TAG = "media_assets/task_token"


def _watched(resources) -> WatchedPrefix:
    s = resources.keyframe_settings
    return WatchedPrefix(s.direct_bucket, s.direct_prefix,
                         lambda o: s.is_direct(o.key) and "/selected_frames/" not in o.key and "/samples/" not in o.key, s.events_queue_url)


DIRECT_SOURCES = ObjectSource(job=keyframes_job, done_asset=dg.AssetKey("key_frames"), partitions_def=video_partitions,
                              watched=_watched, skip_reason=source_skip_reason)  # listing already filtered by the configured suffixes
_RESOURCES = {"object_store", "keyframe_settings", "video_settings"}

new_video_sensor = partitioned_object_sensor(
    name="new_video_sensor",
    source=DIRECT_SOURCES,
    check_asset=video_uploads.key,
    observe_listing=True,
    max_runs_per_tick=lambda resources: resources.keyframe_settings.max_runs_per_tick,
    required_resource_keys=_RESOURCES,
    description="Polls media/video_in/ (or reads its S3 notifications from MEDIA_ASSETS_KEYFRAMES_EVENTS_QUEUE_URL) for new or re-uploaded videos; adds a videos partition "
    "per object and requests one keyframes run for it (run key = key@ETag).",
)

direct_uploads_attention = attention_check(
    DIRECT_SOURCES.attention, video_uploads.key, _RESOURCES,
    "Every video uploaded directly for key frames (media/video_in/) is processed or on its way. Lists (WARN) each one a person "
    "must look at: bad input, re-requests spent, a canceled run, a refused key; and, for information, each one deleted before "
    "it was processed. Recorded by new_video_sensor on each reconciliation pass; executing it lists the prefix now.",
)


def key_frames_output(instance: dg.DagsterInstance, run_id: str) -> dict | None:
    """``{bucket, video_key, selected_frame_keys, frames_kept, manifest}`` from the run's
    ``key_frames`` materialization: the keys of its ``key_frame_list`` table (the first 500;
    ``frames_kept`` is the total, the manifest at ``manifest`` lists them all)."""
    meta = run_materializations(instance, run_id).get("key_frames", (0, None))[1]
    if meta is None:
        return None
    return {"bucket": meta["bucket"], "video_key": meta["video_key"],
            "selected_frame_keys": [r.data["key"] for r in meta["key_frame_list"].records],
            "frames_kept": meta["frames_kept"], "manifest": meta["manifest"]}


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[keyframes_job, video_conversion_job],
                      name="step_functions_task_success", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=SENSOR_INTERVAL_S, description="Answers SendTaskSuccess for a successful run carrying a task token.")
def step_functions_task_success(context: dg.RunStatusSensorContext, step_functions: StepFunctionsResource):
    token = context.dagster_run.tags.get(TASK_TOKEN_TAG)
    if not token:
        return dg.SkipReason("run has no task token")
    output = key_frames_output(context.instance, context.dagster_run.run_id)
    if output is None:
        step_functions.send_failure(token, "NoKeyFrames", f"run {context.dagster_run.run_id} materialized no key_frames")
    else:
        step_functions.send_success(token, output)


@dg.run_failure_sensor(monitored_jobs=[keyframes_job, video_conversion_job], name="step_functions_task_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=SENSOR_INTERVAL_S,
                       description="Answers SendTaskFailure for a failed run carrying a task token.")
def step_functions_task_failure(context: dg.RunFailureSensorContext, step_functions: StepFunctionsResource):
    token = context.dagster_run.tags.get(TASK_TOKEN_TAG)
    if not token:
        return dg.SkipReason("run has no task token")
    step_failures = context.get_step_failure_events()
    cause = "\n".join(step_failure_line(e.step_failure_data) for e in step_failures) or (context.failure_event.message or "run failed")
    step_functions.send_failure(token, "MediaAssetsRunFailed", cause)
