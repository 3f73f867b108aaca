"""Source-sensor throughput: polling a prefix of N objects vs reading N S3 notifications from SQS.

    .venv/bin/python benchmarks/sensors.py [--objects 100000] [--ticks 3]

moto's S3/SQS server runs as its own process on 127.0.0.1; ``new_avi_sensor`` is evaluated the
way the daemon evaluates it (``media_assets.testing.harness.tick_sensor``: ``build_sensor_context`` +
``evaluate_tick`` on a SQLite instance, each tick's dynamic partitions added to it; the tick
records no asset event per object: each run observes its source). Printed, in one run:

  baseline  a raw ListObjectsV2 of the N objects (boto3 paginator): the floor of any polling tick
  polling   seconds per tick over N objects at the default cap of 1000 run requests per tick
            (first ``--ticks`` ticks) and the time to request all N at that cap (ticks x the
            measured mean); one uncapped tick requesting all N; one idle tick (nothing new)
  events    N notifications (the S3 -> SQS format): ticks until all are requested (each takes up
            to 1000 messages and deletes the previous tick's), seconds per tick, total sensor
            time, and the part of it spent in SQS calls
  SQS floor the same N notifications fed the same way, received 10 at a time and deleted with
            ``DeleteMessageBatch`` by boto3 alone: what moto's queue costs with no sensor
moto's ReceiveMessage scans every message of its queue on each call (its own TODO says so: with
10,000 queued a receive of 10 takes about a second), so the N notifications go through moto's
queue ``--feed`` (200) at a time, put in ahead of each tick (not counted as sensor time).
Targets (issue 13): a polling tick over 100,000 objects under 10 s; event mode requests
100,000 objects in under 10 minutes of sensor time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_assets.defs.video import defs as video_defs  # noqa: E402
from media_assets.defs.video import new_avi_sensor  # noqa: E402
from media_assets.resources.events import EventQueueResource  # noqa: E402
from media_assets.resources.embedder import ImageEmbedderResource  # noqa: E402
from media_assets.resources.keyframes import KeyframeSettings  # noqa: E402
from media_assets.resources.reconcile import ReconcileSettings  # noqa: E402
from media_assets.resources.video import VideoConversionSettings  # noqa: E402
from media_assets.storage import ObjectStoreResource  # noqa: E402
from media_assets.testing.harness import tick_sensor  # noqa: E402

SQS_SECONDS = [0.0]  # time spent in SQS calls (moto's server) during the event ticks


class TimedEventQueue(EventQueueResource):
    """The platform's queue resource, timing its SQS round trips."""

    def receive(self, queue_url, max_messages=None):
        t = time.perf_counter()
        try:
            return super().receive(queue_url, max_messages)
        finally:
            SQS_SECONDS[0] += time.perf_counter() - t

    def delete(self, queue_url, receipt_handles):
        t = time.perf_counter()
        try:
            return super().delete(queue_url, receipt_handles)
        finally:
            SQS_SECONDS[0] += time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tick(instance, cursor, resources):
    """One tick as the daemon runs it (evaluate, add its dynamic partitions)."""
    return tick_sensor(new_avi_sensor, instance, cursor, resources, video_defs)


def notification(key: str) -> str:
    return json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T08:00:00.000Z", "s3": {
        "bucket": {"name": "video-avi"},
        "object": {"key": key.replace(" ", "+"), "size": 1, "eTag": "9dd4e461268c8034f5c8564e155c67a6"}}}]})  # md5 of b"x"


def feed_queue(sqs, queue: str, batches: list[list[str]]) -> None:
    """Put one notification per key in ``queue``, a ``SendMessageBatch`` of up to 10 per batch, 16 at once."""
    def send(chunk: list[str]) -> None:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": notification(k)} for i, k in enumerate(chunk)])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(send, batches))


def run(endpoint: str, n: int, ticks: int, feed: int, skip_polling: bool, notifications: int) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="video-avi")
    keys = [f"incoming/{i // 1000:03d}/take {i:06d}.avi" for i in range(n)]
    store = ObjectStoreResource(backend="s3", endpoint_url=endpoint, region_name="us-east-1")
    base = {"object_store": store, "keyframe_settings": KeyframeSettings(), "image_embedder": ImageEmbedderResource(), "reconcile_settings": ReconcileSettings(interval_s=86400),
            "event_queue": TimedEventQueue(endpoint_url=endpoint, region_name="us-east-1")}
    if not skip_polling:
        polling(s3, keys, base, ticks)
    if notifications:
        events(sqs, [f"incoming/{i // 1000:03d}/take {i:06d}.avi" for i in range(notifications)], base, feed)


def polling(s3, keys: list[str], base: dict, ticks: int) -> None:
    n = len(keys)
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket="video-avi", Key=k, Body=b"x"), keys))
    print(f"setup: {n} objects put in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    listed = sum(len(page.get("Contents", [])) for page in s3.get_paginator("list_objects_v2").paginate(Bucket="video-avi"))
    list_s = time.perf_counter() - t
    print(f"baseline: raw ListObjectsV2 of the {listed} objects (boto3 paginator, moto): {list_s:.1f} s")

    with dg.instance_for_test() as instance:  # polling at the default cap
        resources = {**base, "video_settings": VideoConversionSettings()}
        cursor, times, requested = None, [], 0
        for _ in range(ticks):
            t = time.perf_counter()
            result = tick(instance, cursor, resources)
            times.append(time.perf_counter() - t)
            requested += len(result.run_requests)
            cursor = result.cursor
        cap = VideoConversionSettings().max_runs_per_tick
        mean, need = sum(times) / len(times), -(-n // cap)
        print(f"polling, cap {cap}/tick: ticks {', '.join(f'{x:.1f}' for x in times)} s over {n} objects ({requested} requested); "
              f"all {n}: {need} ticks x {mean:.1f} s = {need * mean:.0f} s of sensor time")
    with dg.instance_for_test() as instance:  # polling, uncapped, then idle
        resources = {**base, "video_settings": VideoConversionSettings(max_runs_per_tick=n)}
        t = time.perf_counter()
        result = tick(instance, None, resources)
        print(f"polling, uncapped: one tick {time.perf_counter() - t:.1f} s requested {len(result.run_requests)}")
        t = time.perf_counter()
        again = tick(instance, result.cursor, resources)
        idle = time.perf_counter() - t
        print(f"polling, idle tick over {n} objects: {idle:.1f} s, {len(again.run_requests)} requested; {idle / list_s:.2f}x the raw listing")



def events(sqs, keys: list[str], base: dict, feed: int) -> None:
    n = len(keys)
    queue = sqs.create_queue(QueueName="video-events", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    batches = [keys[i : i + 10] for i in range(0, n, 10)]
    fed, send_s = 0, 0.0
    with dg.instance_for_test() as instance:
        resources = {**base, "video_settings": VideoConversionSettings(events_queue_url=queue)}
        cursor, times, requested = None, [], 0
        while True:
            t = time.perf_counter()
            feed_queue(sqs, queue, batches[fed // 10 : (fed + feed) // 10])
            fed = min(n, fed + feed)
            send_s += time.perf_counter() - t
            t = time.perf_counter()
            result = tick(instance, cursor, resources)
            times.append(time.perf_counter() - t)
            requested += len(result.run_requests)
            cursor = result.cursor
            if not result.run_requests and fed >= n:
                break
    total = sum(times)
    print(f"events: {len(times)} ticks (the last deletes the previous tick's messages), {requested} requested; per tick mean "
          f"{sum(times[:-1]) / max(1, len(times) - 1):.2f} s, max {max(times):.2f} s; all {n}: {total:.0f} s of sensor time "
          f"(target < 600 s), of which {SQS_SECONDS[0]:.0f} s in SQS calls to moto ({10 * SQS_SECONDS[0] / n * 1000:.0f} ms per "
          f"10 messages received and deleted) and {total - SQS_SECONDS[0]:.0f} s in the sensor itself "
          f"({(total - SQS_SECONDS[0]) / n * 1000:.1f} ms per object: {(total - SQS_SECONDS[0]) / n * 100_000:.0f} s per 100,000); "
          f"feeding the queue {send_s:.0f} s (not counted)")
    sqs_floor(sqs, batches, feed)


def sqs_floor(sqs, batches: list[list[str]], feed: int) -> None:
    """Receive and delete the same notifications with boto3 alone, fed ``feed`` at a time."""
    queue = sqs.create_queue(QueueName="video-events-floor", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    n, spent = sum(len(b) for b in batches), 0.0
    for i in range(0, len(batches), feed // 10):
        feed_queue(sqs, queue, batches[i : i + feed // 10])
        t = time.perf_counter()
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
            sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(messages)])
        spent += time.perf_counter() - t
    print(f"SQS floor (boto3 alone, same feed): {n} received and deleted in {spent:.0f} s ({10 * spent / n * 1000:.0f} ms per 10): "
          f"{spent / n * 100_000:.0f} s per 100,000 on moto")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=100_000)
    p.add_argument("--ticks", type=int, default=3, help="polling ticks measured at the default cap")
    p.add_argument("--feed", type=int, default=200, help="notifications put in moto's queue ahead of each event tick")
    p.add_argument("--skip-polling", action="store_true")
    p.add_argument("--notifications", type=int, default=None, help="notifications for the event part (default: --objects; 0 skips it)")
    args = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        run(f"http://127.0.0.1:{port}", args.objects, args.ticks, args.feed, args.skip_polling,
            args.objects if args.notifications is None else args.notifications)
    finally:
        os.killpg(server.pid, 15)
        server.wait()


if __name__ == "__main__":
    main()
