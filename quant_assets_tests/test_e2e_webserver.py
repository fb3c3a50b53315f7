"""End to end through the real webserver and daemon (``dagster dev``), driven over GraphQL:
a single-partition run, a range backfill, the landing sensor launching exactly the run for a new
day, and run monitoring failing a run killed with -9 so that the next warehouse load proceeds."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon
from quant_assets_tests.dagster_stack import REPO, DagsterStack, instance_yaml

START, END = "2024-01-02", "2024-01-31"
BUILT = [d.isoformat() for d in cal.weekdays("2024-01-02", "2024-01-12")]
NEW_DAY = "2024-01-16"
DAY_JOB = "market_trading_day_job"


@pytest.fixture(scope="module")
def stack(simulated_landing, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    home, data, landing = root / "dagster_home", root / "data", root / "landing"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(REPO / "dagster_home" / "dagster.yaml"))
    for day in BUILT:
        if cal.is_trading_day(day):
            src = simulated_landing / polygon.day_aggs_key(day)
            dst = landing / polygon.day_aggs_key(day)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("QUANT_", "DAGSTER_"))
    } | {
        "DAGSTER_HOME": str(home),
        "QUANT_DATA_DIR": str(data),
        "QUANT_LANDING_URL": str(landing),
        "QUANT_START_DATE": START,
        "QUANT_END_DATE": END,
        "QUANT_LANDING_SENSOR_INTERVAL_S": "3",
        # Sensor and backfill runs execute their steps in the run's process: a process per step
        # costs ~5 s of imports each (about 110 s over this module), and the orchestration is what
        # they test. The first run names the executor users get by default (multiprocess).
        "QUANT_EXECUTOR": "in_process",
    }
    s = DagsterStack(home, env, root / "dagster-dev.log")
    try:
        s.start()
        s.landing, s.data, s.source = landing, data, simulated_landing
        yield s
    finally:
        s.stop()


def _step_processes(stack, run_id: str) -> tuple[int, int]:
    """(steps started, steps launched in a process of their own: the multiprocess executor's
    "Launching subprocess" engine events) of the run."""
    data = stack.graphql(
        "query($r: ID!) { logsForRun(runId: $r) { ... on EventConnection { events { __typename ... on MessageEvent { message } } } } }",
        {"r": run_id},
    )
    events = data["logsForRun"]["events"]
    started = sum(1 for e in events if e["__typename"] == "ExecutionStepStartEvent")
    launched = sum(1 for e in events if (e.get("message") or "").startswith("Launching subprocess for"))
    return started, launched


def _lake(stack, asset: str, day: str) -> Path:
    return stack.data / "lake" / asset / f"{day}.parquet"


def test_single_partition_then_range_backfill(stack):
    client = stack.client()
    run_id = client.submit_job_execution(
        DAY_JOB,
        repository_location_name="quant_assets",
        asset_selection=[["market", "day_aggs"], ["market", "daily_bars"]],
        run_config={"execution": {"config": {"multiprocess": {}}}},
        tags={"dagster/partition": BUILT[0]},
    )
    assert stack.wait_run(run_id) == "SUCCESS", stack.log_tail()
    started, launched = _step_processes(stack, run_id)
    assert started == launched >= 2  # the multiprocess executor: every step in a process of its own
    assert pl.read_parquet(_lake(stack, "market/daily_bars", BUILT[0])).height > 0

    backfill = stack.launch_backfill([["market", "day_aggs"], ["market", "daily_bars"], ["market", "daily_filtered"], ["market", "warehouse_daily_bars"]], BUILT[0], BUILT[-1])
    assert stack.wait_backfill(backfill) in ("COMPLETED", "COMPLETED_SUCCESS"), stack.log_tail()
    for day in BUILT:
        frame = pl.read_parquet(_lake(stack, "market/day_aggs", day))
        raw = stack.landing / polygon.day_aggs_key(day)
        if raw.exists():
            assert frame.height == pl.read_csv(raw).height
        else:  # 2024-01-15 is not in BUILT; every built weekday here is a session
            assert frame.height == 0
        assert _lake(stack, "market/daily_filtered", day).exists()


def test_sensor_launches_exactly_the_run_for_a_new_day(stack):
    assert stack.set_sensor("polygon_landing_sensor", True) == "Sensor"
    # Ticks over files that were all built from their current bytes launch nothing.
    time.sleep(8)
    assert stack.runs({"quant_assets/trigger": "landing_zone"}) == []
    dst = stack.landing / polygon.day_aggs_key(NEW_DAY)
    shutil.copy2(stack.source / polygon.day_aggs_key(NEW_DAY), dst)
    deadline = time.monotonic() + 120
    runs = []
    while time.monotonic() < deadline and not runs:
        runs = stack.runs({"quant_assets/trigger": "landing_zone"})
        time.sleep(1)
    assert runs, stack.log_tail()
    assert stack.wait_run(runs[0]["runId"]) == "SUCCESS", stack.log_tail()
    time.sleep(8)  # more ticks: nothing else is launched
    runs = stack.runs({"quant_assets/trigger": "landing_zone"})
    assert [(r["tags"]["quant_assets/files"], r["tags"]["dagster/partition"]) for r in runs] == [("day", NEW_DAY)]
    assert pl.read_parquet(_lake(stack, "market/daily_bars", NEW_DAY)).height > 0

    # The vendor re-publishes a day that was built: the daemon runs one backfill that rebuilds it
    # and what reads it (the next session's returns among them), upstream first.
    before = _materializations(stack, "market/daily_bars", BUILT[-1])
    republished = stack.landing / polygon.day_aggs_key(BUILT[-2])
    republished.write_bytes(republished.read_bytes())
    deadline = time.monotonic() + 180
    backfill_runs = []
    while time.monotonic() < deadline:
        backfill_runs = stack.runs({"quant_assets/trigger": "landing_zone_republish"})
        if backfill_runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in backfill_runs):
            if _materializations(stack, "market/daily_bars", BUILT[-1]) > before:
                break
        time.sleep(2)
    assert backfill_runs and all(r["status"] == "SUCCESS" for r in backfill_runs), stack.log_tail()
    assert _materializations(stack, "market/daily_bars", BUILT[-1]) == before + 1
    assert _materializations(stack, "market/daily_bars", BUILT[0]) == 2  # the first run + the backfill above
    stack.set_sensor("polygon_landing_sensor", False)


def _materializations(stack, asset: str, partition: str) -> int:
    data = stack.graphql(
        "query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) { ... on Asset { "
        "assetMaterializations(partitions: $p, limit: 100) { runId } } } }",
        {"k": {"path": asset.split("/")}, "p": [partition]},
    )
    return len(data["assetOrError"]["assetMaterializations"])


def _run_worker_pid(stack, run_id: str, timeout_s: float = 120) -> int:
    from dagster import DagsterInstance

    from quant_assets.execution.run_launcher import worker_of

    # The instance configuration places its storage under $DAGSTER_HOME: point it at the stack's.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(stack.home))
        instance = DagsterInstance.from_config(str(stack.home))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            worker = worker_of(instance, run_id)
            if worker is not None:
                instance.dispose()
                return worker[0]
            time.sleep(0.5)
        instance.dispose()
    raise TimeoutError(f"run {run_id} never reported its start:\n{stack.log_tail()}")


def test_run_killed_mid_load_is_failed_and_the_next_load_proceeds(stack):
    import duckdb

    client = stack.client()
    warehouse = stack.data / "warehouse.duckdb"
    # Hold the warehouse file: the load waits for it while holding the `warehouse` pool slot.
    holder = duckdb.connect(str(warehouse))
    try:
        run_id = client.submit_job_execution(
            DAY_JOB,
            repository_location_name="quant_assets",
            asset_selection=[["market", "warehouse_daily_bars"]],
            run_config={"execution": {"config": {"in_process": {}}}},
            tags={"dagster/partition": BUILT[-1]},
        )
        pid = _run_worker_pid(stack, run_id)
        time.sleep(3)  # inside the load step, waiting on the file
        os.kill(pid, signal.SIGKILL)
    finally:
        holder.close()
    # Run monitoring notices the dead worker and fails the run (polled every 2 s in this test).
    assert stack.wait_run(run_id, timeout_s=90) == "FAILURE", stack.log_tail()
    again = client.submit_job_execution(
        DAY_JOB,
        repository_location_name="quant_assets",
        asset_selection=[["market", "warehouse_daily_bars"]],
        tags={"dagster/partition": BUILT[-1]},
    )
    assert stack.wait_run(again, timeout_s=180) == "SUCCESS", stack.log_tail()
    # Nothing the killed writer left half-done is visible or left behind in the lake.
    assert not list((stack.data / "lake").rglob("*.tmp"))
