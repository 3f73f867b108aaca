"""Settings of the sensors' reconciliation pass (see :mod:`media_assets.defs.reconcile`)."""

import dagster as dg


class ReconcileSettings(dg.ConfigurableResource):
    """How often the source sensors look for stranded sources, and how they re-request them;
    every field can be set from the environment as ``MEDIA_ASSETS_RECONCILE_<FIELD>``.

    Attributes:
        interval_s: seconds between two reconciliation passes of one sensor (each lists the
            watched prefix and reads the partitions' status and latest runs); ``0`` = every tick.
        retry_delay_s: seconds after a run failed for a non-input reason before its source is
            requested again; the n-th re-request waits ``retry_delay_s * 2**(n-1)``.
        max_rerequests: re-requests per source (per upload, i.e. per ETag) before the sensor
            gives up on it with one warning. Re-uploading the object starts over.
        retry_failed_before: epoch seconds (``0``: never). A reconciliation pass is due at the
            first tick after it, and a source whose run failed for a non-input reason before it
            is requested again at once, without waiting out ``retry_delay_s`` (the re-request
            still counts against ``max_rerequests``). ``media-assets process`` sets it to the
            pass's start for the daemon it starts: a pass run after an outage, a full disk or a
            missing bucket was fixed retries what failed, not five minutes later.
    """

    interval_s: float = 300.0
    retry_delay_s: float = 300.0
    max_rerequests: int = 5
    retry_failed_before: float = 0.0
