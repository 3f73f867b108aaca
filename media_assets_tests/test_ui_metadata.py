"""What the Dagster UI shows, read the way the UI reads it: the demo processed by `media-assets
process` (all four pipelines), then `dagster-webserver` over the same instance and the
project's workspace; the webserver's GraphQL API asked for each asset's latest
materialization (and observations) with the type of every metadata entry, and headless
chromium (Playwright) on the `key_frames` partition page, where the thumbnails must load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from media_assets_tests.ui_browser import graphql, show_markdown

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

QUERY = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) { partition metadataEntries { __typename label } }
      assetObservations(limit: 1) { metadataEntries { __typename label } }
    }
  }
}"""

# asset -> (where, {label: GraphQL metadata entry type}) that a user looks at
EXPECTED = {
    "mp4_clips": ("materialization", {"clips": "TableMetadataEntry", "first_clip": "UrlMetadataEntry", "manifest": "UrlMetadataEntry",
                                      "clips_total_s": "FloatMetadataEntry", "clips_total_bytes": "IntMetadataEntry"}),
    "labeling_frames": ("materialization", {"frames": "MarkdownMetadataEntry", "frames_kept": "IntMetadataEntry"}),
    "keyframe_embeddings": ("materialization", {"path": "PathMetadataEntry", "hard_cuts": "IntMetadataEntry"}),
    "key_frames": ("materialization", {"key_frames": "MarkdownMetadataEntry", "frames_kept": "IntMetadataEntry"}),
    "audio_dataset": ("materialization", {"preview": "TableMetadataEntry", "rows_per_folder": "TableMetadataEntry", "rows": "IntMetadataEntry"}),
    "corrected_batches": ("observation", {"exact_matches": "IntMetadataEntry", "approximate_matches": "IntMetadataEntry",
                                          "unmatched": "IntMetadataEntry", "batches_per_s": "FloatMetadataEntry"}),
    "raw_videos": ("observation", {"size_bytes": "IntMetadataEntry"}),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_shows_each_pipelines_media_and_counts(tmp_path):
    env = {**os.environ, "MEDIA_ASSETS_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "MEDIA_ASSETS_STORAGE": "local"}
    env.pop("AWS_ENDPOINT_URL", None)
    exe = str(BIN / "media-assets")
    seeded = subprocess.run([exe, "seed"], env=env, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    done = subprocess.run([exe, "process"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    port = _port()
    log = open(tmp_path / "webserver.log", "wb")
    web = subprocess.Popen([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
                           cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        entries = {}
        deadline = time.monotonic() + 180
        for asset, (where, expected) in EXPECTED.items():
            while True:  # AssetNotFoundError until the webserver has loaded the code location
                try:
                    out = graphql(f"http://127.0.0.1:{port}", QUERY, {"key": {"path": [asset]}})["data"]["assetOrError"]
                except OSError:
                    out = None
                if out and out["__typename"] == "Asset" or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert out and out["__typename"] == "Asset", (asset, out, (tmp_path / "webserver.log").read_text()[-2000:])
            events = out["assetMaterializations" if where == "materialization" else "assetObservations"]
            assert events, f"no {where} of {asset}"
            entries[asset] = {e["label"]: e["__typename"] for e in events[0]["metadataEntries"]}
            for label, typename in expected.items():
                assert entries[asset].get(label) == typename, (asset, label, entries[asset])

        # the key-frame contact sheet, as a user opens it: every image decoded by the browser
        sizes = show_markdown(f"http://127.0.0.1:{port}", "key_frames", "bikes.avi")
        assert sizes and all(w > 0 and h > 0 for w, h in sizes), sizes
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
        log.close()
