"""Key-frame assets: 1 FPS samples + embeddings (Parquet) -> selected key frames.

Same ``videos`` partitions as the video pipeline. A partition is a source AVI (its verified
MP4 clips are read), a direct upload under ``video_in/``, or an explicit ``s3://bucket/key``.
"""

import time
from pathlib import Path

import botocore.exceptions
import dagster as dg
import numpy as np
import pyarrow as pa
from PIL import Image

from ...kernels.ffmpeg import FFmpegError
from ...kernels.frames import DeadFrameThresholds, dead_reason, luma_thumbnail
from ...kernels.image_embedding import EmbeddingError
from ...kernels.camera_motion import views_overlap
from ...kernels.keyframes import analysis_rate_for, extract_samples, select_keyframes
from ...kernels.probe import MediaError, probe
from ...resources.embedder import ImageEmbedderResource
from ...resources.keyframes import KeyframeSettings, VideoSource, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...scratch import scratch_dir
from ...storage import ObjectNotFoundError, ObjectStore, ObjectStoreResource, safe_local_name
from ..common import contact_sheet_markdown, get_table, input_failure, put_table, read_manifest, spread, write_manifest
from ..output_set import OutputSet, listed_children
from ..video.assets import mp4_clips
from ..video.partitions import video_partitions


def _sources(store: ObjectStore, src: VideoSource, video: VideoConversionSettings, fps: float) -> list[tuple[str, str, int]]:
    """``(bucket, key, first sample index)`` of each file to sample, in timeline order."""
    if src.kind == "direct":
        return [(src.bucket, src.key, 0)]
    manifest = read_manifest(store, video.mp4_bucket, video.manifest_key(src.key, "clips"))
    if manifest is None:
        raise input_failure(f"no verified clips for {src.key!r}: materialize mp4_clips for this partition first")
    return [(video.mp4_bucket, c["key"], int(round(c["start_s"] * fps))) for c in manifest["clips"]]


def _dead(path: Path) -> str | None:
    with Image.open(path) as img:
        return dead_reason(luma_thumbnail(img), None, DeadFrameThresholds())


def _embeddings_table(src: VideoSource, indices, timestamps, dead, shot, flash, emb: np.ndarray) -> pa.Table:
    d = emb.shape[1]
    return pa.table({
        "video": pa.array([src.key] * len(indices), pa.string()),
        "frame_index": pa.array(indices, pa.int64()),
        "timestamp_s": pa.array(timestamps, pa.float64()),
        "dead": pa.array(dead, pa.string()),
        "shot": pa.array(shot, pa.int32()),
        "flash": pa.array(flash, pa.bool_()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), d),
    })


def _shot_columns(table: pa.Table) -> tuple[np.ndarray | None, list[bool]]:
    """``(shot (n,) int64 or None, flash)`` from an embeddings table; tables written before the
    shot analysis (or with it switched off) have no cut information."""
    n = table.num_rows
    if "shot" not in table.column_names or table["shot"].null_count:
        return None, [False] * n
    return table["shot"].to_numpy().astype(np.int64), table["flash"].to_pylist()


def _same_view(store: ObjectStore, src: VideoSource, sample_indices: np.ndarray, tmp: Path):
    """``same_view(a, b)`` over positions in ``sample_indices``, reading the samples' JPEGs."""
    def local(i: int) -> Path:
        path = tmp / f"{int(sample_indices[i])}.jpg"
        if not path.exists():
            path.write_bytes(store.get_bytes(src.out_bucket, src.out_key("samples", path.name)))
        return path

    return lambda a, b: views_overlap(local(a), local(b))


MAX_SHEET_FRAMES = 32  # tiles in the UI's contact sheet (8 per row); more key frames are spread over them


@dg.asset(
    deps=[mp4_clips],
    partitions_def=video_partitions,
    group_name="keyframes",
    kinds={"ffmpeg", "onnx", "parquet"},
    pool="embeddings",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def keyframe_embeddings(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, keyframe_settings: KeyframeSettings,
                        video_settings: VideoConversionSettings, image_embedder: ImageEmbedderResource) -> dg.MaterializeResult:
    """Samples at 1 FPS scaled to 1024x576 (ffmpeg `fps=1,scale=1024:576`), one embedding each.

    The same decode writes every frame as a 64x36 grey thumbnail, from which hard cuts and
    flashes are found (`analyse_shots`). Writes the samples as JPEG to
    `<prefix>/samples/<stem>/<index>.jpg` and the table `<prefix>/embeddings/<stem>.parquet`
    (written last: the commit point) with columns `video` (str), `frame_index` (int64, 0-based
    1 FPS sample index = seconds from the start), `timestamp_s` (float64), `dead` (str:
    black/blank, else null), `shot` (int32: shot number, +1 after each hard cut; null without
    shot analysis), `flash` (bool: the sample shows a flash) and `embedding`
    (fixed_size_list<float32>[d], L2-normalised; d = 1280 local, 256/384/1024 Titan), so
    embeddings can be reused (similarity search, dedup) without recomputation.
    """
    ks, store = keyframe_settings, object_store.get_store()
    src = ks.source_for(context.partition_key, video_settings.video_prefix)
    parquet_key = src.embeddings_key()
    started = time.perf_counter()
    with scratch_dir("keyframes") as tmp:
        tmp = Path(tmp)
        paths, indices, chunks, dead, shot, flash = [], [], [], [], [], []
        hard_cuts = 0
        embed_s = 0.0

        def embed(batch: list[Path]) -> None:  # runs while ffmpeg keeps decoding
            nonlocal embed_s
            t0 = time.perf_counter()
            chunks.append(image_embedder.embed_jpegs(batch))
            dead.extend(_dead(p) for p in batch)
            embed_s += time.perf_counter() - t0

        try:
            for n, (bucket, key, start) in enumerate(_sources(store, src, video_settings, ks.fps)):
                try:
                    local = store.download(bucket, key, tmp / f"in_{n}_{safe_local_name(key, '.mp4')}")
                except ObjectNotFoundError as err:
                    raise input_failure(f"source video {bucket}/{key} does not exist") from err
                try:
                    info = probe(local)
                    if info.video is None:
                        raise MediaError(f"{key}: no video stream")
                    rate = analysis_rate_for(info.video.frame_rate, ks.fps) if ks.shot_analysis else None
                    samples = extract_samples(local, tmp / f"s_{n}", fps=ks.fps, width=ks.width, height=ks.height, start_index=start,
                                              skip_bidir=ks.skip_bidir, on_batch=embed, batch_size=image_embedder.batch_size,
                                              analysis_rate=rate)
                except (MediaError, FFmpegError) as err:
                    raise input_failure(f"{bucket}/{key}: {err}", ffmpeg_log=getattr(err, "stderr_tail", "")) from err
                local.unlink()
                paths += samples.paths
                indices += samples.indices.tolist()
                if samples.shots is None:
                    shot += [None] * len(samples.paths)
                    flash += [False] * len(samples.paths)
                else:  # a clip boundary is no cut: the first shot of a clip continues the last one
                    shot += (samples.shots.shot + (shot[-1] if shot else 0)).tolist()
                    flash += samples.shots.flash.tolist()
                    hard_cuts += len(samples.shots.cuts_s)
        except EmbeddingError as err:
            raise input_failure(f"{src.key}: {err}") from err
        except botocore.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("AccessDeniedException", "ValidationException", "ResourceNotFoundException", "UnrecognizedClientException"):
                raise input_failure(
                    f"{src.key}: Bedrock refused InvokeModel ({code}: {err.response['Error'].get('Message', '')}); check the IAM "
                    "permission bedrock:InvokeModel and model access to amazon.titan-embed-image-v1 in this region"
                ) from err
            raise
        if not paths:
            raise input_failure(f"{src.key}: no decodable video frame")
        emb = np.concatenate(chunks)
        extract_s = time.perf_counter() - started - embed_s
        table = _embeddings_table(src, indices, [i / ks.fps for i in indices], dead, shot, flash, emb)
        # every sample already in the folder counts as the previous set: kept if this attempt
        # fails (the previous table refers to them), removed after the commit unless rewritten
        existing = listed_children(store, src.out_bucket, src.out_key("samples", ""), ".jpg", numbered=True)
        with OutputSet(store, src.out_bucket, context.log, previous=existing, concurrency=ks.transfer_concurrency) as out:
            for p, i in zip(paths, indices):
                out.upload(p, src.out_key("samples", f"{i}.jpg"), "image/jpeg")
            out.commit(lambda: put_table(store, src.out_bucket, parquet_key, table))
    return dg.MaterializeResult(metadata={
        "source": src.key if src.kind == "converted" else f"{src.bucket}/{src.key}",
        "frames_sampled": len(paths),
        "dead_samples": sum(d is not None for d in dead),
        "hard_cuts": hard_cuts,
        "flash_samples": sum(flash),
        "embedding_backend": image_embedder.backend,
        "embedding_dim": int(emb.shape[1]),
        "embeddings": dg.MetadataValue.path(f"{src.out_bucket}/{parquet_key}"),
        "extract_s": round(extract_s, 3),  # decoding time not overlapped by embedding
        "embed_s": round(embed_s, 3),
        "video_s_per_wall_s": round(len(paths) / ks.fps / max(time.perf_counter() - started, 1e-9), 2),
    })


@dg.asset(
    deps=[keyframe_embeddings],
    partitions_def=video_partitions,
    group_name="keyframes",
    kinds={"jpeg"},
    check_specs=[
        dg.AssetCheckSpec("at_least_one_key_frame", asset="key_frames", description="A non-empty video has at least one key frame."),
        dg.AssetCheckSpec("uploaded_keys_exist", asset="key_frames", description="Every key-frame object listed in the metadata exists."),
    ],
)
def key_frames(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, keyframe_settings: KeyframeSettings,
               video_settings: VideoConversionSettings, image_embedder: ImageEmbedderResource) -> dg.MaterializeResult:
    """Key frames of the video at `<prefix>/selected_frames/<stem>/<frame index>.jpg`.

    Black, blank and flash samples are never key frames. Among the others, `select_keyframes`
    keeps frames whose cosine similarity to the previous key frame falls below
    `difference_threshold` (default: the embedder's calibrated value, 0.9 for Titan), in
    `confirmed` mode by default: the first sample after a hard cut is kept at once; any other
    candidate once it has settled (resembles the next sample), so mid-transition blends are
    not kept; within a shot, a change a camera motion explains (pan, zoom; the two views still
    overlapping by half) is no new key frame. `consecutive` is the original rule.
    """
    ks, store = keyframe_settings, object_store.get_store()
    src = ks.source_for(context.partition_key, video_settings.video_prefix)
    parquet_key = src.embeddings_key()
    try:
        table = get_table(store, src.out_bucket, parquet_key)
    except ObjectNotFoundError as err:
        raise input_failure(f"no embeddings for {src.key!r}: materialize keyframe_embeddings first") from err
    indices = table["frame_index"].to_numpy()
    dead = table["dead"].to_pylist()
    emb = np.asarray(table["embedding"].combine_chunks().flatten().to_numpy(), dtype=np.float32).reshape(len(indices), -1)
    shots, flash = _shot_columns(table)
    alive = np.flatnonzero([d is None and not f for d, f in zip(dead, flash)])
    if alive.size == 0:
        flashes = f" or flashes ({sum(flash)})" if any(flash) else ""
        raise input_failure(f"{src.key}: all {len(indices)} sampled frames are black or blank{flashes}; no key frame to select")
    threshold = ks.difference_threshold if ks.difference_threshold is not None else image_embedder.default_threshold()
    with scratch_dir("key_frames") as tmp:
        same_view = _same_view(store, src, indices[alive], Path(tmp)) if shots is not None else None
        kept = alive[select_keyframes(emb[alive], threshold=threshold, mode=ks.mode, max_wait=ks.max_wait,
                                      shots=None if shots is None else shots[alive], same_view=same_view)]
    kept_indices = [int(indices[i]) for i in kept]

    manifest_key = keyframe_manifest_key(src)
    previous = read_manifest(store, src.out_bucket, manifest_key)
    keys = [src.out_key("selected_frames", f"{i}.jpg") for i in kept_indices]
    leftovers = listed_children(store, src.out_bucket, src.out_key("selected_frames", ""), ".jpg", numbered=True)
    with OutputSet(store, src.out_bucket, context.log, previous=(previous or {}).get("keys", []), leftovers=leftovers,
                   concurrency=ks.transfer_concurrency) as out:
        for i, key in zip(kept_indices, keys):
            out.copy(src.out_bucket, src.out_key("samples", f"{i}.jpg"), key)
        out.commit(lambda: write_manifest(store, src.out_bucket, manifest_key, {"video": src.key, "keys": keys, "frame_indices": kept_indices}))

    missing = [k for k in keys if not store.exists(src.out_bucket, k)]
    with scratch_dir("key_frames") as tmp:
        tiles = []
        for i, k in spread(list(zip(kept_indices, keys)), MAX_SHEET_FRAMES):
            p = Path(tmp) / Path(k).name
            p.write_bytes(store.get_bytes(src.out_bucket, k))
            tiles.append((p, f"{i / ks.fps:.0f} s"))
        title = f"{len(keys)} key frames" + (f" ({len(tiles)} shown)" if len(tiles) < len(keys) else "")
        preview = contact_sheet_markdown(tiles, title)
    return dg.MaterializeResult(
        metadata={
            "bucket": src.out_bucket,
            "video_key": src.key,
            "frames_sampled": len(indices),
            "frames_kept": len(keys),
            "kept_indices": kept_indices[:500],
            "kept_timestamps_s": [round(float(i) / ks.fps, 3) for i in kept_indices[:500]],
            "selected_frame_keys": keys[:500],
            "threshold": threshold,
            "mode": ks.mode,
            "key_frames": dg.MetadataValue.md(preview),
        },
        check_results=[
            dg.AssetCheckResult(check_name="at_least_one_key_frame", passed=len(keys) > 0, metadata={"frames_kept": len(keys)}),
            dg.AssetCheckResult(check_name="uploaded_keys_exist", passed=not missing, metadata={"missing": missing[:20]}),
        ],
    )
