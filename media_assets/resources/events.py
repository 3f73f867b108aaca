"""The SQS client the source sensors read S3 notifications from (event mode)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
import botocore.config
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import PrivateAttr

SQS_BATCH = 10  # ReceiveMessage / DeleteMessageBatch take at most 10 messages


@dataclass(frozen=True)
class QueueMessage:
    """One received message: ``receive_count`` is SQS's ApproximateReceiveCount (1 the first
    time it is delivered)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class EventQueueResource(ResourceWithBoto3Configuration):
    """SQS for the sensors' event mode; every field can be set from the environment as
    ``MEDIA_ASSETS_EVENTS_<FIELD>`` (the queue of each sensor is its pipeline's
    ``events_queue_url``, e.g. ``MEDIA_ASSETS_VIDEO_EVENTS_QUEUE_URL``). Boto3 fields
    (``region_name``, ``endpoint_url``, ``max_attempts``, ...) as dagster-aws's.

    Attributes:
        visibility_timeout_s: seconds a received message stays hidden. A sensor deletes the
            messages of one tick at the start of its next tick (after Dagster has recorded the
            tick's run requests and cursor), so this must exceed the sensor interval (30 s)
            plus a tick's duration; a message whose tick was lost comes back after it.
        max_messages_per_tick: messages one tick takes at most (receipt handles wait in the
            cursor until the next tick deletes them).
    """

    visibility_timeout_s: int = 300
    max_messages_per_tick: int = 1000

    _client = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            session = boto3.session.Session(profile_name=self.profile_name, aws_access_key_id=self.aws_access_key_id,
                                            aws_secret_access_key=self.aws_secret_access_key, aws_session_token=self.aws_session_token)
            self._client = session.client("sqs", region_name=self.region_name, endpoint_url=self.endpoint_url, use_ssl=self.use_ssl,
                                          verify=self.verify, config=botocore.config.Config(retries={"mode": "standard", "max_attempts": self.max_attempts}))
        return self._client

    def receive(self, queue_url: str, max_messages: int | None = None) -> list[QueueMessage]:
        """Up to ``max_messages`` (default ``max_messages_per_tick``) visible messages, short
        polling, 10 per call until the queue answers none.

        Raises:
            botocore.exceptions.ClientError: the queue does not exist or is not readable.
        """
        limit = self.max_messages_per_tick if max_messages is None else max_messages
        out: list[QueueMessage] = []
        while len(out) < limit:
            reply = self.client().receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(SQS_BATCH, limit - len(out)),
                                                  VisibilityTimeout=self.visibility_timeout_s, WaitTimeSeconds=0,
                                                  MessageSystemAttributeNames=["ApproximateReceiveCount"])
            messages = reply.get("Messages", [])
            if not messages:
                break
            out += [QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""), int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
                    for m in messages]
        return out

    def delete(self, queue_url: str, receipt_handles: list[str]) -> list[str]:
        """Delete messages by receipt handle (10 per call); returns the handles SQS refused
        (already deleted, expired): those messages come back and are requested again under
        the same run key, which Dagster deduplicates."""
        failed: list[str] = []
        for i in range(0, len(receipt_handles), SQS_BATCH):
            chunk = receipt_handles[i : i + SQS_BATCH]
            reply = self.client().delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(chunk)])
            failed += [chunk[int(f["Id"])] for f in reply.get("Failed", [])]
        return failed
