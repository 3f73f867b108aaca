"""The ``media-assets`` command line.

``media-assets process``  one pass of Dagster's daemon over everything pending (sensors, the
                          run queue, run retries; see ``media_assets.process``), one line per
                          run, then a summary per pipeline; exit status 1 if a run failed for
                          good, a sensor could not tick, or an asset check of ERROR severity
                          failed (e.g. speech lost in transcripts: the data landed, flagged).
``media-assets demo``     put sample media for every pipeline into the local store, then ``process``.
``media-assets seed``     only put the sample media in place.
``media-assets models``    prepare and load every offline model (the image's build runs it).
``media-assets convert-whisper OUT``  openai-whisper checkpoint from the bundled CTranslate2 model.
``media-assets similar IMAGE_OR_KEY``  the stored key frames nearest an image file or a stored
                          object (``bucket/key`` or ``s3://bucket/key``), from the corpus's
                          key-frame vector table (``key_frame_vectors``).

An instance database that cannot be reached (Postgres down, wrong credentials) is one line on
stderr and exit status 2.

The Dagster instance is the one in ``DAGSTER_HOME`` (default ``./.dagster``, created from the
project's ``dagster.yaml`` when missing); storage follows ``MEDIA_ASSETS_*``/``AWS_*`` variables.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import warnings

import click
from tabulate import tabulate

from .instance_config import ensure_dagster_home, storage_unreachable

PIPELINES = {  # job -> (section title, columns: header -> (asset, metadata key or "#" for the count))
    "video_conversion": ("Video conversion", {"clips": ("mp4_clips", "n_clips"), "frames kept": ("labeling_frames", "frames_kept"),
                                              "frames dropped": ("labeling_frames", "frames_dropped"), "key frames": ("key_frames", "frames_kept")}),
    "keyframes": ("Key frames", {"key frames": ("key_frames", "frames_kept")}),
    "audio": ("Audio", {"rows": ("audio_dataset", "rows"), "files": ("audio_dataset", "files")}),
    "label_correction": ("Label correction", {"batches corrected": ("corrected_batches", "#")}),
}


def _cell(run, asset: str, key: str):
    if key == "#":
        return run.counts.get(asset, "")
    return run.materializations.get(asset, {}).get(key, "")


ERROR_CELL_CHARS = 100  # a table's error cell; the full message is in the run's log and the UI


def _cut(error: str | None) -> str:
    """``error`` on one line, cut at a word boundary to ``ERROR_CELL_CHARS`` with `` …``."""
    return textwrap.shorten(error, ERROR_CELL_CHARS, placeholder=" …") if error else ""


def summary(result, attention: dict | None = None) -> str:
    """The pass as text: a table per pipeline, then failures, sensor errors, the sources that
    need attention (``attention``: :func:`media_assets.defs.attention.sources_needing_attention`,
    from every pass, not only this one), totals."""
    parts = []
    for job, (title, columns) in PIPELINES.items():
        runs = [r for r in result.runs if r.job == job]
        if runs:
            rows = [[r.partition, r.status.lower(), *(_cell(r, a, k) for a, k in columns.values()), f"{r.seconds:.1f}",
                     _cut(r.error)] for r in runs]
            parts.append(f"{title}\n" + tabulate(rows, headers=["partition", "status", *columns, "seconds", "error"]))
    other = [r for r in result.runs if r.job not in PIPELINES]
    if other:
        parts.append("Other runs\n" + tabulate([[r.job, r.partition, r.status.lower(), f"{r.seconds:.1f}"] for r in other],
                                              headers=["job", "partition", "status", "seconds"]))
    if not result.runs:
        parts.append("nothing pending")
    for line in result.sensor_errors:
        parts.append(f"SENSOR FAILED {line}")
    for line in result.sensor_recovered:
        parts.append(f"sensor recovered {line}")
    checks = [f"{c} (run {r.run_id[:8]})" for r in result.runs for c in r.failed_checks]
    for line in checks:
        parts.append(f"CHECK FAILED {line}")
    warned = [f"{c} (run {r.run_id[:8]})" for r in result.runs for c in r.warned_checks]
    for line in warned:
        parts.append(f"check warning {line}")
    problems = 0
    for where, items in (attention or {}).items():
        for a in items:
            run = f" (run {a.run_id[:8]})" if a.run_id else ""
            if a.is_problem:
                problems += 1
                parts.append(f"NEEDS ATTENTION {where}: {a.source} [{a.kind}] {_cut(a.reason)}{run}")
            else:
                parts.append(f"deleted before processing, {where}: {a.source}{run}")
    if result.stopped:
        parts.append(f"PASS STOPPED {result.stopped}")
    failed = result.failed
    parts.append(f"{len(result.runs)} runs, {len(failed)} failed, {len(checks)} failed checks (ERROR), {len(warned)} check warnings (WARN), "
                 f"{len(result.sensor_errors)} sensor errors, {problems} sources need attention, "
                 f"{result.seconds:.1f} s total ({result.fixed_s:.1f} s of it with no run queued or in progress: daemon start, sensor ticks, idle check)")
    return "\n\n".join(parts)


def _attention() -> dict:
    """Every watched source that needs a person, read after the pass (see ``summary``)."""
    from types import SimpleNamespace

    import dagster as dg

    from .defs.attention import sources_needing_attention
    from .definitions import build_resources

    with dg.DagsterInstance.get() as instance:
        return sources_needing_attention(instance, SimpleNamespace(**build_resources()))


def run_process(verbose: bool = False, timeout_s: float | None = None) -> int:
    """Body of ``media-assets process``; returns the exit status."""
    home = ensure_dagster_home()
    from .definitions import build_definitions
    from .process import run_pass

    from tqdm import tqdm

    # a progress bar over partitions on a terminal (stderr); plain lines when piped or logged
    bar = tqdm(total=0, unit="partition", desc="partitions", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)

    def line(run) -> None:
        tqdm.write(f"{run.status.lower():8} {run.job} [{run.partition}] {run.seconds:.1f} s" + (f": {run.error}" if run.error else "")
                   + "".join(f"; check failed: {c}" for c in run.failed_checks)
                   + "".join(f"; check warning: {c}" for c in run.warned_checks), file=sys.stdout)

    def partitions(done: int, requested: int) -> None:
        bar.total = requested
        bar.n = done
        bar.refresh()

    try:
        result = run_pass(defs=build_definitions(), on_progress=lambda text: tqdm.write(text, file=sys.stdout), on_run=line,
                          on_partitions=partitions, timeout_s=timeout_s)
    finally:
        bar.close()
    click.echo(summary(result, _attention()) + f" (DAGSTER_HOME={home})")
    if verbose and (home / "media_assets" / "daemon.log").exists():
        click.echo("\n--- dagster-daemon log ---\n" + (home / "media_assets" / "daemon.log").read_text())
    return 1 if (result.stopped or result.failed or result.sensor_errors or any(r.failed_checks for r in result.runs)) else 0


@click.group()
def main() -> None:
    """media_assets: raw media in object storage -> training data."""
    import dagster as dg

    # the APIs used on purpose (partitioned checks, backfill policies) announce their status
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    # dagster-postgres logs each retry of an unreachable database (with the driver's full
    # message) on the root logger; when the retries run out, _guarded prints one line instead
    handler = logging.StreamHandler()
    handler.addFilter(lambda record: not record.getMessage().startswith("Retrying failed database connection"))
    logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s", handlers=[handler])


@main.command()
@click.option("--verbose", is_flag=True, help="Also print the daemon's log (Dagster's event lines, tracebacks).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up after this many seconds (the next pass resumes).")
def process(verbose: bool, timeout_s: float | None) -> None:
    """Process everything pending with Dagster's daemon, then print a summary."""
    sys.exit(_guarded(run_process, verbose, timeout_s))


def _guarded(fn, *args) -> int:
    """``fn(*args)``; an unreachable instance database is one line on stderr and exit 2."""
    try:
        return fn(*args)
    except Exception as exc:
        message = storage_unreachable(exc)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        return 2


@main.command()
def seed() -> None:
    """Put sample inputs for every pipeline in place: videos, speech FLACs, training batches."""
    from .definitions import build_resources
    from .samples import seed_audio, seed_label_batches, seed_samples

    res = build_resources()
    store = res["object_store"].get_store()
    videos = seed_samples(store, res["video_settings"].source_bucket)
    click.echo(f"seeded {len(videos)} videos into {res['video_settings'].source_bucket}: {', '.join(videos)}")
    audio = seed_audio(store, res["audio_settings"].source_bucket)
    click.echo(f"seeded {len(audio)} audio objects into {res['audio_settings'].source_bucket}: {', '.join(audio)}")
    labels = res["label_settings"]
    batches = seed_label_batches(store, labels.bucket, labels.master_key, labels.targets_key)
    click.echo(f"seeded {len(batches)} training batches, {labels.master_key} and {labels.targets_key} into {labels.bucket}")
    direct = res["keyframe_settings"].direct_bucket  # watched for direct uploads; the demo has none
    store.ensure_bucket(direct)
    click.echo(f"bucket {direct} ready for direct uploads: a video put under {direct}/{res['keyframe_settings'].direct_prefix} gets its key frames")


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Seed sample media, then process everything pending; point at the UI."""
    ctx.invoke(seed)
    code = _guarded(run_process)
    click.echo("See every asset, run and preview in Dagster's UI: make ui, then http://127.0.0.1:3000")
    sys.exit(code)


@main.command()
def models() -> None:
    """Prepare and load every offline model; print where each lives (exit 1 if one fails).

    Joins Whisper base into ``$XDG_CACHE_HOME/media_assets`` (container images run this at
    build time, so a run never writes there), then loads it, Whisper tiny.en and the local
    image embedder once.
    """
    from faster_whisper import WhisperModel

    from .kernels.asr import bundled_model_path
    from .kernels.image_embedding import MobileNetV2Embedder, default_local_model

    failed = False
    checks = [("whisper base (default ASR)", lambda: bundled_model_path("base"), lambda p: WhisperModel(str(p), device="cpu", compute_type="int8")),
              ("whisper tiny.en (fast preset)", lambda: bundled_model_path("tiny.en"), lambda p: WhisperModel(str(p), device="cpu", compute_type="int8")),
              ("image embedder (local)", default_local_model, lambda p: MobileNetV2Embedder(p))]
    for name, locate, load in checks:
        try:
            path = locate()
            load(path)
            click.echo(f"ok      {name}: {path}")
        except Exception as exc:  # report every model, then fail
            failed = True
            click.echo(f"FAILED  {name}: {type(exc).__name__}: {exc}", err=True)
    sys.exit(1 if failed else 0)


@main.command("convert-whisper")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--model-dir", default=None, help="CTranslate2 Whisper folder (default: the bundled tiny.en).")
def convert_whisper(out: str, model_dir: str | None) -> None:
    """Write an openai-whisper checkpoint converted from a CTranslate2 Whisper model."""
    from .kernels.asr import default_model_path
    from .kernels.whisper_convert import convert_ct2_to_openai_whisper

    path = convert_ct2_to_openai_whisper(model_dir or default_model_path(), out)
    click.echo(f"wrote {path}; use it with MEDIA_ASSETS_ASR_BACKEND=openai-whisper MEDIA_ASSETS_ASR_MODEL={path}")


@main.command()
@click.argument("image_or_key")
@click.option("-k", "k", type=int, default=10, show_default=True, help="How many key frames to list.")
def similar(image_or_key: str, k: int) -> None:
    """List the K stored key frames nearest IMAGE_OR_KEY: a local image file, or an object
    (`bucket/key`, `s3://bucket/key`). A stored key frame is looked up by its vector, any other
    image is embedded with the configured image embedder first. Exit 1 when IMAGE_OR_KEY is
    neither a file nor an object."""
    import tempfile
    from pathlib import Path

    from .definitions import build_resources
    from .storage import ObjectNotFoundError

    resources = build_resources()
    object_store, settings, embedder = resources["object_store"], resources["keyframe_settings"], resources["image_embedder"]
    corpus = object_store.vector_store(settings.output_bucket, settings.vectors_prefix)
    path, vector = Path(image_or_key), None
    with tempfile.TemporaryDirectory(prefix="similar-") as tmp:
        if not path.is_file():
            bucket, _, key = image_or_key.removeprefix("s3://").partition("/")
            store = object_store.get_store()
            vector = corpus.vector_of(store.uri(bucket, key))
            if vector is None:
                try:
                    path = store.download(bucket, key, Path(tmp) / Path(key).name)
                except ObjectNotFoundError:
                    click.echo(f"{image_or_key}: not a file, and no object {bucket}/{key}", err=True)
                    sys.exit(1)
        if vector is None:
            vector = embedder.embed_jpegs([path])[0]
    found = corpus.nearest(vector, k=k)
    click.echo(tabulate([(n + 1, f"{f.similarity:.4f}", f.video, f"{f.timestamp_s:g}", f.uri) for n, f in enumerate(found)],
                        headers=["#", "cosine", "video", "time s", "key frame"]))
    if not found:
        click.echo(f"the key-frame vector table at {corpus.uri} is empty: materialize key_frame_vectors first")


if __name__ == "__main__":
    main()
