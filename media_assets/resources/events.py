"""The SQS client the source sensors read S3 notifications from (event mode)."""

from __future__ import annotations

from dataclasses import dataclass

import concurrent.futures

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
        concurrency: ReceiveMessage / DeleteMessageBatch calls in flight at once (each moves
            at most 10 messages, so one tick's round trips overlap).
    """

    visibility_timeout_s: int = 300
    max_messages_per_tick: int = 1000
    concurrency: int = 8

    _client = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            session = boto3.session.Session(profile_name=self.profile_name, aws_access_key_id=self.aws_access_key_id,
                                            aws_secret_access_key=self.aws_secret_access_key, aws_session_token=self.aws_session_token)
            self._client = session.client("sqs", region_name=self.region_name, endpoint_url=self.endpoint_url, use_ssl=self.use_ssl,
                                          verify=self.verify, config=botocore.config.Config(retries={"mode": "standard", "max_attempts": self.max_attempts}))
        return self._client

    def _receive_batch(self, queue_url: str, count: int) -> list[QueueMessage]:
        reply = self.client().receive_message(QueueUrl=queue_url, MaxNumberOfMessages=count, VisibilityTimeout=self.visibility_timeout_s,
                                              WaitTimeSeconds=0, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        return [QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""), int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
                for m in reply.get("Messages", [])]

    def receive(self, queue_url: str, max_messages: int | None = None) -> list[QueueMessage]:
        """Up to ``max_messages`` (default ``max_messages_per_tick``) visible messages, short
        polling: rounds of ``concurrency`` calls of up to 10 each, until the limit or a call
        that finds the queue empty.

        Raises:
            botocore.exceptions.ClientError: the queue does not exist or is not readable.
        """
        limit = self.max_messages_per_tick if max_messages is None else max_messages
        out: list[QueueMessage] = []
        self.client()  # made once, before the threads share it (boto3 clients are thread-safe)
        with concurrent.futures.ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            while len(out) < limit:
                want = limit - len(out)
                counts = [min(SQS_BATCH, want - i * SQS_BATCH) for i in range(min(self.concurrency, -(-want // SQS_BATCH)))]
                batches = list(pool.map(lambda c: self._receive_batch(queue_url, c), counts))
                for batch in batches:
                    out += batch
                if any(not b for b in batches):
                    break
        return out  # a round never asks for more than the limit

    def delete(self, queue_url: str, receipt_handles: list[str]) -> list[str]:
        """Delete messages by receipt handle (10 per call, ``concurrency`` calls at once);
        returns the handles SQS refused (already deleted, expired): those messages come back
        and are requested again under the same run key, which Dagster deduplicates."""
        chunks = [receipt_handles[i : i + SQS_BATCH] for i in range(0, len(receipt_handles), SQS_BATCH)]
        self.client()

        def delete_chunk(chunk: list[str]) -> list[str]:
            reply = self.client().delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(chunk)])
            return [chunk[int(f["Id"])] for f in reply.get("Failed", [])]

        with concurrent.futures.ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            return [h for failed in pool.map(delete_chunk, chunks) for h in failed]
