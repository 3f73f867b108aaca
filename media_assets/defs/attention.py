"""Every source sensor's ``no_source_needs_attention`` listing at once, for
``media-assets process``'s summary (the UI shows the same lists as check evaluations)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from .audio.sensors import audio_attention
from .keyframes.sensors import DIRECT_SOURCES
from .labels.sensors import batch_attention
from .reconcile import Attention
from .video.sensors import AVI_SOURCES


def sources_needing_attention(instance: dg.DagsterInstance, resources: Any) -> dict[str, list[Attention]]:
    """``{watched sources: attention items}`` for the AVI sources (``raw_videos``), the direct
    uploads (``video_uploads``), the audio objects (``audio_objects``) and the training batches
    (``training_batches``), each from a fresh listing; ``resources`` has the resources'
    attributes (``object_store``, the settings).

    A listing that fails (a watched bucket that does not exist, storage unreachable) is one
    item of kind ``"not listed"`` with the error: the summary says so rather than nothing.
    """
    out: dict[str, list[Attention]] = {}
    for where, attention in (("AVI sources", AVI_SOURCES.attention), ("direct uploads", DIRECT_SOURCES.attention),
                             ("audio objects", audio_attention), ("training batches", batch_attention)):
        try:
            out[where] = attention(instance, resources)
        except Exception as err:  # reported as an item: the summary must not hide an unreadable source
            out[where] = [Attention(where, "not listed", f"{type(err).__name__}: {err}")]
    return out
