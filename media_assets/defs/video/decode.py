"""``video_decode``: one ``@dg.multi_asset`` materializing ``mp4_clips``, ``labeling_frames`` and
``keyframe_embeddings`` of a video from one decode of its source.

With ``mp4_clips`` selected and the source present, one ffmpeg process decodes the source
once and feeds the encoder, the labeling-frame branch and the key-frame sample branch
(`media_assets.kernels.video_pass`). While it runs, each finished clip is uploaded, each run of
labeling frames is judged and its live frames uploaded, and samples are embedded. The three
outputs are then committed one after the other, each with its own manifest/table written last
(``mp4_clips`` first, so the lineage order holds). Selected alone (``can_subset``), an output
decodes only what it needs, from the verified clips (or the direct upload), as before.
"""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ...kernels.ffmpeg import FFmpegError
from ...kernels.keyframes import analysis_rate_for
from ...kernels.limits import LimitExceededError
from ...kernels.probe import MediaError, MediaInfo
from ...kernels.video_pass import ClipPlan, LabelingPlan, PassOutputs, SamplePlan, decode_once
from ...resources.embedder import ImageEmbedderResource
from ...resources.keyframes import KeyframeSettings
from ...resources.video import VideoConversionSettings
from ...scratch import scratch_dir
from ...storage import ObjectInfo, ObjectNotFoundError, ObjectStoreResource, UnsafeKeyError, check_key, safe_local_name
from ..common import TRANSIENT_RETRY, download_bounded_video, input_failure, object_error, read_manifest
from ..keyframes.embeddings import SampleEmbedder, commit_embeddings, sample_stored
from .assets import raw_videos, record_source
from .clips import CLIP_CHECK, ClipUploads, clips_result
from .labeling import DEAD_FRAME_CHECK, LabelingUploads, frames_from_clips
from .partitions import video_partitions

# skippable: a run whose source was deleted before it was processed makes none of the three
# outputs and skips the rest of the run, instead of failing (see _deleted_before_processing)
MP4_CLIPS = dg.AssetSpec(
    "mp4_clips", deps=[raw_videos], group_name="video", kinds={"ffmpeg", "mp4"}, skippable=True,
    description="H.264/AAC MP4 (+faststart) of one source video, in `video-mp4/<video>/`.\n\n"
    "Sources longer than `max_duration_s` (240 s) are cut into `clip_s` (120 s) clips in the same encode (forced "
    "keyframes + segment muxer). Each clip is uploaded as the encoder finishes it, then probed (streams, duration) and its stored size checked; "
    "the manifest is written last. The source is never touched here: `source_video_removal`, the last step of the "
    "run, removes it. Re-materializing after the source was removed reuses the verified clips and says so.",
)
LABELING_FRAMES = dg.AssetSpec(
    "labeling_frames", deps=[MP4_CLIPS], group_name="video", kinds={"ffmpeg", "jpeg"}, skippable=True,
    description="Every `every_n_frames`-th (10th) frame of the video as JPEG, minus dead frames (black, blank, frozen), "
    "in `unlabeled-images/<video>/<frame index>.jpg` (frame index = index in the source video).\n\n"
    "Cut from the same decode as the clips when both are materialized together; alone, from the verified clips on "
    "one frame grid across clip boundaries. Frames of an earlier materialization that are not in this one are "
    "removed after the manifest is written.",
)
KEYFRAME_EMBEDDINGS = dg.AssetSpec(
    # from the converted video's clips, or from a direct upload (`video_uploads`, defined with the key-frame pipeline)
    "keyframe_embeddings", deps=[MP4_CLIPS, "video_uploads"], group_name="keyframes", kinds={"ffmpeg", "onnx", "parquet"}, skippable=True,
    description="Samples at 1 FPS scaled to 1024x576 (ffmpeg `fps=1,scale=1024:576`), one embedding each.\n\n"
    "The same decode writes every frame as a 64x36 grey thumbnail, from which hard cuts and flashes are found. "
    "Writes the samples as JPEG to `<prefix>/samples/<stem>/<index>.jpg` and the table "
    "`<prefix>/embeddings/<stem>.parquet` (stored by the `keyframe_tables` IO manager after the samples: the commit "
    "point; `key_frames` loads it as its input) with columns `video` (str), "
    "`frame_index` (int64, 1 FPS sample index = seconds from the start), `timestamp_s` (float64), `dead` (str: "
    "black/blank, else null), `shot` (int32, +1 after each hard cut; null without shot analysis), `flash` (bool) "
    "and `embedding` (fixed_size_list<float32>[d], L2-normalised; d = 1280 local, 256/384/1024 Titan). Made by the "
    "clips' decode for a converted video; alone, from its clips or the direct upload.",
).with_io_manager_key("keyframe_tables")


@dg.multi_asset(
    name="video_decode",
    specs=[MP4_CLIPS, LABELING_FRAMES, KEYFRAME_EMBEDDINGS],
    check_specs=[
        dg.AssetCheckSpec(CLIP_CHECK, asset="mp4_clips", description="Clip durations add up to the source duration within `duration_tolerance_s`."),
        dg.AssetCheckSpec(DEAD_FRAME_CHECK, asset="labeling_frames", description="Re-decodes every uploaded JPEG: none is black, blank or frozen."),
    ],
    partitions_def=video_partitions,
    can_subset=True,
    pool="ffmpeg",
    retry_policy=TRANSIENT_RETRY,
)
def video_decode(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, video_settings: VideoConversionSettings,
                 keyframe_settings: KeyframeSettings, image_embedder: ImageEmbedderResource) -> Iterator[dg.MaterializeResult | dg.Output]:
    """Clips, labeling frames and key-frame embeddings of one video from one decode of its source
    (the embeddings table as a `dg.Output`, stored by the `keyframe_tables` IO manager)."""
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    checks = {c.name for c in context.selected_asset_check_keys}
    store, settings, ks, key = object_store.get_store(), video_settings, keyframe_settings, context.partition_key
    src = ks.source_for(key, settings.video_prefix)
    gone = _deleted_before_processing(store, settings, src, key, selected)
    if gone is not None:  # nothing to make, nothing failed: the outputs are skipped, so is the rest of the run
        context.log.warning(f"{gone} was deleted before it was processed: nothing to do (upload it again to process it)")
        context.log_event(dg.AssetObservation(
            asset_key=raw_videos.key if src.kind == "converted" else dg.AssetKey("video_uploads"),
            partition=key if src.kind == "converted" else None,
            metadata={"deleted_before_processing": gone}))
        return
    started = time.perf_counter()
    embed = SampleEmbedder(image_embedder, defer_errors=True)
    made = PassOutputs(None, None, None)
    with scratch_dir("video_decode") as tmp:
        tmp = Path(tmp)
        results = []
        # both upload sets are committed (or rolled back) before anything is yielded: Dagster
        # may leave this generator suspended at a yield, and only garbage collection closes it
        with LabelingUploads(context, store, settings, key) if "labeling_frames" in selected else contextlib.nullcontext() as labeling:
            if "mp4_clips" in selected:
                result, made = _clips(context, store, settings, ks, embed, tmp, labeling=labeling,
                                      sampling="keyframe_embeddings" in selected and src.kind == "converted", check=CLIP_CHECK in checks)
                results.append(result)
            if labeling is not None:
                if made.labeling is None:  # not made by this run's pass: sample the committed clips
                    for frames in frames_from_clips(store, settings, key, tmp):
                        labeling.add(frames)
                results.append(labeling.finish(check=DEAD_FRAME_CHECK in checks))
        yield from results
        if "keyframe_embeddings" in selected:
            if made.samples is not None:
                parts = [made.samples]
            else:
                embed = SampleEmbedder(image_embedder)
                parts = sample_stored(store, src, settings, ks, embed, tmp)
            yield from commit_embeddings(context, store, src, ks, parts, embed, started)


def _deleted_before_processing(store, settings: VideoConversionSettings, src, key: str, selected: set[str]) -> str | None:
    """``bucket/key`` of the partition's source when it no longer exists and nothing was ever
    made from it (a converted video with no committed clips; a direct upload with no
    embeddings table), else ``None``. Such a run materializes nothing and succeeds: the
    object was removed on purpose, not broken (the ``no_source_needs_attention`` check names
    it for information). An unsafe key is left to the asset's own input failure."""
    if src.kind == "converted":
        if "mp4_clips" not in selected or read_manifest(store, settings.mp4_bucket, settings.manifest_key(key, "clips")) is not None:
            return None
        bucket, obj = settings.source_bucket, key
    else:
        if "keyframe_embeddings" not in selected or store.exists(src.out_bucket, src.embeddings_key()):
            return None
        bucket, obj = src.bucket, src.key
    try:
        check_key(obj)
    except UnsafeKeyError:
        return None
    return None if store.exists(bucket, obj) else f"{bucket}/{obj}"


def _source(context: dg.AssetExecutionContext, store, settings: VideoConversionSettings, previous: dict | None) -> ObjectInfo | str:
    """The source object to transcode, or why its committed clips are reused instead (a note
    for the metadata): the source was removed after verification, or this run's earlier
    attempt committed them (a step retry does not encode again).

    Raises:
        dg.Failure: unsafe key, or no source and no clips ever made from it.
    """
    key, bucket = context.partition_key, settings.source_bucket
    try:
        check_key(key)
    except UnsafeKeyError as err:
        raise input_failure(str(err), source=f"{bucket}/{key}") from err
    try:
        source = store.head(bucket, key)
    except ObjectNotFoundError:
        if previous is None:
            raise input_failure(f"source object {bucket}/{key} does not exist and no clips were ever produced from it", source=f"{bucket}/{key}") from None
        context.log.warning(f"{bucket}/{key} is gone (removed after its clips were verified on {previous['created_at']}); "
                            "reusing the verified clips. Upload the source again to re-transcode.")
        return "source removed after verification; existing verified clips reused"
    if previous is not None and previous.get("run_id") == context.run.run_id and previous["source"]["etag"] == source.etag:
        return "committed by an earlier attempt of this run; reused"
    record_source(context, source)
    return source


def _clips(context: dg.AssetExecutionContext, store, settings: VideoConversionSettings, ks: KeyframeSettings, embed: SampleEmbedder,
           tmp: Path, *, labeling: LabelingUploads | None, sampling: bool, check: bool) -> tuple[dg.MaterializeResult, PassOutputs]:
    """Transcode the source and commit the clips: ``(mp4_clips result, what the pass made)``.
    Each clip is uploaded as the encoder finishes it; with ``labeling``, the same decode feeds
    it the labeling frames as they are written, and with ``sampling`` the key-frame samples go
    to ``embed``, so uploads and embeddings overlap the encode."""
    previous = read_manifest(store, settings.mp4_bucket, settings.manifest_key(context.partition_key, "clips"))
    source = _source(context, store, settings, previous)
    if isinstance(source, str):
        return clips_result(previous, settings, store, check=check, note=source), PassOutputs(None, None, None)
    started = time.perf_counter()
    name = f"{source.bucket}/{source.key}"
    local = tmp / safe_local_name(source.key, ".avi")
    try:
        local, info = download_bounded_video(store, source.bucket, source.key, local, settings.limits(), size_bytes=source.size)
    except LimitExceededError as err:
        raise input_failure(f"{err}. The source object is kept.", source=name, error=type(err).__name__) from err
    except MediaError as err:
        raise input_failure(f"{object_error(name, err, local)}. The source object is kept.", source=name, error=type(err).__name__) from err
    with ClipUploads(context, store, settings, source.key, previous) as clips:
        try:
            made = decode_once(local, tmp / "pass", info,
                               clips=ClipPlan(stem=Path(settings.video_prefix(source.key)).name or "video", max_duration_s=settings.max_duration_s,
                                              clip_s=settings.clip_s, settings=settings.encode_settings(), on_clip=clips.add),
                               labeling=LabelingPlan(every_n=settings.every_n_frames, on_batch=labeling.add) if labeling else None,
                               samples=_sample_plan(ks, info, embed) if sampling else None,
                               timeout_s=settings.ffmpeg_time_limit_s(info))
        except (MediaError, FFmpegError) as err:
            raise input_failure(f"{object_error(name, err, local)}. The source object is kept.", source=name, error=type(err).__name__,
                                ffmpeg_log=getattr(err, "stderr_tail", "")) from err
        pass_s = time.perf_counter() - started
        local.unlink()
        manifest = clips.commit(source, info, made.clips)
    outputs = "+".join(["clips", *(["labeling frames"] if labeling else []), *(["key-frame samples"] if sampling else [])])
    return clips_result(manifest, settings, store, check=check, decode_pass=outputs, decode_pass_s=round(pass_s, 3),
                        wall_s=round(time.perf_counter() - started, 3)), made


def _sample_plan(ks: KeyframeSettings, info: MediaInfo, embed: SampleEmbedder) -> SamplePlan:
    rate = analysis_rate_for(info.video.frame_rate if info.video else None, ks.fps) if ks.shot_analysis else None
    return SamplePlan(fps=ks.fps, width=ks.width, height=ks.height, analysis_rate=rate, on_batch=embed,
                      batch_size=embed.embedder.batch_size)
