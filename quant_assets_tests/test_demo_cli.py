"""The console script end to end, configured only through the environment, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from quant_assets.lib.sources import polygon

ASSETS = (
    "market/day_aggs",
    "market/minute_aggs",
    "market/daily_bars",
    "market/weekly_bars",
    "market/daily_filtered",
    "market/minute_features",
    "market/warehouse_daily_bars",
)


def test_demo_runs_whole_graph_on_env_configured_locations(tmp_path):
    home = tmp_path / "dh"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        QUANT_DATA_DIR=str(tmp_path / "scratch"),
        QUANT_LANDING_URL=str(tmp_path / "vendor"),
        QUANT_LAKE_URL=str(tmp_path / "lake"),
        QUANT_WAREHOUSE_URL=f"duckdb:///{tmp_path / 'wh' / 'w.duckdb'}",
        QUANT_START_DATE="2024-03-01",
        QUANT_END_DATE="2024-03-15",
    )
    cli = Path(sys.executable).parent / "quant-assets"
    proc = subprocess.run(
        [str(cli), "demo", "--tickers", "30", "--minute-days", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("market/")}
    assert set(table) == set(ASSETS)
    assert table["market/day_aggs"][0] == "11"  # weekdays 2024-03-01..2024-03-15
    assert table["market/minute_aggs"][0] == "2"
    # Every location came from the environment.
    assert (tmp_path / "vendor" / polygon.day_aggs_key("2024-03-15")).exists()
    assert len(list((tmp_path / "lake" / "market" / "daily_bars").glob("*.parquet"))) == 11
    assert (tmp_path / "wh" / "w.duckdb").exists()
    assert pl.read_parquet(tmp_path / "lake" / "market" / "day_aggs" / "2024-03-15.parquet").height > 30
    assert list((home / "history").glob("*")) or list(home.rglob("runs.db"))  # runs recorded in the instance
    # The pump champions are reported in sample and out of sample side by side, with DSR and PBO.
    header = next(line for line in proc.stdout.splitlines() if "IS pnl" in line)
    assert "OOS pnl" in header and "DSR" in header and "PBO" in header and "best of" in header
    assert "walk-forward" in proc.stdout and "out-of-sample total PnL" in proc.stdout
