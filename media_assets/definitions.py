"""The one Definitions object of the platform: every pipeline's defs plus shared resources.

Resources are built from environment variables when this module loads (see
``media_assets.storage.resource`` and ``media_assets.resources.env``), so the same code runs
on the embedded local store and on S3.
"""

from __future__ import annotations

import dagster as dg

from .defs.labels import defs as label_defs
from .defs.video import defs as video_defs
from .resources.labels import LabelCorrectionSettings
from .resources.env import resource_from_env
from .resources.video import VideoConversionSettings
from .storage import object_store_from_env


def build_resources() -> dict:
    """Resource instances configured from the current environment."""
    return {
        "object_store": object_store_from_env(),
        "video_settings": resource_from_env(VideoConversionSettings, "MEDIA_ASSETS_VIDEO_"),
        "label_settings": resource_from_env(LabelCorrectionSettings, "MEDIA_ASSETS_LABELS_"),
    }


def build_definitions() -> dg.Definitions:
    """All pipelines merged, with resources bound (re-reads the environment)."""
    return dg.Definitions.merge(video_defs, label_defs, dg.Definitions(resources=build_resources()))


defs = build_definitions()
