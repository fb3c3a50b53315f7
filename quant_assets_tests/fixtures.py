"""Shared test fixtures for market data: a simulated landing zone and a way to run the graph.

Partitions are defined when ``quant_assets.defs.partitions`` is imported, from
``QUANT_START_DATE``/``QUANT_END_DATE``; the test session pins them here (after conftest has
isolated the environment, before any test imports the package).
"""

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

os.environ["QUANT_START_DATE"] = "2024-01-02"
os.environ["QUANT_END_DATE"] = "2024-04-30"

SIM_START = dt.date(2024, 1, 2)
SIM_END = dt.date(2024, 4, 30)
SIM_TICKERS = 60
SIM_MINUTE_DAYS = 2
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(scope="session")
def simulated_landing(tmp_path_factory) -> Path:
    """A read-only landing zone simulated once per session (Jan-Apr 2024, 60 names)."""
    from quant_assets.lib.storage import LocalStore
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    root = tmp_path_factory.mktemp("landing")
    spec = PolygonSimSpec(start=SIM_START, end=SIM_END, tickers=SIM_TICKERS, minute_days=SIM_MINUTE_DAYS, seed=11)
    simulate_polygon(LocalStore(root), spec)
    return root


@pytest.fixture
def landing_copy(simulated_landing, tmp_path) -> Path:
    """A private copy of the simulated landing zone that a test may damage."""
    dst = tmp_path / "landing"
    shutil.copytree(simulated_landing, dst)
    return dst


class GraphRunner:
    """Runs the real market jobs in-process on given resources and a temporary instance."""

    def __init__(self, landing_url: str, lake_url: str, warehouse_url: str, instance, s3=None):
        from dagster import Definitions
        from dagster_aws.s3 import S3Resource

        from quant_assets.definitions import defs as production
        from quant_assets.defs.resources import HttpClientResource, Lake, LakeIOManager, LandingZone, WarehouseResource

        s3 = s3 or S3Resource()
        self.lake = Lake(url=lake_url, s3=s3)
        self.landing = LandingZone(url=landing_url, s3=s3)
        self.instance = instance
        self.defs = Definitions(
            assets=list(production.assets),
            asset_checks=list(production.asset_checks),
            jobs=list(production.jobs),
            sensors=list(production.sensors),
            schedules=list(production.schedules),
            resources={
                "landing": self.landing,
                "lake": self.lake,
                "io_manager": LakeIOManager(lake=self.lake),
                "warehouse": WarehouseResource(url=warehouse_url),
                "http": HttpClientResource(),
            },
        )

    def run(self, job_name: str, first: str | None = None, last: str | None = None, assets=None, raise_on_error=True):
        job = self.defs.resolve_job_def(job_name)
        tags = {}
        if first:
            tags = {RANGE_START: first, RANGE_END: last or first}
        kwargs = {}
        if assets is not None:
            from dagster import AssetKey

            kwargs["asset_selection"] = [AssetKey(a.split("/")) if isinstance(a, str) else a for a in assets]
        return job.execute_in_process(
            instance=self.instance, tags=tags, run_config=QUIET, raise_on_error=raise_on_error, **kwargs
        )

    def read(self, asset: str, partition: str):
        from quant_assets.defs.resources import partition_file
        from dagster import AssetKey

        return self.lake.read_frame(partition_file(AssetKey(asset.split("/")), partition))


@pytest.fixture
def dagster_instance(tmp_path):
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def local_graph(landing_copy, tmp_path, dagster_instance) -> GraphRunner:
    return GraphRunner(
        landing_url=str(landing_copy),
        lake_url=str(tmp_path / "lake"),
        warehouse_url=f"duckdb:///{tmp_path / 'wh.duckdb'}",
        instance=dagster_instance,
    )
