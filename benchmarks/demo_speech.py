"""Demo speech benchmark: which Harvard sentences the default model transcribes word for word.

    .venv/bin/python benchmarks/demo_speech.py

Every sentence of Harvard list 1 (IEEE 1969; ``media_assets.samples.HARVARD_LIST_1``) is
spoken by ``media_assets.samples.speak`` (espeak-ng, en-us, 150 words/min), as the demo makes
its speech, and transcribed the way the ``transcripts`` asset transcribes short files: the
default recognizer (bundled Whisper base int8, beam 5, language en) through
``FasterWhisperRecognizer.transcribe_files``. A sentence is exact when its words equal the
transcript's (``media_assets.testing.harness.spoken_words``: lower case, punctuation dropped), the
comparison ``test_ui_metadata`` makes on the demo. Prints one row per sentence, whether it is
one of the demo's (``HARVARD_SENTENCES``), the count of exact sentences, and exits 1 when a demo
sentence is not exact (then the demo's own test fails too: pick exact ones).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.kernels.audio import decode_audio  # noqa: E402
from media_assets.resources.audio import SpeechRecognizerResource  # noqa: E402
from media_assets.samples import HARVARD_LIST_1, HARVARD_SENTENCES, speak  # noqa: E402
from media_assets.testing.harness import spoken_words  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        audios = [decode_audio(speak(text, Path(tmp) / f"{i}.wav")) for i, text in enumerate(HARVARD_LIST_1)]
    recognizer = SpeechRecognizerResource().recognizer()
    started = time.perf_counter()
    transcripts = recognizer.transcribe_files(audios)
    seconds = time.perf_counter() - started
    demo = set(HARVARD_SENTENCES.values())
    exact = {text: spoken_words(t.text) == spoken_words(text) for text, t in zip(HARVARD_LIST_1, transcripts)}
    print(f"{'#':>2}  {'exact':5}  {'demo':4}  sentence -> transcript")
    for i, (text, t) in enumerate(zip(HARVARD_LIST_1, transcripts), 1):
        print(f"{i:>2}  {'yes' if exact[text] else 'no':5}  {'yes' if text in demo else '':4}  {text!r} -> {t.text!r}")
    print(f"{sum(exact.values())} of {len(HARVARD_LIST_1)} exact; the demo's {len(demo)}: "
          f"{sum(exact[t] for t in demo)} exact ({seconds:.1f} s to transcribe)")
    return 0 if all(exact[t] for t in demo) else 1


if __name__ == "__main__":
    sys.exit(main())
