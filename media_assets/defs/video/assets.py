"""Video conversion assets around the decode pass (`media_assets.defs.video.decode`): the
external source AVIs, and the removal of a source once every output made from it is verified.

Large media never pass through an IO manager: each asset writes its objects itself and
records them in a small JSON manifest in the MP4 bucket (``.manifests/<video>/...``), written
last. The manifest is the commit point: downstream assets read it, and a run that fails before
writing it removes what it uploaded, so a partial result is never visible as done.
"""

import dagster as dg

from ...resources.keyframes import KeyframeSettings, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...storage import ObjectInfo, ObjectNotFoundError, ObjectStoreResource
from ..common import TRANSIENT_RETRY, read_manifest
from .partitions import video_partitions

raw_videos = dg.AssetSpec(
    "raw_videos",
    description="Source AVI objects in the source bucket (external: uploaded by other systems). "
    "One dynamic partition per object key, added by `new_avi_sensor`; each run records the object it converts "
    "as a materialization of its partition (size, ETag, LastModified): a partition is filled once its object arrived.",
    partitions_def=video_partitions,
    kinds={"avi"},
    group_name="video",
)


def record_source(context: dg.AssetExecutionContext, obj: ObjectInfo) -> None:
    """Record the source object a run is about to convert as a materialization of the
    external asset ``raw_videos`` (the run's partition; metadata: ``object`` bucket/key,
    ``size_bytes``, ``etag``, ``last_modified`` ISO 8601): the object arrived, so the partition
    is filled in the UI (Dagster's way to report an external asset's update; an observation
    left it "Missing"). Made by the run rather than by ``new_avi_sensor``: one event write per
    object would cost the sensor ~15 ms each on SQLite (``benchmarks/sensors.py`` before the
    move), the largest share of its time at 100,000 objects, and the run records the exact
    version (ETag) it converts."""
    context.log_event(dg.AssetMaterialization(asset_key=raw_videos.key, partition=context.partition_key, metadata={
        "object": f"{obj.bucket}/{obj.key}", "size_bytes": dg.MetadataValue.int(obj.size), "etag": obj.etag,
        "last_modified": obj.last_modified.isoformat()}))


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
    # key_frame_vectors too: a vector-store outage keeps the source, like any missing output
    deps=[dg.AssetKey("labeling_frames"), dg.AssetKey("key_frames"), dg.AssetKey("key_frame_vectors")],
    partitions_def=video_partitions,
    group_name="video",
    retry_policy=TRANSIENT_RETRY,
)
def source_video_removal(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, video_settings: VideoConversionSettings,
                         keyframe_settings: KeyframeSettings) -> dg.MaterializeResult:
    """The last step of a video's run: with `source_removal=delete` (the original behaviour),
    remove the source AVI once every output made from it -- MP4 clips (sizes re-checked),
    labeling frames and key frames -- is committed and its objects verified in storage (and the
    key frames are in the corpus's vector table), and
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
