"""``key_frame_vectors``: every key frame of the corpus with its embedding, in one vector table
(LanceDB, `media_assets.storage.vectors`), and the key frames that repeat another video's."""

import dagster as dg
import numpy as np
import pyarrow as pa

from ...resources.embedder import ImageEmbedderResource
from ...resources.keyframes import KeyframeSettings, keyframe_manifest_key
from ...resources.video import VideoConversionSettings
from ...storage import ObjectStoreResource
from ...storage.vectors import rows
from ..common import TRANSIENT_RETRY, input_failure, read_manifest
from ..video.partitions import video_partitions
from .assets import MAX_LISTED, embedding_matrix, key_frames

DUPLICATE_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("timestamp_s", "float", description="the key frame of this video, seconds"),
    dg.TableColumn("other_video", "string", description="the video whose key frame it repeats"),
    dg.TableColumn("other_timestamp_s", "float", description="that key frame, seconds"),
    dg.TableColumn("similarity", "float", description="cosine similarity of the two embeddings"),
])


@dg.asset(
    ins={"keyframe_embeddings": dg.AssetIn()},  # loaded by the keyframe_tables IO manager
    deps=[key_frames],
    partitions_def=video_partitions,
    group_name="keyframes",
    kinds={"lancedb"},
    retry_policy=TRANSIENT_RETRY,
)
def key_frame_vectors(context: dg.AssetExecutionContext, keyframe_embeddings: pa.Table, object_store: ObjectStoreResource,
                      keyframe_settings: KeyframeSettings, video_settings: VideoConversionSettings,
                      image_embedder: ImageEmbedderResource) -> dg.MaterializeResult:
    """The video's key frames (those of its `key_frames` manifest) in the corpus's vector table
    at `<output_bucket>/<vectors_prefix>` (LanceDB): id, video, frame index, timestamp (s),
    JPEG URI, the key frame it repeats within the video, and the embedding
    (`fixed_size_list<float32>[d]`, L2-normalised). A video's rows are replaced in one commit, so
    a re-upload replaces them exactly and a killed run leaves the previous ones.

    Each key frame is then looked up among *other* videos' key frames: one whose cosine
    similarity is at least `repeat_threshold` (default: the selection threshold) is named as a
    duplicate across videos (`duplicate_list`: this frame repeats video X at t s), so the same
    footage uploaded twice, or two cuts of one film, is seen. `media-assets similar` queries the
    same table.
    """
    ks, store = keyframe_settings, object_store.get_store()
    src = ks.source_for(context.partition_key, video_settings.video_prefix)
    manifest = read_manifest(store, src.out_bucket, keyframe_manifest_key(src))
    if manifest is None:
        raise input_failure(f"{src.key}: no key_frames manifest; materialize key_frames for partition {context.partition_key} first")
    indices = keyframe_embeddings["frame_index"].to_pylist()
    emb = embedding_matrix(keyframe_embeddings)
    position = {int(i): n for n, i in enumerate(indices)}
    kept = [int(i) for i in manifest["frame_indices"]]
    vectors = emb[[position[i] for i in kept]] if kept else np.zeros((0, emb.shape[1]), np.float32)
    table = rows(context.partition_key, kept, [i / ks.fps for i in kept], [store.uri(src.out_bucket, k) for k in manifest["keys"]],
                 manifest.get("repeat_of") or [None] * len(kept), vectors)
    if not store.bucket_exists(ks.output_bucket):
        raise input_failure(f"bucket {ks.output_bucket} of the key-frame vector table does not exist (MEDIA_ASSETS_KEYFRAMES_OUTPUT_BUCKET)")
    corpus = object_store.vector_store(ks.output_bucket, ks.vectors_prefix)
    corpus.replace_video(context.partition_key, table)
    index = corpus.maintain()

    _, threshold = ks.thresholds(image_embedder.default_threshold())
    duplicates = []
    for i, nearest in zip(kept, corpus.nearest_each(vectors, k=1, exclude_video=context.partition_key)):
        for other in nearest:
            if other.similarity >= threshold:
                duplicates.append(dg.TableRecord({"timestamp_s": round(i / ks.fps, 3), "other_video": other.video,
                                                  "other_timestamp_s": other.timestamp_s, "similarity": round(other.similarity, 4)}))
    if duplicates:
        videos = sorted({d.data["other_video"] for d in duplicates})
        context.log.warning(f"{len(duplicates)} of {len(kept)} key frames of {context.partition_key} repeat other videos: {', '.join(videos[:10])}")
    return dg.MaterializeResult(metadata={
        "key_frames_stored": len(kept),
        "duplicates_across_videos": len(duplicates),
        "duplicate_list": dg.MetadataValue.table(duplicates[:MAX_LISTED], schema=DUPLICATE_TABLE),
        "threshold": threshold,
        "table_rows": corpus.count(),
        "table_videos": corpus.videos(),
        "table_uri": dg.MetadataValue.path(corpus.uri),
        "search": index,
    })
