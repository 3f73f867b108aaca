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


if __name__ == "__main__":
    main()
