"""Daily partitions (UTC) on the audio objects' LastModified; backfill any date range."""

import dagster as dg

from ...settings import AUDIO_START_DATE

audio_partitions = dg.DailyPartitionsDefinition(start_date=AUDIO_START_DATE, timezone="UTC", end_offset=1)
