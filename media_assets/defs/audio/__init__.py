"""Audio pipeline: Whisper transcripts and int16 audio tokens in hive-partitioned Parquet."""

import dagster as dg

from ...resources.audio import audio_tables_io_manager
from .assets import audio_dataset, audio_objects, audio_tokens, transcripts
from .jobs import audio_job
from .partitions import audio_partitions
from .sensors import audio_sources_attention, new_audio_sensor

defs = dg.Definitions(
    assets=[audio_objects, transcripts, audio_tokens, audio_dataset],
    jobs=[audio_job],
    sensors=[new_audio_sensor],
    asset_checks=[audio_sources_attention],
    # the IO manager of the day's transcript and token tables (needs object_store and audio_settings)
    resources={"audio_tables": audio_tables_io_manager},
)

__all__ = ["audio_dataset", "audio_job", "audio_objects", "audio_partitions", "audio_tokens", "defs", "new_audio_sensor", "transcripts"]
