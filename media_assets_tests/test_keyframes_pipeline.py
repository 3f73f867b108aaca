"""Key-frame pipeline end to end: direct uploads through ``new_video_sensor``, converted AVIs
through the video job, explicit s3:// partitions, bad input, Bedrock Titan over botocore's
HTTP layer, Step Functions callbacks."""

from __future__ import annotations

import base64
import gc
import io
import json

import boto3
import botocore.awsrequest
import botocore.exceptions
import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber
from PIL import Image

from media_assets.lib.records import check_evaluations
from media_assets.defs.keyframes import TASK_TOKEN_TAG
from media_assets.defs.keyframes import defs as keyframe_defs
from media_assets.defs.keyframes.sensors import step_functions_task_failure, step_functions_task_success
from media_assets.scratch import scratch_root
from media_assets.defs.video import defs as video_defs
from media_assets.defs.video import video_partitions
from media_assets.testing.harness import process_pending
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.step_functions import MAX_OUTPUT_BYTES, StepFunctionsResource, bounded_output
from media_assets.resources.video import VideoConversionSettings
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource


def _defs(resource, embedder=None, **settings):
    return dg.Definitions.merge(video_defs, keyframe_defs, dg.Definitions(resources={
        "object_store": resource,
        "video_settings": VideoConversionSettings(source_removal="keep"),
        "keyframe_settings": KeyframeSettings(**settings),
        "image_embedder": embedder or ImageEmbedderResource(),
        "step_functions": StepFunctionsResource(region_name="us-east-1"),
        "reconcile_settings": ReconcileSettings(),
        "event_queue": EventQueueResource(),
    }))


@pytest.fixture(scope="module")
def reel(tmp_path_factory, footage):
    """Three real shots joined by hard cuts: carphone 0-4 s, a street shot of bikes.mp4 4-7 s,
    Big Buck Bunny 7-10.3 s (bikes.mp4 as a whole is a montage of ~1 s shots)."""
    out = tmp_path_factory.mktemp("reel") / "reel.mp4"
    segments = [("carphone_pristine.mp4", 0, 4), ("bikes.mp4", 7, 3), ("bigbuckbunny.mp4", 2, 3.3)]
    inputs = sum((["-ss", str(ss), "-t", str(t), "-i", str(footage / f)] for f, ss, t in segments), [])
    chains = "".join(f"[{i}:v:0]scale=640:360,setsar=1,fps=25[v{i}];" for i in range(3))
    run_ffmpeg([*inputs, "-filter_complex", chains + "[v0][v1][v2]concat=n=3:v=1:a=0[v]", "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", str(out)])
    return out


def _materialization(instance, asset, partition):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _kept(instance, partition, column="frame_index"):
    """One column of the partition's ``key_frame_list`` table (what the UI shows)."""
    return [r.data[column] for r in _materialization(instance, "key_frames", partition)["key_frame_list"].records]


def test_direct_upload_key_frames_at_the_cuts(instance, local_resource, reel):
    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    store.put_bytes(b"not a video", "media", "video_in/notes.txt")
    outcomes = process_pending(_defs(local_resource), instance, sensor_names=["new_video_sensor"])
    assert [(o.job, o.partition, o.success) for o in outcomes] == [("keyframes", "video_in/reel.mp4", True)]

    meta = _materialization(instance, "key_frames", "video_in/reel.mp4")
    kept = [r.data["frame_index"] for r in meta["key_frame_list"].records]
    assert [r.data["timestamp_s"] for r in meta["key_frame_list"].records] == [float(k) for k in kept]  # 1 FPS samples
    assert meta["manifest"] == "media/.manifests/video_in/selected_frames/reel/manifest.json"
    assert kept[0] <= 1 and any(4 <= k <= 5 for k in kept) and any(7 <= k <= 8 for k in kept), kept
    assert len(kept) <= 4, kept  # about one per shot, not one per second
    keys = sorted(o.key for o in store.list_objects("media", "video_in/selected_frames/reel/"))
    assert keys == sorted(f"video_in/selected_frames/reel/{k}.jpg" for k in kept)
    with Image.open(store.root / "media" / keys[0]) as img:
        assert img.size == (1024, 576)
    # the UI: every key frame in one contact sheet, 160 px per tile, 8 per row
    sheet_md, repeats_md = meta["key_frames"].split("\n\n**repeated")
    assert repeats_md == " key frames**: none" and meta["repeat_key_frames"] == 0  # three different shots
    assert sheet_md.startswith(f"**{len(kept)} key frames**")
    with Image.open(io.BytesIO(base64.b64decode(sheet_md.split("base64,", 1)[1].rstrip(")")))) as sheet:
        assert sheet.width == len(kept) * (160 + 4)

    table = pq.read_table(io.BytesIO(store.get_bytes("media", "video_in/embeddings/reel.parquet")))
    assert table.column_names == ["video", "frame_index", "timestamp_s", "dead", "shot", "flash", "embedding"]
    # hard cuts at 4.0 s, 4.48 and 6.68 s (bikes.mp4's own cuts) and 7.0 s; none at a flash
    assert table["shot"].to_pylist() == [0, 0, 0, 0, 1, 2, 2, 4, 4, 4, 4] and not any(table["flash"].to_pylist())
    assert _materialization(instance, "keyframe_embeddings", "video_in/reel.mp4")["hard_cuts"] == 4
    assert table.num_rows == 11 and table.schema.field("embedding").type == pa.list_(pa.float32(), 1280)
    emb = np.asarray(table["embedding"].combine_chunks().flatten().to_numpy()).reshape(11, 1280)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    for check in ("at_least_one_key_frame", "uploaded_keys_exist"):
        (evaluation,) = check_evaluations(instance, dg.AssetCheckKey(dg.AssetKey("key_frames"), check), limit=1)
        assert evaluation.passed, check


def test_converted_avi_gets_key_frames_in_the_same_run(instance, local_resource, media):
    store = local_resource.get_store()
    store.upload(media["bikes"], "video-avi", "cams/bikes.avi")
    outcomes = process_pending(_defs(local_resource), instance, sensor_names=["new_avi_sensor"])
    assert [o.success for o in outcomes] == [True]
    assert set(outcomes[0].materializations) == {"raw_videos", "mp4_clips", "labeling_frames", "keyframe_embeddings", "key_frames", "key_frame_vectors",
                                                  "source_video_removal"}  # raw_videos: the source as it arrived
    assert outcomes[0].materializations["source_video_removal"]["source_status"] == "kept (source_removal=keep)"
    keys = [o.key for o in store.list_objects("media", "converted/selected_frames/cams/bikes/")]
    assert keys and all(k.endswith(".jpg") for k in keys)


def test_reupload_replaces_every_derived_object_exactly(instance, local_resource, reel, footage, tmp_path):
    """Issue 9, observation 8: a shorter re-upload leaves no stale samples or key frames, and
    objects a killed run left in the output folders (never committed) go with the next commit."""
    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    defs = _defs(local_resource)
    assert [o.success for o in process_pending(defs, instance, sensor_names=["new_video_sensor"])] == [True]
    assert len(list(store.list_objects("media", "video_in/samples/reel/"))) == 11
    store.put_bytes(b"left by a killed run", "media", "video_in/samples/reel/999.jpg")
    store.put_bytes(b"left by a killed run", "media", "video_in/selected_frames/reel/998.jpg")
    store.put_bytes(b"another video's", "media", "video_in/samples/reel/deeper/0.jpg")  # not this video's folder

    short = tmp_path / "short.mp4"
    run_ffmpeg(["-i", str(footage / "bikes.mp4"), "-t", "3", "-c:v", "libx264", "-preset", "veryfast", str(short)])
    store.upload(short, "media", "video_in/reel.mp4")
    assert [o.success for o in process_pending(defs, instance, sensor_names=["new_video_sensor"])] == [True]
    samples = sorted(o.key for o in store.list_objects("media", "video_in/samples/reel/"))
    assert samples == ["video_in/samples/reel/0.jpg", "video_in/samples/reel/1.jpg", "video_in/samples/reel/2.jpg",
                       "video_in/samples/reel/deeper/0.jpg"]
    kept = _kept(instance, "video_in/reel.mp4")
    selected = sorted(o.key for o in store.list_objects("media", "video_in/selected_frames/reel/"))
    assert selected == sorted(f"video_in/selected_frames/reel/{k}.jpg" for k in kept) and all(k <= 2 for k in kept)


def test_table_is_the_commit_point_of_the_samples(instance, local_resource, reel, tmp_path, monkeypatch):
    """`keyframe_embeddings`' table is stored by the `keyframe_tables` IO manager after the
    samples are uploaded: when storing it fails, the previous table and every sample it refers
    to stay and this attempt's extra samples are rolled back; once storing works, the new set
    replaces the old exactly. The rollback is the IO manager's, on the spot: Dagster leaves the
    failed attempt's generator suspended at its ``yield`` until garbage collection closes it,
    which may happen during a later attempt, and that late close must remove nothing (cyclic
    collection is held off below to make it late)."""
    from media_assets.resources.keyframes import KeyframeTables

    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    defs = _defs(local_resource)
    assert [o.success for o in process_pending(defs, instance, sensor_names=["new_video_sensor"])] == [True]
    table_key = "video_in/embeddings/reel.parquet"
    assert pq.read_table(io.BytesIO(store.get_bytes("media", table_key))).num_rows == 11

    longer = tmp_path / "longer.mp4"  # 13 s: samples 11 and 12 are new keys
    run_ffmpeg(["-stream_loop", "1", "-i", str(reel), "-t", "13", "-c:v", "libx264", "-preset", "ultrafast", str(longer)])
    store.upload(longer, "media", "video_in/reel.mp4")

    def disk_full(self, context, obj, path):
        raise OSError(28, "No space left on device")

    gc.collect()
    gc.disable()
    try:
        with monkeypatch.context() as m:
            m.setattr(KeyframeTables, "dump_to_path", disk_full)
            (outcome,) = process_pending(defs, instance, sensor_names=["new_video_sensor"])
        assert not outcome.success and "No space left on device" in outcome.error
        assert pq.read_table(io.BytesIO(store.get_bytes("media", table_key))).num_rows == 11
        samples = {o.key.rsplit("/", 1)[1] for o in store.list_objects("media", "video_in/samples/reel/")}
        assert samples == {f"{i}.jpg" for i in range(11)}

        # the run again (as Dagster's run retry or the UI's re-execution does), storage working
        assert defs.resolve_job_def("keyframes").execute_in_process(instance=instance, partition_key="video_in/reel.mp4").success
    finally:
        gc.enable()
    gc.collect()  # closes whatever the failed attempts left suspended
    table = pq.read_table(io.BytesIO(store.get_bytes("media", table_key)))
    samples = {o.key.rsplit("/", 1)[1] for o in store.list_objects("media", "video_in/samples/reel/")}
    assert table.num_rows == 13 and samples == {f"{i}.jpg" for i in range(13)}
    assert table["frame_index"].to_pylist() == list(range(13))


def test_key_frames_alone_without_embeddings_names_what_to_materialize(instance, local_resource, reel):
    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    instance.add_dynamic_partitions(video_partitions.name, ["video_in/reel.mp4"])
    job = _defs(local_resource).resolve_job_def("keyframes")
    result = job.execute_in_process(instance=instance, partition_key="video_in/reel.mp4", asset_selection=[dg.AssetKey("key_frames")],
                                    raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.step_failure_data.error)
    assert "materialize keyframe_embeddings for partition video_in/reel.mp4 first" in message, message
    assert "video_in/embeddings/reel.parquet" in message
    assert not list(store.list_objects("media", "video_in/selected_frames/"))


def test_explicit_s3_uri_partition_on_s3(instance, s3_resource, s3_buckets, reel):
    store = s3_resource.get_store()
    bucket = s3_buckets("anything")
    store.upload(reel, bucket, "some/folder/clip.mp4")
    key = f"s3://{bucket}/some/folder/clip.mp4"
    instance.add_dynamic_partitions(video_partitions.name, [key])
    defs = _defs(s3_resource, output_bucket=s3_buckets("media"))
    result = defs.resolve_job_def("keyframes").execute_in_process(instance=instance, partition_key=key)
    assert result.success
    assert list(store.list_objects(bucket, "some/folder/selected_frames/clip/"))
    # the corpus's vector table is LanceDB on the same S3 server
    meta = _materialization(instance, "key_frame_vectors", key)
    assert meta["table_uri"] == f"s3://{s3_buckets('media')}/vectors/" and meta["table_rows"] == meta["key_frames_stored"] >= 3
    assert list(store.list_objects(s3_buckets("media"), "vectors/key_frames.lance/"))
    result = _defs(s3_resource, output_bucket="no-such-bucket").resolve_job_def("keyframes").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False)
    assert not result.success and "bucket no-such-bucket of the key-frame vector table does not exist" in str(result.all_events)


@pytest.mark.parametrize("name,make,match", [
    ("audio_only", lambda m, f, t: m["audio_only"], "no video stream"),
    ("corrupt", lambda m, f, t: m["text"], "not a readable media container"),
    ("black", None, "black or blank"),
])
def test_bad_input_fails_clearly_and_uploads_nothing(instance, local_resource, media, footage, tmp_path, name, make, match):
    store = local_resource.get_store()
    if make is None:
        src = tmp_path / "black.mp4"
        run_ffmpeg(["-f", "lavfi", "-i", "color=c=black:s=320x240:d=4", "-c:v", "libx264", str(src)])
    else:
        src = make(media, footage, tmp_path)
    store.upload(src, "media", f"video_in/{name}.mp4")
    store.upload(media["bikes"], "video-avi", "good.avi")  # another partition in the same pass
    outcomes = process_pending(_defs(local_resource), instance)
    bad = [o for o in outcomes if o.partition == f"video_in/{name}.mp4"]
    assert len(bad) == 1 and not bad[0].success and match in bad[0].error, bad[0].error
    assert str(scratch_root()) not in bad[0].error, bad[0].error  # the key, not the scratch copy
    assert all(o.success for o in outcomes if o is not bad[0])
    assert not list(store.list_objects("media", "video_in/selected_frames/"))
    if name != "black":
        assert not list(store.list_objects("media", "video_in/samples/"))


def test_short_video_gets_one_key_frame(instance, local_resource, footage, tmp_path):
    store = local_resource.get_store()
    short = tmp_path / "short.mp4"
    run_ffmpeg(["-i", str(footage / "bikes.mp4"), "-t", "0.4", "-c:v", "libx264", str(short)])
    store.upload(short, "media", "video_in/short.mp4")
    outcomes = process_pending(_defs(local_resource), instance)
    assert outcomes[0].success
    assert [o.key for o in store.list_objects("media", "video_in/selected_frames/")] == ["video_in/selected_frames/short/0.jpg"]



def _key_frames_of(defs, instance, key):
    instance.add_dynamic_partitions(video_partitions.name, [key])
    assert defs.resolve_job_def("keyframes").execute_in_process(instance=instance, partition_key=key).success
    return _materialization(instance, "key_frames", key)


def test_a_loop_repeats_its_key_frames_and_each_repeat_names_the_one_it_repeats(instance, local_resource, footage, tmp_path):
    """bikes.mp4 (a 10 s montage of ~1 s shots, real footage) looped 3 times: its distinct key
    frames are those of one pass (+-1), every repeat names an earlier key frame a whole number
    of loops (10 s) earlier, the sheet shows each beside the one it repeats; `repeats: drop`
    writes the distinct views only."""
    store = local_resource.get_store()
    once, looped = tmp_path / "once.mp4", tmp_path / "looped.mp4"
    run_ffmpeg(["-i", str(footage / "bikes.mp4"), "-an", "-c:v", "libx264", "-preset", "veryfast", str(once)])
    run_ffmpeg(["-stream_loop", "2", "-i", str(footage / "bikes.mp4"), "-an", "-c:v", "libx264", "-preset", "veryfast", str(looped)])
    store.upload(once, "media", "video_in/once.mp4")
    store.upload(looped, "media", "video_in/looped.mp4")
    defs = _defs(local_resource)
    one = _key_frames_of(defs, instance, "video_in/once.mp4")
    three = _key_frames_of(defs, instance, "video_in/looped.mp4")
    assert one["distinct_key_frames"] + one["repeat_key_frames"] == one["frames_kept"]
    assert abs(three["distinct_key_frames"] - one["distinct_key_frames"]) <= 1, (one, three)
    assert three["repeat_key_frames"] >= 2 * one["distinct_key_frames"] - 2  # the 2nd and 3rd pass, all flagged
    rows = [r.data for r in three["key_frame_list"].records]
    repeats = [(r["frame_index"], r["repeats_frame"]) for r in rows if r["repeats_frame"] is not None]
    assert len(repeats) == three["repeat_key_frames"]
    kept = {r["frame_index"] for r in rows}
    distinct = {r["frame_index"] for r in rows if r["repeats_frame"] is None}
    for rep, orig in repeats:
        assert orig in distinct and orig < rep  # the distinct view it repeats, not another repeat
    in_loops = [rep - orig for rep, orig in repeats if rep >= 10]
    assert sum(min((d % 10), 10 - d % 10) <= 1 for d in in_loops) >= 0.9 * len(in_loops), repeats
    manifest = json.loads(store.get_bytes("media", ".manifests/video_in/selected_frames/looped/manifest.json"))
    assert [r["repeats_frame"] for r in rows] == manifest["repeat_of"]
    assert three["key_frames"].count("![") == 2 and "repeated key frames, each beside the key frame it repeats" in three["key_frames"]

    drop = _key_frames_of(_defs(local_resource, repeats="drop"), instance, "video_in/looped.mp4")
    assert drop["frames_kept"] == drop["distinct_key_frames"] == three["distinct_key_frames"] and drop["repeat_key_frames"] == three["repeat_key_frames"]
    written = sorted(int(o.key.rsplit("/", 1)[1][:-4]) for o in store.list_objects("media", "video_in/selected_frames/looped/"))
    assert written == sorted(i for i in kept if all(i != rep for rep, _ in repeats))



def test_corpus_vector_table_names_the_same_footage_under_two_keys(instance, local_resource, reel, footage, tmp_path):
    """The reel (real footage) uploaded under two keys: the second's key frames are each named
    as repeating the first video at the same second; the table holds every key frame of both;
    re-uploading the first key with bikes.mp4 replaces its rows exactly, and only the reel's
    bikes shot is named as repeated; `media-assets similar` on a stored key frame answers its
    own frame first."""
    from click.testing import CliRunner

    from media_assets.cli import main

    store = local_resource.get_store()
    defs = _defs(local_resource)
    store.upload(reel, "media", "video_in/a.mp4")
    store.upload(reel, "media", "video_in/copy_of_a.mp4")
    first = _key_frames_of(defs, instance, "video_in/a.mp4")
    assert _materialization(instance, "key_frame_vectors", "video_in/a.mp4")["duplicates_across_videos"] == 0
    second = _key_frames_of(defs, instance, "video_in/copy_of_a.mp4")
    vectors = _materialization(instance, "key_frame_vectors", "video_in/copy_of_a.mp4")
    assert vectors["key_frames_stored"] == second["frames_kept"] == first["frames_kept"]
    assert vectors["duplicates_across_videos"] == second["frames_kept"]
    dups = [r.data for r in vectors["duplicate_list"].records]
    assert all(d["other_video"] == "video_in/a.mp4" and d["other_timestamp_s"] == d["timestamp_s"] and d["similarity"] > 0.99 for d in dups), dups
    assert vectors["table_rows"] == 2 * first["frames_kept"] and vectors["table_videos"] == 2

    other = tmp_path / "other.mp4"
    run_ffmpeg(["-i", str(footage / "bikes.mp4"), "-an", "-c:v", "libx264", "-preset", "veryfast", str(other)])
    store.upload(other, "media", "video_in/a.mp4")
    replaced = _key_frames_of(defs, instance, "video_in/a.mp4")
    after = _materialization(instance, "key_frame_vectors", "video_in/a.mp4")
    assert after["table_rows"] == first["frames_kept"] + replaced["frames_kept"]
    # bikes.mp4 whole now: only the reel's bikes shot (4-7 s, from bikes.mp4's 7-10 s) repeats, a cut of the same film
    dups = [r.data for r in after["duplicate_list"].records]
    assert dups and all(d["other_video"] == "video_in/copy_of_a.mp4" and 4 <= d["other_timestamp_s"] < 7
               and abs(d["timestamp_s"] - d["other_timestamp_s"] - 3) <= 1 for d in dups), dups
    corpus = local_resource.vector_store("media", "vectors/")
    assert corpus.count("video_in/a.mp4") == replaced["frames_kept"]

    key = f"video_in/selected_frames/copy_of_a/{_kept(instance, 'video_in/copy_of_a.mp4')[1]}.jpg"
    env = {"MEDIA_ASSETS_DATA_ROOT": str(store.root), "MEDIA_ASSETS_STORAGE": "local"}
    result = CliRunner().invoke(main, ["similar", f"media/{key}", "-k", "3"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "video_in/" in line]
    assert "video_in/copy_of_a.mp4" in lines[0] and key in lines[0] and len(lines) == 3, result.output
    local_file = tmp_path / "query.jpg"
    local_file.write_bytes(store.get_bytes("media", key))
    result = CliRunner().invoke(main, ["similar", str(local_file), "-k", "1"], env=env)
    assert result.exit_code == 0 and key in result.output, result.output
    result = CliRunner().invoke(main, ["similar", "media/no/such/key.jpg"], env=env)
    assert result.exit_code != 0 and "no/such/key.jpg" in result.output


# ------------------------------------------------------------------ Bedrock Titan
class _FakeBedrock:
    """Answers InvokeModel at botocore's HTTP layer (``before-send``), so request signing,
    serialisation and the retry handler all run for real."""

    def __init__(self, script):
        self.script = list(script)
        self.bodies = []

    def __call__(self, request, **kwargs):
        self.bodies.append(json.loads(request.body))
        status, payload, headers = self.script.pop(0) if self.script else (200, None, {})
        if payload is None:
            dim = self.bodies[-1]["embeddingConfig"]["outputEmbeddingLength"]
            payload = {"embedding": np.random.default_rng(len(self.bodies)).normal(size=dim).tolist(), "inputTextTokenCount": 0}
        return botocore.awsrequest.AWSResponse(request.url, status, {"content-type": "application/json", **headers}, _Raw(json.dumps(payload).encode()))


class _Raw:
    def __init__(self, data):
        self.data = data

    def stream(self, **kwargs):
        yield self.data

    def read(self, *a, **k):
        data, self.data = self.data, b""
        return data


_BUILD_BEDROCK_CLIENT = ImageEmbedderResource.bedrock_client


def _titan(script, monkeypatch):
    """A Titan embedder whose client (shared by every copy Dagster makes of the resource) is
    answered by ``_FakeBedrock``; the endpoint is 127.0.0.1, so nothing can leave the machine."""
    res = ImageEmbedderResource(backend="titan", titan_dimension=256, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                                max_concurrency=1, max_attempts=4)
    client = _BUILD_BEDROCK_CLIENT(res)  # the resource's own client construction (retry config)
    fake = _FakeBedrock(script)
    client.meta.events.register_first("before-send.bedrock-runtime.InvokeModel", fake)
    monkeypatch.setattr(ImageEmbedderResource, "bedrock_client", lambda self: client)
    return res, fake


def test_titan_throttled_call_succeeds_on_retry(tmp_path, reel, monkeypatch):
    from media_assets.kernels.keyframes import extract_samples

    paths = extract_samples(reel, tmp_path, fps=0.25).paths[:2]
    throttled = (400, {"message": "Too many requests"}, {"x-amzn-ErrorType": "ThrottlingException"})
    res, fake = _titan([throttled], monkeypatch)
    emb = res.embed_jpegs(paths)
    assert emb.shape == (2, 256) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert len(fake.bodies) == 3  # one throttled + two answered
    assert fake.bodies[0]["embeddingConfig"] == {"outputEmbeddingLength": 256}
    assert fake.bodies[0]["inputImage"] == __import__("base64").b64encode(paths[0].read_bytes()).decode()


def test_titan_access_denied_and_invalid_response_fail_clearly(instance, local_resource, reel, tmp_path, monkeypatch):
    from media_assets.kernels.image_embedding import EmbeddingError
    from media_assets.kernels.keyframes import extract_samples

    paths = extract_samples(reel, tmp_path, fps=0.25).paths[:1]
    res, _ = _titan([(200, {"message": "no embedding here"}, {})], monkeypatch)
    with pytest.raises(EmbeddingError, match="invalid Titan response"):
        res.embed_jpegs(paths)

    denied = (403, {"message": "You don't have access to the model"}, {"x-amzn-ErrorType": "AccessDeniedException"})
    res, fake = _titan([denied] * 50, monkeypatch)
    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    outcomes = process_pending(_defs(local_resource, embedder=res), instance)
    assert not outcomes[0].success and "AccessDeniedException" in outcomes[0].error and "bedrock:InvokeModel" in outcomes[0].error
    # not retried: a retry would send the same image again (max_attempts=4)
    assert len(fake.bodies) == len({b["inputImage"] for b in fake.bodies}) < 11
    assert not list(store.list_objects("media"))[1:], "only the source video remains"


# ------------------------------------------------------------------ Step Functions
def test_bounded_output_stays_under_256_kb():
    keys = [f"video_in/selected_frames/v/{i}.jpg" for i in range(20_000)]
    text = bounded_output({"bucket": "media", "selected_frame_keys": keys}, "selected_frame_keys")
    data = json.loads(text)
    assert len(text.encode()) <= MAX_OUTPUT_BYTES and data["selected_frame_keys_truncated"] and data["selected_frame_keys_total"] == 20_000


def test_task_token_answered_on_success_and_failure(instance, local_resource, reel, monkeypatch):
    store = local_resource.get_store()
    store.upload(reel, "media", "video_in/reel.mp4")
    store.put_bytes(b"not a video", "media", "video_in/broken.mp4")
    defs = _defs(local_resource)
    instance.add_dynamic_partitions(video_partitions.name, ["video_in/reel.mp4", "video_in/broken.mp4"])
    job = defs.resolve_job_def("keyframes")
    ok = job.execute_in_process(instance=instance, partition_key="video_in/reel.mp4", tags={TASK_TOKEN_TAG: "tok-ok"})
    bad = job.execute_in_process(instance=instance, partition_key="video_in/broken.mp4", tags={TASK_TOKEN_TAG: "tok-bad"}, raise_on_error=False)
    assert not bad.success

    client = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    monkeypatch.setattr(StepFunctionsResource, "client", lambda self: client)
    sfn = StepFunctionsResource(region_name="us-east-1")
    kept = _kept(instance, "video_in/reel.mp4", "key")
    assert sorted(kept) == sorted(o.key for o in store.list_objects("media", "video_in/selected_frames/reel/"))
    manifest = "media/.manifests/video_in/selected_frames/reel/manifest.json"
    assert json.loads(store.get_bytes("media", manifest.removeprefix("media/")))["keys"] == kept
    with Stubber(client) as stub:
        stub.add_response("send_task_success", {}, {"taskToken": "tok-ok", "output": json.dumps(
            {"bucket": "media", "video_key": "video_in/reel.mp4", "selected_frame_keys": kept, "frames_kept": len(kept),
             "manifest": manifest})})
        ctx = dg.build_run_status_sensor_context(
            sensor_name="step_functions_task_success", dagster_instance=instance, dagster_run=ok.dagster_run,
            dagster_event=ok.get_run_success_event(), resources={"step_functions": sfn},
        )
        step_functions_task_success(ctx)
        stub.assert_no_pending_responses()

    with Stubber(client) as stub:
        stub.add_response("send_task_failure", {}, {"taskToken": "tok-bad", "error": "MediaAssetsRunFailed",
                                                    "cause": botocore.stub.ANY})
        ctx = dg.build_run_status_sensor_context(
            sensor_name="step_functions_task_failure", dagster_instance=instance, dagster_run=bad.dagster_run,
            dagster_event=bad.get_run_failure_event(), resources={"step_functions": sfn},
        ).for_run_failure()
        step_functions_task_failure(ctx)
        stub.assert_no_pending_responses()
    with pytest.raises(botocore.exceptions.ParamValidationError):
        client.send_task_failure(taskToken="t", error="e", cause=123)


def test_a_direct_upload_deleted_before_processing_is_recorded_not_failed(instance, local_resource):
    """The keyframes run of an upload that is gone (and was never sampled) makes nothing and
    succeeds; the deletion is recorded on video_uploads."""
    instance.add_dynamic_partitions("videos", ["video_in/gone.mp4"])
    result = _defs(local_resource).resolve_job_def("keyframes").execute_in_process(instance=instance, partition_key="video_in/gone.mp4")
    assert result.success and not result.get_asset_materialization_events()
    (obs,) = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert obs.asset_key == dg.AssetKey("video_uploads") and obs.metadata["deleted_before_processing"].value == "media/video_in/gone.mp4"
