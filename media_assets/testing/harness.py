"""Test harness: evaluate sensors and execute what they request, in this process.

The fast test tier drives sensors the way Dagster's testing guide does (``build_sensor_context``
and ``SensorDefinition.evaluate_tick``, then ``execute_in_process`` per run request), so a test
sees sensor logic, partitions and assets together in seconds. It is not how the platform runs:
``media-assets process`` and ``make ui`` use Dagster's daemon, run queue and launcher
(``media_assets/process.py``), which the slow tests exercise. Public Dagster API only; the
cursor of each sensor is kept in the harness's own dict per instance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from media_assets.lib.records import RUN_KEY_TAG, SENSOR_NAME_TAG, RunOutcome, launched_by, run_outcome
from media_assets.resources.audio import AudioSettings
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.resources.video import VideoConversionSettings

_CURSORS: dict[tuple[str, str], str | None] = {}  # (instance root directory, sensor) -> cursor


def execute_run_request(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str, job_name: str, request: dg.RunRequest) -> RunOutcome:
    """Execute one run request in this process and record it in ``instance``, tagged as the
    sensor daemon tags the runs it launches; its :class:`RunOutcome` read from the instance."""
    job = defs.resolve_job_def(request.job_name or job_name)
    tags = {**(request.tags or {}), SENSOR_NAME_TAG: sensor_name}
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=tags,
        raise_on_error=False,
    )
    # read back from the instance, as `media-assets process` reads its runs
    return run_outcome(instance, instance.get_run_record_by_id(result.run_id))


def tick_sensor(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None,
                resources: dict | None = None, defs: dg.Definitions | None = None) -> dg.SensorResult:
    """One evaluation of ``sensor`` as Dagster's sensor daemon does it: ``evaluate_tick`` on a
    context built from the instance's ref (so the tick resolves partitions its own requests
    add), then the tick's dynamic-partition requests applied and its asset events recorded.

    Args:
        resources: the sensor's resources; ``None``: those of ``defs``.
        defs: the pipeline's definitions (for its dynamic partitions), merged with
            ``resources``; ``None`` for a sensor over time partitions.

    Returns:
        The tick's result (run requests, cursor, asset events).
    """
    definitions = defs if defs is None or resources is None else dg.Definitions.merge(defs, dg.Definitions(resources=resources))
    resources = dict(defs.resources) if resources is None and defs is not None else resources
    with dg.build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, resources=resources,
                                 definitions=definitions, sensor_name=sensor.name) as context:
        result = sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    return result


def process_pending(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    sensor_names: list[str] | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    max_ticks: int = 10_000,
) -> list[RunOutcome]:
    """Tick every sensor (or those named) until it requests nothing new; execute each request.

    Returns:
        One :class:`RunOutcome` per executed run, in execution order.
    """
    outcomes: list[RunOutcome] = []
    for sensor in sorted(defs.sensors, key=lambda s: s.name):
        if sensor_names and sensor.name not in sensor_names:
            continue
        if isinstance(sensor, dg.RunStatusSensorDefinition):  # react to runs; the daemon evaluates them
            continue
        job_name = sensor.job_name if sensor.has_jobs and len(sensor.jobs) == 1 else None
        for _ in range(max_ticks):
            cursor = _CURSORS.get((instance.root_directory, sensor.name))
            data = tick_sensor(sensor, instance, cursor, defs=defs)
            new_cursor = data.cursor if data.cursor is not None else cursor
            requests = [r for r in data.run_requests or [] if not (r.run_key and launched_by(instance, sensor.name, r.run_key))]
            for request in requests:
                outcome = execute_run_request(defs, instance, sensor.name, job_name, request)
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
            if new_cursor is not None:
                _CURSORS[(instance.root_directory, sensor.name)] = new_cursor
            if not data.run_requests and new_cursor == cursor:
                break
    return outcomes


def make_watched_buckets(data_root: Path) -> None:
    """The buckets the four sensors watch (default names), as a deployment creates them: a
    watched bucket that does not exist fails its sensor's ticks, on S3 and locally."""
    for bucket in (VideoConversionSettings().source_bucket, KeyframeSettings().direct_bucket,
                   AudioSettings().source_bucket, LabelCorrectionSettings().bucket):
        (Path(data_root) / bucket).mkdir(parents=True, exist_ok=True)


def spoken_words(text: str) -> list[str]:
    """Lower-case words of a transcript or a reference, punctuation dropped (digits and
    apostrophes kept): how the tests and ``benchmarks/demo_speech.py`` compare them."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()
