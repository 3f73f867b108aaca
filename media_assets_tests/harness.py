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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from media_assets.resources.audio import AudioSettings
from media_assets.resources.keyframes import KeyframeSettings
from media_assets.resources.labels import LabelCorrectionSettings
from media_assets.resources.video import VideoConversionSettings

RUN_KEY_TAG = "dagster/run_key"  # the tags Dagster's sensor daemon puts on the runs it launches
SENSOR_NAME_TAG = "dagster/sensor_name"
_CURSORS: dict[tuple[str, str], str | None] = {}  # (instance root directory, sensor) -> cursor


@dataclass
class RunOutcome:
    """One executed run: its sensor, partition (or partition range), success and the metadata
    of every asset it materialized (``{asset key string: metadata dict}``)."""

    sensor: str
    job: str
    partition: str
    run_id: str
    success: bool
    seconds: float
    error: str | None = None
    materializations: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # materializations per asset (partitions)


def _already_run(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: sensor_name}), limit=1)
    return bool(runs)


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            desc = event.step_failure_data.user_failure_data.description if event.step_failure_data.user_failure_data else None
            cause = err.cause.message.strip() if err.cause else err.message.strip()
            return f"{event.step_key}: {desc or cause}"
    return "run failed"


def _metadata_values(metadata) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def execute_run_request(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str, job_name: str, request: dg.RunRequest) -> RunOutcome:
    """Execute one run request in this process and record it in ``instance``."""
    job = defs.resolve_job_def(request.job_name or job_name)
    tags = {**(request.tags or {}), SENSOR_NAME_TAG: sensor_name}
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=tags,
        raise_on_error=False,
    )
    mats, counts = {}, {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        mats[key] = _metadata_values(mat.metadata)
        counts[key] = counts.get(key, 0) + 1
    return RunOutcome(
        sensor=sensor_name,
        job=job.name,
        partition=request.partition_key or "..".join(
            filter(None, [tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")])
        ),
        run_id=result.run_id,
        success=result.success,
        seconds=time.perf_counter() - started,
        error=None if result.success else _failure_message(result),
        materializations=mats,
        counts=counts,
    )


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
            requests = [r for r in data.run_requests or [] if not (r.run_key and _already_run(instance, sensor.name, r.run_key))]
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
