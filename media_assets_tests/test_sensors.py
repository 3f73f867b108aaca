"""``new_avi_sensor`` with a real instance, on both backends, and the cursor rule."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from media_assets.defs.object_sensor import ObjectCursor, select_new_objects
from media_assets.defs.video import defs as video_defs
from media_assets.defs.video import new_avi_sensor, video_partitions
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.video import VideoConversionSettings
from media_assets.storage import ObjectInfo
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource
from media_assets.testing.harness import tick_sensor


def _tick(instance, cursor, resources):
    """One ``new_avi_sensor`` tick as the daemon evaluates it, with the video job's other resources."""
    resources = {"keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(), "reconcile_settings": ReconcileSettings(), "event_queue": EventQueueResource(), **resources}
    return tick_sensor(new_avi_sensor, instance, cursor, resources, video_defs)


@pytest.fixture(params=["local", "s3"])
def setup(request, local_resource, s3_buckets):
    if request.param == "local":
        return local_resource, VideoConversionSettings(max_runs_per_tick=3)
    res = request.getfixturevalue("s3_resource")
    return res, VideoConversionSettings(source_bucket=s3_buckets("video-avi"), max_runs_per_tick=3)


def test_new_objects_become_partitions_and_runs(instance, setup):
    resource, settings = setup
    store = resource.get_store()
    bucket = settings.source_bucket
    for name in ["a.avi", "b b.AVI", "ünï/c.avi", "notes.txt", "x/../../evil.avi"]:
        store_key = name
        if ".." in name:  # the local backend refuses such keys outright; only S3 can hold one
            if resource.backend == "local":
                continue
        store.put_bytes(b"data", bucket, store_key)
    resources = {"object_store": resource, "video_settings": settings}

    first = _tick(instance, None, resources)
    assert len(first.run_requests) == 3  # capped per tick
    second = _tick(instance, first.cursor, resources)
    third = _tick(instance, second.cursor, resources)
    requested = [r.partition_key for r in first.run_requests + second.run_requests + third.run_requests]
    assert sorted(requested) == ["a.avi", "b b.AVI", "ünï/c.avi"]
    assert set(instance.get_dynamic_partitions(video_partitions.name)) == set(requested)
    for r in first.run_requests:
        assert r.run_key.startswith(r.partition_key + "@")
    # no event write per object in the tick: each run observes its source (test_video_pipeline);
    # the first tick's reconciliation records one evaluation of no_source_needs_attention
    events = [e for r in (first, second, third) for e in r.asset_events]
    assert [(e.asset_key.to_user_string(), e.check_name) for e in events] == [("raw_videos", "no_source_needs_attention")]
    # the key that would escape its output folder is named (S3 only: the local backend cannot hold it)
    assert events[0].passed == (resource.backend == "local"), events[0].metadata["sources"]

    idle = _tick(instance, third.cursor, resources)
    assert not idle.run_requests and idle.cursor == third.cursor

    # a re-upload gets a new LastModified and ETag: a new run for the same partition
    time.sleep(1.1)  # S3 LastModified has 1 s resolution
    store.put_bytes(b"new data", bucket, "a.avi")
    again = _tick(instance, idle.cursor, resources)
    assert [r.partition_key for r in again.run_requests] == ["a.avi"]
    assert again.run_requests[0].run_key not in {r.run_key for r in first.run_requests + second.run_requests}


def _obj(key, second, etag="e"):
    return ObjectInfo("b", key, 1, dt.datetime(2026, 1, 1, 0, 0, second, tzinfo=dt.timezone.utc), etag)


def test_cursor_handles_equal_timestamps_and_limit():
    objs = [_obj("a", 1), _obj("b", 2), _obj("c", 2), _obj("d", 2), _obj("e", 3)]
    new, cur = select_new_objects(objs, ObjectCursor(), limit=2)
    assert [o.key for o in new] == ["a", "b"] and cur.keys == ["b"]
    new, cur = select_new_objects(objs, ObjectCursor.parse(cur.dumps()), limit=2)
    assert [o.key for o in new] == ["c", "d"] and cur.keys == ["b", "c", "d"]
    new, cur = select_new_objects(objs, cur, limit=2)
    assert [o.key for o in new] == ["e"]
    # an object landing later with the cursor's exact timestamp is still found
    new, _ = select_new_objects([*objs, _obj("f", 3)], cur, limit=10)
    assert [o.key for o in new] == ["f"]


def test_tick_at_100k_objects_is_one_listing(instance, tmp_path):
    """100,000 objects already seen: a tick costs one pass over the listing plus O(new) work."""
    objs = [_obj(f"k{i:06d}.avi", i % 60) for i in range(100_000)]
    _, cursor = select_new_objects(objs, ObjectCursor(), limit=200_000)
    new, after = select_new_objects([*objs, _obj("new.avi", 59, "z")], cursor, limit=25)
    assert [o.key for o in new] == ["new.avi"]
    assert len(after.dumps()) < 200_000  # the cursor holds only keys at the last timestamp


def test_sensor_is_registered_with_job(instance):
    from media_assets.definitions import defs

    sensor = defs.resolve_sensor_def("new_avi_sensor")
    assert sensor.job_name == "video_conversion"
    assert os.environ.get("AWS_ENDPOINT_URL") is None


def test_keys_that_break_an_output_name_are_skipped_before_any_work(instance, local_resource, media):
    """A 250-character stem (its clip and embeddings file names would exceed 255 bytes), a `..avi` whose
    stem is `.`, and an empty folder segment: skipped with a warning, never requested, and the
    objects are left as they are."""
    store = local_resource.get_store()
    bad = ["v" * 250 + ".avi", "..avi", "cams//x.avi"]
    good = "cams/" + "w" * 200 + ".avi"
    for key in bad + [good]:
        if key == "cams//x.avi":
            (store.root / "video-avi" / "cams").mkdir(parents=True, exist_ok=True)
            continue  # a local folder cannot hold an empty segment; checked through key_problem below
        store.put_bytes(b"data", "video-avi", key)
    result = _tick(instance, None, {"object_store": local_resource, "video_settings": VideoConversionSettings()})
    assert [r.partition_key for r in result.run_requests] == [good]
    for key in bad[:2]:
        assert store.exists("video-avi", key)
    from media_assets.defs.video.sensors import key_problem, output_keys

    v, k = VideoConversionSettings(), KeyframeSettings()
    assert "over 255 bytes" in key_problem(bad[0], output_keys(bad[0], v, k))
    assert "'.' or '..'" in key_problem("..avi", output_keys("..avi", v, k))
    assert "empty" in key_problem("cams//x.avi", output_keys("cams//x.avi", v, k))
    assert key_problem("a/" + "é" * 600 + ".avi", output_keys("a/" + "é" * 600 + ".avi", v, k))  # bytes, not characters
    assert key_problem(good, output_keys(good, v, k)) is None
