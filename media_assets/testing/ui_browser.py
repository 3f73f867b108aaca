"""Looking at the Dagster UI the way it and its user do: the webserver's GraphQL API, and
Debian's chromium driven by Playwright (no browser download: ``executable_path``) to an asset
partition's page, its markdown metadata opened ("Show Markdown"), and the inline images it
shows measured. Used by the UI and production-topology tests and by ``docs/screenshots.py``."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


def graphql(base_url: str, query: str, variables: dict) -> dict:
    """POST ``query`` with ``variables`` to the webserver at ``base_url``; the decoded answer.

    Raises:
        OSError: the webserver cannot be reached (not up yet, or gone).
    """
    req = urllib.request.Request(f"{base_url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def chromium() -> str:
    """Path of the chromium executable (Debian's ``chromium``, installed by ``make system-deps``).

    Raises:
        FileNotFoundError: no chromium on PATH.
    """
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise FileNotFoundError("chromium is not installed: make system-deps (apt-get install chromium)")
    return path


def show_markdown(base_url: str, asset: str, partition: str | None, label_index: int = -1,
                  screenshot: Path | None = None) -> list[tuple[int, int]]:
    """Open ``asset``'s page (at ``partition``), click its ``label_index``-th "[Show Markdown]"
    link, wait until the dialog's inline JPEGs have loaded; return each one's natural
    ``(width, height)`` in px (0 for an image the browser could not decode), after saving a
    screenshot if asked."""
    query = {"view": "partitions", "partition": partition} if partition else {}
    url = f"{base_url}/assets/{asset}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="networkidle", timeout=90_000)
            page.get_by_text("[Show Markdown]").nth(label_index).click()
            images = "img[src^='data:image/jpeg']"
            page.locator(images).first.wait_for(state="visible", timeout=30_000)
            page.wait_for_function(f"() => [...document.querySelectorAll(\"{images}\")].every(i => i.complete)", timeout=30_000)
            sizes = page.eval_on_selector_all(images, "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            return [tuple(s) for s in sizes]
        finally:
            browser.close()


def page_text(base_url: str, path: str, wait_for: str) -> str:
    """The visible text of the UI page at ``path`` once ``wait_for`` (a text) is shown."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base_url + path, wait_until="networkidle", timeout=90_000)
            page.get_by_text(wait_for).first.wait_for(state="visible", timeout=30_000)
            return page.inner_text("body")
        finally:
            browser.close()
