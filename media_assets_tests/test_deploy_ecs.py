"""The ECS instance file (``deploy/ecs/dagster.yaml``): a run launched with Dagster's own CLI
(``dagster job launch``) goes through dagster-aws' ``EcsRunLauncher`` to moto's ECS server on
127.0.0.1, on a real PostgreSQL instance. The ``RunTask`` request moto recorded is checked:
cluster, task definition, the run's command in the container override, CPU/memory, tags.

Two settings differ from the file, because this process is not an ECS task: the run
coordinator launches at once (``DefaultRunCoordinator``; the file's queue needs the daemon) and
``use_current_ecs_task_config`` is off (it reads the task metadata endpoint of ECS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import dagster as dg
import yaml

from media_assets.testing.postgres_server import postgres_server

ROOT = Path(__file__).resolve().parents[1]
ECS_YAML = ROOT / "deploy" / "ecs" / "dagster.yaml"
BIN = Path(sys.executable).parent


def test_ecs_file_takes_every_deployment_value_from_the_environment():
    cfg = yaml.safe_load(ECS_YAML.read_text())
    launcher = cfg["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    conf = launcher["config"]
    assert conf["task_definition"] == {"env": "MEDIA_ASSETS_ECS_RUN_TASK_DEFINITION"}
    assert conf["run_task_kwargs"]["cluster"] == {"env": "MEDIA_ASSETS_ECS_CLUSTER"}
    assert "DAGSTER_PG_PASSWORD" not in conf["env_vars"] and conf["secrets_tag"] == "dagster"  # the password from Secrets Manager only
    assert cfg["compute_logs"]["class"] == "S3ComputeLogManager"
    assert cfg["compute_logs"]["config"]["bucket"] == {"env": "MEDIA_ASSETS_COMPUTE_LOGS_BUCKET"}
    assert all(v == {"env": f"DAGSTER_PG_{k}"} for k, v in _pg_fields(cfg).items())


def _pg_fields(cfg) -> dict:
    db = dict(cfg["storage"]["postgres"]["postgres_db"])
    db.pop("scheme")
    names = {"hostname": "HOST", "port": "PORT", "username": "USERNAME", "password": "PASSWORD", "db_name": "DB"}
    return {names[k]: v for k, v in db.items()}


def test_run_launched_through_ecs_run_launcher(tmp_path, moto_endpoint):
    aws = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    ecs = boto3.client("ecs", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    cluster = ecs.create_cluster(clusterName="media-assets")["cluster"]["clusterArn"]
    family = ecs.register_task_definition(
        # bridge networking: moto 5.2.5's RunTask fails on awsvpc tasks (NetworkInterface has no
        # private_dns_name), and moto forces awsvpc on FARGATE-compatible task definitions
        family="media-assets-run", networkMode="bridge", requiresCompatibilities=["EC2"], cpu="2048", memory="8192",
        containerDefinitions=[{"name": "run", "image": "media-assets:latest", "essential": True, "cpu": 2048, "memory": 8192}])["taskDefinition"]["family"]
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="media-assets-runs", Description="run tasks", VpcId=vpc)["GroupId"]
    s3.create_bucket(Bucket="media-assets-logs")

    cfg = yaml.safe_load(ECS_YAML.read_text())
    cfg["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    cfg["run_launcher"]["config"]["use_current_ecs_task_config"] = False
    cfg["run_launcher"]["config"]["run_task_kwargs"]["networkConfiguration"] = {
        "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))

    with postgres_server() as pg:
        env = {**os.environ, **pg, **aws, "DAGSTER_HOME": str(home), "MEDIA_ASSETS_STORAGE": "s3",
               "MEDIA_ASSETS_ECS_CLUSTER": "media-assets", "MEDIA_ASSETS_ECS_RUN_TASK_DEFINITION": family,
               "MEDIA_ASSETS_COMPUTE_LOGS_BUCKET": "media-assets-logs"}
        out = subprocess.run([str(BIN / "dagster"), "job", "launch", "-m", "media_assets.definitions", "-j", "video_embedding_index_job",
                              "--tags", json.dumps({"media_assets/test": "ecs"})],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

        os.environ.update({k: v for k, v in pg.items()})  # this process reads the same instance
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="video_embedding_index_job"))
        finally:
            for k in pg:
                os.environ.pop(k, None)

    # what the launcher asked ECS for, as moto recorded it
    assert run.tags["ecs/cluster"] == cluster
    (task,) = ecs.describe_tasks(cluster="media-assets", tasks=[run.tags["ecs/task_arn"]], include=["TAGS"])["tasks"]
    assert task["taskDefinitionArn"].split("/")[-1].startswith(f"{family}:")
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == "run"
    assert override["command"][:3] == ["dagster", "api", "execute_run"] and run.run_id in override["command"][3]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("2048", "8192")
    tags = {t["key"]: t.get("value") for t in task["tags"]}
    assert tags["dagster/run_id"] == run.run_id and tags["dagster/job_name"] == "video_embedding_index_job"
    assert tags["app"] == "media_assets"
