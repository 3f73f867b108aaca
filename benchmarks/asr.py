"""ASR benchmark: real-time factor and WER of the platform's path and its baselines, one run.

    .venv/bin/python benchmarks/asr.py [--rounds 13] [--skip-openai-long]

Audio: real human read speech with reference transcripts from Debian's pocketsphinx-testdata
(11 clips, 37.2 s: LibriVox utterances, spoken card names, "go forward ten meters"; see
``media_assets.samples.read_speech_clips``), and a long-form file made of those clips laid end
to end with 1 s pauses, ``--rounds`` times (13 rounds = 10.4 min), whose reference is the
clips' references in order.

Rows, each on the same audio at beam 5:
* platform, default: bundled Whisper base int8; short files each in its own window through
  ``BatchedInferencePipeline`` (``FasterWhisperRecognizer.transcribe_files``); the long file
  through Whisper's sequential long-form algorithm (``transcribe``) in ``chunk_s`` = 600 s
  chunks, as the ``transcripts`` asset does;
* platform, fast preset: the same with bundled tiny.en;
* platform, ``long_form=batched``: ``BatchedInferencePipeline`` over VAD chunks of the long file;
* faster-whisper per file: ``WhisperModel.transcribe`` one short file at a time;
* openai-whisper: fp32 on the base checkpoint converted from the same CTranslate2 weights
  (``media_assets.kernels.whisper_convert``), one file at a time, and on the long file.

Then the per-file ceiling on the short set (``--skip-ceiling`` to leave it out): the Whisper
encoder alone (CTranslate2, no decoding) on one 30 s window per file, i.e. the fastest any
path that keeps each file in its own standard window can be, for base and tiny.en; and the one
way under that floor, an encoder window cut to the file plus a margin (CTranslate2 accepts
fewer than 3,000 mel frames; whisper.cpp calls it ``audio_ctx``), decoded with the same beam,
with its WER: Whisper was trained on 30 s windows only (Radford et al. 2022, section 2.3).

WER via jiwer after Whisper's ``EnglishTextNormalizer`` (the transformers copy) on both sides,
as the Whisper paper scores. "x real time" = seconds of audio per second of wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.asr import SAMPLE_RATE, FasterWhisperRecognizer, OpenAIWhisperRecognizer, bundled_model_path, merge_transcripts  # noqa: E402
from media_assets.kernels.audio import decode_audio  # noqa: E402
from media_assets.samples import read_speech_clips  # noqa: E402

CHUNK_S = 600.0  # the transcripts asset's default chunk_s


def main() -> None:
    import jiwer
    import torch
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=13, help="times the clip set is repeated in the long-form file")
    p.add_argument("--skip-openai-long", action="store_true", help="skip openai-whisper on the long file (the slowest row)")
    p.add_argument("--skip-ceiling", action="store_true", help="skip the encoder-only floor and the cut-window rows")
    args = p.parse_args()
    torch.set_num_threads(2)
    norm = EnglishTextNormalizer({})
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(decode_audio(path), text) for path, text in read_speech_clips(Path(tmp))]
        base_ckpt = None
        from media_assets.kernels.whisper_convert import convert_ct2_to_openai_whisper

        base_ckpt = str(convert_ct2_to_openai_whisper(bundled_model_path("base"), Path(tmp) / "base.pt"))
        gap = np.zeros(SAMPLE_RATE, np.float32)
        long_audio = np.concatenate([x for _ in range(args.rounds) for a, _ in clips for x in (a, gap)])
        long_ref = " ".join(t for _ in range(args.rounds) for _, t in clips)
        short_s = sum(len(a) for a, _ in clips) / SAMPLE_RATE
        long_s = len(long_audio) / SAMPLE_RATE
        refs = [norm(t) for _, t in clips]

        def wer(hyps: list[str], references: list[str]) -> float:
            return jiwer.wer(references, [norm(h) or "<empty>" for h in hyps])

        print(f"short: {len(clips)} real read-speech clips, {short_s:.1f} s; long: {long_s / 60:.1f} min; 2 threads, beam 5")
        print(f"{'path':<58}{'audio':>7}{'wall s':>9}{'x real time':>13}{'WER':>7}{'empty':>7}")
        walls: dict[str, float] = {}

        def row(name: str, audio: str, seconds: float, fn, references: list[str]) -> None:
            t = time.perf_counter()
            hyps = fn()
            wall = time.perf_counter() - t
            walls[name, audio] = wall
            empty = sum(not h.strip() for h in hyps)
            print(f"{name:<58}{audio:>7}{wall:>9.2f}{seconds / wall:>13.1f}{wer(hyps, references):>7.3f}{empty:>7}", flush=True)

        def long_form(fn) -> list[str]:
            step = int(CHUNK_S * SAMPLE_RATE)
            return [merge_transcripts([fn(long_audio[i:i + step], i / SAMPLE_RATE) for i in range(0, len(long_audio), step)]).text]

        audios = [a for a, _ in clips]
        for label, model in (("platform, default (base)", "bundled:base"), ("platform, fast preset (tiny.en)", "bundled:tiny.en")):
            rec = FasterWhisperRecognizer(model, cpu_threads=2)
            rec.transcribe_files(audios[:1])  # warm-up
            row(f"{label}", "short", short_s, lambda: [t.text for t in rec.transcribe_files(audios)], refs)
            row(f"{label}", "long", long_s, lambda: long_form(rec.transcribe), [norm(long_ref)])
        rec = FasterWhisperRecognizer("bundled:base", cpu_threads=2)
        row("platform, base, long_form=batched", "long", long_s, lambda: long_form(rec.transcribe_long), [norm(long_ref)])
        row("faster-whisper base int8, one file at a time", "short", short_s, lambda: [rec.transcribe(a).text for a in audios], refs)
        ow = OpenAIWhisperRecognizer(base_ckpt, beam_size=5)
        ow.transcribe(audios[0])  # warm-up
        row("openai-whisper base fp32", "short", short_s, lambda: [ow.transcribe(a).text for a in audios], refs)
        if not args.skip_openai_long:
            row("openai-whisper base fp32", "long", long_s, lambda: long_form(ow.transcribe), [norm(long_ref)])
        print()
        for audio in ("short", "long"):
            ow_wall = walls.get(("openai-whisper base fp32", audio))
            if ow_wall:
                fw = walls["faster-whisper base int8, one file at a time" if audio == "short" else "platform, default (base)", audio]
                platform = walls["platform, default (base)", audio]
                print(f"{audio}: faster-whisper {ow_wall / fw:.2f}x openai-whisper (same beam, same audio); platform {ow_wall / platform:.2f}x")
        if not args.skip_ceiling:
            print()
            ceiling(audios, refs, short_s, wer)


def ceiling(audios: list[np.ndarray], refs: list[str], short_s: float, wer) -> None:
    """Print the per-file speed ceiling on the short set: encoder-only x real time with one
    30 s window per file, and cut windows (file + margin) decoded at beam 5 with their WER."""
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    print(f"{'per-file ceiling, short set (CTranslate2 int8, 2 threads)':<58}{'wall s':>16}{'x real time':>13}{'WER':>7}{'empty':>7}")
    for name in ("base", "tiny.en"):
        model = WhisperModel(str(bundled_model_path(name)), device="cpu", compute_type="int8", cpu_threads=2)
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        feats = [model.feature_extractor(a) for a in audios]  # (80, n_frames) float32, 100 frames/s

        def encode(f: np.ndarray, frames: int):
            window = np.zeros((1, f.shape[0], frames), np.float32)
            window[0, :, :min(frames, f.shape[1])] = f[:, :frames]
            return model.model.encode(ctranslate2.StorageView.from_array(window))

        encode(feats[0], 3000)  # warm-up
        t = time.perf_counter()
        for f in feats:
            encode(f, 3000)
        wall = time.perf_counter() - t
        print(f"{f'{name}: encoder only, one 30 s window per file':<58}{wall:>16.2f}{short_s / wall:>13.1f}{'-':>7}{'-':>7}", flush=True)
        for margin_s in (1, 3, 5):
            t = time.perf_counter()
            hyps = []
            for f in feats:
                frames = min(3000, -(-(f.shape[1] + margin_s * 100) // 100) * 100)
                out = model.model.generate(encode(f, frames), [prompt], beam_size=5, max_length=224, suppress_blank=True, suppress_tokens=[-1])
                hyps.append(tokenizer.decode([tok for tok in out[0].sequences_ids[0] if tok < tokenizer.eot]).strip())
            wall = time.perf_counter() - t
            empty = sum(not h for h in hyps)
            print(f"{f'{name}: window cut to the file + {margin_s} s, encode + beam 5':<58}{wall:>16.2f}{short_s / wall:>13.1f}"
                  f"{wer(hyps, refs):>7.3f}{empty:>7}", flush=True)


if __name__ == "__main__":
    main()
