"""Partitions of the video pipeline: one dynamic partition per source object key."""

import dagster as dg

video_partitions = dg.DynamicPartitionsDefinition(name="videos")
