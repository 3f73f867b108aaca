"""Daily partitions (UTC) on the audio objects' LastModified; backfill any date range."""

import datetime as dt

import dagster as dg

from ...settings import AUDIO_START_DATE
from ...storage import ObjectInfo

# from MEDIA_ASSETS_AUDIO_START_DATE to tomorrow (end_offset=1: an object stamped just after
# midnight by a clock a little ahead still has its day)
audio_partitions = dg.DailyPartitionsDefinition(start_date=AUDIO_START_DATE, timezone="UTC", end_offset=1)


def audio_day(obj: ObjectInfo) -> str:
    """The partition key of ``obj``: its LastModified's UTC date, ``YYYY-MM-DD``."""
    return obj.last_modified.astimezone(dt.timezone.utc).date().isoformat()


def split_by_day_range(objects: list[ObjectInfo], now: dt.datetime | None = None) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
    """``(in range, out of range)``: objects whose day is one of ``audio_partitions``' days
    (``MEDIA_ASSETS_AUDIO_START_DATE`` to tomorrow, UTC), and the others (older than the start
    date, or stamped more than a day ahead). A run request for a day outside the range would
    fail the sensor's tick, and every tick after it."""
    last = ((now or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(days=1)).date().isoformat()
    inside: list[ObjectInfo] = []
    outside: list[ObjectInfo] = []
    for obj in objects:
        (inside if AUDIO_START_DATE <= audio_day(obj) <= last else outside).append(obj)
    return inside, outside
