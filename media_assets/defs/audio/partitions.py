"""Daily partitions (UTC) on the audio objects' LastModified; backfill any date range."""

import os

import dagster as dg

audio_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("MEDIA_ASSETS_AUDIO_START_DATE", "2020-01-01"), timezone="UTC", end_offset=1
)
