"""Event mode of the source sensors: S3 notifications delivered by moto's server to a real SQS
queue (with a dead-letter queue), read by the sensors instead of listing; and polling's
reconciliation catching a multipart upload that completes late."""

from __future__ import annotations

import datetime as dt
import json
import time

import boto3
import dagster as dg
import pytest

from media_assets.lib.records import DATA_VERSION_TAG
from media_assets.defs.audio.sensors import new_audio_sensor
from media_assets.defs.audio import defs as audio_defs
from media_assets.defs.keyframes import defs as keyframes_defs
from media_assets.defs.keyframes import new_video_sensor
from media_assets.defs.labels import defs as label_defs
from media_assets.lib.records import partition_range
from media_assets.defs.labels.sensors import new_batch_sensor
from media_assets.defs.object_sensor import ObjectCursor
from media_assets.defs.video import defs as video_defs
from media_assets.defs.video import new_avi_sensor, video_partitions
from media_assets.definitions import build_resources
from media_assets.resources.audio import AudioSettings
from media_assets.resources.events import EventQueueResource
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.video import VideoConversionSettings
from media_assets.storage.s3_events import MalformedEventError, parse_notification
from media_assets.testing.harness import tick_sensor

VISIBILITY_S = 1  # short, so a message whose tick was "lost" comes back within the test


@pytest.fixture
def sqs(moto_endpoint):
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def notified_bucket(s3_client, s3_buckets, sqs):
    """``make(name) -> (bucket, queue_url, dlq_url)``: a bucket whose ObjectCreated events go to a
    queue with a dead-letter queue after 2 receives."""
    def make(name: str):
        bucket = s3_buckets(name)
        dlq = sqs.create_queue(QueueName=f"{bucket}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName=f"{bucket}-events", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3_client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        return bucket, queue, dlq

    return make


@pytest.fixture
def event_queue(moto_endpoint):
    return EventQueueResource(endpoint_url=moto_endpoint, region_name="us-east-1", visibility_timeout_s=VISIBILITY_S)


def _count(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _tick(sensor, defs, instance, cursor, resources):
    """One evaluation as the daemon does it (``defs``: the pipeline's definitions, for its
    dynamic partitions; ``None`` for time partitions)."""
    return tick_sensor(sensor, instance, cursor, resources, defs)


# ------------------------------------------------------------------ parsing


def test_parse_the_three_envelopes_and_decode_keys():
    s3 = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T08:00:00.000Z",
                       "s3": {"bucket": {"name": "b"}, "object": {"key": "dir+with+space/%C3%BCn%C3%AF%2Bplus%20x.avi", "size": 3, "eTag": "e1"}}},
                      {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-11-24T08:00:01Z", "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}}]}
    (obj,) = parse_notification(json.dumps(s3)).objects
    assert (obj.bucket, obj.key, obj.size, obj.etag) == ("b", "dir with space/ünï+plus x.avi", 3, "e1")
    assert obj.last_modified == dt.datetime(2026, 11, 24, 8, tzinfo=dt.timezone.utc)
    sns = {"Type": "Notification", "Message": json.dumps(s3)}
    assert parse_notification(json.dumps(sns)).objects == [obj]
    bridge = {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-24T08:00:00Z",
              "detail": {"bucket": {"name": "b"}, "object": {"key": "a b/ü+x.avi", "size": 5, "etag": "e2"}}}
    (eb,) = parse_notification(json.dumps(bridge)).objects
    assert (eb.key, eb.etag) == ("a b/ü+x.avi", "e2")  # EventBridge keys are not URL-encoded
    assert parse_notification(json.dumps({**bridge, "detail-type": "Object Deleted"})).objects == []
    test = parse_notification(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}))
    assert test.test and test.objects == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"hello": 1}),
                                  json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]}),
                                  json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T08:00:00Z",
                                                           "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]})])
def test_malformed_bodies_raise(body):
    with pytest.raises(MalformedEventError):
        parse_notification(body)


# ------------------------------------------------------------------ event mode, end to end on moto


def test_avi_events_become_one_run_each_and_messages_go_after_the_next_tick(instance, s3_resource, notified_bucket, event_queue, sqs):
    bucket, queue, dlq = notified_bucket("video-avi")
    settings = VideoConversionSettings(source_bucket=bucket, events_queue_url=queue, max_runs_per_tick=2)
    resources = {"object_store": s3_resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(),
                 "reconcile_settings": ReconcileSettings(interval_s=3600), "event_queue": event_queue}
    store = s3_resource.get_store()
    keys = ["a.avi", "dir with space/b c.avi", "ünï/ç+d.avi", "e.AVI"]
    for key in keys + ["notes.txt"]:
        store.put_bytes(b"data", bucket, key)

    first = _tick(new_avi_sensor, video_defs, instance, None, resources)
    # every AVI in one tick (no per-tick cap in event mode), keys decoded, run key = key@ETag as polling makes it
    assert sorted(r.partition_key for r in first.run_requests) == sorted(keys)
    for r in first.run_requests:
        assert r.run_key == f"{r.partition_key}@{store.head(bucket, r.partition_key).etag}"
    assert set(instance.get_dynamic_partitions(video_partitions.name)) == set(keys)
    # the test event, the .txt and the AVIs are all received; none deleted before the cursor is stored
    assert len(ObjectCursor.parse(first.cursor).pending) == 6
    assert _count(sqs, queue) == 6

    second = _tick(new_avi_sensor, video_defs, instance, first.cursor, resources)
    assert not second.run_requests and _count(sqs, queue) == 0 and _count(sqs, dlq) == 0
    assert ObjectCursor.parse(second.cursor).pending == []


def test_a_lost_tick_and_a_duplicated_message_request_nothing_twice(instance, s3_resource, notified_bucket, event_queue, sqs):
    bucket, queue, _ = notified_bucket("video-avi")
    settings = VideoConversionSettings(source_bucket=bucket, events_queue_url=queue)
    resources = {"object_store": s3_resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(),
                 "reconcile_settings": ReconcileSettings(interval_s=3600), "event_queue": event_queue}
    s3_resource.get_store().put_bytes(b"data", bucket, "x.avi")
    first = _tick(new_avi_sensor, video_defs, instance, None, resources)
    (key,) = {r.run_key for r in first.run_requests}

    # the daemon died before storing the tick: its cursor is lost, the message comes back
    time.sleep(VISIBILITY_S + 0.5)
    replay = _tick(new_avi_sensor, video_defs, instance, None, resources)
    assert {r.run_key for r in replay.run_requests} == {key}  # Dagster skips a run key it has seen
    # S3 delivers at least once: the same notification twice in the queue
    body = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T08:00:00Z",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": "x.avi", "size": 4, "eTag": key.split("@")[1]}}}]})
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    dup = _tick(new_avi_sensor, video_defs, instance, replay.cursor, resources)
    assert [r.run_key for r in dup.run_requests] == [key]
    _tick(new_avi_sensor, video_defs, instance, dup.cursor, resources)
    assert _count(sqs, queue) == 0


def test_malformed_messages_reach_the_dead_letter_queue(instance, s3_resource, notified_bucket, event_queue, sqs):
    bucket, queue, dlq = notified_bucket("video-avi")
    settings = VideoConversionSettings(source_bucket=bucket, events_queue_url=queue)
    resources = {"object_store": s3_resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(),
                 "reconcile_settings": ReconcileSettings(interval_s=3600), "event_queue": event_queue}
    sqs.send_message(QueueUrl=queue, MessageBody="not json at all")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {}}]}))
    s3_resource.get_store().put_bytes(b"data", bucket, "good.avi")
    cursor, requested = None, []
    for _ in range(4):  # maxReceiveCount 2: after two deliveries the third receive moves them
        result = _tick(new_avi_sensor, video_defs, instance, cursor, resources)
        requested += [r.partition_key for r in result.run_requests]
        cursor = result.cursor
        time.sleep(VISIBILITY_S + 0.3)
    assert requested == ["good.avi"]
    assert _count(sqs, dlq) == 2 and _count(sqs, queue) == 0
    bodies = sorted(m["Body"] for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"])
    assert "not json at all" in bodies


def test_eventbridge_messages_for_audio_days(instance, s3_resource, s3_buckets, sqs, event_queue):
    bucket = s3_buckets("audio")
    queue = sqs.create_queue(QueueName=f"{bucket}-bridge")["QueueUrl"]
    store = s3_resource.get_store()
    store.put_bytes(b"flac?", bucket, "calls/day one.flac")
    head = store.head(bucket, "calls/day one.flac")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({
        "version": "0", "detail-type": "Object Created", "source": "aws.s3", "time": head.last_modified.isoformat(),
        "detail": {"bucket": {"name": bucket}, "object": {"key": "calls/day one.flac", "size": head.size, "etag": head.etag}}}))
    settings = AudioSettings(source_bucket=bucket, events_queue_url=queue)
    resources = {"object_store": s3_resource, "audio_settings": settings, "reconcile_settings": ReconcileSettings(interval_s=3600),
                 "event_queue": event_queue}
    result = _tick(new_audio_sensor, audio_defs, instance, None, {**build_resources(), **resources})
    assert [r.partition_key for r in result.run_requests] == [head.last_modified.astimezone(dt.timezone.utc).date().isoformat()]


def test_batch_events_become_ranges(instance, s3_resource, notified_bucket, event_queue, sqs):
    bucket, queue, _ = notified_bucket("labels")
    settings = LabelCorrectionSettings(bucket=bucket, events_queue_url=queue, partitions_per_run=3)
    resources = {"object_store": s3_resource, "label_settings": settings, "event_queue": event_queue, "reconcile_settings": ReconcileSettings()}
    store = s3_resource.get_store()
    keys = [settings.batch_prefix + f"batch_{i}_0.pickle" for i in (1, 2, 3, 5, 8)]
    for key in keys:
        store.put_bytes(b"x", bucket, key)
    assert all(settings.batch_number(k) is not None for k in keys)
    result = _tick(new_batch_sensor, label_defs, instance, None, resources)
    ranges = [partition_range(r.tags) for r in result.run_requests]
    assert ranges == [(keys[0], keys[2]), (keys[3], keys[4])]
    # each batch's arrival fills its training_batches partition (the UI shows 5 of 5, not "Missing")
    def arrivals() -> dict[str, list[str]]:
        records = instance.fetch_materializations(dg.AssetKey("training_batches"), limit=100).records
        found: dict[str, list[str]] = {}
        for r in reversed(records):  # oldest first
            found.setdefault(r.partition_key, []).append(r.asset_materialization.metadata["etag"].value)
        return found

    assert arrivals() == {k: [store.head(bucket, k).etag] for k in keys}
    store.put_bytes(b"y", bucket, keys[1])  # re-uploaded: its own run and a second arrival, the others none
    again = _tick(new_batch_sensor, label_defs, instance, result.cursor, resources)
    assert [r.partition_key for r in again.run_requests] == [keys[1]]
    assert arrivals()[keys[1]][-1] == store.head(bucket, keys[1]).etag and len(arrivals()[keys[1]]) == 2
    assert all(len(v) == 1 for k, v in arrivals().items() if k != keys[1])


def test_direct_video_events_and_the_pipeline_s_own_outputs(instance, s3_resource, notified_bucket, event_queue, sqs):
    """``new_video_sensor`` in event mode: each MP4 uploaded under `video_in/` is one `keyframes`
    run (key@ETag, keys decoded); the pipeline's own outputs written beside it (samples and
    selected frames) and objects outside the prefix notify the same queue but start nothing;
    every message is deleted at the next tick."""
    bucket, queue, dlq = notified_bucket("media")
    settings = KeyframeSettings(direct_bucket=bucket, events_queue_url=queue)
    resources = {"object_store": s3_resource, "keyframe_settings": settings, "video_settings": VideoConversionSettings(),
                 "image_embedder": ImageEmbedderResource(), "reconcile_settings": ReconcileSettings(interval_s=3600),
                 "event_queue": event_queue}
    store = s3_resource.get_store()
    videos = ["video_in/a.mp4", "video_in/day 2/ü+b.MP4"]
    others = ["video_in/selected_frames/a/00001.jpg", "video_in/samples/a/00000.jpg", "video_in/notes.txt", "elsewhere/c.mp4"]
    for key in videos + others:
        store.put_bytes(b"data", bucket, key)
    defs = dg.Definitions.merge(video_defs, keyframes_defs)

    first = _tick(new_video_sensor, defs, instance, None, resources)
    assert sorted(r.partition_key for r in first.run_requests) == sorted(videos)
    assert new_video_sensor.job_name == "keyframes" and {r.job_name for r in first.run_requests} == {None}  # the sensor's one job
    for r in first.run_requests:
        assert r.run_key == f"{r.partition_key}@{store.head(bucket, r.partition_key).etag}"
    assert set(instance.get_dynamic_partitions(video_partitions.name)) == set(videos)
    second = _tick(new_video_sensor, defs, instance, first.cursor, resources)
    assert not second.run_requests and _count(sqs, queue) == 0 and _count(sqs, dlq) == 0


def test_master_table_and_targets_are_observed_by_etag(instance, s3_resource, s3_buckets):
    """The master table and targets are external assets recorded by `new_batch_sensor`: one
    materialization per new ETag (data version = ETag), and one `video_embedding_index` run per
    master version; nothing while they are unchanged or absent."""
    bucket = s3_buckets("labels")
    settings = LabelCorrectionSettings(bucket=bucket)
    resources = {"object_store": s3_resource, "label_settings": settings, "event_queue": EventQueueResource(), "reconcile_settings": ReconcileSettings()}
    store = s3_resource.get_store()
    empty = _tick(new_batch_sensor, label_defs, instance, None, resources)
    # the first tick's attention evaluation (every reconciliation interval), nothing else
    assert not empty.run_requests and [(e.check_name, e.passed) for e in empty.asset_events] == [("no_source_needs_attention", True)]
    store.put_bytes(b"master v1", bucket, settings.master_key)
    store.put_bytes(b"video_id,t\n", bucket, settings.targets_key)
    first = _tick(new_batch_sensor, label_defs, instance, empty.cursor, resources)
    etags = {name: store.head(bucket, key).etag for name, key in (("master_video_embeddings", settings.master_key), ("label_targets", settings.targets_key))}
    assert {e.asset_key.to_user_string(): e.tags[DATA_VERSION_TAG] for e in first.asset_events} == etags
    assert [r.run_key for r in first.run_requests] == [f"index@{etags['master_video_embeddings']}"]
    assert [r.job_name for r in first.run_requests] == ["video_embedding_index_job"]
    # recorded as the daemon records them: the UI shows the versions (materializations: Dagster
    # reads an external asset's current data version from them, not from observations)
    for name, etag in etags.items():
        (record,) = instance.fetch_materializations(dg.AssetKey(name), limit=10).records
        assert record.asset_materialization.tags[DATA_VERSION_TAG] == etag
    same = _tick(new_batch_sensor, label_defs, instance, first.cursor, resources)
    assert not same.run_requests and not same.asset_events
    store.put_bytes(b"master v2", bucket, settings.master_key)
    changed = _tick(new_batch_sensor, label_defs, instance, same.cursor, resources)
    assert [e.asset_key.to_user_string() for e in changed.asset_events] == ["master_video_embeddings"]
    assert [r.run_key for r in changed.run_requests] == [f"index@{store.head(bucket, settings.master_key).etag}"]


def test_cloudformation_event_path(instance, s3_resource, s3_buckets, s3_client, moto_endpoint, event_queue):
    """deploy/cloudformation/s3-events.yaml on moto's CloudFormation: S3 -> EventBridge rule
    (bucket + prefix) -> SQS queue with a DLQ; the sensor requests exactly the prefix's AVIs.
    (moto does not implement AWS::SQS::QueuePolicy: the policy itself is not exercised.)"""
    from pathlib import Path

    bucket = s3_buckets("video-avi")
    cfn = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name="us-east-1")
    template = (Path(__file__).resolve().parents[1] / "deploy" / "cloudformation" / "s3-events.yaml").read_text()
    with pytest.warns(UserWarning, match="AWS::SQS::QueuePolicy"):
        cfn.create_stack(StackName=f"{bucket}-events", TemplateBody=template, Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": bucket}, {"ParameterKey": "KeyPrefix", "ParameterValue": "incoming/"},
            {"ParameterKey": "QueueName", "ParameterValue": f"{bucket}-q"}])
    stack = cfn.describe_stacks(StackName=f"{bucket}-events")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    s3_client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    store = s3_resource.get_store()
    for key in ("incoming/take 1.avi", "incoming/ü/take+2.avi", "elsewhere/x.avi"):
        store.put_bytes(b"data", bucket, key)
    settings = VideoConversionSettings(source_bucket=bucket, source_prefix="incoming/", events_queue_url=outputs["QueueUrl"])
    resources = {"object_store": s3_resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(),
                 "reconcile_settings": ReconcileSettings(interval_s=3600), "event_queue": event_queue}
    result = _tick(new_avi_sensor, video_defs, instance, None, resources)
    assert sorted(r.partition_key for r in result.run_requests) == ["incoming/take 1.avi", "incoming/ü/take+2.avi"]
    _tick(new_avi_sensor, video_defs, instance, result.cursor, resources)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert _count(sqs, outputs["QueueUrl"]) == 0 and _count(sqs, outputs["DeadLetterQueueUrl"]) == 0


# ------------------------------------------------------------------ polling: a late multipart upload


def test_reconciliation_requests_an_upload_older_than_the_cursor(instance, local_resource):
    """S3 stamps LastModified when a multipart upload *starts*: completed after a later object
    was listed, it appears older than the cursor. moto stamps at completion, so the S3
    behaviour is reproduced on the local store by giving the late object its start time."""
    import os

    settings = VideoConversionSettings()
    resources = {"object_store": local_resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(),
                 "reconcile_settings": ReconcileSettings(interval_s=0), "event_queue": EventQueueResource()}
    store = local_resource.get_store()
    started = time.time() - 60  # the multipart upload began a minute ago
    store.put_bytes(b"data", settings.source_bucket, "early.avi")
    first = _tick(new_avi_sensor, video_defs, instance, None, resources)
    assert [r.partition_key for r in first.run_requests] == ["early.avi"]
    store.put_bytes(b"x" * 1024, settings.source_bucket, "late.avi")  # ... and completes now
    os.utime(store.root / settings.source_bucket / "late.avi", (started, started))
    late = store.head(settings.source_bucket, "late.avi")
    assert not ObjectCursor.parse(first.cursor).is_new(late)  # the LastModified rule alone never sees it
    second = _tick(new_avi_sensor, video_defs, instance, first.cursor, resources)
    # early.avi has no run here (nothing executes in this test): re-requested under the same
    # run key, which Dagster skips; late.avi is new
    fresh = {r.partition_key for r in second.run_requests if r.run_key not in {f.run_key for f in first.run_requests}}
    assert fresh == {"late.avi"}
