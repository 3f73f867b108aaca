"""Key-frame selection: ``keyframe_embeddings`` (1 FPS samples + embeddings, made by the video's
decode pass, `media_assets.defs.video.decode`) -> ``key_frames``.

Same ``videos`` partitions as the video pipeline. A partition is a source AVI (its verified
MP4 clips are read), a direct upload under ``video_in/``, or an explicit ``s3://bucket/key``.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from ...kernels.camera_motion import views_overlap
from ...kernels.keyframes import mark_repeats, select_keyframes
from ...resources.embedder import ImageEmbedderResource
from ...resources.keyframes import KeyframeSettings, VideoSource, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...scratch import scratch_dir
from ...storage import ObjectStore, ObjectStoreResource, listed_children
from ..common import TRANSIENT_RETRY, contact_sheet_markdown, input_failure, read_manifest, spread, write_manifest
from ..output_set import OutputSet
from ..video.partitions import video_partitions


def _shot_columns(table: pa.Table) -> tuple[np.ndarray | None, list[bool]]:
    """``(shot (n,) int64 or None, flash)`` from an embeddings table; tables written before the
    shot analysis (or with it switched off) have no cut information."""
    n = table.num_rows
    if "shot" not in table.column_names or table["shot"].null_count:
        return None, [False] * n
    return table["shot"].to_numpy().astype(np.int64), table["flash"].to_pylist()


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column of a ``keyframe_embeddings`` table as ``(n, d) float32``."""
    return np.asarray(table["embedding"].combine_chunks().flatten().to_numpy(), np.float32).reshape(table.num_rows, -1)


def _same_view(store: ObjectStore, src: VideoSource, sample_indices: np.ndarray, tmp: Path):
    """``same_view(a, b)`` over positions in ``sample_indices``, reading the samples' JPEGs."""
    def local(i: int) -> Path:
        index = int(sample_indices[i])
        path = tmp / f"{index}.jpg"
        if not path.exists():
            path.write_bytes(store.get_bytes(src.out_bucket, src.sample_key(index)))
        return path

    return lambda a, b: views_overlap(local(a), local(b))


MAX_SHEET_FRAMES = 32  # tiles in the UI's contact sheet (8 per row); more key frames are spread over them
MAX_LISTED = 500  # rows of the key-frame table in the UI; the manifest lists every key frame
KEY_FRAME_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("frame_index", "int", description="index of the 1 FPS sample"),
    dg.TableColumn("timestamp_s", "float", description="seconds from the start of the video"),
    dg.TableColumn("key", "string", description="object key of the key-frame JPEG"),
    dg.TableColumn("repeats_frame", "int", description="frame index of the earlier key frame this one repeats; empty: a distinct view"),
])
SHOWN_REPEATS = 8  # (repeat, original) pairs in the UI's sheet of repeats


def key_frame_table(frame_indices: list[int], keys: list[str], fps: float, repeat_of: list[int | None]) -> dg.TableMetadataValue:
    """The first ``MAX_LISTED`` key frames as a table (frame index, timestamp in seconds at
    ``fps`` samples per second, object key, the frame index of the earlier key frame it
    repeats or empty): one row each, rendered as a table in the UI."""
    rows = [dg.TableRecord({"frame_index": i, "timestamp_s": round(i / fps, 3), "key": k, "repeats_frame": r})
            for i, k, r in list(zip(frame_indices, keys, repeat_of))[:MAX_LISTED]]
    return dg.MetadataValue.table(rows, schema=KEY_FRAME_TABLE)


def repeats_sheet(store: ObjectStore, src: VideoSource, repeats: list[tuple[int, int]], fps: float, tmp: Path) -> str:
    """Markdown contact sheet of up to ``SHOWN_REPEATS`` ``(repeat, original)`` frame-index
    pairs, each repeat beside the key frame it repeats (read from the 1 FPS samples, so repeats
    dropped by ``repeats: drop`` show too)."""
    shown = spread(repeats, SHOWN_REPEATS)
    tiles = []
    for rep, orig in shown:
        for index, caption in ((rep, f"{rep / fps:.0f} s repeats"), (orig, f"{orig / fps:.0f} s")):
            path = tmp / f"{index}.jpg"
            if not path.exists():
                path.write_bytes(store.get_bytes(src.out_bucket, src.sample_key(index)))
            tiles.append((path, caption))
    title = f"{len(repeats)} repeated key frames, each beside the key frame it repeats"
    if len(shown) < len(repeats):
        title += f" ({len(shown)} shown)"
    return contact_sheet_markdown(tiles, title if repeats else "repeated key frames")


video_uploads = dg.AssetSpec(
    "video_uploads",
    description="Videos uploaded directly for key frames, under `media/video_in/` (external: uploaded by other systems). "
    "`new_video_sensor` requests one keyframes run per object; on each reconciliation pass it records how many there are "
    "(an observation) and which need a person (the `no_source_needs_attention` check).",
    kinds={"mp4"},
    group_name="keyframes",
)


@dg.asset(
    ins={"keyframe_embeddings": dg.AssetIn()},  # loaded by the keyframe_tables IO manager
    partitions_def=video_partitions,
    group_name="keyframes",
    kinds={"jpeg"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        dg.AssetCheckSpec("at_least_one_key_frame", asset="key_frames", description="A non-empty video has at least one key frame."),
        dg.AssetCheckSpec("uploaded_keys_exist", asset="key_frames", description="Every key-frame object listed in the metadata exists."),
    ],
)
def key_frames(context: dg.AssetExecutionContext, keyframe_embeddings: pa.Table, object_store: ObjectStoreResource,
               keyframe_settings: KeyframeSettings, video_settings: VideoConversionSettings,
               image_embedder: ImageEmbedderResource) -> dg.MaterializeResult:
    """Key frames of the video at `<prefix>/selected_frames/<stem>/<frame index>.jpg`, selected
    from its `keyframe_embeddings` table (the input, loaded by the `keyframe_tables` IO manager).

    Black, blank and flash samples are never key frames. Among the others, `select_keyframes`
    keeps frames whose cosine similarity to the previous key frame falls below
    `difference_threshold` (default: the embedder's calibrated value, 0.9 for Titan), in
    `confirmed` mode by default: the first sample after a hard cut is kept at once; any other
    candidate once it has settled (resembles the next sample), so mid-transition blends are
    not kept; within a shot, a change a camera motion explains (pan, zoom; the two views still
    overlapping by half) is no new key frame. `consecutive` is the original rule.

    A key frame whose cosine similarity to *any* earlier key frame of the video is at least
    `repeat_threshold` (default: the selection threshold) repeats it (a loop, a cut back to an
    earlier shot): `repeats: keep` (default) keeps it, flagged in `key_frame_list`
    (`repeats_frame`) and the manifest (`repeat_of`); `drop` writes distinct views only.
    `distinct_key_frames` + `repeat_key_frames` = the key frames selected; a contact sheet
    shows each repeat beside the key frame it repeats.
    """
    ks, store = keyframe_settings, object_store.get_store()
    src = ks.source_for(context.partition_key, video_settings.video_prefix)
    table = keyframe_embeddings
    indices = table["frame_index"].to_numpy()
    dead = table["dead"].to_pylist()
    emb = embedding_matrix(table)
    shots, flash = _shot_columns(table)
    alive = np.flatnonzero([d is None and not f for d, f in zip(dead, flash)])
    if alive.size == 0:
        flashes = f" or flashes ({sum(flash)})" if any(flash) else ""
        raise input_failure(f"{src.key}: all {len(indices)} sampled frames are black or blank{flashes}; no key frame to select")
    threshold, repeat_threshold = ks.thresholds(image_embedder.default_threshold())
    with scratch_dir("key_frames") as tmp:
        same_view = _same_view(store, src, indices[alive], Path(tmp)) if shots is not None else None
        kept = alive[select_keyframes(emb[alive], threshold=threshold, mode=ks.mode, max_wait=ks.max_wait,
                                      shots=None if shots is None else shots[alive], same_view=same_view)]
    kept_indices = [int(indices[i]) for i in kept]
    repeat_of = [kept_indices[j] if j >= 0 else None for j in mark_repeats(emb[kept], repeat_threshold)]
    repeats = [(i, r) for i, r in zip(kept_indices, repeat_of) if r is not None]
    if ks.repeats == "drop":
        kept_indices = [i for i, r in zip(kept_indices, repeat_of) if r is None]
        repeat_of = [None] * len(kept_indices)

    manifest_key = keyframe_manifest_key(src)
    previous = read_manifest(store, src.out_bucket, manifest_key)
    keys = [src.out_key("selected_frames", f"{i}.jpg") for i in kept_indices]
    leftovers = listed_children(store, src.out_bucket, src.out_key("selected_frames", ""), ".jpg", numbered=True)
    with OutputSet(store, src.out_bucket, context.log, previous=(previous or {}).get("keys", []), leftovers=leftovers,
                   concurrency=ks.transfer_concurrency) as out:
        for i, key in zip(kept_indices, keys):
            out.copy(src.out_bucket, src.sample_key(i), key)
        out.commit(lambda: write_manifest(store, src.out_bucket, manifest_key, {"video": src.key, "keys": keys, "frame_indices": kept_indices, "repeat_of": repeat_of}))

    missing = [k for k in keys if not store.exists(src.out_bucket, k)]
    with scratch_dir("key_frames") as tmp:
        tiles = []
        for i, k in spread(list(zip(kept_indices, keys)), MAX_SHEET_FRAMES):
            p = Path(tmp) / Path(k).name
            p.write_bytes(store.get_bytes(src.out_bucket, k))
            tiles.append((p, f"{i / ks.fps:.0f} s"))
        preview = contact_sheet_markdown(tiles, f"{len(keys)} key frames", total=len(keys))
        preview += "\n\n" + repeats_sheet(store, src, repeats, ks.fps, Path(tmp))
    return dg.MaterializeResult(
        metadata={
            "bucket": src.out_bucket,
            "video_key": src.key,
            "frames_sampled": len(indices),
            "frames_kept": len(keys),
            "distinct_key_frames": len(kept) - len(repeats),
            "repeat_key_frames": len(repeats),
            "repeats": ks.repeats,
            "repeat_threshold": repeat_threshold,
            "key_frame_list": key_frame_table(kept_indices, keys, ks.fps, repeat_of),
            "manifest": dg.MetadataValue.path(f"{src.out_bucket}/{manifest_key}"),
            "threshold": threshold,
            "mode": ks.mode,
            "key_frames": dg.MetadataValue.md(preview),
        },
        check_results=[
            dg.AssetCheckResult(check_name="at_least_one_key_frame", passed=len(keys) > 0, metadata={"frames_kept": len(keys)}),
            dg.AssetCheckResult(check_name="uploaded_keys_exist", passed=not missing, metadata={"missing": missing[:20]}),
        ],
    )
