"""Video conversion assets: AVI -> verified MP4 clips -> labeling frames.

Large media never pass through an IO manager: each asset writes its objects itself and
records them in a small JSON manifest in the MP4 bucket (``.manifests/<video>/...``), written
last. The manifest is the commit point: downstream assets read it, and a run that fails before
writing it removes what it uploaded, so a partial result is never visible as done.
"""


import datetime as dt
import time
from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from ...kernels.ffmpeg import FFmpegError
from ...kernels.frames import DeadFrameThresholds, classify_dead_frames, luma_thumbnail, sample_frames
from ...kernels.probe import MediaError, probe
from ...kernels.transcode import VerificationError, expected_duration_s, transcode_to_mp4, verify_clips
from ...resources.keyframes import KeyframeSettings, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...scratch import scratch_dir
from ...storage import ObjectNotFoundError, ObjectStore, ObjectStoreResource, UnsafeKeyError, check_key, safe_local_name
from ..common import contact_sheet_markdown, input_failure, read_manifest, spread, write_manifest
from ..output_set import OutputSet, listed_children
from .partitions import video_partitions

raw_videos = dg.AssetSpec(
    "raw_videos",
    description="Source AVI objects in the source bucket (external: uploaded by other systems). "
    "One dynamic partition per object key, added by `new_avi_sensor`.",
    partitions_def=video_partitions,
    kinds={"avi"},
    group_name="video",
)


def _clip_checks(manifest: dict, tolerance_s: float) -> list[dg.AssetCheckResult]:
    total = sum(c["duration_s"] for c in manifest["clips"])
    expected = manifest["source"]["expected_duration_s"]
    return [
        dg.AssetCheckResult(
            check_name="clip_durations_match_source",
            passed=abs(total - expected) <= tolerance_s,
            metadata={"clips_total_s": round(total, 3), "source_s": round(expected, 3), "tolerance_s": tolerance_s},
        )
    ]


CLIP_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("clip", "string"), dg.TableColumn("start_s", "float"), dg.TableColumn("duration_s", "float"),
    dg.TableColumn("frames", "int"), dg.TableColumn("size_bytes", "int"), dg.TableColumn("codecs", "string"),
    dg.TableColumn("uri", "string")])


def _clips_result(manifest: dict, settings: VideoConversionSettings, store: ObjectStore, **extra) -> dg.MaterializeResult:
    """Metadata of ``mp4_clips``: one table row per clip (with its ``file://``/``s3://`` URI),
    the first clip as a link, and plottable totals (seconds, bytes) for the Plots tab."""
    clips = manifest["clips"]
    rows = [dg.TableRecord({"clip": Path(c["key"]).name, "start_s": round(c.get("start_s", 0.0), 3), "duration_s": round(c["duration_s"], 3),
                            "frames": c.get("n_frames", 0), "size_bytes": c["size_bytes"],
                            "codecs": f"{c['video_codec']}/{c['audio_codec'] or 'none'}", "uri": store.uri(settings.mp4_bucket, c["key"])})
            for c in clips]
    return dg.MaterializeResult(
        metadata={
            "clips": dg.MetadataValue.table(rows, schema=CLIP_TABLE),
            "first_clip": dg.MetadataValue.url(store.uri(settings.mp4_bucket, clips[0]["key"])) if clips else "none",
            "clip_keys": [c["key"] for c in clips],
            "n_clips": len(clips),
            "clips_total_s": dg.MetadataValue.float(round(sum(c["duration_s"] for c in clips), 3)),
            "clips_total_bytes": dg.MetadataValue.int(sum(c["size_bytes"] for c in clips)),
            "codec": "h264/" + (clips[0]["audio_codec"] or "none"),
            "source_duration_s": round(manifest["source"]["expected_duration_s"], 3),
            "manifest": dg.MetadataValue.url(store.uri(settings.mp4_bucket, settings.manifest_key(manifest["source"]["key"], "clips"))),
            **extra,
        },
        check_results=_clip_checks(manifest, settings.duration_tolerance_s),
    )


@dg.asset(
    deps=[raw_videos],
    partitions_def=video_partitions,
    kinds={"ffmpeg", "mp4"},
    group_name="video",
    pool="ffmpeg",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    check_specs=[dg.AssetCheckSpec("clip_durations_match_source", asset="mp4_clips", description="Clip durations add up to the source duration within `duration_tolerance_s`.")],
)
def mp4_clips(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, video_settings: VideoConversionSettings) -> dg.MaterializeResult:
    """H.264/AAC MP4 (+faststart) of one source video, in `video-mp4/<video>/`.

    Sources longer than `max_duration_s` (240 s) are cut into `clip_s` (120 s) clips in the
    same ffmpeg pass (forced keyframes + segment muxer). Every clip is probed (streams,
    duration) before upload and its size checked after; the manifest is written last. The
    source is never touched here: `source_video_removal`, the last step of the run, removes it.
    Re-materializing after the source was removed reuses the verified clips and says so in the
    metadata.
    """
    settings, store = video_settings, object_store.get_store()
    key = context.partition_key
    bucket = settings.source_bucket
    try:
        check_key(key)
    except UnsafeKeyError as err:
        raise input_failure(str(err), source=f"{bucket}/{key}") from err
    prefix = settings.video_prefix(key)
    manifest_key = settings.manifest_key(key, "clips")
    previous = read_manifest(store, settings.mp4_bucket, manifest_key)

    try:
        source_obj = store.head(bucket, key)
    except ObjectNotFoundError:
        if previous is not None:
            context.log.warning(
                f"{bucket}/{key} is gone (removed after its clips were verified on {previous['created_at']}); "
                "reusing the verified clips. Upload the source again to re-transcode."
            )
            return _clips_result(previous, settings, store, note="source removed after verification; existing verified clips reused")
        raise input_failure(f"source object {bucket}/{key} does not exist and no clips were ever produced from it", source=f"{bucket}/{key}") from None

    started = time.perf_counter()
    with scratch_dir("mp4_clips") as tmp:
        tmp = Path(tmp)
        local = store.download(bucket, key, tmp / safe_local_name(key, ".avi"))
        try:
            info = probe(local)
            clips = transcode_to_mp4(
                local, tmp / "out", stem=Path(prefix).name or "video",
                max_duration_s=settings.max_duration_s, clip_s=settings.clip_s,
                settings=settings.encode_settings(), info=info,
            )
            verified = verify_clips(clips, info, max_duration_s=settings.max_duration_s, clip_s=settings.clip_s, tolerance_s=settings.duration_tolerance_s)
        except (MediaError, FFmpegError, VerificationError) as err:
            detail = getattr(err, "stderr_tail", "")
            raise input_failure(f"{bucket}/{key}: {err}. The source object is kept.", source=f"{bucket}/{key}", error=type(err).__name__, ffmpeg_log=detail) from err
        encode_s = time.perf_counter() - started

        leftovers = listed_children(store, settings.mp4_bucket, prefix, ".mp4")
        with OutputSet(store, settings.mp4_bucket, context.log, previous=[c["key"] for c in (previous or {}).get("clips", [])],
                       leftovers=leftovers, concurrency=2) as out:
            for clip in verified:
                out.upload(clip.path, f"{prefix}/{clip.path.name}", "video/mp4")
            clip_entries, first_frame = [], 0
            for clip, head in zip(verified, out.wait()):
                if head.size != clip.size_bytes:
                    raise VerificationError(f"{settings.mp4_bucket}/{head.key}: stored {head.size} bytes, wrote {clip.size_bytes}")
                clip_entries.append({
                    "key": head.key, "index": clip.index, "start_s": clip.start_s, "duration_s": clip.duration_s,
                    "n_frames": clip.n_frames, "first_frame_index": first_frame, "size_bytes": clip.size_bytes,
                    "video_codec": clip.video_codec, "audio_codec": clip.audio_codec, "etag": head.etag,
                })
                first_frame += clip.n_frames
            manifest = {
                "source": {"bucket": bucket, "key": key, "etag": source_obj.etag, "size_bytes": source_obj.size,
                           "duration_s": info.duration_s, "expected_duration_s": expected_duration_s(info),
                           "frame_rate": info.video.frame_rate if info.video else None},
                "clips": clip_entries,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "run_id": context.run.run_id,
            }
            out.commit(lambda: write_manifest(store, settings.mp4_bucket, manifest_key, manifest))
    return _clips_result(manifest, settings, store, wall_s=round(time.perf_counter() - started, 3), encode_s=round(encode_s, 3))


def _clearly_dead(t: DeadFrameThresholds) -> DeadFrameThresholds:
    """Thresholds for the re-check on decoded JPEGs: halfway stricter, so a frame that passed
    by a hair on ffmpeg's thumbnail is not flagged because PIL's decode differs by a little."""
    return DeadFrameThresholds(
        black_pixel_luma=t.black_pixel_luma,
        black_pixel_share=(1 + t.black_pixel_share) / 2,
        blank_luma_std=t.blank_luma_std / 2,
        frozen_mean_abs_diff=t.frozen_mean_abs_diff / 2,
    )


SHOWN_PER_REASON = 4  # dropped frames of each reason (black, blank, frozen) in the UI's preview


def _small(path: Path, width: int = 160) -> Image.Image:
    """A ``width`` px copy of the JPEG at ``path`` (kept in memory: the file is deleted)."""
    with Image.open(path) as img:
        img.draft("RGB", (width, width))
        small = img.convert("RGB")
    small.thumbnail((width, width))
    return small


def _reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items() if n) or "none"


def _jpeg_thumbnail(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return luma_thumbnail(img)


@dg.asset(
    deps=[mp4_clips],
    partitions_def=video_partitions,
    kinds={"ffmpeg", "jpeg"},
    group_name="video",
    pool="ffmpeg",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    check_specs=[dg.AssetCheckSpec("no_dead_frame_kept", asset="labeling_frames", description="Re-decodes every uploaded JPEG: none is black, blank or frozen.")],
)
def labeling_frames(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, video_settings: VideoConversionSettings) -> dg.MaterializeResult:
    """Every `every_n_frames`-th (10th) frame of the video as JPEG, minus dead frames, in
    `unlabeled-images/<video>/<frame index>.jpg` (frame index = index in the source video).

    Frames are selected inside ffmpeg (`select`, `-fps_mode vfr`) from the verified MP4
    clips, on one grid across clip boundaries. Dead frames (black, blank, frozen; see
    `media_assets.kernels.frames`) are dropped before upload. Frames of an earlier
    materialization that are not in this one are removed after the manifest is written.
    """
    settings, store = video_settings, object_store.get_store()
    key = context.partition_key
    clips_manifest = read_manifest(store, settings.mp4_bucket, settings.manifest_key(key, "clips"))
    if clips_manifest is None:
        raise input_failure(f"no verified clips for {key!r}: materialize mp4_clips for this partition first")
    prefix = settings.video_prefix(key)
    manifest_key = settings.manifest_key(key, "frames")
    previous = read_manifest(store, settings.mp4_bucket, manifest_key)
    thresholds = settings.dead_frame_thresholds()

    started = time.perf_counter()
    kept_paths: list[Path] = []
    kept_indices: list[int] = []
    dropped = {"black": 0, "blank": 0, "frozen": 0}
    n_sampled = 0
    dropped_tiles: list[tuple[Image.Image, str]] = []
    leftovers = listed_children(store, settings.labeling_bucket, prefix, ".jpg", numbered=True)
    with scratch_dir("labeling_frames") as tmp, OutputSet(store, settings.labeling_bucket, context.log, concurrency=settings.upload_concurrency,
                                                         previous=(previous or {}).get("frame_keys", []), leftovers=leftovers) as out:
        tmp = Path(tmp)
        last_kept = None
        for clip in clips_manifest["clips"]:
            local = store.download(settings.mp4_bucket, clip["key"], tmp / f"clip_{clip['index']}.mp4")
            try:
                frames = sample_frames(local, tmp / f"frames_{clip['index']}", every_n=settings.every_n_frames, start_index=clip["first_frame_index"])
            except FFmpegError as err:
                raise input_failure(f"{settings.mp4_bucket}/{clip['key']}: cannot sample frames: {err}", ffmpeg_log=err.stderr_tail) from err
            local.unlink()
            n_sampled += len(frames.paths)
            reasons = classify_dead_frames(frames.thumbnails, thresholds, previous_kept=last_kept)
            for path, idx, thumb, reason in zip(frames.paths, frames.frame_indices, frames.thumbnails, reasons):
                if reason:
                    dropped[reason] += 1
                    if dropped[reason] <= SHOWN_PER_REASON:  # a few of each reason for the UI
                        dropped_tiles.append((_small(path), f"#{int(idx)} {reason}"))
                    path.unlink()
                    continue
                last_kept = thumb
                kept_paths.append(path)
                kept_indices.append(int(idx))
                out.upload(path, f"{prefix}/{int(idx)}.jpg", "image/jpeg")
        out.wait()
        # asset check: re-decode the JPEGs as uploaded; none may be dead
        thumbs = np.stack([_jpeg_thumbnail(p) for p in kept_paths]) if kept_paths else np.zeros((0, 36, 64), np.uint8)
        recheck = [r for r in classify_dead_frames(thumbs, _clearly_dead(thresholds)) if r]
        kept_tiles = [(p, f"#{i} kept") for p, i in spread(list(zip(kept_paths, kept_indices)), 2 * SHOWN_PER_REASON)]
        preview = (contact_sheet_markdown(kept_tiles, f"kept: {len(kept_paths)} of {n_sampled} sampled frames")
                   + "\n\n" + contact_sheet_markdown(dropped_tiles, f"dropped: {sum(dropped.values())} ({_reasons(dropped)}); a few of each reason"))
        uploaded = list(out.written)
        manifest = {
            "source_key": key, "frame_keys": uploaded, "frame_indices": kept_indices,
            "dropped": dropped, "n_sampled": n_sampled,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "run_id": context.run.run_id,
        }
        out.commit(lambda: write_manifest(store, settings.mp4_bucket, manifest_key, manifest))
    return dg.MaterializeResult(
        metadata={
            "frames_sampled": n_sampled,
            "frames_kept": len(uploaded),
            "frames_dropped": sum(dropped.values()),
            "dropped_black": dropped["black"],
            "dropped_blank": dropped["blank"],
            "dropped_frozen": dropped["frozen"],
            "first_frame_keys": uploaded[:10],
            "frames": dg.MetadataValue.md(preview),
            "wall_s": round(time.perf_counter() - started, 3),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_dead_frame_kept",
                passed=not recheck,
                metadata={"frames_checked": len(kept_paths), "dead_found": len(recheck)},
            )
        ],
    )


def _verified_outputs(store, settings: VideoConversionSettings, keyframe_manifest: tuple[str, str], key: str) -> tuple[dict, dict[str, int]]:
    """Objects of every output made from source ``key``, each checked to exist (clips: with
    their recorded size). Returns the clips manifest and the object count per output.

    Raises:
        dg.Failure: an output's manifest is missing, or an object it lists is missing or has
            the wrong size (the source is then kept).
    """
    clips = read_manifest(store, settings.mp4_bucket, settings.manifest_key(key, "clips"))
    frames = read_manifest(store, settings.mp4_bucket, settings.manifest_key(key, "frames"))
    kf_bucket, kf_key = keyframe_manifest
    keyframes = read_manifest(store, kf_bucket, kf_key)
    for name, manifest in (("mp4_clips", clips), ("labeling_frames", frames), ("key_frames", keyframes)):
        if manifest is None:
            raise dg.Failure(f"{key}: no committed {name} output; the source is kept")
    problems = [c["key"] for c in clips["clips"] if store.head(settings.mp4_bucket, c["key"]).size != c["size_bytes"]]
    problems += [k for k in frames["frame_keys"] if not store.exists(settings.labeling_bucket, k)]
    problems += [k for k in keyframes["keys"] if not store.exists(kf_bucket, k)]
    if problems:
        raise dg.Failure(f"{key}: {len(problems)} output object(s) missing or changed, e.g. {problems[:3]}; the source is kept")
    return clips, {"clips": len(clips["clips"]), "labeling_frames": len(frames["frame_keys"]), "key_frames": len(keyframes["keys"])}


@dg.asset(
    deps=[labeling_frames, dg.AssetKey("key_frames")],
    partitions_def=video_partitions,
    group_name="video",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def source_video_removal(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, video_settings: VideoConversionSettings,
                         keyframe_settings: KeyframeSettings) -> dg.MaterializeResult:
    """The last step of a video's run: with `source_removal=delete` (the original behaviour),
    remove the source AVI once every output made from it -- MP4 clips (sizes re-checked),
    labeling frames and key frames -- is committed and its objects verified in storage, and
    only if the source was not re-uploaded since its clips were made (same ETag). Runs only
    when all of those assets succeeded in the run; a killed or failed run leaves the source."""
    settings, store, key = video_settings, object_store.get_store(), context.partition_key
    src = keyframe_settings.source_for(key, settings.video_prefix)
    clips, counts = _verified_outputs(store, settings, (src.out_bucket, keyframe_manifest_key(src)), key)
    if settings.source_removal == "keep":
        status = "kept (source_removal=keep)"
    else:
        try:
            current = store.head(settings.source_bucket, key)
        except ObjectNotFoundError:
            current = None
        if current is None:
            status = "already removed"
        elif current.etag != clips["source"]["etag"]:
            status = "kept: re-uploaded after its clips were made"
            context.log.warning(f"{settings.source_bucket}/{key} changed since its clips were made; not deleting it")
        else:
            store.delete(settings.source_bucket, key)
            status = "deleted after verification"
    return dg.MaterializeResult(metadata={"source": f"{settings.source_bucket}/{key}", "source_status": status, **counts})
