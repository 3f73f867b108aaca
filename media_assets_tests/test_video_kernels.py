"""Video kernels on real footage and real ffmpeg: probing, transcoding, splitting, sampling,
dead-frame detection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from media_assets.kernels.frames import (
    DeadFrameThresholds,
    classify_dead_frames,
    dead_reason,
    luma_thumbnail,
    sample_frames,
)
from media_assets.kernels.probe import MediaError, NoVideoStreamError, probe
from media_assets.kernels.transcode import VerificationError, transcode_to_mp4, verify_clips


def test_probe_real_avi(media):
    info = probe(media["bunny"])
    assert info.format_name == "avi"
    assert info.video.width == 1280 and info.video.height == 720 and info.video.frame_rate == 25
    assert info.audio is not None and info.audio.sample_rate == 48000
    assert 5.2 < info.duration_s < 5.5


@pytest.mark.parametrize("name,error,match", [
    ("empty", MediaError, "empty file"),
    ("text", MediaError, "not a readable media container"),
])
def test_probe_rejects_non_media(media, name, error, match):
    with pytest.raises(error, match=match):
        probe(media[name])


def test_audio_only_avi_has_no_video_stream(media, tmp_path):
    info = probe(media["audio_only"])
    assert info.video is None and info.audio is not None
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        transcode_to_mp4(media["audio_only"], tmp_path)
    assert not list(tmp_path.iterdir())


def test_transcode_short_video_keeps_audio(media, tmp_path):
    info = probe(media["bunny"])
    clips = transcode_to_mp4(media["bunny"], tmp_path, stem="bunny", info=info)
    assert [c.name for c in clips] == ["bunny.mp4"]
    verified = verify_clips(clips, info)
    assert verified[0].video_codec == "h264" and verified[0].audio_codec == "aac"
    assert abs(verified[0].duration_s - info.duration_s) < 0.1
    # +faststart: the moov atom precedes mdat
    data = clips[0].read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_transcode_video_without_audio(media, tmp_path):
    info = probe(media["bikes"])
    verified = verify_clips(transcode_to_mp4(media["bikes"], tmp_path, stem="bikes", info=info), info)
    assert verified[0].audio_codec is None and verified[0].n_frames == 250


def test_long_video_is_split_in_one_pass(media, tmp_path):
    info = probe(media["long"])
    assert info.duration_s == pytest.approx(250, abs=0.1)
    clips = transcode_to_mp4(media["long"], tmp_path, stem="long", info=info)
    assert [c.name for c in clips] == ["long_000.mp4", "long_001.mp4", "long_002.mp4"]
    verified = verify_clips(clips, info)
    assert [round(c.duration_s, 2) for c in verified] == [120.0, 120.0, 10.0]
    assert [c.start_s for c in verified] == [0.0, 120.0, 240.0]
    assert sum(c.n_frames for c in verified) == 6250


def test_truncated_avi_fails_verification(media, tmp_path):
    info = probe(media["truncated"])
    clips = transcode_to_mp4(media["truncated"], tmp_path, stem="t", info=info)
    with pytest.raises(VerificationError, match="truncated"):
        verify_clips(clips, info)


def test_sample_frames_grid_and_names(media, tmp_path):
    info = probe(media["bikes"])
    (clip,) = transcode_to_mp4(media["bikes"], tmp_path / "mp4", stem="bikes", info=info)
    frames = sample_frames(clip, tmp_path / "f", every_n=10)
    assert list(frames.frame_indices) == list(range(0, 250, 10))
    assert [p.name for p in frames.paths][:3] == ["0.jpg", "10.jpg", "20.jpg"]
    assert frames.thumbnails.shape == (25, 36, 64) and frames.thumbnails.dtype == np.uint8
    with Image.open(frames.paths[0]) as img:
        assert img.size == (640, 272) and img.format == "JPEG"
    # a clip starting at source frame 3003 is sampled on the same global grid: 3010, 3020, ...
    shifted = sample_frames(clip, tmp_path / "g", every_n=10, start_index=3003)
    assert list(shifted.frame_indices[:3]) == [3010, 3020, 3030]
    assert len(shifted.paths) == 25  # local frames 7, 17, ..., 247


def test_dead_frames_on_real_footage(media, tmp_path):
    """dead.mp4: 2 s black, 4 s frozen first frame of Big Buck Bunny, then the film (25 fps)."""
    frames = sample_frames(media["dead"], tmp_path, every_n=10)
    reasons = classify_dead_frames(frames.thumbnails)
    idx = frames.frame_indices
    assert all(r == "black" for r, i in zip(reasons, idx) if i < 50)
    frozen_span = [r for r, i in zip(reasons, idx) if 50 <= i < 150]
    assert frozen_span[0] is None and all(r == "frozen" for r in frozen_span[1:])
    moving = [r for r, i in zip(reasons, idx) if i >= 160]
    assert moving.count(None) >= len(moving) - 1  # the film itself is kept


def test_dead_reason_rules():
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 255, (36, 64), dtype=np.uint8)
    assert dead_reason(np.full((36, 64), 10, np.uint8), None) == "black"
    assert dead_reason(np.full((36, 64), 200, np.uint8), None) == "blank"
    assert dead_reason(textured, None) is None
    assert dead_reason(textured, textured) == "frozen"
    moved = textured.copy()
    moved[:, :10] = 255 - moved[:, :10]
    assert dead_reason(moved, textured) is None
    strict = DeadFrameThresholds(blank_luma_std=200)
    assert dead_reason(textured, None, strict) == "blank"


def test_luma_thumbnail_matches_ffmpeg_area_scaling(media, tmp_path):
    frames = sample_frames(media["bikes"], tmp_path, every_n=50)
    with Image.open(frames.paths[1]) as img:
        ours = luma_thumbnail(img).astype(float)
    assert np.abs(ours - frames.thumbnails[1].astype(float)).mean() < 3.0


def test_decode_pass_hands_on_finished_clips_and_frames_while_it_encodes(tmp_path):
    """The single pass hands each clip to ``on_clip`` once it is whole (a valid MP4 with its
    index up front), and the labeling frames in runs while ffmpeg still encodes; what it hands
    is exactly what the pass made, in order."""
    from media_assets.kernels.ffmpeg import run_ffmpeg
    from media_assets.kernels.frames import collect_labeling, labeling_branch
    from media_assets.kernels.video_pass import ClipPlan, LabelingPlan, decode_once

    src = tmp_path / "src.avi"  # 12 s of 1280x720 24 fps with sound: 4 clips of 3 s, seconds of encoding
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24:duration=12", "-f", "lavfi", "-i", "sine=frequency=440:duration=12",
                "-c:v", "mpeg4", "-q:v", "4", "-c:a", "libmp3lame", "-shortest", "-f", "avi", str(src)])
    info = probe(src)
    clips_dir = tmp_path / "pass" / "clips"
    handed_clips, clips_on_disk, batches = [], [], []

    def on_clip(paths):
        handed_clips.extend((p.name, p.stat().st_size, probe(p).duration_s) for p in paths)
        clips_on_disk.append(len(list(clips_dir.glob("v_*.mp4"))))

    def on_frames(frames):
        assert all(p.exists() and p.name == f"{i}.jpg" for p, i in zip(frames.paths, frames.frame_indices))
        batches.append(frames)

    made = decode_once(src, tmp_path / "pass", info, clips=ClipPlan(stem="v", max_duration_s=4, clip_s=3, on_clip=on_clip),
                       labeling=LabelingPlan(every_n=10, on_batch=on_frames, batch_size=4))
    # each clip was whole when handed on: the size and duration it has after the pass
    assert handed_clips == [(p.name, p.stat().st_size, probe(p).duration_s) for p in made.clips]
    assert [name for name, _, _ in handed_clips[:4]] == ["v_000.mp4", "v_001.mp4", "v_002.mp4", "v_003.mp4"]
    assert all(abs(d - 3.0) < 0.1 for _, _, d in handed_clips[:3])
    assert clips_on_disk[0] < 4, "the first clip was handed on only after the encode ended"
    assert len(batches) > 1 and sum(len(b.paths) for b in batches[:-1]) >= 4, "no labeling frames before ffmpeg exited"
    indices = np.concatenate([b.frame_indices for b in batches])
    assert indices.tolist() == made.labeling.frame_indices.tolist() == list(range(0, 288, 10))
    # the same frames and thumbnails as the labeling branch run alone, collected at the end
    alone = tmp_path / "alone"
    graph, outputs = labeling_branch("0:v:0", alone, every_n=10)
    run_ffmpeg(["-i", str(src), "-filter_complex", graph, *outputs])
    reference = collect_labeling(alone, every_n=10)
    assert np.array_equal(np.concatenate([b.thumbnails for b in batches]), reference.thumbnails)


def test_repeat_finder_names_the_distinct_frame_repeated(media, tmp_path):
    """Real frames: every 10th frame of bikes.avi (a montage of ~1 s shots, 25 samples), then the
    same thumbnails again with sensor-level noise: the second pass repeats the first frame for
    frame, the first pass has (almost) no repeats of its own; a bad bound is refused."""
    from media_assets.kernels.frames import RepeatFinder, sample_frames

    frames = sample_frames(media["bikes"], tmp_path / "f", every_n=10)
    finder = RepeatFinder()
    first = [finder.repeat_of(t, i) for i, t in zip(frames.frame_indices, frames.thumbnails)]
    assert sum(r is not None for r in first) <= 2
    noisy = np.clip(frames.thumbnails.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, frames.thumbnails.shape), 0, 255).astype(np.uint8)
    second = [finder.repeat_of(t, 1000 + i) for i, t in zip(frames.frame_indices, noisy)]
    distinct = {i for i, r in zip(frames.frame_indices, first) if r is None}
    assert all(r in distinct for r in second)
    assert sum(r == i for r, i in zip(second, frames.frame_indices)) >= len(second) - 2
    with pytest.raises(ValueError, match="max_bits"):
        RepeatFinder(64)
