"""The market group's part of ``quant-assets demo``: simulated Polygon flat files, then every
trading day, the last minute days, the weeks and the completeness checks."""

from __future__ import annotations

import time

from quant_assets.demo.launch import RunSpec, backfill_specs
from quant_assets.demo.run import DemoDomain, DemoSettings


def prepare(s: DemoSettings) -> list[str]:
    from quant_assets.defs.resources import configured_landing_store
    from quant_assets.lib.sources import polygon
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    store = configured_landing_store()
    if store.exists(polygon.day_aggs_key(s.sessions()[-1])) and not s.resimulate:
        return [f"landing zone {store.url} already holds the simulated Polygon files; skipping the simulator"]
    t0 = time.perf_counter()
    spec = PolygonSimSpec(start=s.start, end=s.end, tickers=s.tickers, minute_days=s.minute_days, seed=s.seed)
    rep = simulate_polygon(store, spec)
    return [
        f"simulated {rep.day_files} day + {rep.minute_files} minute Polygon files into {store.url} "
        f"({time.perf_counter() - t0:.1f}s)"
    ]


def runs(s: DemoSettings) -> list[RunSpec]:
    from quant_assets.defs.market.automation import market_completeness_job, market_minute_job, market_trading_day_job, market_weekly_job
    from quant_assets.defs.market.keys import DAYS_PER_RUN, WEEKS_PER_RUN
    from quant_assets.defs.partitions import trading_days, trading_weeks

    days = trading_days.get_partition_keys()
    minute_days = [d.isoformat() for d in s.sessions()[-s.minute_days :]] if s.minute_days else []
    weeks = trading_weeks.get_partition_keys()
    # As a backfill launches them: at most a year of sessions (52 weeks) per run.
    specs = backfill_specs("trading-day assets", market_trading_day_job.name, days, DAYS_PER_RUN)
    # A range runs a few days per run for the minute assets; the demo's last days fit in one.
    if minute_days:
        specs.append(RunSpec("minute assets", market_minute_job.name, first=minute_days[0], last=minute_days[-1]))
    specs += backfill_specs("weekly bars", market_weekly_job.name, weeks, WEEKS_PER_RUN)
    specs.append(RunSpec("completeness checks", market_completeness_job.name))
    return specs


DEMO = DemoDomain(name="market", prepare=prepare, runs=runs)
