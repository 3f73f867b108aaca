"""Key-frame kernels: selection rules, 1 FPS sampling with real ffmpeg, the real local model
(MobileNetV2 ImageNet ONNX from a PyPI wheel), the Titan contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from media_assets.kernels.image_embedding import (
    EmbeddingError,
    parse_titan_response,
    titan_request_body,
)
from media_assets.kernels.keyframes import extract_samples, mark_repeats, select_keyframes
from media_assets.kernels.probe import probe
from media_assets.resources.embedder import local_model


def _shots(lengths, dim=16, seed=0, blend=0):
    """Unit embeddings of consecutive shots; ``blend`` samples of linear dissolve between shots."""
    rng = np.random.default_rng(seed)
    rows, starts = [], []
    prev = None
    for n in lengths:
        base = rng.normal(size=dim)
        if prev is not None:
            for k in range(1, blend + 1):
                rows.append((1 - k / (blend + 1)) * prev + k / (blend + 1) * base)
        starts.append(len(rows))
        rows += [base + 0.05 * rng.normal(size=dim) for _ in range(n)]
        prev = base
    return np.array(rows, np.float32), starts


def test_consecutive_rule_is_the_original():
    e, starts = _shots([4, 3, 5])
    assert select_keyframes(e, 0.9, mode="consecutive") == starts


def test_blends_are_kept_by_the_original_but_not_by_confirmed():
    e, starts = _shots([5, 5, 5, 5], blend=2)
    original = select_keyframes(e, 0.9, mode="consecutive")
    confirmed = select_keyframes(e, 0.9, mode="confirmed")
    assert len(original) > 4  # blends kept as extra key frames
    # one key frame per shot, at its first settled sample (at most the last, mostly-new blend)
    assert len(confirmed) == 4
    assert all(s - 1 <= k <= s for k, s in zip(confirmed, starts)), (confirmed, starts)


def test_last_kept_catches_slow_drift():
    t = np.linspace(0, 1.2, 40)[:, None]
    a, b = np.eye(2, 8, dtype=np.float32)
    e = np.cos(t) * a + np.sin(t) * b  # a slow pan: every step tiny, the total large
    assert select_keyframes(e, 0.9, mode="consecutive") == [0]
    assert len(select_keyframes(e, 0.9, mode="last_kept")) >= 2


def test_flash_is_not_a_new_shot():
    e, _ = _shots([6], dim=16)
    flash = e.copy()
    flash[3] = -flash[3]
    assert select_keyframes(flash, 0.9, mode="confirmed") == [0]


def test_selection_edge_cases():
    assert select_keyframes(np.zeros((0, 4)), 0.9) == []
    assert select_keyframes(np.ones((1, 4)), 0.9) == [0]
    with pytest.raises(ValueError, match="mode"):
        select_keyframes(np.ones((2, 4)), 0.9, mode="nope")



def test_repeats_name_the_distinct_view_they_repeat():
    """A B A' C B'' A'': rows 2, 4 and 5 repeat A or B (cosine >= threshold against any earlier
    key frame, not only the last); A'' is nearest to A' (itself a repeat) and still names A."""
    a, b, c = np.eye(3, 8, dtype=np.float32)
    a2 = a + 0.05 * c
    rows = np.stack([a, b, a2, c, b * 3, a2 + 0.01 * b])
    assert mark_repeats(rows, 0.9).tolist() == [-1, -1, 0, -1, 1, 0]
    assert mark_repeats(rows, 0.9999).tolist() == [-1, -1, -1, -1, 1, 2]  # stricter: A' is its own view
    assert mark_repeats(np.zeros((0, 8), np.float32), 0.9).tolist() == []
    with pytest.raises(ValueError, match="must be"):
        mark_repeats(np.zeros(8, np.float32), 0.9)

def test_extract_samples_1fps_1024x576(media, tmp_path):
    s = extract_samples(media["bikes"], tmp_path, start_index=120)
    assert len(s.paths) == 10 and s.indices.tolist() == list(range(120, 130))
    assert s.paths[0].name == "120.jpg" and s.timestamps_s[0] == 120.0
    with Image.open(s.paths[0]) as img:
        assert img.size == (1024, 576)


def test_sample_i_shows_the_frame_at_i_seconds(tmp_path):
    from media_assets.kernels.ffmpeg import run_ffmpeg

    video = tmp_path / "red_then_blue.mp4"  # red for 2.5 s, then blue for 2.5 s
    run_ffmpeg(["-f", "lavfi", "-i", "color=red:s=64x64:r=25:d=2.5", "-f", "lavfi", "-i", "color=blue:s=64x64:r=25:d=2.5",
                "-filter_complex", "[0][1]concat=n=2:v=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)])
    s = extract_samples(video, tmp_path / "s", width=64, height=64)
    colours = []
    for p in s.paths[:5]:
        with Image.open(p) as img:
            colours.append("R" if img.convert("RGB").getpixel((32, 32))[0] > 128 else "B")
    assert colours == ["R", "R", "R", "B", "B"]


def test_short_video_still_gives_one_sample(media, tmp_path, footage):
    from media_assets.kernels.ffmpeg import run_ffmpeg

    short = tmp_path / "short.mp4"
    run_ffmpeg(["-i", str(footage / "bikes.mp4"), "-t", "0.4", "-c:v", "libx264", str(short)])
    assert probe(short).duration_s < 0.5
    assert len(extract_samples(short, tmp_path / "s").paths) == 1


def test_local_model_is_the_real_pretrained_network(footage, tmp_path):
    """The shipped network recognises real footage: ``carphone`` (a man driving, belted in)
    is ImageNet class 785 "seat belt" -- random or mis-mapped weights could not do that."""
    model = local_model()
    car = extract_samples(footage / "carphone_pristine.mp4", tmp_path / "car")
    with Image.open(car.paths[-1]) as img:
        probs = model.classify([img])[0]
    assert probs.argmax() == 785 and probs[785] > 0.5
    bikes = extract_samples(footage / "bikes.mp4", tmp_path / "bikes")
    emb = model.embed_jpegs(bikes.paths)
    assert emb.shape == (10, 1280) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # embed_jpegs decodes the 1024x576 samples at half scale: the same embedding as a full decode
    full = []
    for p in bikes.paths:
        with Image.open(p) as img:
            full.append(img.convert("RGB"))
    assert full[0].size == (1024, 576)
    assert float(np.min(np.sum(model.embed_images(full) * emb, axis=1))) > 0.995
    # consecutive seconds of one shot are closer than different videos
    car_emb = model.embed_jpegs(car.paths)
    assert float(car_emb[0] @ car_emb[1]) > float(car_emb[0] @ emb[0])


def test_titan_contract():
    body = json.loads(titan_request_body(b"\xff\xd8jpeg", 384))
    assert body == {"inputImage": "/9hqcGVn", "embeddingConfig": {"outputEmbeddingLength": 384}}
    with pytest.raises(ValueError, match="256, 384, 1024"):
        titan_request_body(b"x", 512)
    vec = parse_titan_response(json.dumps({"embedding": [0.5] * 256, "inputTextTokenCount": 0}), 256)
    assert vec.shape == (256,) and vec.dtype == np.float32
    with pytest.raises(EmbeddingError, match="invalid Titan response"):
        parse_titan_response(b'{"message": "oops"}', 256)
    with pytest.raises(EmbeddingError, match="expected \\(256,\\)"):
        parse_titan_response(json.dumps({"embedding": [0.1] * 10}), 256)
