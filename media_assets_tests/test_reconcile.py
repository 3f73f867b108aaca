"""Reconciliation (``media_assets.defs.reconcile``): a source whose run failed for a transient
reason is requested again once the cause is gone; bad input is not; a source the cursor
missed is requested; re-requests back off and give up."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import dagster as dg
import pytest

from media_assets.lib.records import PARTITION_TAG
from media_assets.defs.keyframes import defs as keyframe_defs
from media_assets.defs.reconcile import REREQUEST_TAG
from media_assets.defs.video import defs as video_defs
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource
from media_assets.resources.step_functions import StepFunctionsResource
from media_assets.resources.video import VideoConversionSettings
from media_assets.testing.harness import execute_run_request


def _defs(resource, video: VideoConversionSettings, keyframes: KeyframeSettings, reconcile: ReconcileSettings) -> dg.Definitions:
    return dg.Definitions.merge(video_defs, keyframe_defs, dg.Definitions(resources={
        "object_store": resource, "video_settings": video, "keyframe_settings": keyframes,
        "image_embedder": ImageEmbedderResource(), "step_functions": StepFunctionsResource(region_name="us-east-1"),
        "reconcile_settings": reconcile,
        "event_queue": EventQueueResource(),
    }))


def _tick(defs: dg.Definitions, instance, cursor):
    with dg.build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, definitions=defs,
                                 sensor_name="new_avi_sensor", resources=defs.resources) as ctx:
        result = defs.resolve_sensor_def("new_avi_sensor").evaluate_tick(ctx)
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def _run(defs, instance, requests):
    return {r.partition_key: execute_run_request(defs, instance, "new_avi_sensor", "video_conversion", r) for r in requests}


@pytest.mark.long(21)
def test_transient_failure_is_rerequested_once_the_bucket_exists(instance, s3_resource, s3_buckets, s3_client, media):
    """Observation 2 of issue 9: a missing output bucket fails the run; once the bucket exists
    the source is processed with no manual step. A corrupt source is re-requested too (its
    first run failed on the bucket, before reading it), then fails on its input and is left."""
    store = s3_resource.get_store()
    missing_mp4 = f"video-mp4-{uuid.uuid4().hex[:8]}"
    video = VideoConversionSettings(source_bucket=s3_buckets("video-avi"), mp4_bucket=missing_mp4,
                                    labeling_bucket=s3_buckets("unlabeled-images"))
    media_bucket = s3_buckets("media")
    keyframes = KeyframeSettings(output_bucket=media_bucket, direct_bucket=media_bucket)
    store.upload(media["bikes"], video.source_bucket, "cam/bikes.avi")
    store.upload(media["text"], video.source_bucket, "cam/text.avi")

    def defs(**reconcile):
        return _defs(s3_resource, video, keyframes, ReconcileSettings(**{"interval_s": 0, "retry_delay_s": 0, **reconcile}))

    first = _tick(defs(), instance, None)
    outcomes = _run(defs(), instance, first.run_requests)
    assert not outcomes["cam/bikes.avi"].success and "NoSuchBucket" in outcomes["cam/bikes.avi"].error
    assert not outcomes["cam/text.avi"].success
    assert store.exists(video.source_bucket, "cam/bikes.avi")

    # the bucket is still missing: a long retry delay or a spent budget requests nothing
    assert _tick(defs(retry_delay_s=3600), instance, first.cursor).run_requests == []
    assert _tick(defs(max_rerequests=0), instance, first.cursor).run_requests == []

    s3_client.create_bucket(Bucket=missing_mp4)
    second = _tick(defs(), instance, first.cursor)
    assert sorted((r.partition_key, r.tags[REREQUEST_TAG]) for r in second.run_requests) == [("cam/bikes.avi", "1"), ("cam/text.avi", "1")]
    assert all(r.run_key.endswith("#rerequest-1") for r in second.run_requests)
    retried = _run(defs(), instance, second.run_requests)
    assert retried["cam/bikes.avi"].success, retried["cam/bikes.avi"].error
    assert "The source object is kept" in retried["cam/text.avi"].error
    assert not store.exists(video.source_bucket, "cam/bikes.avi")  # processed, then removed last
    assert store.exists(video.source_bucket, "cam/text.avi")  # bad input is kept, never deleted

    # done: nothing more; the corrupt source's input failure is final (2 runs, not more)
    assert _tick(defs(), instance, second.cursor).run_requests == []
    text_runs = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: "cam/text.avi"}))
    assert len(text_runs) == 2


def test_object_missed_by_the_cursor_is_requested(instance, local_resource, media):
    """A multipart upload completes after a later object was listed: its LastModified is older
    than the cursor. Reconciliation requests it; the cursor path alone never would."""
    store = local_resource.get_store()
    video = VideoConversionSettings()
    store.upload(media["bikes"], video.source_bucket, "late/a.avi")
    defs = _defs(local_resource, video, KeyframeSettings(), ReconcileSettings(interval_s=3600))
    first = _tick(defs, instance, None)
    assert [r.partition_key for r in first.run_requests] == ["late/a.avi"]

    store.upload(media["bikes"], video.source_bucket, "late/b.avi")
    stamp = (dt.datetime.now() - dt.timedelta(hours=1)).timestamp()
    os.utime(store.root / video.source_bucket / "late" / "b.avi", (stamp, stamp))

    # cursor: older than seen; reconciliation not due (an hour), and no run has ended since the last pass
    assert _tick(defs, instance, first.cursor).run_requests == []
    _run(defs, instance, first.run_requests)
    # the job's runs have drained: the next tick reconciles once, and finds the late object
    late = _tick(defs, instance, first.cursor)
    assert [(r.partition_key, r.run_key.split("@")[0]) for r in late.run_requests] == [("late/b.avi", "late/b.avi")]
    assert "late/b.avi" in instance.get_dynamic_partitions("videos")  # added by the same tick
    assert _run(defs, instance, late.run_requests)["late/b.avi"].success
    # a pass at its interval then finds nothing left
    due_now = _defs(local_resource, video, KeyframeSettings(), ReconcileSettings(interval_s=0))
    assert _tick(due_now, instance, late.cursor).run_requests == []  # nothing left


@pytest.mark.long(16)
def test_a_new_pass_rerequests_what_failed_before_it_at_once(instance, local_resource, media):
    """The operator fixes the cause (here a file where the MP4 bucket should be) and runs
    `media-assets process`: the pass (retry_failed_before = its start) re-requests the failed
    source at once; the daemon's own ticks would wait out the retry delay."""
    store = local_resource.get_store()
    blocked = "video-mp4-blocked"
    (store.root / blocked).write_text("not a bucket")
    video = VideoConversionSettings(mp4_bucket=blocked)
    store.upload(media["bikes"], video.source_bucket, "cam/a.avi")
    slow = ReconcileSettings(interval_s=3600, retry_delay_s=3600)
    defs = _defs(local_resource, video, KeyframeSettings(), slow)
    first = _tick(defs, instance, None)
    assert not _run(defs, instance, first.run_requests)["cam/a.avi"].success
    (store.root / blocked).unlink()
    assert _tick(defs, instance, first.cursor).run_requests == []  # not due, and the delay is an hour
    passed = _defs(local_resource, video, KeyframeSettings(), ReconcileSettings(interval_s=3600, retry_delay_s=3600,
                                                                               retry_failed_before=time.time()))
    again = _tick(passed, instance, first.cursor)
    assert [(r.partition_key, r.tags[REREQUEST_TAG]) for r in again.run_requests] == [("cam/a.avi", "1")]
    assert _run(passed, instance, again.run_requests)["cam/a.avi"].success
