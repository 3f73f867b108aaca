"""ASR benchmark: real-time factor and WER of the Whisper backends on the same audio, one run.

    .venv/bin/python benchmarks/asr.py [--openai-checkpoint PATH]

Audio with known reference text: Harvard sentences (IEEE 1969 list 1) spoken by espeak-ng
(two voices), 16 kHz mono. Real recordings from Debian's codec2-examples are transcribed too
and printed (no reference text ships with them, so no WER). WER via jiwer after Whisper's
EnglishTextNormalizer (the transformers copy of Whisper's normalizer) on both sides, as the
Whisper paper scores. Rows: faster-whisper tiny.en int8 greedy and beam 5, each clip alone, and
the platform's batched path (media_assets.kernels.asr.transcribe_batched: many short files per
BatchedInferencePipeline call); openai-whisper fp32 on the same weights (the bundled model
converted by media_assets.kernels.whisper_convert, or --openai-checkpoint).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.asr import SAMPLE_RATE, FasterWhisperRecognizer, default_model_path, transcribe_batched  # noqa: E402
from media_assets.kernels.audio import decode_audio  # noqa: E402
from media_assets.kernels.ffmpeg import run_ffmpeg  # noqa: E402

HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]
CODEC2 = Path("/usr/share/codec2/raw")


def synthesize(tmp: Path) -> list[tuple[np.ndarray, str]]:
    clips = []
    for voice in ("en-us", "en-gb"):
        for i, text in enumerate(HARVARD):
            wav = tmp / f"{voice}_{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
            clips.append((decode_audio(wav, sample_rate=SAMPLE_RATE), text))
    return clips


def main() -> None:
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--openai-checkpoint", help="openai-whisper checkpoint (default: the bundled tiny.en, converted here)")
    args = p.parse_args()
    norm = EnglishTextNormalizer({})
    with tempfile.TemporaryDirectory() as tmp:
        clips = synthesize(Path(tmp))
    audio_s = sum(len(a) for a, _ in clips) / SAMPLE_RATE
    refs = [norm(t) for _, t in clips]
    print(f"{len(clips)} clips, {audio_s:.1f} s of speech; model {default_model_path()}")
    print(f"{'backend':<44}{'wall s':>8}{'x real time':>13}{'WER':>7}")
    results = {}

    def row(name, fn):
        fn(clips[0][0])  # warm-up
        t = time.perf_counter()
        hyps = [fn(a) for a, _ in clips]
        wall = time.perf_counter() - t
        wer = jiwer.wer(refs, [norm(h) or "<empty>" for h in hyps])
        results[name] = wall
        print(f"{name:<44}{wall:>8.2f}{audio_s / wall:>13.1f}{wer:>7.3f}", flush=True)

    for beam in (1, 5):
        rec = FasterWhisperRecognizer(beam_size=beam, vad_filter=False)
        row(f"faster-whisper int8 beam {beam}", lambda a: rec.transcribe(a).text)
    rec = FasterWhisperRecognizer(beam_size=5)
    transcribe_batched(rec, [clips[0][0]])  # warm-up
    t = time.perf_counter()
    hyps = [r.text for r in transcribe_batched(rec, [a for a, _ in clips])]
    wall = time.perf_counter() - t
    results["batched"] = wall
    wer = jiwer.wer(refs, [norm(h) or "<empty>" for h in hyps])
    print(f"{'faster-whisper int8 beam 5, batched (platform)':<44}{wall:>8.2f}{audio_s / wall:>13.1f}{wer:>7.3f}", flush=True)
    ckpt_dir = tempfile.TemporaryDirectory()
    if not args.openai_checkpoint:
        from media_assets.kernels.whisper_convert import convert_ct2_to_openai_whisper

        args.openai_checkpoint = str(convert_ct2_to_openai_whisper(default_model_path(), Path(ckpt_dir.name) / "tiny.en.pt"))
    if args.openai_checkpoint:
        import torch

        from media_assets.kernels.asr import OpenAIWhisperRecognizer

        torch.set_num_threads(2)

        for beam in (None, 5):
            ow = OpenAIWhisperRecognizer(args.openai_checkpoint, beam_size=beam)
            row(f"openai-whisper fp32 beam {beam or 1}", lambda a: ow.transcribe(a).text)
        if "openai-whisper fp32 beam 5" in results:
            ow5 = results["openai-whisper fp32 beam 5"]
            print(f"speed-up over openai-whisper (beam 5): faster-whisper per clip {ow5 / results['faster-whisper int8 beam 5']:.2f}x, "
                  f"batched {ow5 / results['batched']:.2f}x")
    if CODEC2.is_dir():
        rec = FasterWhisperRecognizer(beam_size=5)
        for name in ("hts1a", "hts2a", "forig", "morig", "big_dog"):
            raw = CODEC2 / f"{name}.raw"
            if raw.exists():
                with tempfile.TemporaryDirectory() as tmp:
                    wav = Path(tmp) / "x.wav"
                    run_ffmpeg(["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", str(raw), str(wav)])
                    print(f"codec2 {name}: {rec.transcribe(decode_audio(wav)).text!r}")


if __name__ == "__main__":
    main()
