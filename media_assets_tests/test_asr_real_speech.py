"""Whisper on real human read speech (Debian's pocketsphinx-testdata: LibriVox utterances and
spoken card names, with reference transcripts; see ``media_assets.samples.read_speech_clips``):
per-file correctness of the batched path, quality at the default settings, and lost speech
flagged instead of passing as success."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import jiwer
import pytest
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from media_assets.defs.audio.assets import transcripts
from media_assets.kernels.asr import FasterWhisperRecognizer, Transcript, suspect_reasons
from media_assets.kernels.audio import decode_audio
from media_assets.resources.audio import AudioSettings, SpeechRecognizerResource, audio_tables_io_manager
from media_assets.samples import read_speech_clips
from media_assets.storage.tables import read_parquet_bytes

DAY = "2026-11-20"
normalize = EnglishTextNormalizer({})  # Whisper's English normalizer, as the Whisper paper scores


def wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer([normalize(r) or "<empty>" for r in refs], [normalize(h) or "<empty>" for h in hyps])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[tuple]:
    """[(flac path, reference text, (n,) float32 16 kHz samples)] of the 11 real clips."""
    return [(p, text, decode_audio(p)) for p, text in read_speech_clips(tmp_path_factory.mktemp("read-speech"))]


@pytest.mark.long(37)
def test_batched_path_gives_each_file_the_words_it_gets_alone(clips):
    """A file's transcript does not depend on which files share its batch: batch sizes 1, 3 and
    16 against each file transcribed on its own, in file order (1, 16) and in a shuffled order
    (3, 16: other neighbours, other batch boundaries). Run on the fast preset (tiny.en), the
    model with which packing files into shared windows lost 2 of these 11."""
    rec = FasterWhisperRecognizer("bundled:tiny.en")
    audios = [a for _, _, a in clips]
    alone = [rec.transcribe(a).text for a in audios]
    assert all(alone), alone
    order = [7, 2, 10, 0, 5, 9, 1, 4, 8, 3, 6]  # a fixed shuffle
    for batch_size, orders in ((1, ["forward"]), (3, ["shuffled"]), (16, ["forward", "shuffled"])):
        rec.batch_size = batch_size
        for how in orders:
            if how == "forward":
                hyps = [t.text for t in rec.transcribe_files(audios)]
            else:
                shuffled = rec.transcribe_files([audios[i] for i in order])
                hyps = [None] * len(audios)
                for pos, i in enumerate(order):
                    hyps[i] = shuffled[pos].text
            assert wer(alone, hyps) <= 0.02, (batch_size, how, list(zip(alone, hyps)))
            assert [bool(h) for h in hyps] == [bool(a) for a in alone]


def _materialize(instance, store_resource, clips, recognizer: SpeechRecognizerResource):
    store = store_resource.get_store()
    when = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.timezone.utc).timestamp()
    for path, _, _ in clips:
        store.upload(path, "audio", f"read/{path.name}")
        os.utime(store.root / "audio" / "read" / path.name, (when, when))
    result = dg.materialize([transcripts], partition_key=DAY, instance=instance, resources={
        "object_store": store_resource, "audio_settings": AudioSettings(), "speech_recognizer": recognizer,
        "audio_tables": audio_tables_io_manager})
    # written by the audio_tables IO manager at the documented work location
    table = read_parquet_bytes(store.get_bytes("media-assets-work", AudioSettings().work_key("transcripts", DAY)))
    rows = {r["Key"]: r for r in table.to_pylist()}
    return result, rows


def test_default_settings_reach_wer_008_on_real_read_speech(instance, local_resource, clips):
    """The platform path at default settings (bundled Whisper base, beam 5, per-file windows)
    scores WER <= 0.08 on real read speech; no file is empty or flagged, the check passes."""
    result, rows = _materialize(instance, local_resource, clips, SpeechRecognizerResource())
    hyps = [rows[f"read/{p.name}"]["text"] for p, _, _ in clips]
    score = wer([t for _, t, _ in clips], hyps)
    assert score <= 0.08, (score, hyps)
    assert all(hyps) and not any(r["suspect"] for r in rows.values())
    assert all(r["speech_s"] > 0.5 for r in rows.values())
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "speech_not_lost" and check.passed


class _Dropping(FasterWhisperRecognizer):
    """Fault injection: the real tiny.en recognizer, then the words of chosen files are lost
    (as packing shared windows lost them) -- the platform must notice."""

    def __init__(self, empty: int, one_word: int):
        super().__init__("bundled:tiny.en")
        self.empty, self.one_word = empty, one_word

    def transcribe_files(self, audios, gap_s: float = 1.0) -> list[Transcript]:
        out = super().transcribe_files(audios, gap_s)
        out[self.empty].text, out[self.empty].segments = "", []
        out[self.one_word].text = out[self.one_word].text.split()[0]
        return out


class _DroppingResource(SpeechRecognizerResource):
    def recognizer(self):
        # objects are listed in key order: cards-001..005, goforward, librivox-...-0870, 0880, 0890, 0920, 0930
        return _Dropping(empty=9, one_word=6)


def test_lost_speech_is_flagged_counted_and_fails_the_check(instance, local_resource, clips):
    """A file whose speech came back empty, and a 7 s utterance reduced to one word, are
    flagged with their reason; the asset's metadata counts them and `speech_not_lost` fails."""
    result, rows = _materialize(instance, local_resource, clips, _DroppingResource())
    flagged = {k: r["suspect_reason"] for k, r in rows.items() if r["suspect"]}
    book = "read/librivox-sense_and_sensibility_01_austen_64kb"
    assert flagged == {f"{book}-0920.flac": "no_text_for_speech", f"{book}-0870.flac": "too_few_words"}, flagged
    (mat,) = result.asset_materializations_for_node("transcripts")
    assert mat.metadata["suspect_no_text_for_speech"].value == 1 and mat.metadata["suspect_too_few_words"].value == 1
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["lost_speech_files"].value == 2


def test_suspect_reasons_cover_both_directions():
    """Loss needs at least 1 s of speech; text on near-silence and likely hallucinations are
    flagged too; plausible transcripts are not."""
    speech = dict(duration_s=6.0, speech_s=6.0, level_dbfs=-20.0)
    assert suspect_reasons(Transcript(text="", language=None, **speech)) == ["no_text_for_speech"]
    assert suspect_reasons(Transcript(text="one", language="en", **speech)) == ["too_few_words"]
    assert suspect_reasons(Transcript(text="one two three four", language="en", **speech)) == []
    assert suspect_reasons(Transcript(text="", language=None, duration_s=3.0, speech_s=0.6, level_dbfs=-20.0)) == []
    quiet = Transcript(text="thank you", language="en", duration_s=3.0, speech_s=0.0, level_dbfs=-70.0, no_speech_prob=0.9)
    assert suspect_reasons(quiet) == ["text_on_silence", "high_no_speech_prob"]
