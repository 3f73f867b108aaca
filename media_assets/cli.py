"""The ``media-assets`` command line: headless processing and the demo.

``media-assets process``  tick every sensor, add partitions, run everything pending, print a
                          summary; exit status 1 if any run failed.
``media-assets demo``     put sample videos into the source bucket, then ``process``.
``media-assets seed``     only put the sample videos into the source bucket.
``media-assets convert-whisper OUT``  openai-whisper checkpoint from the bundled CTranslate2 model.

The Dagster instance is the one in ``DAGSTER_HOME`` (default ``./.dagster``, created with
telemetry off when missing); storage follows ``MEDIA_ASSETS_*``/``AWS_*`` variables.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import click
from tabulate import tabulate

from .instance_storage import STORAGE_CONFIG_YAML

DEFAULT_DAGSTER_YAML = """\
# Local instance: SQLite run/event storage under DAGSTER_HOME, asset events written in
# batches (media_assets/instance_storage.py). The project's dagster.yaml has the same storage.
""" + STORAGE_CONFIG_YAML + """\
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Set ``DAGSTER_HOME`` (default ``./.dagster``) and give it a ``dagster.yaml`` if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").absolute()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DEFAULT_DAGSTER_YAML)
    return home


def _summary_rows(outcomes) -> list[list]:
    rows = []
    for o in outcomes:
        clips = o.materializations.get("mp4_clips", {})
        frames = o.materializations.get("labeling_frames", {})
        keys = o.materializations.get("key_frames", {})
        audio = o.materializations.get("audio_dataset", {})
        batches = o.counts.get("corrected_batches", 0)
        rows.append([
            o.partition, o.job, "ok" if o.success else "FAILED",
            clips.get("n_clips", ""), frames.get("frames_kept", ""), frames.get("frames_dropped", ""), keys.get("frames_kept", ""),
            audio.get("rows", "") or (batches or ""), f"{o.seconds:.1f}", "" if o.success else (o.error or "")[:100],
        ])
    return rows


def run_process(sensors: tuple[str, ...] = ()) -> int:
    """Body of ``media-assets process``; returns the exit status."""
    home = ensure_dagster_home()
    import dagster as dg

    from .definitions import build_definitions
    from .headless import process_pending

    defs = build_definitions()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        outcomes = process_pending(
            defs, instance, sensor_names=list(sensors) or None,
            on_outcome=lambda o: click.echo(f"{'ok    ' if o.success else 'FAILED'} {o.job} [{o.partition}] {o.seconds:.1f} s" + ("" if o.success else f": {o.error}")),
        )
    headers = ["partition", "job", "status", "clips", "frames kept", "frames dropped", "key frames", "rows/batches", "seconds", "error"]
    click.echo(tabulate(_summary_rows(outcomes), headers=headers) if outcomes else "nothing pending")
    failed = sum(not o.success for o in outcomes)
    click.echo(f"{len(outcomes)} runs, {failed} failed, {time.perf_counter() - started:.1f} s total (DAGSTER_HOME={home})")
    return 1 if failed else 0


@click.group()
def main() -> None:
    """media_assets: raw media in object storage -> training data."""
    import dagster as dg

    # the APIs used on purpose (partitioned checks, backfill policies) announce their status
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)


@main.command()
@click.option("--sensor", "sensors", multiple=True, help="Only tick these sensors (repeatable).")
def process(sensors: tuple[str, ...]) -> None:
    """Process everything pending, once, and print a summary."""
    sys.exit(run_process(sensors))


@main.command()
def seed() -> None:
    """Put the sample videos into the source bucket."""
    from .definitions import build_resources
    from .samples import seed_samples

    res = build_resources()
    keys = seed_samples(res["object_store"].get_store(), res["video_settings"].source_bucket)
    click.echo(f"seeded {len(keys)} videos into {res['video_settings'].source_bucket}: {', '.join(keys)}")


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Seed sample media, then process everything pending."""
    ctx.invoke(seed)
    sys.exit(run_process(()))


@main.command("convert-whisper")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--model-dir", default=None, help="CTranslate2 Whisper folder (default: the bundled tiny.en).")
def convert_whisper(out: str, model_dir: str | None) -> None:
    """Write an openai-whisper checkpoint converted from a CTranslate2 Whisper model."""
    from .kernels.asr import default_model_path
    from .kernels.whisper_convert import convert_ct2_to_openai_whisper

    path = convert_ct2_to_openai_whisper(model_dir or default_model_path(), out)
    click.echo(f"wrote {path}; use it with MEDIA_ASSETS_ASR_BACKEND=openai-whisper MEDIA_ASSETS_ASR_MODEL={path}")


if __name__ == "__main__":
    main()
