"""Label-correction pipeline: pickled training batches relabeled from a master embedding table."""

import dagster as dg

from ...resources.labels import label_tables_io_manager
from .assets import batch_verified, corrected_batches, label_targets, master_video_embeddings, training_batches, video_embedding_index
from .jobs import label_correction_job, video_embedding_index_job
from .partitions import batch_partitions
from .sensors import batch_sources_attention, new_batch_sensor

defs = dg.Definitions(
    assets=[master_video_embeddings, label_targets, training_batches, video_embedding_index, corrected_batches],
    asset_checks=[batch_verified, batch_sources_attention],
    jobs=[label_correction_job, video_embedding_index_job],
    sensors=[new_batch_sensor],
    # the IO manager of the index table (needs object_store and label_settings)
    resources={"label_tables": label_tables_io_manager},
)

__all__ = [
    "batch_partitions", "corrected_batches", "defs", "label_correction_job", "label_targets",
    "master_video_embeddings", "new_batch_sensor", "training_batches", "video_embedding_index",
    "video_embedding_index_job",
]
