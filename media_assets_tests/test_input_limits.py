"""Untrusted uploads are bounded before any decode, with the shipped defaults: a source over a
bound is an input failure naming the bound and its setting, and its object is kept; ffmpeg
that stalls is killed at its wall-clock limit as an infrastructure failure (retried)."""

from __future__ import annotations

import os
import pickle
import struct
import threading
import time

import dagster as dg
import numpy as np
import pytest

from media_assets.lib.records import failure_description, is_input_failure
from media_assets.kernels import limits
from media_assets.kernels.audio import check_audio, iter_audio_chunks
from media_assets.kernels.ffmpeg import (
    FFmpegError,
    FFmpegInterruptedError,
    FFmpegTimeoutError,
    ffmpeg_failure,
    run_ffmpeg,
    run_ffmpeg_streaming,
)
from media_assets.kernels.labels import BatchFormatError
from media_assets.kernels.probe import MediaError, probe
from media_assets.kernels.safe_pickle import UnsafePickleError, safe_loads
from media_assets.resources.audio import AudioSettings
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.resources.video import VideoConversionSettings

from media_assets_tests.test_video_pipeline import _materialize


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict:
    """Tiny real files whose headers declare what the default bounds refuse."""
    d = tmp_path_factory.mktemp("crafted")
    out = {}
    # one black frame of 8208x4400 (36.1 MP): over H.264 level 6.2's 35.65 MP
    out["huge_frame"] = d / "huge_frame.avi"
    run_ffmpeg(["-f", "lavfi", "-i", "color=black:s=8208x4400:r=25", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "31", str(out["huge_frame"])])
    # two frames at 1/25000 frames/s: the header declares 50,000 s (13.9 h)
    out["long"] = d / "long.avi"
    run_ffmpeg(["-f", "lavfi", "-i", "color=black:s=64x64:r=1/25000", "-frames:v", "2", "-c:v", "mjpeg", str(out["long"])])
    # two frames at 1000 frames/s
    out["fast"] = d / "fast.avi"
    run_ffmpeg(["-f", "lavfi", "-i", "color=black:s=64x64:r=1000", "-frames:v", "2", "-c:v", "mjpeg", str(out["fast"])])
    # one second of FLAC whose STREAMINFO declares 13 h of samples
    flac = d / "long.flac"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=1", "-c:a", "flac", str(flac)])
    data = bytearray(flac.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    (packed,) = struct.unpack(">Q", data[18:26])  # 20 bits rate, 3 channels, 5 bps, 36 total samples
    data[18:26] = struct.pack(">Q", (packed & ~((1 << 36) - 1)) | (13 * 3600 * 16000))
    flac.write_bytes(bytes(data))
    out["long_flac"] = flac
    return out


def test_headers_over_the_default_bounds_are_refused_from_the_probe(crafted):
    video = VideoConversionSettings().limits()
    for name, bound, setting in [("huge_frame", "35,651,584 px", "MEDIA_ASSETS_VIDEO_MAX_FRAME_PIXELS"),
                                 ("long", "21,600 s", "MEDIA_ASSETS_VIDEO_MAX_SOURCE_DURATION_S"),
                                 ("fast", "240 frames/s", "MEDIA_ASSETS_VIDEO_MAX_FRAME_RATE")]:
        info = probe(crafted[name])
        with pytest.raises(limits.LimitExceededError, match=setting) as err:
            limits.check_video(name, info, video)
        assert bound in str(err.value) and isinstance(err.value, MediaError)
    with pytest.raises(limits.LimitExceededError, match="MEDIA_ASSETS_AUDIO_MAX_SOURCE_DURATION_S"):
        check_audio(crafted["long_flac"], AudioSettings().limits(), name="calls/long.flac")
    # real footage at 8K UHD, 240 fps or 6 h passes
    assert limits.VideoLimits().max_frame_pixels >= 7680 * 4320 and limits.H264_MAX_FRAME_PIXELS == 8192 * 4352


def test_time_limit_scales_with_duration_and_pixel_rate(media):
    info = probe(media["bunny"])  # 1280x720 at 24 fps: under 1080p30, scale 1
    s = VideoConversionSettings()
    assert s.ffmpeg_time_limit_s(info) == pytest.approx(120 + 4 * info.duration_s)
    assert limits.time_limit_s(10, base_s=0, per_media_s=1) == 10
    eight_k = type(info.video)(codec="h264", width=7680, height=4320, frame_rate=30.0, n_frames=None, pix_fmt=None)
    assert limits.time_limit_s(10, base_s=0, per_media_s=1, info=type(info)("x", "mp4", 10, 1, eight_k, None)) == pytest.approx(160)


@pytest.mark.parametrize("name", ["huge_frame", "long", "fast"])
def test_video_over_a_bound_fails_as_input_before_decoding(instance, local_resource, crafted, monkeypatch, name):
    import media_assets.defs.video.decode as decode

    def never(*args, **kwargs):
        raise AssertionError("decoded a source that is over a bound")

    monkeypatch.setattr(decode, "decode_once", never)
    store = local_resource.get_store()
    key = f"uploads/{name}.avi"
    store.upload(crafted[name], "video-avi", key)
    result = _materialize(instance, local_resource, VideoConversionSettings(), key, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure_description(failure.step_failure_data)
    assert f"video-avi/{key}" in message and "over the limit" in message and "MEDIA_ASSETS_VIDEO_" in message
    assert is_input_failure(instance, result.run_id)  # reported once, not retried
    assert store.exists("video-avi", key)  # the object is kept
    assert not list(store.list_objects("video-mp4", ""))


def test_oversized_objects_are_refused_before_the_download(instance, local_resource, tmp_path):
    """A 65 GiB object (a sparse file in the local store: no disk used) is refused from its
    size alone, with the shipped 64 GiB default; nothing is downloaded."""
    store = local_resource.get_store()
    key = "uploads/enormous.avi"
    path = store.root / "video-avi" / key
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        f.truncate(65 * limits.GIB)
    result = _materialize(instance, local_resource, VideoConversionSettings(), key, raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure_description(failure.step_failure_data)
    assert "69,793,218,560 bytes" in message and "MEDIA_ASSETS_VIDEO_MAX_SOURCE_BYTES" in message
    assert path.stat().st_size == 65 * limits.GIB and is_input_failure(instance, result.run_id)


def test_audio_over_a_bound_gets_an_error_row_and_is_not_decoded(instance, local_resource, crafted, monkeypatch):
    import datetime as dt

    import media_assets.defs.audio.assets as audio_assets

    def never(*args, **kwargs):
        raise AssertionError("decoded a file that is over a bound")

    monkeypatch.setattr(audio_assets, "iter_audio_chunks", never)
    monkeypatch.setattr(audio_assets, "decode_audio", never)
    store = local_resource.get_store()
    store.upload(crafted["long_flac"], "audio", "calls/declared_13h.flac")
    sparse = store.root / "audio" / "calls" / "enormous.flac"
    with open(sparse, "wb") as f:
        f.truncate(5 * limits.GIB)
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    defs = _audio_defs(local_resource)
    result = defs.resolve_job_def("audio").execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
    assert result.success
    rows = {r["Key"]: r for r in result.output_for_node("transcripts").to_pylist()}
    assert "MEDIA_ASSETS_AUDIO_MAX_SOURCE_DURATION_S" in rows["calls/declared_13h.flac"]["error"]
    assert "46,800.0 s" in rows["calls/declared_13h.flac"]["error"]
    assert "MEDIA_ASSETS_AUDIO_MAX_SOURCE_BYTES" in rows["calls/enormous.flac"]["error"]
    assert rows["calls/enormous.flac"]["text"] is None and store.exists("audio", "calls/enormous.flac")


def _audio_defs(resource) -> dg.Definitions:
    """The audio pipeline with the shipped default settings."""
    from media_assets.defs.audio import defs as audio_defs
    from media_assets.resources.audio import AudioTokenizerResource, SpeechRecognizerResource
    from media_assets.resources.events import EventQueueResource
    from media_assets.resources.reconcile import ReconcileSettings

    return dg.Definitions.merge(audio_defs, dg.Definitions(resources={
        "object_store": resource, "audio_settings": AudioSettings(), "speech_recognizer": SpeechRecognizerResource(),
        "audio_tokenizer": AudioTokenizerResource(), "reconcile_settings": ReconcileSettings(), "event_queue": EventQueueResource()}))


def _fifo(tmp_path):
    path = tmp_path / "stalled.avi"
    os.mkfifo(path)
    return path


def test_stalled_ffmpeg_is_killed_at_its_limit_as_infrastructure(tmp_path):
    """ffmpeg reading a FIFO that nobody writes blocks for ever; each way of running it kills it
    at its limit and raises FFmpegTimeoutError: not FFmpegError or MediaError (input), so the
    assets let it through to their retry policy."""
    fifo = _fifo(tmp_path)
    runs = [
        lambda: run_ffmpeg(["-i", str(fifo), "-f", "null", "-"], timeout_s=1.5),
        lambda: run_ffmpeg_streaming(["-i", str(fifo), "-f", "null", "-"], [], timeout_s=1.5),
        lambda: list(iter_audio_chunks(fifo, timeout_s=1.5)),
    ]
    for run in runs:
        started = time.monotonic()
        with pytest.raises(FFmpegTimeoutError) as err:
            run()
        assert 1.4 < time.monotonic() - started < 15
        assert not isinstance(err.value, (FFmpegError, MediaError)) and isinstance(err.value, limits.TimeLimitError)
        assert "wall-clock limit of" in str(err.value)


def test_ffmpeg_exit_evidence_tells_infrastructure_from_input():
    cmd = ["ffmpeg"]
    assert isinstance(ffmpeg_failure(cmd, -9, ""), FFmpegInterruptedError)  # the OOM killer's SIGKILL
    assert "SIGKILL" in str(ffmpeg_failure(cmd, -9, ""))
    disk_full = ffmpeg_failure(cmd, 228, "[out#0/mp4] Error writing trailer: No space left on device")
    assert isinstance(disk_full, FFmpegInterruptedError) and "no space left" in str(disk_full)
    assert isinstance(ffmpeg_failure(cmd, 244, ""), FFmpegInterruptedError)  # -ENOMEM & 0xff
    bad = ffmpeg_failure(cmd, 1, "Invalid data found when processing input")
    assert type(bad) is FFmpegError


def test_ffmpeg_killed_mid_run_is_infrastructure(tmp_path):
    """A real ffmpeg SIGKILLed while it reads (as the OOM killer does) raises FFmpegInterruptedError."""
    import psutil

    fifo = _fifo(tmp_path)
    me = psutil.Process()

    def kill_ffmpeg():
        for _ in range(100):
            kids = [p for p in me.children() if "ffmpeg" in p.name()]
            if kids:
                kids[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_ffmpeg)
    killer.start()
    with pytest.raises(FFmpegInterruptedError, match="SIGKILL"):
        run_ffmpeg(["-i", str(fifo), "-f", "null", "-"], timeout_s=30)
    killer.join()


def test_stalled_decode_fails_the_step_as_infrastructure_and_keeps_the_source(instance, local_resource, media):
    """The video asset with a limit the encode cannot meet: the step fails with the time limit
    named, not as an input failure (so Dagster retries it and reconciliation re-requests it),
    and the source and its (absent) outputs are as before."""
    store = local_resource.get_store()
    key = "slow/bunny.avi"
    store.upload(media["bunny"], "video-avi", key)
    settings = VideoConversionSettings(ffmpeg_time_base_s=0.3, ffmpeg_time_per_media_s=0.0)
    result = _materialize(instance, local_resource, settings, key, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures and all(failure_description(f.step_failure_data) is None for f in failures)
    error = failures[-1].step_failure_data.error
    assert "FFmpegTimeoutError: ffmpeg still running after its wall-clock limit of 0.3 s" in error.to_string()
    assert len([e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]) == 2  # the asset's RetryPolicy
    assert not is_input_failure(instance, result.run_id)
    assert store.exists("video-avi", key) and not list(store.list_objects("video-mp4", ""))


def test_batch_pickles_over_a_bound_fail_alone_and_are_kept(local_resource):
    from media_assets.defs.labels.correction import correct_one

    store = local_resource.get_store()
    settings = LabelCorrectionSettings()
    # a sparse 1.5 GiB object: refused from HEAD, never downloaded
    path = store.root / settings.bucket / "batch_1_0.pickle"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(3 * limits.GIB // 2)
    with pytest.raises(BatchFormatError, match="MEDIA_ASSETS_LABELS_MAX_BATCH_BYTES"):
        correct_one(store, settings, "batch_1_0.pickle", None, None, None)
    assert path.stat().st_size == 3 * limits.GIB // 2
    # a 100-byte pickle declaring a 2 GiB array (numpy reserves it untouched): refused before any read
    bomb = b"(dVvideo_embeddings\ncnumpy\nndarray\n((I1048576\nI512\ntcnumpy\ndtype\n(Vf4\nI0\nI1\ntRtRs."
    loaded = safe_loads(bomb)
    assert loaded["video_embeddings"].nbytes == 2 * limits.GIB
    store.put_bytes(bomb, settings.bucket, "batch_2_0.pickle")
    with pytest.raises(BatchFormatError, match="declare 2,147,483,648 bytes"):
        correct_one(store, settings, "batch_2_0.pickle", None, None, None)
    # too many rows
    rows = {"video_embeddings": np.zeros((1_000_001, 1), np.float32), "audio_embeddings": np.zeros((1_000_001, 1), np.float32),
            "targets": np.zeros(1_000_001, np.float32)}
    store.put_bytes(pickle.dumps(rows), settings.bucket, "batch_3_0.pickle")
    with pytest.raises(BatchFormatError, match="1,000,001 rows is over the limit of 1,000,000 rows"):
        correct_one(store, settings, "batch_3_0.pickle", None, None, None)
    assert store.exists(settings.bucket, "batch_3_0.pickle")


def test_bytearray_from_a_size_is_refused():
    """``bytearray(n)`` is a 40-byte pickle that zeroes n bytes; a bytearray's own pickle is kept."""
    assert safe_loads(pickle.dumps(bytearray(b"ab"), protocol=2)) == bytearray(b"ab")
    assert safe_loads(pickle.dumps(bytearray(b"ab"), protocol=4)) == bytearray(b"ab")
    with pytest.raises(UnsafePickleError, match="bytearray"):
        safe_loads(b"c__builtin__\nbytearray\n(L100000000000L\ntR.")


def _corrupt_flac(path, seconds: float = 7.0) -> None:
    """A FLAC whose header (STREAMINFO: ``seconds`` of audio) is intact and whose frames are
    random bytes, as a damaged upload is."""
    import random

    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=16000:duration={seconds}", "-c:a", "flac", str(path)])
    data = bytearray(path.read_bytes())
    pos, last = 4, False
    while not last:  # metadata blocks: 1 byte (last flag + type), 3 bytes length
        last = bool(data[pos] & 0x80)
        pos += 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    rng = random.Random(7)
    data[pos:] = bytes(rng.randrange(256) for _ in range(len(data) - pos))
    path.write_bytes(bytes(data))


def test_corrupt_flac_is_an_error_not_a_silent_recording(instance, local_resource, tmp_path):
    """Valid header, garbage frames: ffmpeg decodes next to nothing with exit status 0. The row
    gets an error naming the shortfall instead of empty text that reads as silence."""
    import datetime as dt

    from media_assets.kernels.audio import check_decoded_duration

    check_decoded_duration("ok.flac", 7.1, 7.0)  # frame padding is not a loss
    with pytest.raises(MediaError, match="decoded 2.00 s of the 7.10 s"):
        check_decoded_duration("cut.flac", 7.1, 2.0)
    corrupt = tmp_path / "corrupt.flac"
    _corrupt_flac(corrupt)
    assert probe(corrupt).duration_s == pytest.approx(7.0, abs=0.1)
    store = local_resource.get_store()
    store.upload(corrupt, "audio", "calls/corrupt.flac")
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    defs = _audio_defs(local_resource)
    result = defs.resolve_job_def("audio").execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
    assert result.success
    (row,) = result.output_for_node("transcripts").to_pylist()
    assert row["text"] is None and "corrupt or truncated" in row["error"] and "7.0" in row["error"]
