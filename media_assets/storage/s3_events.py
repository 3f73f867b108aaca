"""S3 ``ObjectCreated`` notifications as they arrive in an SQS queue, parsed.

Three envelopes reach a queue (AWS S3 user guide, "Event message structure" and "EventBridge
event message structure"):

* S3 -> SQS: ``{"Records": [{"eventName": "ObjectCreated:Put", "eventTime": ..., "s3": {"bucket":
  {"name": ...}, "object": {"key": <URL-encoded, spaces as '+'>, "size": ..., "eTag": ...}}}]}``;
  a new notification configuration first sends ``{"Event": "s3:TestEvent", ...}``.
* S3 -> SNS -> SQS: the same JSON as the ``Message`` string of ``{"Type": "Notification", ...}``.
* S3 -> EventBridge -> SQS: ``{"detail-type": "Object Created", "source": "aws.s3", "time": ...,
  "detail": {"bucket": {"name": ...}, "object": {"key": <not encoded>, "size": ..., "etag": ...}}}``.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from dataclasses import dataclass

from .object_store import ObjectInfo


class MalformedEventError(ValueError):
    """The message body is not a notification this module understands (not JSON, a missing
    bucket/key/ETag, an unknown envelope)."""


@dataclass(frozen=True)
class Notification:
    """One parsed message: ``objects`` created (possibly none: a removal, another event type),
    ``test`` for S3's ``s3:TestEvent``."""

    objects: list[ObjectInfo]
    test: bool = False


def _time(raw: str | None) -> dt.datetime:
    if not raw:
        raise MalformedEventError("event has no time")
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))


def _object(bucket: str | None, key: str | None, size, etag: str | None, when: str | None) -> ObjectInfo:
    if not bucket or not key or not etag:
        raise MalformedEventError(f"event lacks bucket, key or ETag (bucket={bucket!r}, key={key!r}, etag={etag!r})")
    return ObjectInfo(bucket=bucket, key=key, size=int(size or 0), etag=etag.strip('"'), last_modified=_time(when))


def parse_notification(body: str) -> Notification:
    """Parse one SQS message body (any of the three envelopes above).

    Keys of S3 notifications are URL-decoded (``+`` is a space, ``%2B`` a plus); EventBridge keys
    arrive decoded. ``last_modified`` of each object is the event time (S3 stamps
    LastModified when the upload *starts*; the event comes when it completes).

    Raises:
        MalformedEventError: the body is not JSON or not a notification.
    """
    try:
        msg = json.loads(body)
    except (TypeError, ValueError) as err:
        raise MalformedEventError(f"message body is not JSON: {body[:80]!r}") from err
    if not isinstance(msg, dict):
        raise MalformedEventError(f"message body is not a JSON object: {body[:80]!r}")
    if msg.get("Type") == "Notification" and isinstance(msg.get("Message"), str):
        return parse_notification(msg["Message"])
    if msg.get("Event") == "s3:TestEvent":
        return Notification([], test=True)
    try:
        if "Records" in msg:
            objects = []
            for record in msg["Records"]:
                if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                    continue
                s3 = record["s3"]
                key = urllib.parse.unquote_plus(s3["object"]["key"])
                objects.append(_object(s3["bucket"]["name"], key, s3["object"].get("size"), s3["object"].get("eTag"), record.get("eventTime")))
            return Notification(objects)
        if "detail-type" in msg and msg.get("source") == "aws.s3":
            if msg["detail-type"] != "Object Created":
                return Notification([])
            detail = msg["detail"]
            return Notification([_object(detail["bucket"]["name"], detail["object"]["key"], detail["object"].get("size"),
                                         detail["object"].get("etag") or detail["object"].get("eTag"), msg.get("time"))])
    except (KeyError, TypeError, AttributeError) as err:
        raise MalformedEventError(f"notification lacks {err}") from err
    raise MalformedEventError(f"not an S3 notification: {body[:80]!r}")
