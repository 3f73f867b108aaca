"""The documentation a clone ships: the configuration reference matches the resources' fields,
every variable the package reads is documented, and no link leaves the repository except to
public documentation."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def test_configuration_doc_is_generated_from_the_fields():
    module = runpy.run_path(str(ROOT / "docs" / "configuration.py"), run_name="configuration")
    assert (ROOT / "docs" / "configuration.md").read_text() == module["render"](), \
        "docs/configuration.md is out of date: run .venv/bin/python docs/configuration.py"


def test_every_variable_the_package_reads_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    read = set()
    for path in (ROOT / "media_assets").rglob("*.py"):
        read |= set(re.findall(r"""environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", path.read_text()))
        read |= set(re.findall(r"""environ\[["']([A-Z][A-Z0-9_]+)["']\]""", path.read_text()))
        # every variable name the package spells out (settings.py reads them through a helper)
        read |= {n for n in re.findall(r"""["'](MEDIA_ASSETS_[A-Z0-9_]+)["']""", path.read_text()) if not n.endswith("_")}
    assert read, "found no environment reads: the pattern is stale"
    missing = sorted(name for name in read if name not in text)
    assert not missing, f"read by the package but not in docs/configuration.md: {missing}"


def test_links_stay_inside_the_repository():
    for doc in DOCS:
        assert doc.exists(), f"{doc.relative_to(ROOT)} is missing"
        text = doc.read_text()
        assert "closing note" not in text, f"{doc.name} points to notes no reader has"
        # every relative path a document names, as a link or in backticks, lies inside the clone
        linked = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
        quoted = re.findall(r"`(\.\./[^`\s]+)`", text)
        for target in linked + quoted:
            if target.startswith(("http://", "https://", "data:", "mailto:")):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{doc.relative_to(ROOT)} points outside the repository: {target}"
            assert target in quoted or path.exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"


def test_every_asset_has_the_retry_policy_the_docs_state():
    """docs/architecture.md: every materializable asset retries transient failures twice."""
    import dagster as dg

    from media_assets.defs.common import TRANSIENT_RETRY
    from media_assets.definitions import defs

    steps = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.is_executable]
    assert len(steps) >= 8
    for asset in steps:
        assert asset.op.retry_policy == TRANSIENT_RETRY, f"{asset.keys} has no TRANSIENT_RETRY"


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert sum(1 for line in lines[:12] if line.startswith(("make demo", "make test"))) == 2


def test_sensor_descriptions_are_plain_text():
    """The UI shows a sensor's description as plain text (no Markdown): no backticks or asterisks
    that would show raw, and each says what the sensor does in one or more sentences."""
    from media_assets.definitions import defs

    sensors = defs.get_repository_def().sensor_defs
    assert len(sensors) >= 6
    for sensor in sensors:
        if sensor.name.startswith("default_automation"):
            continue
        assert sensor.description and sensor.description.rstrip().endswith("."), sensor.name
        assert not re.search(r"[`*]", sensor.description), f"{sensor.name}: {sensor.description}"
