"""Jobs of the audio pipeline."""

import dagster as dg

from .assets import audio_dataset, audio_tokens, transcripts

audio_job = dg.define_asset_job(
    "audio",
    selection=dg.AssetSelection.assets(transcripts, audio_tokens, audio_dataset),
    description="Transcribe and tokenize one day of audio objects and write its hive-partitioned Parquet.",
)
