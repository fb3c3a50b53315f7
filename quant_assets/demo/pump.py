"""The pump group's part of ``quant-assets demo``: simulated signals and Binance zips for the last
ten complete UTC days, the daily assets over them, then the research stage on a demo-sized
strategy and filter grid (the full default grids are the assets' Config defaults)."""

from __future__ import annotations

import datetime as dt
import json
import time

from quant_assets.demo.launch import RunSpec
from quant_assets.demo.run import DemoDomain, DemoSettings

SIGNAL_DAYS = 10
SIGNALS_PER_DAY = 12
SYMBOLS = 20

# Small enough for the demo's time budget; the full grids (5,400 strategies, 194,040 filters)
# are the defaults when the job is launched from the UI.
DEMO_RESEARCH_CONFIG = {
    "ops": {
        "pump__strategy_matrix": {
            "config": {
                "sl_levels": [0.02, 0.05, 0.1],
                "timeouts_s": [1800, 7200, 21600, 86400],
                "entry_delays_s": [0, 30, 300],
            }
        },
        "pump__optimization_results": {
            "config": {"rsi_cuts": [50, 70], "volume_zscore_cuts": [1, 2], "oi_change_cuts": [0, 5], "min_trades": 2}
        },
        "pump__composite_strategy": {"config": {"min_trades": 3}},
    }
}


def signal_days() -> list[dt.date]:
    """The demo's signal days: the last ten complete UTC days whose next day is a partition too
    (a signal's 24 h window reaches into the next day's trade file)."""
    from quant_assets.defs.partitions import utc_days

    keys = utc_days.get_partition_keys()
    last = dt.date.fromisoformat(keys[-1]) - dt.timedelta(days=1)
    first = max(dt.date.fromisoformat(keys[0]), last - dt.timedelta(days=SIGNAL_DAYS - 1))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def prepare(s: DemoSettings) -> list[str]:
    from quant_assets.defs.resources import configured_landing_store
    from quant_assets.lib.pump.signals import signals_key
    from quant_assets.simulate import PumpSimSpec, simulate_pump

    days = signal_days()
    store = configured_landing_store()
    if store.exists(signals_key(days[-1])) and store.exists(signals_key(days[0])) and not s.resimulate:
        return [f"landing zone {store.url} already holds the simulated pump signals and Binance zips; skipping the simulator"]
    t0 = time.perf_counter()
    rep = simulate_pump(store, PumpSimSpec(start=days[0], days=len(days), signals_per_day=SIGNALS_PER_DAY, symbols=SYMBOLS, seed=s.seed))
    return [
        f"simulated {rep.signals} pump signals over {rep.signal_files} UTC days and {rep.zip_files} Binance aggTrades "
        f"zips ({rep.trades:,} trades) into {store.url} ({time.perf_counter() - t0:.1f}s)"
    ]


def runs(s: DemoSettings) -> list[RunSpec]:
    days = signal_days()
    return [
        RunSpec("pump signal days", "pump_daily_job", first=days[0].isoformat(), last=days[-1].isoformat()),
        RunSpec("pump research (demo grid)", "pump_research_job", run_config=DEMO_RESEARCH_CONFIG),
        RunSpec("pump completeness check", "pump_completeness_job"),
    ]


def _latest(instance, name: str) -> dict:
    from dagster import AssetKey, AssetRecordsFilter

    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(["pump", name])), limit=1).records
    if not records:
        return {}
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def report(instance, s: DemoSettings) -> list[str]:
    from dagster_aws.s3 import S3Resource

    from quant_assets.defs.pump.keys import COMPOSITE_JSON
    from quant_assets.defs.resources import Lake
    from quant_assets.lib import settings
    from quant_assets.lib.pump import composite as pcomp

    lines = []
    matrix = _latest(instance, "strategy_matrix")
    if matrix:
        lines.append(
            f"phase 1: {matrix.get('strategies')} strategies x {matrix.get('signals')} signals = "
            f"{matrix.get('simulations'):,} simulations in {matrix.get('seconds')}s"
        )
    results = _latest(instance, "optimization_results")
    if results:
        lines.append(
            f"phase 2: {results.get('filters'):,} filters, {results.get('profitable_configurations'):,} profitable "
            f"configurations, {results.get('kept_rows'):,} kept, {results.get('seconds')}s"
        )
    store = Lake(url=settings.lake_url(), s3=S3Resource()).store()
    if store.exists(COMPOSITE_JSON):
        doc = json.loads(store.read_bytes(COMPOSITE_JSON))
        wf = doc.get("walk_forward", {})
        how = (
            f"walk-forward, {wf.get('folds')} fold(s): chosen on one window, reported on the next"
            if doc.get("selection") == "walk_forward"
            else "IN SAMPLE: chosen and reported on the same signals"
        )
        lines.append(f"composite_strategy.json (min {doc['min_trades']} trades, {doc['signals']} signals, {how}), champion per score range:")
        deployed = pcomp.champions_from_document(doc)
        lines += ["  " + line for line in pcomp.summary_table(deployed)]
        lines.append("  deployed rules (each range's latest champion):")
        lines += ["  " + line for line in pcomp.summary_lines(deployed) if "no configuration" not in line]
    trades = _latest(instance, "backtest_trades")
    if trades:
        label = trades.get("sample", "in_sample").replace("_", "-")
        lines.append(
            f"backtest_trades.csv: {trades.get('trades')} trades, {label} total PnL {trades.get('total_pnl', 0.0) * 100:+.1f}% "
            f"(sum of returns; {trades.get('window', 'in sample')})"
        )
    port = _latest(instance, "portfolio_backtest")
    if port:
        lines.append(
            f"portfolio ({port.get('sample', 'in_sample').replace('_', '-')}): {port.get('trades')} trades, "
            f"return {port.get('total_return', 0.0) * 100:+.1f}%, max drawdown {port.get('max_drawdown', 0.0) * 100:.1f}%"
        )
    return lines


DEMO = DemoDomain(name="pump", prepare=prepare, runs=runs, report=report)
