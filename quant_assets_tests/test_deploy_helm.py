"""The Kubernetes deployment (deploy/): the production instance configuration loads with
dagster-k8s (K8sRunLauncher, PostgreSQL storage, S3 compute logs) and passes Dagster's config
schema; the Helm values use the chart's keys, keep every secret in Kubernetes secrets, agree with
that instance configuration, and name executors the code location has. No cluster is needed:
the launcher's Kubernetes client configuration is the only thing stubbed."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from dagster import validate_run_config

from quant_assets.execution.executors import executor_choices

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
SECRETS = ("quant-assets-env",)
# Variables that hold secrets: only ever from a Kubernetes secret.
SECRET_VARS = ("QUANT_WAREHOUSE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DAGSTER_PG_PASSWORD", "FMP_API_KEY", "POLYGON_API_KEY")

# The keys the official chart's schema (helm/dagster/schema) accepts where these values set any.
CHART_KEYS = {
    "": {"dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
         "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets", "computeLogManager",
         "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
         "global", "retention", "additionalInstanceConfig", "concurrency"},
    "global": {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"},
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "deployment": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "port", "env",
                   "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
                   "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
                   "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName", "replicaCount"},
    "image": {"repository", "tag", "pullPolicy"},
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword", "postgresqlDatabase",
                   "postgresqlParams", "postgresqlScheme", "service"},
    "runLauncher": {"type", "config"},
    "k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                       "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                       "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"},
    "s3ComputeLogManager": {"bucket", "localDir", "prefix", "useSsl", "verify", "verifyCertPath", "endpointUrl",
                            "skipEmptyFiles", "uploadInterval", "uploadExtraArgs", "showUrlOnly", "region"},
    "dagsterDaemon": {"enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps", "envSecrets",
                      "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                      "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "annotations",
                      "runMonitoring", "runRetries", "sensors", "schedules", "schedulerName", "volumeMounts", "volumes"},
    "queuedRunCoordinator": {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
                             "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"},
    "concurrency": {"enabled", "pools", "runs"},
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
}


def _deployment() -> dict:
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    return deployment


def _env(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in deployment["env"]}


def test_values_use_the_chart_keys():
    def within(section: str, mapping: dict) -> None:
        unknown = set(mapping) - CHART_KEYS[section]
        assert not unknown, f"{section or 'top level'}: {sorted(unknown)} are not keys of the dagster chart"

    within("", VALUES)
    within("global", VALUES["global"])
    within("dagster-user-deployments", VALUES["dagster-user-deployments"])
    deployment = _deployment()
    within("deployment", deployment)
    within("image", deployment["image"])
    within("postgresql", VALUES["postgresql"])
    within("runLauncher", VALUES["runLauncher"])
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher" and set(VALUES["runLauncher"]["config"]) == {"k8sRunLauncher"}
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    within("k8sRunLauncher", launcher)
    within("runK8sConfig", launcher["runK8sConfig"])
    assert VALUES["computeLogManager"]["type"] == "S3ComputeLogManager"
    within("s3ComputeLogManager", VALUES["computeLogManager"]["config"]["s3ComputeLogManager"])
    within("dagsterDaemon", VALUES["dagsterDaemon"])
    within("queuedRunCoordinator", VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"])
    within("concurrency", VALUES["concurrency"])
    within("pools", VALUES["concurrency"]["pools"])
    within("runs", VALUES["concurrency"]["runs"])
    # The chart refuses a run limit set both in the run coordinator and under concurrency.runs,
    # and Dagster refuses one in the run coordinator next to any concurrency section.
    assert VALUES["concurrency"]["enabled"] and VALUES["concurrency"]["runs"]["maxConcurrentRuns"] == 8
    assert not VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]


def test_the_code_location_is_a_user_deployment_of_the_image():
    deployment = _deployment()
    assert VALUES["dagster-user-deployments"]["enabled"] and VALUES["dagster-user-deployments"]["enableSubchart"]
    assert deployment["name"] == "quant-assets" and deployment["dagsterApiGrpcArgs"] == ["-m", "quant_assets.definitions"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["image"]["tag"] != "latest"
    # The image's unprivileged user, and a writable /tmp under a read-only root filesystem.
    assert deployment["podSecurityContext"]["runAsUser"] == 10001 and deployment["podSecurityContext"]["runAsNonRoot"]
    assert deployment["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in deployment["volumeMounts"]
    assert VALUES["postgresql"]["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False


def test_secrets_come_only_from_kubernetes_secrets():
    deployment = _deployment()
    env = _env(deployment)
    for name in SECRET_VARS:
        assert name not in env, f"{name} must come from a secret, not the values"
    assert [s["name"] for s in deployment["envSecrets"]] == list(SECRETS)
    assert [s["name"] for s in VALUES["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]] == list(SECRETS)
    # The daemon and the webserver never import quant_assets: they get no data credentials.
    assert "envSecrets" not in VALUES["dagsterDaemon"]
    assert VALUES["global"]["postgresqlSecretName"] == INSTANCE["run_launcher"]["config"]["postgres_password_secret"]
    text = (DEPLOY / "helm" / "values.yaml").read_text() + (DEPLOY / "dagster.yaml").read_text()
    assert "postgresqlPassword" not in VALUES["postgresql"]
    import re

    assert not re.search(r"AKIA[0-9A-Z]{12,}|://[^/\s@]+:[^@/\s]+@", text)
    # The environment of ARCHITECTURE: locations, dates, executor and DAGSTER_PG_* in plain values.
    for name in ("QUANT_EXECUTOR", "QUANT_LANDING_URL", "QUANT_LAKE_URL", "QUANT_HTTP_CACHE_URL", "QUANT_START_DATE", "DAGSTER_PG_HOST",
                 "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB", "AWS_DEFAULT_REGION"):
        assert name in env
    assert all(env[k]["value"].startswith("s3://") for k in ("QUANT_LAKE_URL", "QUANT_LANDING_URL", "QUANT_HTTP_CACHE_URL"))
    pg = VALUES["postgresql"]
    assert env["DAGSTER_PG_HOST"]["value"] == pg["postgresqlHost"]
    assert env["DAGSTER_PG_PORT"]["value"] == str(pg["service"]["port"])
    assert env["DAGSTER_PG_USER"]["value"] == pg["postgresqlUsername"]
    assert env["DAGSTER_PG_DB"]["value"] == pg["postgresqlDatabase"]


def test_the_executors_the_deployment_names_exist_in_the_code_location():
    import quant_assets.definitions as d

    choices = executor_choices()
    assert _env(_deployment())["QUANT_EXECUTOR"]["value"] in choices
    jobs = d.defs.resolve_all_job_defs()
    for path in sorted((DEPLOY / "run_config").glob("*.yaml")):
        run_config = yaml.safe_load(path.read_text())
        (kind,) = run_config["execution"]["config"]
        assert kind in choices, path.name
        for job in jobs:
            assert validate_run_config(job, run_config), (path.name, job.name)
    # The per-step option is dagster-k8s's own executor, with its own config schema.
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    per_step = yaml.safe_load((DEPLOY / "run_config" / "k8s_per_step.yaml").read_text())["execution"]["config"]["k8s"]
    result = process_config(k8s_job_executor.config_schema.config_type, per_step)
    assert result.success, result.errors


@pytest.fixture
def no_cluster(monkeypatch):
    """The K8sRunLauncher reads the pod's service account; without a cluster, nothing to read."""
    import kubernetes

    calls = []
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda *a, **k: calls.append("incluster"))
    return calls


def test_the_production_instance_loads_with_the_k8s_run_launcher(
    tmp_path, monkeypatch, postgres_server, postgres_database, s3_server, no_cluster
):
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", postgres_server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("DAGSTER_PG_USER", postgres_server.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres_server.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", urlsplit(postgres_database).path.lstrip("/"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)

    with DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert no_cluster == ["incluster"]
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "quant" and launcher.instance_config_map == "quant-assets-dagster-instance"
        assert launcher.dagster_home == VALUES["global"]["dagsterHome"]
        assert launcher.env_secrets == list(SECRETS)
        assert launcher.supports_check_run_worker_health  # run monitoring sees a dead run pod
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_runs() == []  # the schema was created in the test database
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        logs = instance.compute_log_manager
        assert isinstance(logs, S3ComputeLogManager)
        assert logs._s3_bucket == "quant-research-lake" and logs._s3_prefix.strip("/") == "dagster/compute-logs"
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == 1
        assert instance.telemetry_enabled is False


def test_the_instance_configuration_and_the_values_agree():
    launcher = INSTANCE["run_launcher"]["config"]
    k8s = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert INSTANCE["run_launcher"]["module"] == "dagster_k8s" and INSTANCE["run_launcher"]["class"] == "K8sRunLauncher"
    assert launcher["load_incluster_config"] is k8s["loadInclusterConfig"] is True
    assert launcher["image_pull_policy"] == k8s["imagePullPolicy"]
    assert launcher["env_secrets"] == [s["name"] for s in k8s["envSecrets"]]
    assert launcher["fail_pod_on_run_failure"] is k8s["failPodOnRunFailure"] is True
    assert launcher["dagster_home"] == VALUES["global"]["dagsterHome"]
    assert INSTANCE["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    s3 = VALUES["computeLogManager"]["config"]["s3ComputeLogManager"]
    logs = INSTANCE["compute_logs"]["config"]
    assert (logs["bucket"], logs["prefix"], logs["region"]) == (s3["bucket"], s3["prefix"], s3["region"])
    # The compute logs live in the lake's bucket.
    lake = _env(_deployment())["QUANT_LAKE_URL"]["value"]
    assert lake.startswith(f"s3://{logs['bucket']}/")
    daemon = VALUES["dagsterDaemon"]
    assert "config" not in INSTANCE["run_coordinator"]
    assert INSTANCE["concurrency"]["runs"]["max_concurrent_runs"] == VALUES["concurrency"]["runs"]["maxConcurrentRuns"]
    assert INSTANCE["concurrency"]["pools"]["default_limit"] == VALUES["concurrency"]["pools"]["defaultLimit"]
    monitoring = INSTANCE["run_monitoring"]
    for snake, camel in (("start_timeout_seconds", "startTimeoutSeconds"), ("poll_interval_seconds", "pollIntervalSeconds"),
                         ("max_resume_run_attempts", "maxResumeRunAttempts"),
                         ("free_slots_after_run_end_seconds", "freeSlotsAfterRunEndSeconds")):
        assert monitoring[snake] == daemon["runMonitoring"][camel]
    assert INSTANCE["run_retries"] == {"enabled": True, "max_retries": daemon["runRetries"]["maxRetries"]}
    assert INSTANCE["retention"]["sensor"]["purge_after_days"] == VALUES["retention"]["sensor"]["purgeAfterDays"]


def test_run_pods_get_the_resources_and_user_both_files_ask_for():
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    def job_from(run_k8s_config: dict):
        return construct_dagster_k8s_job(
            DagsterK8sJobConfig(
                job_image="registry.example.com/quant-assets:0.1.0",
                dagster_home="/opt/dagster/dagster_home",
                instance_config_map="quant-assets-dagster-instance",
                postgres_password_secret="dagster-postgresql-secret",
            ),
            args=["dagster", "api", "execute_run", "{}"],
            job_name="dagster-run-0123456789",
            user_defined_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s_config),
        )

    camel = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    from_values = job_from({"container_config": camel["containerConfig"], "pod_spec_config": camel["podSpecConfig"],
                            "job_spec_config": camel["jobSpecConfig"]})
    from_instance = job_from(INSTANCE["run_launcher"]["config"]["run_k8s_config"])
    for job in (from_values, from_instance):
        container = job.spec.template.spec.containers[0]
        assert container.resources.limits == {"memory": "8Gi"}
        assert container.resources.requests == {"cpu": "2", "memory": "6Gi"}
        assert container.security_context.run_as_user == 10001 and container.security_context.run_as_non_root
        assert job.spec.template.spec.security_context.fs_group == 10001
        assert job.spec.ttl_seconds_after_finished == 86400
        secret_env = [e for e in container.env if e.name == "DAGSTER_PG_PASSWORD"]
        assert secret_env and secret_env[0].value_from.secret_key_ref.name == "dagster-postgresql-secret"
