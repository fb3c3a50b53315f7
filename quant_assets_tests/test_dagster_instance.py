"""The repository's two Dagster instance configs load and record materializations.

Each test runs on a copy of the config in a temp DAGSTER_HOME, never on the repo's folder.
"""

import pickle
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    asset,
    materialize,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

REPO_HOME = Path(__file__).resolve().parents[1] / "dagster_home"
SQLITE_YAML = REPO_HOME / "dagster.yaml"
POSTGRES_YAML = REPO_HOME / "postgres" / "dagster.yaml"
KEY = AssetKey(["instance_check", "partition_number"])


@asset(key=KEY, partitions_def=DailyPartitionsDefinition(start_date="2024-01-01"))
def partition_number(context: AssetExecutionContext) -> int:
    return int(context.partition_key.replace("-", ""))


def _repo_home_files() -> set[str]:
    return {p.relative_to(REPO_HOME).as_posix() for p in REPO_HOME.rglob("*")}


@pytest.fixture
def untouched_repo_home():
    before = _repo_home_files()
    yield
    assert _repo_home_files() == before


def _home_with(config: Path, tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _assert_settings(instance: DagsterInstance, config: Path) -> None:
    settings = yaml.safe_load(config.read_text())
    assert settings["concurrency"]["runs"]["max_concurrent_runs"] == 3
    assert settings["telemetry"]["enabled"] is False

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 3
    assert instance.telemetry_enabled is False
    assert instance.run_monitoring_enabled is True
    assert isinstance(instance.compute_log_manager, LocalComputeLogManager)
    # A dead run worker is detected and its concurrency slots are freed in bounded time.
    from quant_assets.execution.run_launcher import MonitoredRunLauncher

    assert isinstance(instance.run_launcher, MonitoredRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health
    assert 0 < instance.run_monitoring_settings["poll_interval_seconds"] <= 60
    assert 0 < instance.run_monitoring_settings["free_slots_after_run_end_seconds"] <= 60


def _materialize_two_partitions(instance: DagsterInstance, home: Path) -> None:
    for key in ("2024-01-03", "2024-01-02"):
        result = materialize([partition_number], instance=instance, partition_key=key)
        assert result.success

    event = instance.get_latest_materialization_event(KEY)
    assert event is not None
    assert event.asset_materialization.partition == "2024-01-02"
    assert instance.get_materialized_partitions(KEY) == {"2024-01-02", "2024-01-03"}
    assert len(instance.get_runs()) == 2

    # Outputs and compute logs land in this DAGSTER_HOME, not in the repository.
    stored = home / "storage" / "instance_check" / "partition_number" / "2024-01-03"
    assert pickle.loads(stored.read_bytes()) == 20240103
    assert instance.compute_log_manager._base_dir == str(home / "storage")


def test_the_two_configs_differ_only_in_storage():
    sqlite_settings = yaml.safe_load(SQLITE_YAML.read_text())
    postgres_settings = yaml.safe_load(POSTGRES_YAML.read_text())
    assert sqlite_settings.pop("storage") == {"sqlite": {"base_dir": {"env": "DAGSTER_HOME"}}}
    assert postgres_settings.pop("storage") == {
        "postgres": {
            "postgres_db": {
                "hostname": {"env": "DAGSTER_PG_HOST"},
                "port": {"env": "DAGSTER_PG_PORT"},
                "username": {"env": "DAGSTER_PG_USER"},
                "password": {"env": "DAGSTER_PG_PASSWORD"},
                "db_name": {"env": "DAGSTER_PG_DB"},
            }
        }
    }
    assert sqlite_settings == postgres_settings


def test_sqlite_instance(tmp_path, monkeypatch, untouched_repo_home):
    home = _home_with(SQLITE_YAML, tmp_path, monkeypatch)
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        _assert_settings(instance, SQLITE_YAML)
        _materialize_two_partitions(instance, home)
    assert (home / "history" / "runs.db").is_file()


def test_postgres_instance(tmp_path, monkeypatch, postgres_server, postgres_database, untouched_repo_home):
    home = _home_with(POSTGRES_YAML, tmp_path, monkeypatch)
    monkeypatch.setenv("DAGSTER_PG_HOST", postgres_server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("DAGSTER_PG_USER", postgres_server.user)
    # The throwaway cluster trusts loopback: an empty password must be accepted by the config.
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres_server.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", urlsplit(postgres_database).path.lstrip("/"))

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        _assert_settings(instance, POSTGRES_YAML)
        _materialize_two_partitions(instance, home)

    assert not (home / "history").exists()
    with psycopg.connect(postgres_database) as conn:
        assert conn.execute("SELECT to_regclass('public.event_logs') IS NOT NULL").fetchone() == (True,)
        (materializations,) = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            [KEY.to_string()],
        ).fetchone()
        assert materializations == 2
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (2,)


def test_postgres_config_requires_its_environment(tmp_path, monkeypatch):
    _home_with(POSTGRES_YAML, tmp_path, monkeypatch)
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception, match="DAGSTER_PG_"):
        DagsterInstance.get()
