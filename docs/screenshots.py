"""The README's screenshots: one per pipeline, taken from a running Dagster UI over a processed
demo (`make demo`, then `make ui` or `dagster-webserver -w media_assets/config/workspace.yaml`).

    .venv/bin/python docs/screenshots.py [--url http://127.0.0.1:3000]

Writes docs/ui-<pipeline>.png: the labeling frames kept and dropped, the key frames, the audio
dataset's preview table, the label correction's run totals.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from media_assets.testing.ui_browser import chromium, graphql, show_markdown  # noqa: E402

# (file, asset, partition, what to show)
SHOTS = [
    ("ui-video.png", "labeling_frames", "bigbuckbunny.avi", "markdown"),
    ("ui-keyframes.png", "key_frames", "bikes.avi", "markdown"),
    ("ui-audio.png", "audio_dataset", None, "page"),
    ("ui-labels.png", "corrected_batches", None, "events"),
]


def page_shot(base_url: str, path: str, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base_url + path, wait_until="networkidle", timeout=90_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out))
        browser.close()


def latest_partition(base_url: str, asset: str) -> str:
    """The partition of ``asset``'s latest materialization, from the webserver's GraphQL API."""
    query = "query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset { assetMaterializations(limit: 1) { partition } } } }"
    return graphql(base_url, query, {"k": {"path": [asset]}})["data"]["assetOrError"]["assetMaterializations"][0]["partition"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    args = parser.parse_args()
    for name, asset, partition, what in SHOTS:
        out = HERE / name
        if what == "markdown":
            show_markdown(args.url, asset, partition, label_index=0, screenshot=out)
        elif what == "page":
            day = urllib.parse.quote(latest_partition(args.url, asset))
            page_shot(args.url, f"/assets/{asset}?view=partitions&partition={day}", out)
        else:
            page_shot(args.url, f"/assets/{asset}?view=events", out)
        print(out)


if __name__ == "__main__":
    main()
