"""The executor choice and the checks made before a distributed run starts: each failure names
its service (scheduler, S3, warehouse, Dagster instance), its location and the problem, quickly,
and never shows a secret."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dagster import validate_run_config
from dagster._core.errors import DagsterInvalidConfigError

from quant_assets.execution import preflight
from quant_assets.execution import executors
from quant_assets.lib import settings
from quant_assets_tests.fixtures import GraphRunner
from quant_assets_tests.servers import _free_port

REPO = Path(__file__).resolve().parents[1]
JOB = "market_trading_day_job"
PASSWORD = "s3cr3t-Pa55word"


# --------------------------------------------------------------------------- choosing the executor


def test_the_default_executor_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("QUANT_EXECUTOR", raising=False)
    assert executors.default_execution_config() == {"multiprocess": {}}
    monkeypatch.setenv("QUANT_EXECUTOR", "in-process")
    assert executors.default_execution_config() == {"in_process": {}}
    monkeypatch.setenv("QUANT_EXECUTOR", "k8s")
    assert executors.default_execution_config() == {"k8s": {}}

    monkeypatch.setenv("QUANT_EXECUTOR", "dask")
    monkeypatch.delenv("QUANT_DASK_SCHEDULER", raising=False)
    monkeypatch.setenv("QUANT_DASK_WORKERS", "3")
    assert executors.default_execution_config() == {"dask": {"cluster": {"local": {"n_workers": 3}}}}
    monkeypatch.setenv("QUANT_DASK_SCHEDULER", "tcp://dask-scheduler:8786")
    # The address stays an environment reference: it is read where the run executes.
    assert executors.default_execution_config() == {"dask": {"cluster": {"existing": {"address": {"env": "QUANT_DASK_SCHEDULER"}}}}}



@pytest.mark.parametrize(
    ("name", "value", "read", "words"),
    [
        ("QUANT_EXECUTOR", "celery", settings.executor_kind, "is not one of multiprocess, in_process, dask, k8s"),
        ("QUANT_DASK_SCHEDULER", "dask-scheduler", settings.dask_scheduler, "is not an address such as tcp://host:8786"),
        ("QUANT_DASK_WORKERS", "0", settings.dask_local_workers, "must be positive"),
        ("QUANT_PREFLIGHT_TIMEOUT_S", "soon", settings.preflight_timeout_s, "is not a number"),
    ],
)
def test_a_bad_executor_setting_is_named(monkeypatch, name, value, read, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=words) as err:
        read()
    assert str(err.value).startswith(name)


def test_every_job_offers_each_executor_in_run_config():
    import quant_assets.definitions as d

    assert executors.executor_choices() == ("multiprocess", "in_process", "dask", "k8s")
    for job in d.defs.resolve_all_job_defs():
        assert job.executor_def is executors.quant_executor, job.name
    job = d.defs.resolve_job_def(JOB)
    for execution in (
        {"multiprocess": {"max_concurrent": 2}},
        {"in_process": {}},
        {"dask": {"cluster": {"existing": {"address": "tcp://10.0.0.5:8786"}}, "max_concurrent": 8}},
        {"dask": {"cluster": {"local": {"n_workers": 4, "memory_limit": "8GiB"}}}},
        {"k8s": {"job_namespace": "quant", "max_concurrent": 16}},
    ):
        assert validate_run_config(job, {"execution": {"config": execution}})
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(job, {"execution": {"config": {"celery": {}}}})


def test_bad_executor_settings_fail_when_the_run_starts():
    with pytest.raises(DagsterInvalidConfigError, match="k8s_job_executor"):
        executors._k8s_executor({"job_namespace": 3}, init_context=None)
    with pytest.raises(ValueError, match="threads_per_worker must be 1"):
        executors._dask_executor(
            {"cluster": {"local": {"threads_per_worker": 4}}, "retries": {"enabled": {}}, "poll_interval_s": 0.5, "health_check_interval_s": 2}
        )
    k8s = executors._k8s_executor({"job_namespace": "quant", "retries": {"disabled": {}}}, init_context=None)
    assert k8s.kind == "k8s" and k8s.retries.disabled


def test_the_local_cluster_listens_on_loopback_with_one_thread_per_worker():
    ex = executors._dask_executor(
        {"cluster": {"local": {"n_workers": 1}}, "retries": {"enabled": {}}, "poll_interval_s": 0.5, "health_check_interval_s": 2}
    )
    session = ex._connect()
    try:
        assert session.address.startswith("tcp://127.0.0.1:")
        workers = session.client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 1
        assert all(a.startswith("tcp://127.0.0.1:") and w["nthreads"] == 1 for a, w in workers.items())
    finally:
        session.close()
    assert session.cluster.status.name == "closed"


# --------------------------------------------------------------------------- locations


def test_locations_on_one_machine_are_refused(tmp_path, dagster_instance):
    graph = GraphRunner(
        landing_url=str(tmp_path / "landing"),
        lake_url=str(tmp_path / "lake"),
        warehouse_url=f"duckdb:///{tmp_path / 'wh.duckdb'}",
        instance=dagster_instance,
    )
    loc, checks = preflight.check_run(graph.defs.resolve_job_def(JOB), {}, dagster_instance)
    failed = {c.service: c for c in checks if not c.ok}
    assert set(failed) == {"Dagster instance storage", "lake", "landing zone", "warehouse"}
    assert "QUANT_LAKE_URL=s3://" in failed["lake"].detail and failed["lake"].location == str(tmp_path / "lake")
    assert "QUANT_LANDING_URL=s3://" in failed["landing zone"].detail
    assert "DuckDB file" in failed["warehouse"].detail and "QUANT_WAREHOUSE_URL=postgresql://" in failed["warehouse"].detail
    assert failed["Dagster instance storage"].location == "DagsterSqliteStorage"
    assert "dagster_home/postgres/dagster.yaml" in failed["Dagster instance storage"].detail
    message = str(preflight.PreflightError(list(failed.values())))
    assert message.startswith("Preflight failed (") and "no step was run" in message

    # A job that needs no warehouse is not refused for the warehouse.
    loc = preflight.resolve_locations(graph.defs.resolve_job_def("market_weekly_job"))
    assert loc.warehouse is None and loc.lake == str(tmp_path / "lake") and loc.landing is None


def test_a_local_http_response_cache_is_refused_for_the_vendor_api_jobs(tmp_path, dagster_instance, monkeypatch):
    """The smart-money and pump jobs fetch through the shared HTTP client: its response cache is
    read again by reruns on any machine, so on the distributed path it lives in S3 too."""
    monkeypatch.setenv("QUANT_HTTP_CACHE_URL", str(tmp_path / "http_cache"))
    graph = GraphRunner(
        landing_url="s3://flatfiles/polygon",
        lake_url="s3://research-lake/lake",
        warehouse_url="postgresql://qa@127.0.0.1:1/wh",
        instance=dagster_instance,
    )
    loc = preflight.resolve_locations(graph.defs.resolve_job_def("smart_money_symbols_job"))
    assert loc.http_cache == str(tmp_path / "http_cache")
    failed = {c.service: c for c in preflight.location_rules(loc) if not c.ok}
    assert set(failed) == {"HTTP response cache"}
    assert "QUANT_HTTP_CACHE_URL=s3://" in failed["HTTP response cache"].detail

    monkeypatch.setenv("QUANT_HTTP_CACHE_URL", "s3://research-lake/http_cache")
    graph = GraphRunner(
        landing_url="s3://flatfiles/polygon",
        lake_url="s3://research-lake/lake",
        warehouse_url="postgresql://qa@127.0.0.1:1/wh",
        instance=dagster_instance,
    )
    loc = preflight.resolve_locations(graph.defs.resolve_job_def("smart_money_symbols_job"))
    assert loc.http_cache == "s3://research-lake/http_cache"
    assert all(c.ok for c in preflight.location_rules(loc))
    # The market jobs make no HTTP call: no cache is asked of them.
    assert preflight.resolve_locations(graph.defs.resolve_job_def(JOB)).http_cache is None


# --------------------------------------------------------------------------- S3


def test_an_s3_lake_that_refuses_the_credentials_is_named(s3_strict_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREVOKEDKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PASSWORD)
    t0 = time.monotonic()
    check = preflight.check_s3("S3 lake", "s3://research-lake/lake", {"endpoint_url": s3_strict_server}, write=True, timeout=5)
    assert time.monotonic() - t0 < 5
    assert not check.ok
    assert check.describe().startswith(f"S3 lake s3://research-lake/lake (endpoint {s3_strict_server}): refused the credentials")
    assert "InvalidAccessKeyId" in check.detail
    assert PASSWORD not in check.describe()


def test_a_missing_bucket_and_a_silent_endpoint_are_named(s3_server):
    missing = preflight.check_s3("S3 lake", "s3://no-such-bucket-here/lake", {"endpoint_url": s3_server}, write=True, timeout=5)
    assert not missing.ok and "bucket 'no-such-bucket-here' does not exist" in missing.detail
    closed = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    silent = preflight.check_s3("S3 landing zone", "s3://flatfiles/polygon", {"endpoint_url": closed}, write=False, timeout=2)
    assert time.monotonic() - t0 < 10
    assert not silent.ok and silent.describe().startswith(f"S3 landing zone s3://flatfiles/polygon (endpoint {closed}): does not answer")


def test_an_s3_lake_that_answers_is_writable_and_left_as_it_was(s3_bucket):
    endpoint, bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="lake/market/day_aggs/2024-01-02.parquet", Body=b"x")
    check = preflight.check_s3("S3 lake", f"s3://{bucket}/lake", {"endpoint_url": endpoint}, write=True, timeout=5)
    assert check.ok and check.detail == "answers, credentials accepted, writable"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["lake/market/day_aggs/2024-01-02.parquet"]


# --------------------------------------------------------------------------- PostgreSQL


def test_a_warehouse_that_does_not_answer_is_named_without_its_password(postgres_server):
    port = _free_port()
    url = f"postgresql://quant:{PASSWORD}@127.0.0.1:{port}/research"
    check = preflight.check_postgres("warehouse (PostgreSQL)", url, timeout=3)
    assert not check.ok
    assert check.describe().startswith(f"warehouse (PostgreSQL) postgresql://quant:***@127.0.0.1:{port}/research: does not answer")
    assert PASSWORD not in check.describe()
    missing_db = postgres_server.database_url("no_such_database")
    check = preflight.check_postgres("warehouse (PostgreSQL)", missing_db, timeout=3)
    assert not check.ok and 'database "no_such_database" does not exist' in check.detail
    assert preflight.check_postgres("warehouse (PostgreSQL)", postgres_server.url, timeout=3).ok


def _postgres_home(tmp_path: Path, monkeypatch, server, dbname: str, port: int | None = None) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(port or server.port))
    monkeypatch.setenv("DAGSTER_PG_USER", server.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", server.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", dbname)
    return home


def test_a_dagster_instance_that_is_down_at_launch_is_named_at_once(tmp_path, monkeypatch, postgres_server, capsys):
    port = _free_port()
    home = _postgres_home(tmp_path, monkeypatch, postgres_server, "dagster", port)
    t0 = time.monotonic()
    check = preflight.check_instance_config(home, timeout=3)
    # Opening the instance would retry and then fail with "too many retries for DB connection".
    assert time.monotonic() - t0 < 5
    assert not check.ok
    assert check.service == "Dagster instance storage (PostgreSQL)"
    assert check.location == f"postgresql://postgres@127.0.0.1:{port}/dagster ({home}/dagster.yaml)"
    assert check.detail.startswith("does not answer") and "Connection refused" in check.detail

    # The command-line preflight stops there, with the same line, and exit status 1.
    assert preflight.main([]) == 1
    out, err = capsys.readouterr()
    assert f"FAIL Dagster instance storage (PostgreSQL) postgresql://postgres@127.0.0.1:{port}/dagster" in out
    assert err.startswith("preflight failed for the multiprocess executor (Dagster instance storage (PostgreSQL))")

    monkeypatch.delenv("DAGSTER_PG_HOST")
    unset = preflight.check_instance_config(home)
    assert not unset.ok and "DAGSTER_PG_HOST" in unset.detail


def test_a_dagster_instance_that_answers_passes(tmp_path, monkeypatch, postgres_server, postgres_database):
    home = _postgres_home(tmp_path, monkeypatch, postgres_server, urlsplit(postgres_database).path.lstrip("/"))
    check = preflight.check_instance_config(home, timeout=3)
    assert check.ok, check.describe()
    sqlite = preflight.check_instance_config(REPO / "dagster_home")
    assert not sqlite.ok and sqlite.location.startswith("DagsterSqliteStorage")


def test_a_worker_that_cannot_reach_the_instance_is_named(tmp_path, monkeypatch, postgres_server, postgres_database):
    from dagster import DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    home = _postgres_home(tmp_path, monkeypatch, postgres_server, urlsplit(postgres_database).path.lstrip("/"))
    with DagsterInstance.from_config(str(home)) as instance:
        ref = instance.get_ref()
    origin = ReconstructableRepository.for_module("quant_assets.definitions", "defs").get_reconstructable_job(JOB).get_python_origin()
    # This "worker" sees another PostgreSQL port than the run worker (its own DAGSTER_PG_PORT).
    port = _free_port()
    monkeypatch.setenv("DAGSTER_PG_PORT", str(port))
    expected = {"fingerprint": preflight.code_fingerprint(), "locations": {}}
    checks = [preflight.Check(**c) for c in preflight.probe_worker(origin, None, {}, ref, expected, 3)]
    failed = [c for c in checks if not c.ok]
    assert failed[0].service == "Dagster instance storage (PostgreSQL)"
    assert failed[0].location.startswith(f"postgresql://postgres@127.0.0.1:{port}/qa_test_")
    assert "(seen from " in failed[0].location and "does not answer" in failed[0].detail
    # The worker's lake is not the run's: named, with the variable to set.
    mismatch = [c for c in failed if c.service == "lake"]
    assert mismatch and "QUANT_LAKE_URL" in mismatch[0].detail

    other_build = {"fingerprint": "0" * 16, "locations": {}}
    checks = [preflight.Check(**c) for c in preflight.probe_worker(origin, None, {}, ref, other_build, 3)]
    assert any(c.service == "code" and "another build of quant_assets" in c.detail for c in checks)


# --------------------------------------------------------------------------- Dask scheduler


def test_a_scheduler_that_does_not_answer_is_named():
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(preflight.PreflightError) as err:
        preflight.connect_scheduler(address, timeout=2)
    assert time.monotonic() - t0 < 15
    (failure,) = err.value.failures
    assert failure.service == "Dask scheduler" and failure.location == address
    assert failure.detail.startswith("does not answer within 2 s")
    assert str(err.value).startswith("Preflight failed (Dask scheduler); no step was run:")
