"""Partitions of the label-correction pipeline: one dynamic partition per batch object key."""

import dagster as dg

batch_partitions = dg.DynamicPartitionsDefinition(name="training_batches")
