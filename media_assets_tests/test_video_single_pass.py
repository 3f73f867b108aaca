"""The video's single decode pass (`video_decode` with clips, labeling frames and key-frame
embeddings selected together) gives the outputs the one-decode-per-output path gives (each
asset materialized alone, the labeling frames and samples cut from the clips), on real footage
split into clips, with black and frozen frames to drop."""

from __future__ import annotations

import io
import json

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from media_assets.defs.video import raw_videos, video_decode, video_partitions
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.kernels.frames import luma_thumbnail
from media_assets.resources.embedder import ImageEmbedderResource
from media_assets.resources.keyframes import KeyframeSettings, keyframe_tables_io_manager
from media_assets.resources.video import VideoConversionSettings
from media_assets.storage import ObjectStoreResource

OUTPUTS = ["mp4_clips", "labeling_frames", "keyframe_embeddings"]
# split at 8 s into 5 s clips, so the 15.6 s reel has clip boundaries at 5, 10 and 15 s
SETTINGS = VideoConversionSettings(max_duration_s=8, clip_s=5, source_removal="keep")


def _reel(footage, path):
    """Big Buck Bunny twice (1280x720 24 fps, MP3 sound) after 2 s of black and 3 s frozen on
    its first frame: 15.6 s of MPEG-4 Part 2 AVI."""
    run_ffmpeg(["-stream_loop", "1", "-i", str(footage / "bigbuckbunny.mp4"),
                "-vf", "tpad=start_mode=clone:start_duration=3,tpad=start_duration=2:color=black", "-af", "adelay=5s:all=1",
                "-c:v", "mpeg4", "-q:v", "4", "-c:a", "libmp3lame", "-q:a", "4", "-f", "avi", str(path)])
    return path


def _outputs(instance, tmp_path, src, together: bool) -> dict:
    resource = ObjectStoreResource(backend="local", data_root=str(tmp_path / ("single" if together else "separate")))
    store = resource.get_store()
    store.upload(src, SETTINGS.source_bucket, "reel.avi")
    resources = {"object_store": resource, "video_settings": SETTINGS, "keyframe_settings": KeyframeSettings(),
                 "image_embedder": ImageEmbedderResource(), "keyframe_tables": keyframe_tables_io_manager}
    passes = []
    for selection in ([OUTPUTS] if together else [[o] for o in OUTPUTS]):
        result = dg.materialize([raw_videos, video_decode], selection=selection, partition_key="reel.avi", instance=instance, resources=resources)
        assert result.success
        passes += [e.materialization.metadata["decode_pass"].value for e in result.get_asset_materialization_events()
                   if e.asset_key == dg.AssetKey("mp4_clips")]
    table = pq.read_table(io.BytesIO(store.get_bytes("media", "converted/embeddings/reel.parquet")))
    frames = json.loads(store.get_bytes(SETTINGS.mp4_bucket, ".manifests/reel/frames.json"))
    return {
        "passes": passes,
        "clips": json.loads(store.get_bytes(SETTINGS.mp4_bucket, ".manifests/reel/clips.json"))["clips"],
        "frames": frames,
        "thumbs": np.stack([luma_thumbnail(Image.open(io.BytesIO(store.get_bytes(SETTINGS.labeling_bucket, k)))) for k in frames["frame_keys"]]),
        "samples": table,
    }


def test_single_pass_outputs_equal_one_decode_per_output(instance, tmp_path, footage):
    src = _reel(footage, tmp_path / "reel.avi")
    instance.add_dynamic_partitions(video_partitions.name, ["reel.avi"])
    one = _outputs(instance, tmp_path, src, together=True)
    sep = _outputs(instance, tmp_path, src, together=False)
    assert one["passes"] == ["clips+labeling frames+key-frame samples"] and sep["passes"] == ["clips"]

    # the same clips: boundaries, durations, frame counts, streams
    fields = ("index", "start_s", "duration_s", "n_frames", "first_frame_index", "video_codec", "audio_codec")
    assert [[c[f] for f in fields] for c in one["clips"]] == [[c[f] for f in fields] for c in sep["clips"]]
    # start = sum of the earlier clips' container durations (audio included: AAC frames, priming)
    assert np.allclose([c["start_s"] for c in one["clips"]], [0.0, 5.0, 10.0, 15.0], atol=0.1)

    # the same labeling frames kept (by source frame index) and dropped (by reason)
    assert one["frames"]["frame_indices"] == sep["frames"]["frame_indices"]
    assert one["frames"]["dropped"] == sep["frames"]["dropped"] and one["frames"]["n_sampled"] == sep["frames"]["n_sampled"]
    assert one["frames"]["dropped"]["black"] >= 4 and one["frames"]["dropped"]["frozen"] >= 6
    # ... showing the same pictures: each kept frame differs from its counterpart by far less
    # than from the next kept frame (a one-frame shift would show as a neighbour-sized change)
    same = np.abs(one["thumbs"].astype(float) - sep["thumbs"]).mean(axis=(1, 2))
    neighbour = np.abs(np.diff(sep["thumbs"].astype(float), axis=0)).mean(axis=(1, 2))
    assert same.max() < 2.0 < np.median(neighbour)

    # the same key-frame samples: timestamps, dead flags, shots, and the pictures (embeddings)
    a, b = one["samples"], sep["samples"]
    assert a["timestamp_s"].to_pylist() == b["timestamp_s"].to_pylist() == [float(i) for i in range(16)]
    assert a["frame_index"].to_pylist() == b["frame_index"].to_pylist()
    assert a["dead"].to_pylist() == b["dead"].to_pylist() and a["dead"].to_pylist()[:2] == ["black", "black"]
    ea, eb = (np.stack(t["embedding"].to_numpy(zero_copy_only=False)) for t in (a, b))
    assert (ea * eb).sum(axis=1).min() > 0.97
