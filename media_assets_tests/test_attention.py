"""Nothing forgotten (issue 28): every watched source ends processed or named as needing a
person -- bad input, re-requests spent, a canceled run, a refused key -- and a source deleted
before it was processed is named as such, not as a failure. The list is the WARN check
``no_source_needs_attention`` (recorded by the sensor's reconciliation pass, and executable
on demand) and a section of ``media-assets process``'s summary."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import dagster as dg
import pytest

from media_assets.lib.records import PARTITION_TAG, report_canceled
from media_assets.cli import summary
from media_assets.defs.attention import sources_needing_attention
from media_assets.defs.keyframes import defs as keyframe_defs
from media_assets.defs.reconcile import ATTENTION_CHECK, REREQUEST_TAG
from media_assets.defs.video import defs as video_defs
from media_assets.defs.video.sensors import AVI_SOURCES
from media_assets.process import PassResult
from media_assets.resources.audio import AudioSettings
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.events import EventQueueResource
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.step_functions import StepFunctionsResource
from media_assets.resources.video import VideoConversionSettings
from media_assets.testing.harness import execute_run_request, tick_sensor

CHECK = dg.AssetCheckKey(dg.AssetKey("raw_videos"), ATTENTION_CHECK)


def _resources(store_resource, video: VideoConversionSettings, keyframes: KeyframeSettings, **reconcile) -> dict:
    return {"object_store": store_resource, "video_settings": video, "keyframe_settings": keyframes,
            "image_embedder": ImageEmbedderResource(), "step_functions": StepFunctionsResource(region_name="us-east-1"),
            "reconcile_settings": ReconcileSettings(**{"interval_s": 0, "retry_delay_s": 0, "max_rerequests": 0, **reconcile}),
            "event_queue": EventQueueResource(), "audio_settings": AudioSettings()}


def _defs(resources: dict) -> dg.Definitions:
    return dg.Definitions.merge(video_defs, keyframe_defs, dg.Definitions(resources=resources))


@pytest.fixture(params=["local", "s3"])
def setup(request, media, tmp_path):
    """``(object store resource, video settings, keyframe settings, a bucket name that does not exist)``."""
    if request.param == "local":
        resource = request.getfixturevalue("local_resource")
        return resource, VideoConversionSettings(), KeyframeSettings(), f"missing-{uuid.uuid4().hex[:8]}"
    resource, bucket = request.getfixturevalue("s3_resource"), request.getfixturevalue("s3_buckets")
    media_bucket = bucket("media")
    return (resource, VideoConversionSettings(source_bucket=bucket("video-avi"), mp4_bucket=bucket("video-mp4"),
                                              labeling_bucket=bucket("unlabeled-images")),
            KeyframeSettings(output_bucket=media_bucket, direct_bucket=media_bucket), f"missing-{uuid.uuid4().hex[:8]}")


@pytest.mark.long(21)
def test_every_unprocessed_source_is_named_with_its_reason(instance, setup, media):
    resource, video, keyframes, missing_bucket = setup
    store = resource.get_store()
    src = video.source_bucket
    for key, name in (("cam/corrupt.avi", "text"), ("cam/gone.avi", "text"), ("cam/cancel.avi", "text"), ("cam/outage.avi", "bikes"),
                      ("cam/a...b.avi", "text"), ("cam/waiting.avi", "text")):
        store.upload(media[name], src, key)
    resources = _resources(resource, video, keyframes)
    defs = _defs(resources)
    sensor = defs.resolve_sensor_def("new_avi_sensor")

    first = tick_sensor(sensor, instance, None, defs=defs)
    requests = {r.partition_key: r for r in first.run_requests}
    assert set(requests) == {"cam/corrupt.avi", "cam/gone.avi", "cam/cancel.avi", "cam/outage.avi", "cam/waiting.avi"}  # a...b refused
    run = lambda d, pk: execute_run_request(d, instance, "new_avi_sensor", "video_conversion", requests[pk])  # noqa: E731
    assert "not a readable media container" in run(defs, "cam/corrupt.avi").error
    store.delete(src, "cam/gone.avi")  # deleted after it was requested, before its run read it
    deleted = run(defs, "cam/gone.avi")  # not a failure: nothing to make, the run says so and succeeds
    assert deleted.success and set(deleted.materializations) == set(), deleted
    (seen,) = instance.fetch_observations(dg.AssetKey("raw_videos"), limit=1).records
    assert seen.partition_key == "cam/gone.avi" and seen.asset_observation.metadata["deleted_before_processing"].value == f"{src}/cam/gone.avi"
    # an outage that outlasts the re-requests (max_rerequests=0 here): the MP4 bucket is gone
    # (S3: no such bucket; the local store makes buckets on write, so there a file is in its way)
    if hasattr(store, "root"):
        (store.root / missing_bucket).write_text("not a bucket")
    outage = _defs(_resources(resource, VideoConversionSettings(**{**video.model_dump(), "mp4_bucket": missing_bucket}), keyframes))
    assert not run(outage, "cam/outage.avi").success
    # a user terminates a run in the UI
    canceled = instance.create_run_for_job(defs.resolve_job_def("video_conversion"),
                                           tags={PARTITION_TAG: "cam/cancel.avi", **requests["cam/cancel.avi"].tags})
    report_canceled(instance, canceled, "canceled in the UI")
    # cam/waiting.avi has no run yet: the sensors will process it, nobody needs to look at it

    second = tick_sensor(sensor, instance, first.cursor, defs=defs)
    assert {r.partition_key for r in second.run_requests} == {"cam/waiting.avi"}  # stranded, requested again; nothing else
    (evaluation,) = [e for e in second.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert (evaluation.asset_key, evaluation.check_name) == (CHECK.asset_key, CHECK.name)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert (meta["needs_attention"], meta["bad_input"], meta["canceled"], meta["retries_spent"], meta["refused"], meta["deleted"]) == (4, 1, 1, 1, 1, 1)
    table = meta["sources"]
    for line in (f"`{src}/cam/corrupt.avi` | bad input | video_decode: {src}/cam/corrupt.avi: not a readable media container",
                 f"`{src}/cam/cancel.avi` | canceled | its run was canceled", f"`{src}/cam/outage.avi` | retries spent |",
                 f"`{src}/cam/a...b.avi` | refused | key contains '...'", f"`{src}/cam/gone.avi` | deleted | removed before it was processed; its run made nothing"):
        assert line in table, table
    assert "waiting" not in table
    assert evaluation.description == "4 source(s) need attention (1 bad input, 1 canceled, 1 deleted, 1 refused, 1 retries spent)"
    # recorded on the instance as the check's latest evaluation: the UI's WARN badge on raw_videos
    recorded = instance.get_latest_asset_check_evaluation_record(CHECK)
    assert recorded.evaluation.severity == dg.AssetCheckSeverity.WARN and not recorded.evaluation.passed

    # the same list from a fresh listing: the check executed on demand (the UI's "Execute"), and
    # what `media-assets process` prints
    check_job = dg.define_asset_job("attention", selection=dg.AssetSelection.checks(CHECK))
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[check_job])).resolve_job_def("attention").execute_in_process(instance=instance)
    (on_demand,) = result.get_asset_check_evaluations()
    assert not on_demand.passed and on_demand.metadata["sources"].value == table
    listed = sources_needing_attention(instance, SimpleNamespace(**resources))
    assert [a.source for a in listed["AVI sources"]] == [a.source for a in AVI_SOURCES.attention(instance, SimpleNamespace(**resources))]
    text = summary(PassResult(runs=[], sensor_errors=[], recovered_runs=[], seconds=1.0), listed)
    assert f"NEEDS ATTENTION AVI sources: {src}/cam/corrupt.avi [bad input] video_decode: {src}/cam/corrupt.avi: not a readable" in text
    assert f"deleted before processing, AVI sources: {src}/cam/gone.avi (run " in text
    # the count covers every watched prefix (on moto the audio bucket does not exist: named too)
    assert f"{sum(a.is_problem for items in listed.values() for a in items)} sources need attention" in text
    assert sum(a.is_problem for a in listed["AVI sources"]) == 4

    # once it is fixed -- the corrupt object re-uploaded as a real video and processed -- it is
    # no longer named; the other sources still are
    store.upload(media["bikes"], src, "cam/corrupt.avi")
    third = tick_sensor(sensor, instance, second.cursor, defs=defs)
    (request,) = [r for r in third.run_requests if r.partition_key == "cam/corrupt.avi"]
    assert REREQUEST_TAG not in request.tags and execute_run_request(defs, instance, "new_avi_sensor", "video_conversion", request).success
    after = AVI_SOURCES.attention(instance, SimpleNamespace(**resources))
    assert sorted(a.kind for a in after) == ["canceled", "deleted", "refused", "retries spent"]


def test_a_healthy_prefix_passes(instance, local_resource, media):
    """Processed, in progress or not yet requested: nothing to report, the check passes."""
    video, keyframes = VideoConversionSettings(), KeyframeSettings()
    store = local_resource.get_store()
    store.upload(media["text"], video.source_bucket, "new.avi")
    defs = _defs(_resources(local_resource, video, keyframes))
    first = tick_sensor(defs.resolve_sensor_def("new_avi_sensor"), instance, None, defs=defs)
    (evaluation,) = first.asset_events
    assert evaluation.passed and evaluation.metadata["needs_attention"].value == 0
    assert evaluation.description == "every source is processed or on its way"
