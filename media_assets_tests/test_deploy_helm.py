"""``deploy/helm/values.yaml`` against the keys Dagster's Helm chart defines.

No package on PyPI or Debian ships the chart or its ``values.schema.json`` (the chart is
generated from pydantic models in dagster-io/dagster, ``helm/dagster/schema``), and this
machine reaches no chart repository. So the keys below were copied by hand from those models
(``charts/dagster/values.py``, ``subschema/{webserver,daemon,run_launcher,postgresql,
compute_log_manager,telemetry}.py``, ``charts/dagster_user_deployments/subschema/
user_deployments.py``) for the fields this file uses; the test fails on any key outside them
(a typo the chart would silently ignore or reject at ``helm install``). Fields the chart types
as free-form maps (``env``, ``resources``, ``runMonitoring``, ``runRetries``,
``additionalInstanceConfig``) are checked by value below."""

from __future__ import annotations

from pathlib import Path

import yaml

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "values.yaml"

ANY = None  # a free-form map in the chart's schema
IMAGE = {"repository": ANY, "tag": ANY, "pullPolicy": ANY}
ENV_SOURCE = {"name": ANY}
# top-level and nested keys of the chart's values model, for the sections used here
CHART_KEYS = {
    "dagster-user-deployments": {
        "enabled": ANY, "enableSubchart": ANY, "imagePullSecrets": ANY,
        "deployments": [{
            "name": ANY, "image": IMAGE, "dagsterApiGrpcArgs": ANY, "codeServerArgs": ANY,
            "includeConfigInLaunchedRuns": {"enabled": ANY}, "port": ANY, "env": ANY,
            "envConfigMaps": [ENV_SOURCE], "envSecrets": [ENV_SOURCE], "annotations": ANY,
            "nodeSelector": ANY, "affinity": ANY, "tolerations": ANY, "podSecurityContext": ANY,
            "securityContext": ANY, "resources": ANY, "livenessProbe": ANY, "readinessProbe": ANY,
            "startupProbe": ANY, "labels": ANY, "volumeMounts": ANY, "volumes": ANY, "schedulerName": ANY}],
    },
    "dagsterWebserver": {
        "replicaCount": ANY, "image": IMAGE, "nameOverride": ANY, "pathPrefix": ANY, "service": ANY,
        "workspace": ANY, "env": ANY, "envConfigMaps": [ENV_SOURCE], "envSecrets": [ENV_SOURCE],
        "deploymentLabels": ANY, "labels": ANY, "nodeSelector": ANY, "affinity": ANY, "tolerations": ANY,
        "podSecurityContext": ANY, "securityContext": ANY, "resources": ANY, "readinessProbe": ANY,
        "livenessProbe": ANY, "startupProbe": ANY, "annotations": ANY, "enableReadOnly": ANY,
        "dbStatementTimeout": ANY, "dbPoolRecycle": ANY, "logLevel": ANY, "schedulerName": ANY,
        "volumeMounts": ANY, "volumes": ANY},
    "postgresql": {
        "image": ANY, "enabled": ANY, "postgresqlHost": ANY, "postgresqlUsername": ANY, "postgresqlPassword": ANY,
        "postgresqlDatabase": ANY, "postgresqlParams": ANY, "postgresqlScheme": ANY, "service": {"port": ANY}},
    "generatePostgresqlPasswordSecret": ANY,
    "runLauncher": {
        "type": ANY,
        "config": {"k8sRunLauncher": {
            "image": IMAGE, "imagePullPolicy": ANY, "jobNamespace": ANY, "loadInclusterConfig": ANY,
            "kubeconfigFile": ANY, "envConfigMaps": [ENV_SOURCE], "envSecrets": [ENV_SOURCE], "envVars": ANY,
            "volumeMounts": ANY, "volumes": ANY, "labels": ANY, "failPodOnRunFailure": ANY, "resources": ANY,
            "schedulerName": ANY, "securityContext": ANY, "runK8sConfig": ANY}}},
    "dagsterDaemon": {
        "enabled": ANY, "image": IMAGE, "heartbeatTolerance": ANY, "env": ANY,
        "envConfigMaps": [ENV_SOURCE], "envSecrets": [ENV_SOURCE], "resources": ANY,
        "runCoordinator": {"enabled": ANY, "type": ANY, "config": {"queuedRunCoordinator": {
            "maxConcurrentRuns": ANY, "tagConcurrencyLimits": ANY, "dequeueIntervalSeconds": ANY,
            "dequeueNumWorkers": ANY, "dequeueUseThreads": ANY}}},
        "runMonitoring": ANY, "runRetries": ANY},
    "computeLogManager": {"type": ANY, "config": {"s3ComputeLogManager": {
        "bucket": ANY, "localDir": ANY, "prefix": ANY, "useSsl": ANY, "verify": ANY, "verifyCertPath": ANY,
        "endpointUrl": ANY, "skipEmptyFiles": ANY, "uploadInterval": ANY, "uploadExtraArgs": ANY,
        "showUrlOnly": ANY, "region": ANY}}},
    "telemetry": {"enabled": ANY},
    "additionalInstanceConfig": ANY,
}


def _unknown_keys(values, schema, path="") -> list[str]:
    if schema is ANY:
        return []
    if isinstance(schema, list):
        return [bad for i, item in enumerate(values) for bad in _unknown_keys(item, schema[0], f"{path}[{i}]")]
    assert isinstance(values, dict), f"{path} must be a map"
    bad = [f"{path}.{k}".lstrip(".") for k in values if k not in schema]
    return bad + [b for k, v in values.items() if k in schema for b in _unknown_keys(v, schema[k], f"{path}.{k}")]


def test_values_use_only_the_charts_keys():
    assert _unknown_keys(yaml.safe_load(VALUES.read_text()), CHART_KEYS) == []


def test_a_typo_is_caught():
    values = yaml.safe_load(VALUES.read_text())
    values["runLauncher"]["config"]["k8sRunLauncher"]["resource"] = {}
    values["dagsterDaemon"]["runCoordinatr"] = {}
    assert sorted(_unknown_keys(values, CHART_KEYS)) == ["dagsterDaemon.runCoordinatr", "runLauncher.config.k8sRunLauncher.resource"]


def test_values_match_the_platform():
    v = yaml.safe_load(VALUES.read_text())
    (deployment,) = v["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", "media_assets.definitions"]
    assert deployment["env"]["MEDIA_ASSETS_STORAGE"] == "s3" and deployment["includeConfigInLaunchedRuns"]["enabled"]
    assert v["postgresql"]["enabled"] is False and v["postgresql"]["postgresqlPassword"] == ""  # no secret in the file
    assert v["generatePostgresqlPasswordSecret"] is False
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["runLauncher"]["config"]["k8sRunLauncher"]["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    daemon = v["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    # the run limit lives in `concurrency`, never in the queued coordinator's config (Dagster
    # rejects the two together; the chart renders maxConcurrentRuns into run_coordinator.config)
    assert "config" not in daemon["runCoordinator"]
    extra = v["additionalInstanceConfig"]
    assert extra["concurrency"]["runs"]["max_concurrent_runs"] == 20
    # run monitoring and retries: off in the chart's own keys (its template drops
    # retryOnAssetOrOpFailure and has no maxRuntimeSeconds), set whole in additionalInstanceConfig
    assert daemon["runMonitoring"] == {"enabled": False} and daemon["runRetries"] == {"enabled": False}
    shipped = yaml.safe_load((VALUES.parents[1] / "dagster.postgres.yaml").read_text())
    assert extra["run_retries"] == shipped["run_retries"]  # as on compose: bad input is never retried
    def but_start(monitoring: dict) -> dict:  # image pulls on a fresh node need a longer start timeout
        return {key: value for key, value in monitoring.items() if key != "start_timeout_seconds"}

    assert but_start(extra["run_monitoring"]) == {**but_start(shipped["run_monitoring"]), "max_resume_run_attempts": 0}
    assert extra["run_monitoring"]["free_slots_after_run_end_seconds"] == 30  # a killed run's pool slots come back
    assert v["computeLogManager"]["type"] == "S3ComputeLogManager" and v["telemetry"]["enabled"] is False
    assert set(extra) == {"concurrency", "run_monitoring", "run_retries"}


# top-level keys of the dagster.yaml the chart's instance ConfigMap renders itself
# (templates/configmap-instance.yaml): always, and when the daemon's run monitoring / run retries
# are enabled in its values; additionalInstanceConfig is appended after them as is
CHART_RENDERED = ("scheduler", "schedule_storage", "run_launcher", "run_storage", "event_log_storage", "run_coordinator",
                  "compute_logs", "telemetry")


def test_additional_instance_config_never_repeats_a_key_the_chart_renders():
    """A top-level key twice in the appended YAML would be resolved silently (the last one wins
    in Dagster's YAML loader), losing one of the two blocks."""
    v = yaml.safe_load(VALUES.read_text())
    daemon = v["dagsterDaemon"]
    rendered = set(CHART_RENDERED) | {k for k, on in (("run_monitoring", daemon["runMonitoring"]["enabled"]),
                                                      ("run_retries", daemon["runRetries"]["enabled"])) if on}
    assert not rendered & set(v["additionalInstanceConfig"])


def test_instance_sections_the_chart_renders_load_in_dagster():
    """The run coordinator and `additionalInstanceConfig` sections of the dagster.yaml the chart's
    instance ConfigMap renders from these values (`helpers/instance/_run-coordinator.tpl` writes
    `config:` only for non-empty `queuedRunCoordinator` values; `additionalInstanceConfig` is
    appended as is; run monitoring and retries are off in the chart's keys, so it renders
    neither), loaded by Dagster's instance config validation. The storage and the K8s run
    launcher are left out: they need a database and a cluster."""
    import dagster as dg

    v = yaml.safe_load(VALUES.read_text())
    daemon = v["dagsterDaemon"]
    queued = {k: val for k, val in daemon["runCoordinator"].get("config", {}).get("queuedRunCoordinator", {}).items() if val}
    coordinator = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    if queued:
        coordinator["config"] = {{"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits",
                                  "dequeueIntervalSeconds": "dequeue_interval_seconds"}[k]: val for k, val in queued.items()}
    rendered = {"run_coordinator": coordinator, **v["additionalInstanceConfig"]}
    with dg.instance_for_test(overrides=rendered) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 20
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure  # bad input is not retried on Kubernetes either
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 14400
