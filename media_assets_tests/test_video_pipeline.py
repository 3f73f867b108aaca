"""The video conversion assets end to end through ``dg.materialize`` on both backends, and
what happens to bad input, removed sources and failures half-way."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from PIL import Image

from media_assets.lib.records import failure_description
from media_assets.defs.video import raw_videos, video_decode, video_partitions
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings, keyframe_tables_io_manager
from media_assets.resources.video import VideoConversionSettings
from media_assets.scratch import scratch_root
from media_assets.storage import LocalObjectStore
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource

ASSETS = [raw_videos, video_decode]


def _materialize(instance, resource, settings, key, raise_on_error=True):
    instance.add_dynamic_partitions(video_partitions.name, [key])
    return dg.materialize(
        ASSETS,
        selection=["mp4_clips", "labeling_frames"],
        partition_key=key,
        instance=instance,
        resources={"object_store": resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(),
                   "image_embedder": ImageEmbedderResource(), "keyframe_tables": keyframe_tables_io_manager},
        raise_on_error=raise_on_error,
    )


def _metadata(result, asset):
    mats = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    assert mats, f"{asset} was not materialized"
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


def _sheet(markdown: str) -> Image.Image:
    """The contact-sheet JPEG inlined in a metadata markdown value, decoded."""
    import base64
    import io

    data = markdown.split("base64,", 1)[1].split(")", 1)[0]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _full_job(resource, settings):
    """The whole per-video job (clips, labeling frames, key frames, source removal)."""
    from media_assets.defs.keyframes import defs as keyframe_defs
    from media_assets.defs.video import defs as video_defs
    from media_assets.resources.embedder import ImageEmbedderResource
    from media_assets.resources.keyframes import KeyframeSettings
    from media_assets.resources.step_functions import StepFunctionsResource

    defs = dg.Definitions.merge(video_defs, keyframe_defs, dg.Definitions(resources={
        "object_store": resource, "video_settings": settings, "keyframe_settings": KeyframeSettings(),
        "image_embedder": ImageEmbedderResource(), "step_functions": StepFunctionsResource(region_name="us-east-1"),
        "reconcile_settings": ReconcileSettings(),
        "event_queue": EventQueueResource(),
    }))
    return defs.resolve_job_def("video_conversion")


def test_bunny_end_to_end_local(instance, local_resource, media):
    store = local_resource.get_store()
    settings = VideoConversionSettings()
    key = "clips/Big Buck Bünny.avi"
    store.upload(media["bunny"], "video-avi", key)
    source = store.head("video-avi", key)
    instance.add_dynamic_partitions(video_partitions.name, [key])
    job = _full_job(local_resource, settings)
    result = job.execute_in_process(instance=instance, partition_key=key)
    assert result.success
    # the run records the exact source version it converts as a materialization of raw_videos'
    # partition (the external asset's partition is filled, not "Missing")
    (recorded,) = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("raw_videos"), asset_partitions=[key]), limit=5).records
    meta = recorded.asset_materialization.metadata
    assert meta["etag"].value == source.etag and meta["size_bytes"].value == source.size
    assert meta["object"].value == f"video-avi/{key}"

    clips = _metadata(result, "mp4_clips")
    assert clips["clip_keys"] == ["clips/Big Buck Bünny/Big Buck Bünny.mp4"]
    # the source goes in the run's last step, after clips, labeling frames and key frames
    removal = _metadata(result, "source_video_removal")
    assert removal["source_status"] == "deleted after verification" and removal["key_frames"] >= 1
    assert not store.exists("video-avi", key)
    order = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert order[-1] == "source_video_removal" and {"video_decode", "key_frames"} <= set(order)
    # clips, labeling frames and key-frame samples came from one decode of the source
    assert clips["decode_pass"] == "clips+labeling frames+key-frame samples"

    frames = _metadata(result, "labeling_frames")
    keys = [o.key for o in store.list_objects("unlabeled-images", "clips/Big Buck Bünny/")]
    assert frames["frames_kept"] == len(keys) == 14
    assert "clips/Big Buck Bünny/0.jpg" in keys and "clips/Big Buck Bünny/130.jpg" in keys
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["clip_durations_match_source"] and checks["no_dead_frame_kept"]

    # re-materializing after the source was removed reuses the verified clips and says so
    again = _materialize(instance, local_resource, settings, key)
    assert again.success
    assert "reused" in _metadata(again, "mp4_clips")["note"]
    assert len(list(store.list_objects("unlabeled-images", "clips/Big Buck Bünny/"))) == 14


def test_source_kept_when_an_output_is_missing(instance, local_resource, media):
    """A labeling frame that vanished after its run: the removal step refuses and keeps the AVI."""
    store = local_resource.get_store()
    settings = VideoConversionSettings(source_removal="keep")
    store.upload(media["bikes"], "video-avi", "bikes.avi")
    instance.add_dynamic_partitions(video_partitions.name, ["bikes.avi"])
    job = _full_job(local_resource, settings)
    assert job.execute_in_process(instance=instance, partition_key="bikes.avi").success
    store.delete("unlabeled-images", "bikes/240.jpg")
    strict = _full_job(local_resource, VideoConversionSettings())
    result = strict.execute_in_process(instance=instance, partition_key="bikes.avi", asset_selection=[dg.AssetKey("source_video_removal")],
                                       raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "bikes/240.jpg" in failure_description(failure.step_failure_data)
    assert store.exists("video-avi", "bikes.avi")


def test_long_video_on_s3_keeps_source_when_configured(instance, s3_resource, s3_buckets, media):
    store = s3_resource.get_store()
    settings = VideoConversionSettings(
        source_bucket=s3_buckets("video-avi"), mp4_bucket=s3_buckets("video-mp4"),
        labeling_bucket=s3_buckets("unlabeled-images"), source_removal="keep",
    )
    store.upload(media["long"], settings.source_bucket, "long.avi")
    result = _materialize(instance, s3_resource, settings, "long.avi")
    clips = _metadata(result, "mp4_clips")
    assert clips["clip_keys"] == ["long/long_000.mp4", "long/long_001.mp4", "long/long_002.mp4"]
    table = clips["clips"]  # the UI's table: one row per clip, with its s3:// URI
    assert [r.data["duration_s"] for r in table.records] == [120.0, 120.0, 10.0]
    assert [r.data["uri"] for r in table.records] == [f"s3://{settings.mp4_bucket}/long/long_00{i}.mp4" for i in range(3)]
    assert [r.data["start_s"] for r in table.records] == [0.0, 120.0, 240.0]
    assert clips["clips_total_s"] == 250.0 and clips["clips_total_bytes"] == sum(r.data["size_bytes"] for r in table.records)
    assert store.exists(settings.source_bucket, "long.avi")

    manifest = json.loads(store.get_bytes(settings.mp4_bucket, ".manifests/long/clips.json"))
    assert [c["first_frame_index"] for c in manifest["clips"]] == [0, 3000, 6000]
    frame_keys = {o.key for o in store.list_objects(settings.labeling_bucket, "long/")}
    # one grid across the clip boundaries: 0, 10, ..., 6240 minus dead frames
    indices = sorted(int(k.split("/")[-1][:-4]) for k in frame_keys)
    assert all(i % 10 == 0 for i in indices) and indices[-1] >= 6000
    assert 3000 in indices or 2990 in indices


@pytest.mark.parametrize("name,match", [
    ("empty", "empty file"),
    ("text", "not a readable media container"),
    ("truncated", "truncated"),
    ("audio_only", "no video stream"),
])
def test_bad_input_fails_clearly_and_keeps_the_source(instance, local_resource, media, name, match):
    store = local_resource.get_store()
    store.upload(media[name], "video-avi", f"{name}.avi")
    result = _materialize(instance, local_resource, VideoConversionSettings(), f"{name}.avi", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure_description(failure.step_failure_data)
    assert match in description
    # for people: the object's key, no scratch path (the local copy's name is the run's business)
    assert description.startswith(f"video-avi/{name}.avi: ") and str(scratch_root()) not in description, description
    assert store.exists("video-avi", f"{name}.avi")
    assert not list(store.list_objects("video-mp4"))
    assert not list(store.list_objects("unlabeled-images"))


def test_a_source_deleted_before_processing_is_recorded_not_failed(instance, local_resource):
    """Nothing was ever made from it and it is gone: the run makes nothing, succeeds, and
    records the deletion on raw_videos' partition (the sensors' attention check names it)."""
    result = _materialize(instance, local_resource, VideoConversionSettings(), "deleted.avi", raise_on_error=False)
    assert result.success and not result.get_asset_materialization_events()
    (obs,) = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert obs.asset_key == dg.AssetKey("raw_videos") and obs.partition == "deleted.avi"
    assert obs.metadata["deleted_before_processing"].value == "video-avi/deleted.avi"
    assert not list(local_resource.get_store().list_objects("video-mp4"))


def test_failure_mid_upload_leaves_nothing_visible_and_rerun_completes(instance, local_resource, media, monkeypatch):
    store = local_resource.get_store()
    settings = VideoConversionSettings(source_removal="keep")
    store.upload(media["bikes"], "video-avi", "bikes.avi")
    real_upload = LocalObjectStore.upload
    calls = {"n": 0}

    def flaky_upload(self, src, bucket, key, content_type=None):
        if bucket == "unlabeled-images":
            calls["n"] += 1
            if calls["n"] >= 7:
                raise ConnectionError("simulated network failure")
        return real_upload(self, src, bucket, key, content_type)

    monkeypatch.setattr(LocalObjectStore, "upload", flaky_upload)
    failed = _materialize(instance, local_resource, settings, "bikes.avi", raise_on_error=False)
    assert not failed.success  # after the asset's RetryPolicy gave up
    assert sum(e.event_type_value == "STEP_RESTARTED" for e in failed.all_events) == 2
    assert not list(store.list_objects("unlabeled-images")), "half-uploaded frames must be removed"
    assert not store.exists("video-mp4", ".manifests/bikes/frames.json")

    monkeypatch.setattr(LocalObjectStore, "upload", real_upload)
    ok = _materialize(instance, local_resource, settings, "bikes.avi")
    assert ok.success
    keys = [o.key for o in store.list_objects("unlabeled-images", "bikes/")]
    assert len(keys) == 25
    with Image.open(store.root / "unlabeled-images" / "bikes" / "240.jpg") as img:
        assert img.size == (640, 272)


def test_dead_frames_are_dropped_and_counted(instance, local_resource, media):
    store = local_resource.get_store()
    store.upload(media["dead"], "video-avi", "dead.avi")  # an MP4 in an .avi key still decodes
    result = _materialize(instance, local_resource, VideoConversionSettings(), "dead.avi")
    frames = _metadata(result, "labeling_frames")
    assert frames["dropped_black"] == 5 and frames["dropped_frozen"] >= 9
    # the UI: a sheet of kept frames and one of dropped frames, each captioned with its reason
    kept_md, dropped_md = frames["frames"].split("\n\n**dropped")
    assert kept_md.startswith(f"**kept: {frames['frames_kept']} of {frames['frames_sampled']} sampled frames (8 of {frames['frames_kept']} shown)**")
    assert f"{frames['dropped_black']} black" in dropped_md and f"{frames['dropped_frozen']} frozen" in dropped_md
    n_dropped = frames["dropped_black"] + frames["dropped_frozen"] + frames.get("dropped_blank", 0)
    assert f"(8 of {n_dropped} shown), a few of each reason**" in dropped_md  # the sheet says it is a sample
    sheet = _sheet(dropped_md)
    assert sheet.width == 8 * (160 + 4)  # 4 black + 4 frozen tiles in one row
    keys = {o.key for o in store.list_objects("unlabeled-images", "dead/")}
    assert "dead/0.jpg" not in keys and "dead/50.jpg" in keys and "dead/60.jpg" not in keys


def test_a_loop_sends_its_frames_to_labeling_once_when_repeats_are_dropped(instance, local_resource, media, footage, tmp_path):
    """bikes.mp4 (real footage, 10 s) looped 3 times: the live labeling frames of the 2nd and 3rd
    pass are flagged as repeats of the 1st pass's (same perceptual hash within 5 bits), the
    distinct frames are those of one pass, and `frame_repeats: drop` uploads only those."""
    from media_assets.samples import make_avi

    store = local_resource.get_store()
    store.upload(media["bikes"], "video-avi", "once.avi")
    store.upload(make_avi(footage / "bikes.mp4", tmp_path / "looped.avi", loop_to_s=30, audio=False), "video-avi", "looped.avi")
    once = _metadata(_materialize(instance, local_resource, VideoConversionSettings(), "once.avi"), "labeling_frames")
    looped = _metadata(_materialize(instance, local_resource, VideoConversionSettings(), "looped.avi"), "labeling_frames")
    assert once["repeat_frames"] <= 2 and once["distinct_frames"] + once["repeat_frames"] == once["frames_kept"]
    assert abs(looped["distinct_frames"] - once["distinct_frames"]) <= 1, (once, looped)
    assert looped["repeat_frames"] >= 2 * once["frames_kept"] - 2 and looped["frames_kept"] == looped["frames_sampled"] - looped["frames_dropped"]
    manifest = json.loads(store.get_bytes("video-mp4", looped["manifest"].split("/", 1)[1]))
    repeats = {int(i): o for i, o in manifest["repeat_of"].items()}
    assert len(repeats) == looped["repeat_frames"] and all(o < i for i, o in repeats.items())
    # a frame of the 2nd or 3rd pass (250 frames each) repeats a frame of the 1st, at most one sample off
    assert all(o < 250 and min((i - o) % 250, -(i - o) % 250) <= 10 for i, o in repeats.items() if i >= 250), repeats
    assert "repeats: " in looped["frames"] and "each beside the frame it repeats" in looped["frames"]

    dropped = _metadata(_materialize(instance, local_resource, VideoConversionSettings(frame_repeats="drop"), "looped.avi"), "labeling_frames")
    assert dropped["frames_kept"] == dropped["distinct_frames"] == looped["distinct_frames"]
    uploaded = {int(o.key.rsplit("/", 1)[1][:-4]) for o in store.list_objects("unlabeled-images", "looped/")}
    assert uploaded == set(manifest["frame_indices"]) - set(repeats)
