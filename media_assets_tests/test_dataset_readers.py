"""The outputs read cleanly with the readers data scientists use: DuckDB, polars,
pyarrow.dataset and Hugging Face ``datasets``, each with its natural glob over the output root.
docs/architecture.md's "Reading the outputs" snippets are the bodies of the ``read_*`` functions here."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from media_assets.defs.audio import defs as audio_defs
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.kernels.hive import write_hive_parquet
from media_assets.resources.audio import AudioSettings, AudioTokenizerResource, SpeechRecognizerResource
from media_assets.resources.reconcile import ReconcileSettings
from media_assets.resources.events import EventQueueResource

COLUMNS = ["Key", "FolderName", "LastModifiedDate", "LastModifiedHour", "LastModifiedMinute", "text", "n_tokens", "error"]


def read_duckdb(root: str) -> list[dict]:
    import duckdb

    rel = duckdb.sql(f"SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def read_polars(root: str) -> list[dict]:
    import polars as pl

    return pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect().to_dicts()


def read_pyarrow(root: str) -> list[dict]:
    import pyarrow.dataset as ds

    return ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()


def read_hf_datasets(root: str) -> list[dict]:
    from datasets import load_dataset

    return load_dataset("parquet", data_files=f"{root}/**/*.parquet", split="train").to_list()


READERS = {"duckdb": read_duckdb, "polars": read_polars, "pyarrow": read_pyarrow, "datasets": read_hf_datasets}


def _normalised(rows: list[dict]) -> list[tuple]:
    """Rows as comparable tuples: dates as ISO strings (DuckDB types the hive date as DATE),
    token lists by length."""
    out = []
    for r in rows:
        r = dict(r, n_tokens=None if r.get("tokens") is None else len(r["tokens"]))
        r["LastModifiedDate"] = str(r["LastModifiedDate"])
        out.append(tuple(r.get(c) for c in COLUMNS))
    return sorted(out, key=lambda t: t[0])


def _flac(path, seconds: float) -> None:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}", "-c:a", "flac", str(path)])


def test_audio_dataset_reads_the_same_in_four_readers(instance, local_resource, tmp_path):
    """Several folders, days and hours; FLAC and non-FLAC objects; a root-level object; a day of
    only non-FLAC objects and a day of only failures. Every reader sees the same rows with the
    partition columns filled, and nothing but the dataset under its root."""
    store = local_resource.get_store()
    _flac(tmp_path / "tone.flac", 2.0)
    (tmp_path / "bad.flac").write_text("not audio\n" * 10)
    when = {
        "d1": dt.datetime(2026, 11, 20, 9, 5, tzinfo=dt.timezone.utc),
        "d1b": dt.datetime(2026, 11, 20, 17, 59, tzinfo=dt.timezone.utc),
        "d2": dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.timezone.utc),
        "d3": dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.timezone.utc),
    }
    plan = {
        "calls/2026/a.flac": ("tone.flac", "d1"), "calls/2026/notes.txt": (None, "d1"), "sales/b c.flac": ("tone.flac", "d1b"),
        "root.flac": ("tone.flac", "d1b"), "calls/übung.flac": ("tone.flac", "d1b"),
        "x/readme.md": (None, "d2"), "y/z/data.json": (None, "d2"),  # a day with no FLAC at all
        "broken/one.flac": ("bad.flac", "d3"),  # a day whose only FLAC fails to decode
    }
    for key, (src, day) in plan.items():
        if src:
            store.upload(tmp_path / src, "audio", key)
        else:
            store.put_bytes(b"{}", "audio", key)
        t = when[day].timestamp()
        os.utime(store.root / "audio" / key, (t, t))

    defs = dg.Definitions.merge(audio_defs, dg.Definitions(resources={
        "object_store": local_resource, "audio_settings": AudioSettings(),
        "speech_recognizer": SpeechRecognizerResource(), "audio_tokenizer": AudioTokenizerResource(),
        "reconcile_settings": ReconcileSettings(),
        "event_queue": EventQueueResource(),
    }))
    job = defs.resolve_job_def("audio")
    for day in ["2026-11-20", "2026-11-21", "2026-11-22"]:
        assert job.execute_in_process(instance=instance, partition_key=day).success

    root = store.root / "audio-dataset"
    # the dataset prefix holds Parquet data files and nothing else
    others = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert others == [] and not any(part.startswith((".", "_")) for p in root.rglob("*") for part in p.relative_to(root).parts)
    # one schema, column order included, on every day (days of only non-FLAC or only failures too)
    schemas = {pq.read_schema(p).remove_metadata() for p in root.rglob("*.parquet")}
    assert len(schemas) == 1

    results = {name: _normalised(read(str(root))) for name, read in READERS.items()}
    assert results["duckdb"] == results["polars"] == results["pyarrow"] == results["datasets"]
    rows = {r[0]: dict(zip(COLUMNS, r)) for r in results["duckdb"]}
    assert set(rows) == set(plan)
    assert rows["calls/2026/a.flac"]["FolderName"] == "calls/2026" and rows["calls/übung.flac"]["FolderName"] == "calls"
    assert rows["root.flac"]["FolderName"] is None  # written as FolderName=__HIVE_DEFAULT_PARTITION__
    assert (root / "FolderName=__HIVE_DEFAULT_PARTITION__").is_dir()
    assert (rows["sales/b c.flac"]["LastModifiedDate"], rows["sales/b c.flac"]["LastModifiedHour"], rows["sales/b c.flac"]["LastModifiedMinute"]) == ("2026-11-20", 17, 59)
    assert rows["calls/2026/a.flac"]["n_tokens"] == 16000 and rows["calls/2026/notes.txt"]["n_tokens"] is None
    assert rows["broken/one.flac"]["error"] and rows["broken/one.flac"]["text"] is None

    # intermediates and manifests live in the work bucket, not in the dataset
    work = store.root / "media-assets-work" / "audio"
    assert {p.parent.name for p in work.rglob("*") if p.is_file()} == {"transcripts", "tokens", "manifests"}


def test_keyframe_embeddings_read_the_same_in_four_readers(instance, local_resource, footage, tmp_path):
    """Direct uploads get their tables next to them, in `<folder>/embeddings/<stem>.parquet`: each
    such directory holds one Parquet table per video and nothing else, and one glob over it reads
    them all, the same in every reader."""
    from media_assets.definitions import build_resources
    from media_assets.defs.video import video_decode
    from media_assets.resources.keyframes import keyframe_tables_io_manager

    store = local_resource.get_store()
    resources = {**build_resources(), "object_store": local_resource, "keyframe_tables": keyframe_tables_io_manager}
    # names pyarrow.dataset would skip (a leading "." or "_") get a percent-encoded file name
    for key, src in [("video_in/bikes.mp4", "bikes.mp4"), ("video_in/bunny.mp4", "bigbuckbunny.mp4"), ("video_in/cams/bunny.mp4", "bigbuckbunny.mp4"),
                     ("video_in/.hidden.mp4", "bikes.mp4"), ("video_in/_draft.mp4", "bikes.mp4")]:
        run_ffmpeg(["-i", str(footage / src), "-t", "4", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(tmp_path / "v.mp4")])
        store.upload(tmp_path / "v.mp4", "media", key)
        instance.add_dynamic_partitions("videos", [key])
        assert dg.materialize([video_decode], selection=["keyframe_embeddings"], partition_key=key, resources=resources, instance=instance).success

    root = store.root / "media" / "video_in" / "embeddings"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["%2Ehidden.parquet", "%5Fdraft.parquet", "bikes.parquet", "bunny.parquet"]
    assert [p.name for p in (store.root / "media" / "video_in" / "cams" / "embeddings").iterdir()] == ["bunny.parquet"]
    results = {name: sorted((r["video"], r["frame_index"], len(r["embedding"])) for r in read(str(root))) for name, read in READERS.items()}
    assert results["duckdb"] == results["polars"] == results["pyarrow"] == results["datasets"]
    assert {v for v, _, _ in results["duckdb"]} == {"video_in/bikes.mp4", "video_in/bunny.mp4", "video_in/.hidden.mp4", "video_in/_draft.mp4"}
    assert len(results["duckdb"]) == 16  # 4 s at 1 FPS, four videos


def test_hive_writer_refuses_names_readers_skip(tmp_path):
    table = pa.table({"a": [1], "p": ["x"]})
    with pytest.raises(ValueError, match="start with"):
        write_hive_parquet(table, tmp_path, ["p"], "_hidden.parquet")
    with pytest.raises(KeyError):
        write_hive_parquet(table, tmp_path, ["missing"], "f.parquet")


def test_table_file_stems_are_visible_to_every_reader_and_distinct():
    from media_assets.resources.keyframes import table_file_stem

    stems = [".hidden", "%2Ehidden", "_draft", "%5Fdraft", "bikes", "100%", "cams/.x", "cams/x"]
    names = [table_file_stem(s) for s in stems]
    assert names == ["%2Ehidden", "%252Ehidden", "%5Fdraft", "%255Fdraft", "bikes", "100%25", "cams/%2Ex", "cams/x"]
    assert len(set(names)) == len(stems) and not any(n.rpartition("/")[2][0] in "._" for n in names)
