"""Audio: decoding, tokenizers, Whisper on real synthesized speech (espeak-ng), and the daily
pipeline end to end into hive-partitioned Parquet."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from media_assets.defs.audio import defs as audio_defs, new_audio_sensor
from media_assets.testing.harness import process_pending, spoken_words
from media_assets.kernels.asr import suspect_reasons
from media_assets.kernels.audio import check_audio, decode_audio, iter_audio_chunks
from media_assets.kernels.audio_tokens import EncodecTokenizer, mulaw_decode, mulaw_encode, validate_waveform
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.kernels.probe import MediaError
from media_assets.resources.audio import AudioSettings, AudioTokenizerResource, SpeechRecognizerResource
from media_assets.samples import speak
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank"
ESPEAK_MAX_WER = 0.35  # synthetic voice: the pipeline's mechanics, not its accuracy

if shutil.which("espeak-ng") is None:  # installed by `make test`; never skip silently
    raise RuntimeError("espeak-ng is needed for real speech fixtures: run `make test` (it installs it) or apt-get install espeak-ng")


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory, footage):
    """speech.flac (espeak-ng, 22.05 kHz mono), stereo48k.flac (same speech, stereo 48 kHz),
    mp3_as.flac (MP3 bytes in a .flac name), silence.flac (5 s digital silence),
    text.flac, empty.flac, long.flac (65 s: speech + silence, for the chunked decoder)."""
    d = tmp_path_factory.mktemp("audio")
    wav = speak(SENTENCE, d / "speech.wav")
    out = {}
    run_ffmpeg(["-i", str(wav), "-c:a", "flac", str(d / "speech.flac")])
    run_ffmpeg(["-i", str(wav), "-ac", "2", "-ar", "48000", "-c:a", "flac", str(d / "stereo48k.flac")])
    run_ffmpeg(["-i", str(wav), "-c:a", "libmp3lame", "-f", "mp3", str(d / "mp3_as.flac")])
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5", "-c:a", "flac", str(d / "silence.flac")])
    run_ffmpeg(["-i", str(wav), "-af", "apad", "-t", "65", "-c:a", "flac", str(d / "long.flac")])
    (d / "text.flac").write_text("not audio at all\n" * 20)
    (d / "empty.flac").write_bytes(b"")
    for name in ["speech", "stereo48k", "mp3_as", "silence", "long", "text", "empty"]:
        out[name] = d / f"{name}.flac"
    return out


def test_tokenizer_contract():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mulaw_encode([0.1, 0.2])
    with pytest.raises(TypeError, match="float array"):
        mulaw_encode(np.array([1, 2], np.int16))
    with pytest.raises(ValueError, match="1-D"):
        mulaw_encode(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="empty"):
        validate_waveform(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        validate_waveform(np.array([0.0, np.nan], np.float32))


def test_mulaw_round_trip_snr_on_real_speech(audio_files):
    x = decode_audio(audio_files["speech"], sample_rate=8000)
    tokens = mulaw_encode(x)
    assert tokens.dtype == np.int16 and tokens.min() >= 0 and tokens.max() <= 255 and tokens.shape == x.shape
    y = mulaw_decode(tokens)
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x - y).astype(np.float64) ** 2))
    assert snr > 25, snr  # 8-bit mu-law gives ~38 dB on full-scale speech


def test_encodec_tokenizer_full_code_path_random_weights():
    """Real EnCodec 24 kHz architecture with random (seeded) weights -- no EnCodec weights ship
    in any PyPI wheel and nothing may download them -- so this checks the code path, shapes,
    dtype and flattening order, not the codes' quality."""
    tok = EncodecTokenizer(None, bandwidth_kbps=6.0, seed=0)
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(5 * 24000) / 24000)).astype(np.float32)
    tokens = tok.encode(x)
    assert tokens.dtype == np.int16 and tokens.shape == (8 * 375,)
    assert tokens.min() >= 0 and tokens.max() < 1024
    two = EncodecTokenizer(None, bandwidth_kbps=6.0, n_codebooks=2, seed=0).encode(x)
    assert np.array_equal(two, tokens.reshape(375, 8)[:, :2].reshape(-1))  # frame-major order
    with pytest.raises(ValueError, match="1-D"):
        tok.encode(np.zeros((1, 100), np.float32))


def test_decoding_downmixes_resamples_and_streams(audio_files):
    mono = decode_audio(audio_files["speech"])
    stereo = decode_audio(audio_files["stereo48k"])
    assert mono.dtype == np.float32 and abs(len(stereo) - len(mono)) < 16_000 * 0.05
    chunks = list(iter_audio_chunks(audio_files["long"], chunk_s=10))
    assert len(chunks) == 7 and [s for s, _ in chunks][:3] == [0.0, 10.0, 20.0]
    assert max(len(c) for _, c in chunks) == 160_000  # memory bound: one chunk at a time
    with pytest.raises(MediaError, match="no decodable audio stream"):
        check_audio(audio_files["text"])
    with pytest.raises(MediaError, match="empty file"):
        check_audio(audio_files["empty"])


def test_whisper_transcribes_real_speech_and_not_silence(audio_files):
    import jiwer

    rec = SpeechRecognizerResource().recognizer()
    t = rec.transcribe(decode_audio(audio_files["speech"]))
    # espeak's robotic voice is a mechanics check (Whisper base hears "round fox ... riverbank",
    # 4 of 13 words); the quality bar on real read speech is in test_asr_real_speech.py
    assert jiwer.wer(" ".join(spoken_words(SENTENCE)), " ".join(spoken_words(t.text))) < ESPEAK_MAX_WER, t.text
    assert t.language == "en" and t.segments and not suspect_reasons(t) and t.speech_s > 1.0
    silent = rec.transcribe(decode_audio(audio_files["silence"]))
    assert silent.speech_s == 0.0 and (silent.text == "" or suspect_reasons(silent))


def test_ct2_to_openai_whisper_conversion_runs_real_weights(audio_files, tmp_path):
    """The bundled CTranslate2 tiny.en (the fast preset) converted offline loads in openai-whisper and transcribes
    real speech as faster-whisper does."""
    import jiwer

    from media_assets.kernels.asr import OpenAIWhisperRecognizer, bundled_model_path
    from media_assets.kernels.whisper_convert import ConversionError, convert_ct2_to_openai_whisper, read_ct2_model

    ckpt = convert_ct2_to_openai_whisper(bundled_model_path("tiny.en"), tmp_path / "tiny.en.pt")
    text = OpenAIWhisperRecognizer(str(ckpt), beam_size=5).transcribe(decode_audio(audio_files["speech"])).text
    assert jiwer.wer(" ".join(spoken_words(SENTENCE)), " ".join(spoken_words(text))) < 0.3, text
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"\x06\x00\x00\x00\x0a\x00TorchSpec\x00" + b"\x00" * 16)
    with pytest.raises(ConversionError, match="not a Whisper model"):
        read_ct2_model(bogus)


def _defs(resource, **audio):
    return dg.Definitions.merge(audio_defs, dg.Definitions(resources={
        "object_store": resource, "audio_settings": AudioSettings(**audio),
        "speech_recognizer": SpeechRecognizerResource(), "audio_tokenizer": AudioTokenizerResource(),
        "reconcile_settings": ReconcileSettings(),
        "event_queue": EventQueueResource(),
    }))


def _set_mtime(store, bucket, key, when: dt.datetime):
    path = store.root / bucket / key
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_daily_pipeline_to_hive_parquet(instance, local_resource, audio_files, tmp_path):
    store = local_resource.get_store()
    day1 = dt.datetime(2026, 11, 20, 13, 45, 10, tzinfo=dt.timezone.utc)
    day2 = dt.datetime(2026, 11, 21, 8, 5, 0, tzinfo=dt.timezone.utc)
    plan = {
        "calls/2026/speech.flac": ("speech", day1), "calls/2026/stereo.flac": ("stereo48k", day1),
        "calls/mp3_as.flac": ("mp3_as", day1), "calls/broken.flac": ("text", day1), "empty.flac": ("empty", day1),
        "silence.flac": ("silence", day2), "calls/long.flac": ("long", day2),
    }
    for key, (name, when) in plan.items():
        store.upload(audio_files[name], "audio", key)
        _set_mtime(store, "audio", key, when)
    store.put_bytes(b"notes", "audio", "calls/readme.txt")
    _set_mtime(store, "audio", "calls/readme.txt", day1)
    # a day before the partitions start (MEDIA_ASSETS_AUDIO_START_DATE): named, not requested,
    # and the other days go on (a request for it would fail every tick of the sensor)
    store.upload(audio_files["speech"], "audio", "archive/2025.flac")
    _set_mtime(store, "audio", "archive/2025.flac", dt.datetime(2025, 12, 31, 23, 0, tzinfo=dt.timezone.utc))

    defs = _defs(local_resource)
    outcomes = process_pending(defs, instance)
    assert sorted((o.partition, o.success) for o in outcomes) == [("2026-11-20", True), ("2026-11-21", True)]

    ds = pads.dataset(str(store.root / "audio-dataset"), format="parquet", partitioning="hive", exclude_invalid_files=True)
    table = ds.to_table()
    rows = {r["Key"]: r for r in table.to_pylist()}
    assert set(rows) == set(plan) | {"calls/readme.txt"}
    import jiwer

    assert jiwer.wer(" ".join(spoken_words(SENTENCE)), " ".join(spoken_words(rows["calls/2026/speech.flac"]["text"]))) < ESPEAK_MAX_WER
    assert rows["calls/2026/stereo.flac"]["text"] and rows["calls/mp3_as.flac"]["text"]  # content decides, not the name
    assert rows["calls/broken.flac"]["text"] is None and rows["calls/broken.flac"]["error"].startswith("calls/broken.flac: no decodable audio stream")
    assert rows["empty.flac"]["error"] and rows["empty.flac"]["tokens"] is None
    assert rows["calls/readme.txt"]["text"] is None and rows["calls/readme.txt"]["tokens"] is None
    speech = rows["calls/2026/speech.flac"]
    assert speech["FolderName"] == "calls/2026" and speech["LastModifiedDate"] == "2026-11-20"
    assert speech["LastModifiedHour"] == 13 and speech["LastModifiedMinute"] == 45
    assert table.schema.field("tokens").type == pa.list_(pa.int16())
    assert 0 <= min(speech["tokens"]) and max(speech["tokens"]) <= 255
    assert (store.root / "audio-dataset" / "FolderName=calls%2F2026" / "LastModifiedDate=2026-11-20" / "LastModifiedHour=13" / "LastModifiedMinute=45").is_dir()
    # a 65 s file goes the chunked path (not batched); its speech is in the first seconds
    assert jiwer.wer(" ".join(spoken_words(SENTENCE)), " ".join(spoken_words(rows["calls/long.flac"]["text"]))) < ESPEAK_MAX_WER
    assert rows["calls/long.flac"]["duration_s"] == pytest.approx(65, abs=0.1)
    assert rows["silence.flac"]["text"] == ""  # VAD: no hallucinated text on silence
    lazy = pl.scan_parquet(str(store.root / "audio-dataset" / "FolderName=*" / "**" / "*.parquet"), hive_partitioning=True)
    assert lazy.select(pl.len()).collect().item() == 8

    # the UI: the day's first rows and rows per FolderName; the sensor recorded the day of audio_objects
    (rec,) = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("audio_dataset"), asset_partitions=["2026-11-20"]), limit=1).records
    meta = rec.asset_materialization.metadata
    preview = {r.data["Key"]: r.data for r in meta["preview"].value.records}
    assert set(preview) == {k for k, (_, when) in plan.items() if when == day1} | {"calls/readme.txt"}
    assert preview["calls/2026/speech.flac"]["text"] == rows["calls/2026/speech.flac"]["text"][:120]
    assert preview["calls/2026/speech.flac"]["tokens"] == len(speech["tokens"]) and "no decodable" in preview["calls/broken.flac"]["error"]
    folders = {r.data["FolderName"]: r.data["rows"] for r in meta["rows_per_folder"].value.records}
    assert folders == {"(root)": 1, "calls": 3, "calls/2026": 2}
    recorded = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey("audio_objects"), asset_partitions=["2026-11-20"]), limit=5).records
    assert recorded and recorded[0].asset_materialization.metadata["new_objects"].value == 6

    # re-materializing a day replaces its files exactly
    files_before = sorted(p.name for p in (store.root / "audio-dataset").rglob("*.parquet") if "FolderName=" in str(p))
    job = defs.resolve_job_def("audio")
    assert job.execute_in_process(instance=instance, partition_key="2026-11-20").success
    files_after = sorted(p.name for p in (store.root / "audio-dataset").rglob("*.parquet") if "FolderName=" in str(p))
    assert len(files_after) == len(files_before) and files_after != files_before
    again = pads.dataset(str(store.root / "audio-dataset"), format="parquet", partitioning="hive", exclude_invalid_files=True).to_table()
    assert again.num_rows == 8 and len(set(again["Key"].to_pylist())) == 8


def test_objects_before_the_start_date_are_named_not_requested(instance, local_resource, audio_files):
    from media_assets.settings import AUDIO_START_DATE

    store = local_resource.get_store()
    store.upload(audio_files["speech"], "audio", "archive/old.flac")
    _set_mtime(store, "audio", "archive/old.flac", dt.datetime(2025, 12, 31, 23, 0, tzinfo=dt.timezone.utc))
    defs = _defs(local_resource)
    with dg.build_sensor_context(instance=instance, resources=dict(defs.resources), definitions=defs, sensor_name=new_audio_sensor.name) as ctx:
        result = new_audio_sensor.evaluate_tick(ctx)
    assert AUDIO_START_DATE == "2026-01-01" and not result.run_requests
    assert result.skip_message == "no new audio objects on the partitions' days (1 outside them)", result.skip_message
    # no observation of a day that is no partition; the first tick's reconciliation names the
    # object as needing attention (no_source_needs_attention on audio_objects, WARN)
    (evaluation,) = result.asset_events
    assert evaluation.check_name == "no_source_needs_attention" and not evaluation.passed
    assert evaluation.asset_key == dg.AssetKey("audio_objects") and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["refused"].value == 1 and "`audio/archive/old.flac` | refused | its day 2025-12-31" in evaluation.metadata["sources"].value


def test_a_missing_watched_bucket_fails_the_tick_on_the_local_store(instance, tmp_path):
    """A typo in MEDIA_ASSETS_AUDIO_SOURCE_BUCKET is an error (as on S3), not "nothing new"."""
    from media_assets.storage import BucketNotFoundError, ObjectStoreResource

    resource = ObjectStoreResource(backend="local", data_root=str(tmp_path / "bare"))
    defs = _defs(resource)

    def tick():
        with dg.build_sensor_context(instance=instance, resources=dict(defs.resources), definitions=defs, sensor_name=new_audio_sensor.name) as ctx:
            return new_audio_sensor.evaluate_tick(ctx)

    with pytest.raises(BucketNotFoundError, match="bucket 'audio' does not exist: create it or set the setting"):
        tick()
    (tmp_path / "bare" / "audio").mkdir(parents=True)
    assert tick().skip_message == "no new audio objects"  # an empty bucket is just empty


def test_batched_transcription_keeps_files_apart(audio_files):
    """Short files decoded together come back one transcript per file, in order, with no
    words from a neighbour; silence is skipped without decoding."""
    import subprocess

    sentences = ["Rice is often served in round bowls.", "The juice of lemons makes fine punch.", "Four hours of steady work faced us."]
    clips = []
    for i, text in enumerate(sentences):
        wav = audio_files["speech"].parent / f"batched_{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
        clips.append(decode_audio(wav))
    clips.insert(1, decode_audio(audio_files["silence"]))
    out = SpeechRecognizerResource().recognizer().transcribe_files(clips)
    assert out[1].text == "" and not out[1].segments and out[1].speech_s == 0.0
    for t, text in zip([out[0], out[2], out[3]], sentences):
        assert set(spoken_words(t.text)) & set(spoken_words(text)), (t.text, text)
        assert len(spoken_words(t.text)) <= len(spoken_words(text)) + 2  # nothing from the neighbours
        assert t.segments and t.segments[0]["start"] >= 0 and t.segments[-1]["end"] <= t.duration_s + 0.5


def test_daily_pipeline_on_s3_tables_through_the_io_manager(instance, s3_resource, s3_buckets, audio_files):
    """On S3 (moto's server): the day's transcript and token tables go through the
    `audio_tables` IO manager (s3fs) to the work bucket's documented keys, and `audio_dataset`
    builds the day's rows from them."""
    store = s3_resource.get_store()
    buckets = {"source_bucket": s3_buckets("audio"), "dataset_bucket": s3_buckets("audio-dataset"), "work_bucket": s3_buckets("work")}
    store.upload(audio_files["speech"], buckets["source_bucket"], "calls/speech.flac")
    store.put_bytes(b"notes", buckets["source_bucket"], "calls/readme.txt")
    defs = _defs(s3_resource, **buckets)
    outcomes = process_pending(defs, instance)
    assert [o.success for o in outcomes] == [True]
    day = outcomes[0].partition
    work = {o.key for o in store.list_objects(buckets["work_bucket"], "audio/")}
    assert {f"audio/transcripts/{day}.parquet", f"audio/tokens/{day}.parquet"} <= work
    transcripts_table = pq.read_table(io.BytesIO(store.get_bytes(buckets["work_bucket"], f"audio/transcripts/{day}.parquet")))
    assert sorted(transcripts_table["Key"].to_pylist()) == ["calls/readme.txt", "calls/speech.flac"]
    dataset_keys = [o.key for o in store.list_objects(buckets["dataset_bucket"], "")]
    assert dataset_keys and all(k.endswith(".parquet") for k in dataset_keys)
    rows = pa.concat_tables([pq.read_table(io.BytesIO(store.get_bytes(buckets["dataset_bucket"], k))) for k in dataset_keys]).to_pylist()
    speech = next(r for r in rows if r["Key"] == "calls/speech.flac")
    assert speech["text"] and speech["tokens"]
