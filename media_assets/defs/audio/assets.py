"""Audio assets, one daily partition (UTC, on the object's LastModified) each:
audio_objects -> transcripts -> audio_tokens -> audio_dataset (hive-partitioned Parquet)."""

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from ...kernels.asr import LOSS_REASONS, SAMPLE_RATE, WINDOW_S, FasterWhisperRecognizer, Transcript, merge_transcripts, suspect_reasons
from ...kernels.audio import check_audio, check_decoded_duration, decode_audio, iter_audio_chunks
from ...kernels.ffmpeg import FFmpegError
from ...kernels.hive import write_hive_parquet
from ...kernels.limits import Deadline, LimitExceededError, check_source_size
from ...kernels.probe import MediaError
from ...resources.audio import AudioSettings, AudioTokenizerResource, SpeechRecognizerResource
from ...scratch import scratch_dir
from ...storage import ObjectInfo, ObjectStore, ObjectStoreResource, safe_local_name
from ..common import TRANSIENT_RETRY, object_error, write_manifest
from ..output_set import OutputSet
from .partitions import audio_partitions

audio_objects = dg.AssetSpec(
    "audio_objects",
    description="Objects in the audio bucket (external). Daily partitions on LastModified (UTC); `new_audio_sensor` records each day "
    "new objects fall in as a materialization of that day (count, bytes, examples) and requests its audio run.",
    partitions_def=audio_partitions,
    kinds={"flac"},
    group_name="audio",
)


def objects_of_day(store: ObjectStore, settings: AudioSettings, day: str) -> list[ObjectInfo]:
    """Every object under the source prefix whose LastModified (UTC) falls on ``day``."""
    return [o for o in store.list_objects(settings.source_bucket, settings.source_prefix)
            if o.last_modified.astimezone(dt.timezone.utc).date().isoformat() == day]


def _is_flac(key: str) -> bool:
    return key.lower().endswith(".flac")


TRANSCRIPT_SCHEMA = pa.schema([
    ("Key", pa.string()), ("LastModified", pa.timestamp("us", tz="UTC")), ("Size", pa.int64()), ("ETag", pa.string()),
    ("text", pa.string()), ("language", pa.string()), ("segments", pa.string()), ("duration_s", pa.float64()),
    ("no_speech_prob", pa.float64()), ("speech_s", pa.float64()), ("suspect", pa.bool_()), ("suspect_reason", pa.string()),
    ("error", pa.string()),
])


def _reasons(t: Transcript, parts: list[Transcript], settings: AudioSettings) -> list[str]:
    """Suspect reasons of a file's transcript and of each of its chunks (a long file whose one
    chunk lost its speech is flagged even when the others carry enough words)."""
    kw = dict(min_speech_s=settings.min_speech_s, max_s_per_word=settings.max_s_per_word, silence_dbfs=settings.silence_dbfs)
    return list(dict.fromkeys(r for x in [t, *parts] for r in suspect_reasons(x, **kw)))


@dg.asset(
    deps=[audio_objects], partitions_def=audio_partitions, group_name="audio", kinds={"whisper", "parquet"}, pool="asr",
    retry_policy=TRANSIENT_RETRY,
    io_manager_key="audio_tables",
    check_specs=[dg.AssetCheckSpec(
        "speech_not_lost", asset="transcripts",
        description="At most `max_speech_loss_share` (2 %) of the day's speech files (>= 1 s of VAD speech) have no text or fewer "
                    "than one word per 3 s of speech.")],
)
def transcripts(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, audio_settings: AudioSettings,
                speech_recognizer: SpeechRecognizerResource):
    """One row per object of the day: `.flac` files decoded (mono, 16 kHz float32, in
    `chunk_s` chunks so memory is bounded) and transcribed with Whisper (bundled `base`,
    language `en`, beam 5): `text`, `language`, `segments` (JSON list of {start, end, text},
    seconds), `duration_s`, `no_speech_prob`, `speech_s` (seconds of speech Silero VAD finds),
    `suspect` and `suspect_reason` (`no_text_for_speech`, `too_few_words`: speech lost;
    `text_on_silence`, `high_no_speech_prob`: likely hallucination). Other objects get null
    text, as the original did; a corrupt or undecodable `.flac` gets null text and an `error`
    and does not fail the day. Files of at most 30 s are decoded `asr_batch_files` at a time,
    each in its own Whisper window (`BatchedInferencePipeline`), so a file's words never depend
    on its neighbours; longer files go chunk by chunk through Whisper's sequential long-form
    algorithm (`long_form`; `batched` for GPUs).
    The `speech_not_lost` check fails when more than 2 % of the day's speech files lost speech.
    The table (`TRANSCRIPT_SCHEMA`) is stored by the `audio_tables` IO manager at
    `<work_bucket>/<work_prefix>transcripts/<day>.parquet`."""
    store, settings, day = object_store.get_store(), audio_settings, context.partition_key
    recognizer = speech_recognizer.recognizer()
    batchable = isinstance(recognizer, FasterWhisperRecognizer)
    rows, errors, started, audio_s = [], 0, time.perf_counter(), 0.0
    short: list[tuple[dict, np.ndarray]] = []  # files <= 30 s wait here and decode in batches

    def record(row: dict, t: Transcript, parts: list[Transcript] = ()) -> None:
        nonlocal audio_s
        reasons = _reasons(t, list(parts), settings)
        row.update(text=t.text, language=t.language, segments=json.dumps(t.segments), duration_s=t.duration_s,
                   no_speech_prob=None if np.isnan(t.no_speech_prob) else t.no_speech_prob, speech_s=round(t.speech_s, 3),
                   suspect=bool(reasons), suspect_reason=";".join(reasons) or None)
        audio_s += t.duration_s

    def flush() -> None:
        deadline = Deadline(settings.asr_time_limit_s(sum(len(a) for _, a in short) / SAMPLE_RATE), f"a batch of {len(short)} short files")
        for (row, _), t in zip(short, recognizer.transcribe_files([a for _, a in short])):
            record(row, t)
        deadline.check()
        short.clear()

    def failed(row: dict, err: Exception, local: Path | None = None) -> None:
        nonlocal errors
        errors += 1
        message = object_error(row["Key"], err, local) if local is not None else str(err)
        row["error"] = message[:1000]
        context.log.warning(message)

    with scratch_dir("transcripts") as tmp:
        for obj in objects_of_day(store, settings, day):
            row = dict.fromkeys(TRANSCRIPT_SCHEMA.names)
            row.update(Key=obj.key, LastModified=obj.last_modified, Size=obj.size, ETag=obj.etag)
            rows.append(row)
            if not _is_flac(obj.key):
                continue
            try:
                check_source_size(obj.key, obj.size, settings.limits())
            except LimitExceededError as err:
                failed(row, err)
                continue
            local = store.download(settings.source_bucket, obj.key, Path(tmp) / safe_local_name(obj.key, ".flac"))
            try:
                duration = check_audio(local, settings.limits(), name=obj.key)
                limit_s = settings.asr_time_limit_s(duration)
                if batchable and duration <= WINDOW_S - 0.5:
                    audio = decode_audio(local, sample_rate=SAMPLE_RATE, timeout_s=limit_s)
                    check_decoded_duration(obj.key, duration, len(audio) / SAMPLE_RATE)
                    short.append((row, audio))
                    if len(short) >= settings.asr_batch_files:
                        flush()
                else:
                    long_form = recognizer.transcribe_long if batchable and speech_recognizer.long_form == "batched" else recognizer.transcribe
                    # ffmpeg's limit covers the whole file: it stays open while the chunks are transcribed
                    chunks = iter_audio_chunks(local, sample_rate=SAMPLE_RATE, chunk_s=settings.chunk_s, timeout_s=limit_s)
                    parts = [long_form(chunk, start) for start, chunk in chunks]
                    check_decoded_duration(obj.key, duration, sum(p.duration_s for p in parts))
                    record(row, merge_transcripts(parts), parts if len(parts) > 1 else ())
            except (MediaError, FFmpegError) as err:
                failed(row, err, local)
            finally:
                local.unlink(missing_ok=True)
        if short:
            flush()
    table = pa.Table.from_pylist(rows, schema=TRANSCRIPT_SCHEMA)
    flac = [r for r in rows if _is_flac(r["Key"]) and r["error"] is None]
    speech_files = [r for r in flac if r["speech_s"] >= settings.min_speech_s]
    lost = [r for r in speech_files if r["suspect_reason"] and set(r["suspect_reason"].split(";")) & set(LOSS_REASONS)]
    for r in lost:
        context.log.warning(f"{r['Key']}: {r['speech_s']:.1f} s of speech but {len((r['text'] or '').split())} words ({r['suspect_reason']})")
    reasons = [x for r in flac if r["suspect_reason"] for x in r["suspect_reason"].split(";")]
    lost_share = len(lost) / len(speech_files) if speech_files else 0.0
    elapsed = time.perf_counter() - started
    # the table is written by the `audio_tables` IO manager (work bucket, Parquet)
    yield dg.Output(table, metadata={
        "objects": len(rows), "flac_transcribed": len(flac), "undecodable": errors, "speech_files": len(speech_files),
        "empty_text": sum(not r["text"] for r in flac), "suspect": sum(bool(r["suspect"]) for r in flac),
        **{f"suspect_{name}": reasons.count(name) for name in (*LOSS_REASONS, "text_on_silence", "high_no_speech_prob")},
        "audio_s": round(audio_s, 1), "wall_s": round(elapsed, 2), "real_time_factor": round(elapsed / audio_s, 4) if audio_s else None,
        "backend": speech_recognizer.backend, "model": speech_recognizer.model or "bundled:base",
    })
    yield dg.AssetCheckResult(
        check_name="speech_not_lost", passed=lost_share <= settings.max_speech_loss_share,
        description=None if not lost else f"{len(lost)} of {len(speech_files)} speech files lost speech",
        metadata={"speech_files": len(speech_files), "lost_speech_files": len(lost), "lost_share": round(lost_share, 4),
                  "lost_keys": [r["Key"] for r in lost][:20]},
    )


@dg.asset(partitions_def=audio_partitions, group_name="audio", kinds={"numpy", "parquet"}, pool="asr", retry_policy=TRANSIENT_RETRY,
          io_manager_key="audio_tables")
def audio_tokens(context: dg.AssetExecutionContext, transcripts: pa.Table, object_store: ObjectStoreResource, audio_settings: AudioSettings,
                 audio_tokenizer: AudioTokenizerResource) -> dg.Output:
    """Every decodable `.flac` of the day as a 1-D int16 token sequence (`mulaw`: G.711 mu-law
    at 8 kHz, tokens in [0, 255]; `encodec`: EnCodec codes, frame-major). Columns: `Key`,
    `tokens` (list<int16>), `token_rate_hz` (int32, Hz). Reads the day's `transcripts` table
    and is stored by the `audio_tables` IO manager at `<work_bucket>/<work_prefix>tokens/<day>.parquet`."""
    store, settings, table = object_store.get_store(), audio_settings, transcripts
    keys, tokens = [], []
    with scratch_dir("tokens") as tmp:
        for key, error in zip(table["Key"].to_pylist(), table["error"].to_pylist()):
            if not _is_flac(key) or error is not None:
                continue
            local = store.download(settings.source_bucket, key, Path(tmp) / safe_local_name(key, ".flac"))
            try:
                parts = [audio_tokenizer.tokenize(c) for _, c in iter_audio_chunks(local, sample_rate=audio_tokenizer.sample_rate, chunk_s=settings.chunk_s)]
            except (ValueError, FFmpegError) as err:  # e.g. a .flac that decodes to zero samples
                context.log.warning(f"not tokenized: {object_error(key, err, local)}")
                continue
            finally:
                local.unlink(missing_ok=True)
            keys.append(key)
            tokens.append(np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16))
    out = pa.table({
        "Key": pa.array(keys, pa.string()),
        "tokens": pa.array(tokens, pa.list_(pa.int16())),
        "token_rate_hz": pa.array([audio_tokenizer.sample_rate] * len(keys), pa.int32()),
    })
    return dg.Output(out, metadata={"tokenized": len(keys), "tokenizer": audio_tokenizer.tokenizer,
                                    "total_tokens": int(sum(len(t) for t in tokens))})


HIVE_COLUMNS = ["FolderName", "LastModifiedDate", "LastModifiedHour", "LastModifiedMinute"]

DATASET_SCHEMA = pa.schema(
    list(TRANSCRIPT_SCHEMA)
    + [("tokens", pa.list_(pa.int16())), ("FolderName", pa.string()), ("LastModifiedDate", pa.string()),
       ("LastModifiedHour", pa.int32()), ("LastModifiedMinute", pa.int32())]
)


def dataset_table(transcripts_table: pa.Table, tokens_table: pa.Table) -> pa.Table:
    """Join transcripts and tokens on ``Key`` and add the hive columns, as
    :data:`DATASET_SCHEMA` (the same columns, order and types on every day, whatever it holds):
    ``FolderName`` = the key's parent folder, null for an object at the bucket root (written
    as ``FolderName=__HIVE_DEFAULT_PARTITION__``, Hive's null); ``LastModifiedDate``
    ``YYYY-MM-DD`` string, ``LastModifiedHour`` and ``LastModifiedMinute`` int32, all UTC."""
    tok = dict(zip(tokens_table["Key"].to_pylist(), tokens_table["tokens"].to_pylist()))
    keys = transcripts_table["Key"].to_pylist()
    lm = [t.astimezone(dt.timezone.utc) for t in transcripts_table["LastModified"].to_pylist()]
    columns = {name: transcripts_table[name] for name in TRANSCRIPT_SCHEMA.names}
    columns.update(
        tokens=[tok.get(k) for k in keys],
        FolderName=[k.rpartition("/")[0] or None for k in keys],
        LastModifiedDate=[t.strftime("%Y-%m-%d") for t in lm],
        LastModifiedHour=[t.hour for t in lm],
        LastModifiedMinute=[t.minute for t in lm],
    )
    return pa.table({f.name: pa.array(columns[f.name], f.type) if isinstance(columns[f.name], list) else columns[f.name].cast(f.type)
                     for f in DATASET_SCHEMA}, schema=DATASET_SCHEMA)


PREVIEW_ROWS = 10  # rows of the day shown in the UI
PREVIEW_TEXT_CHARS = 120
PREVIEW_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("Key", "string"), dg.TableColumn("duration_s", "float"), dg.TableColumn("text", "string"),
    dg.TableColumn("tokens", "int"), dg.TableColumn("suspect", "bool"), dg.TableColumn("suspect_reason", "string"),
    dg.TableColumn("error", "string")])
FOLDER_SCHEMA = dg.TableSchema(columns=[dg.TableColumn("FolderName", "string"), dg.TableColumn("rows", "int")])


def _dataset_preview(table: pa.Table) -> dict:
    """UI metadata of a day: its first rows (text cut at 120 characters, token counts) and
    rows per FolderName."""
    head = table.slice(0, PREVIEW_ROWS).to_pylist()
    preview = [dg.TableRecord({
        "Key": r["Key"], "duration_s": round(r["duration_s"] or 0.0, 2), "text": (r["text"] or "")[:PREVIEW_TEXT_CHARS],
        "tokens": len(r["tokens"] or []), "suspect": bool(r["suspect"]), "suspect_reason": r.get("suspect_reason") or "",
        "error": r["error"] or ""}) for r in head]
    counts = table.group_by("FolderName").aggregate([("Key", "count")]).sort_by("FolderName").to_pylist()
    folders = [dg.TableRecord({"FolderName": c["FolderName"] if c["FolderName"] is not None else "(root)", "rows": c["Key_count"]}) for c in counts]
    return {"preview": dg.MetadataValue.table(preview, schema=PREVIEW_SCHEMA),
            "rows_per_folder": dg.MetadataValue.table(folders, schema=FOLDER_SCHEMA)}


@dg.asset(
    partitions_def=audio_partitions,
    group_name="audio",
    kinds={"parquet"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        dg.AssetCheckSpec("every_object_once", asset="audio_dataset", description="Every object of the day appears exactly once."),
        dg.AssetCheckSpec("tokens_are_int16", asset="audio_dataset", description="The tokens column is list<int16>."),
        dg.AssetCheckSpec("empty_text_share", asset="audio_dataset", description="Share of .flac files with empty text is at most `empty_text_warn_share` (WARN)."),
    ],
)
def audio_dataset(context: dg.AssetExecutionContext, transcripts: pa.Table, audio_tokens: pa.Table, object_store: ObjectStoreResource,
                  audio_settings: AudioSettings) -> dg.MaterializeResult:
    """The day's rows as Parquet under `FolderName=…/LastModifiedDate=…/LastModifiedHour=…/
    LastModifiedMinute=…/` in the dataset prefix, which holds nothing else: DuckDB
    `read_parquet('<root>/**/*.parquet', hive_partitioning=true)`, polars `scan_parquet`,
    `pyarrow.dataset` and Hugging Face `load_dataset("parquet", ...)` read it with one glob
    (docs/architecture.md). Values are percent-encoded, a root-level object's folder is
    `__HIVE_DEFAULT_PARTITION__` (null), and the partition columns are also inside every file.
    Columns (`DATASET_SCHEMA`, the same on every day): Key, LastModified, Size, ETag, text,
    language, segments, duration_s, no_speech_prob, suspect, error, tokens (list<int16>),
    FolderName, LastModifiedDate, LastModifiedHour, LastModifiedMinute. Re-materializing a day
    replaces its files exactly: the new files are uploaded, the day's manifest (in the work
    bucket) is written, then the previous files of that day are deleted."""
    store, settings, day = object_store.get_store(), audio_settings, context.partition_key
    table = dataset_table(transcripts, audio_tokens)
    manifest_key = settings.work_key("manifests", day, ".json")
    # every file of a day is named "<day>-<run token>.parquet": the day's files already there
    # (earlier materializations, a killed run's) are the previous set, replaced after the commit
    existing = [o.key for o in store.list_objects(settings.dataset_bucket, settings.dataset_prefix)
                if o.key.rpartition("/")[2].startswith(f"{day}-")]
    with scratch_dir("audio-dataset") as tmp, OutputSet(store, settings.dataset_bucket, context.log, previous=existing) as out:
        files = write_hive_parquet(table, Path(tmp), HIVE_COLUMNS, f"{day}-{uuid.uuid4().hex[:12]}.parquet")
        for f in files:
            out.upload(f, settings.dataset_prefix + f.relative_to(tmp).as_posix(), "application/vnd.apache.parquet")
        uploaded = list(out.written)
        out.commit(lambda: write_manifest(store, settings.work_bucket, manifest_key, {"day": day, "files": uploaded, "rows": table.num_rows}))

    listed = [o.key for o in objects_of_day(store, settings, day)]
    keys = table["Key"].to_pylist()
    flac_rows = [txt for key, txt, err in zip(keys, table["text"].to_pylist(), table["error"].to_pylist()) if _is_flac(key) and err is None]
    empty_share = (sum(not x for x in flac_rows) / len(flac_rows)) if flac_rows else 0.0
    return dg.MaterializeResult(
        metadata={"rows": table.num_rows, "files": len(uploaded), "file_keys": uploaded[:50], **_dataset_preview(table)},
        check_results=[
            dg.AssetCheckResult(check_name="every_object_once", passed=sorted(keys) == sorted(listed) and len(set(keys)) == len(keys),
                                metadata={"rows": len(keys), "objects": len(listed)}),
            dg.AssetCheckResult(check_name="tokens_are_int16", passed=table.schema.field("tokens").type == pa.list_(pa.int16())),
            dg.AssetCheckResult(check_name="empty_text_share", passed=empty_share <= settings.empty_text_warn_share,
                                severity=dg.AssetCheckSeverity.WARN, metadata={"empty_text_share": round(empty_share, 4)}),
        ],
    )
