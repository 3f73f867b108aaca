"""Settings read once, when the code location loads: the ones Dagster needs while it builds the
definitions (sensor intervals, partition definitions, backfill policies), before any resource
exists. Every other setting is a resource field (docs/configuration.md).

Each is an environment variable; a bad value fails the load with its name.
"""

from __future__ import annotations

import datetime as dt
import os


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value}: must be at least {minimum}")
    return value


def _date(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    try:
        dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a date YYYY-MM-DD") from None
    return raw


# seconds between two ticks of each sensor (Dagster's minimum_interval_seconds): how soon a new
# object is seen in polling mode, and the longest `media-assets process` waits after its last run
# for the sensors to confirm that nothing is pending. A tick lists the watched prefix (one
# ListObjectsV2 walk): at 15 s, four sensors make ~23,000 LIST requests a day on S3.
SENSOR_INTERVAL_S = _int("MEDIA_ASSETS_SENSOR_INTERVAL_S", 15)

# first day (UTC) of the audio pipeline's daily partitions: where the data starts (the
# platform's first year by default). Objects on earlier days are named in a warning of
# new_audio_sensor's tick and not processed: set it back to process them.
AUDIO_START_DATE = _date("MEDIA_ASSETS_AUDIO_START_DATE", "2026-01-01")

# batches per run of a label backfill (BackfillPolicy.multi_run) and per sensor range
LABELS_PARTITIONS_PER_RUN = _int("MEDIA_ASSETS_LABELS_PARTITIONS_PER_RUN", 500)
