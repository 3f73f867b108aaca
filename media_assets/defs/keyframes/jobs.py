"""Jobs of the key-frame pipeline."""

import dagster as dg


keyframes_job = dg.define_asset_job(
    "keyframes",
    # keyframe_embeddings is an output of the video's decode pass (`video_decode`, subsettable):
    # selected alone it samples the direct upload or the converted video's clips
    selection=dg.AssetSelection.assets("keyframe_embeddings", "key_frames", "key_frame_vectors"),
    description="Sample, embed and select the key frames of one video (direct upload or converted clips), and store them in the corpus's vector table.",
)
