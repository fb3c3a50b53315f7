"""``quant-assets`` console script: ``demo`` and ``simulate`` (Dagster's own CLI does the rest)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _landing_store():
    """The configured landing zone, opened directly (resources resolve EnvVars only inside runs)."""
    from quant_assets.defs.resources import LandingZone
    from quant_assets.lib import settings

    from dagster_aws.s3 import S3Resource

    return LandingZone(url=settings.landing_url(), s3=S3Resource()).store()


def cmd_simulate(args: argparse.Namespace) -> int:
    from quant_assets.lib import calendar as cal
    from quant_assets.lib import settings
    from quant_assets.lib.storage import open_store
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    start = cal.as_date(args.start) if args.start else settings.start_date()
    end = cal.as_date(args.end) if args.end else (settings.end_date() or cal.latest_complete_weekday())
    store = open_store(args.landing) if args.landing else _landing_store()
    spec = PolygonSimSpec(start=start, end=end, tickers=args.tickers, minute_days=args.minute_days, seed=args.seed)
    t0 = time.perf_counter()
    report = simulate_polygon(store, spec)
    print(
        f"simulated {report.day_files} day files ({report.day_rows:,} rows) and {report.minute_files} minute files "
        f"({report.minute_rows:,} rows) into {store.url} in {time.perf_counter() - t0:.1f}s"
    )
    return 0


def _summarise(instance, run_ids: list[str]) -> list[tuple[str, int, int, float]]:
    """(asset, partitions materialized, rows, seconds) from the runs' event logs."""
    from dagster import DagsterEventType

    partitions: dict[str, set] = defaultdict(set)
    rows: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for run_id in run_ids:
        step_asset: dict[str, str] = {}
        step_rows: dict[str, int] = {}
        step_secs: dict[str, float] = {}
        for rec in instance.all_logs(run_id):
            ev = rec.dagster_event
            if ev is None:
                continue
            if ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                mat = ev.event_specific_data.materialization
                name = mat.asset_key.to_user_string()
                step_asset[ev.step_key] = name
                partitions[name].add(mat.partition)
                # A range run attaches the range's total to every partition's event.
                if "rows" in mat.metadata:
                    step_rows[ev.step_key] = int(mat.metadata["rows"].value)
            elif ev.event_type == DagsterEventType.STEP_SUCCESS:
                step_secs[ev.step_key] = ev.event_specific_data.duration_ms / 1000.0
        for step, name in step_asset.items():
            rows[name] += step_rows.get(step, 0)
            seconds[name] += step_secs.get(step, 0.0)
    return [(name, len(partitions[name]), rows[name], seconds[name]) for name in sorted(partitions)]


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from quant_assets.definitions import defs
    from quant_assets.defs.market.automation import (
        MINUTE_FILE_ASSETS,
        market_completeness_job,
        market_trading_day_job,
        market_weekly_job,
    )
    from quant_assets.defs.partitions import trading_days, trading_weeks
    from quant_assets.lib import calendar as cal
    from quant_assets.lib import settings
    from quant_assets.lib.sources import polygon
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    start = settings.start_date()
    end = settings.end_date() or cal.latest_complete_weekday()
    store = _landing_store()
    last_session = cal.trading_days(start, end)[-1]
    spec = PolygonSimSpec(start=start, end=end, tickers=args.tickers, minute_days=args.minute_days, seed=args.seed)
    t0 = time.perf_counter()
    if store.exists(polygon.day_aggs_key(last_session)) and not args.resimulate:
        print(f"landing zone {store.url} already holds the simulated files; skipping the simulator")
        sim_s = 0.0
    else:
        rep = simulate_polygon(store, spec)
        sim_s = time.perf_counter() - t0
        print(f"simulated {rep.day_files} day + {rep.minute_files} minute files into {store.url} ({sim_s:.1f}s)")

    instance = DagsterInstance.get()
    day_keys = trading_days.get_partition_keys()
    minute_keys = [d.isoformat() for d in cal.trading_days(start, end)[-args.minute_days :]] if args.minute_days else []
    week_keys = trading_weeks.get_partition_keys()
    minute_asset_keys = [k for ad in MINUTE_FILE_ASSETS for k in ad.keys]
    day_asset_keys = [k for k in market_trading_day_job.selection.resolve(defs.resolve_asset_graph()) if k not in minute_asset_keys]

    plan = [
        ("trading-day assets", market_trading_day_job.name, day_asset_keys, day_keys),
        ("minute assets", market_trading_day_job.name, minute_asset_keys, minute_keys),
        ("weekly bars", market_weekly_job.name, None, week_keys),
        ("completeness checks", market_completeness_job.name, None, None),
    ]
    run_ids = []
    for label, job_name, selection, keys in plan:
        if keys is not None and not keys:
            continue
        job = defs.resolve_job_def(job_name)
        tags = {RANGE_START: keys[0], RANGE_END: keys[-1]} if keys else {}
        t0 = time.perf_counter()
        kwargs = {"asset_selection": selection} if selection else {}
        result = job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, run_config=QUIET, **kwargs
        )
        status = "ok" if result.success else "FAILED"
        span = f"{keys[0]}..{keys[-1]}" if keys else "-"
        print(f"  run {result.run_id[:8]} {label:<22} {span:<24} {status} ({time.perf_counter() - t0:.1f}s)")
        run_ids.append(result.run_id)
        if not result.success:
            for ev in result.all_events:
                if ev.is_failure:
                    print(ev.message, file=sys.stderr)
            return 1

    summary = _summarise(instance, run_ids)
    print()
    print(f"{'asset':<32}{'partitions':>11}{'rows':>13}{'seconds':>10}")
    print("-" * 66)
    for name, n_parts, n_rows, secs in summary:
        print(f"{name:<32}{n_parts:>11}{n_rows:>13,}{secs:>10.1f}")
    print("-" * 66)
    print(f"simulator {sim_s:.1f}s; total {time.perf_counter() - t_all:.1f}s")
    print()
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    print("Open the UI on the same instance:  make dev   (then http://127.0.0.1:3000)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quant-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write simulated vendor files into the landing zone")
    sim.add_argument("--start", help="first day (default QUANT_START_DATE)")
    sim.add_argument("--end", help="last day (default QUANT_END_DATE or the latest complete weekday)")
    sim.add_argument("--tickers", type=int, default=500)
    sim.add_argument("--minute-days", type=int, default=5)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--landing", help="landing zone URL (default QUANT_LANDING_URL)")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="simulate, materialize every asset into DAGSTER_HOME, print a summary")
    demo.add_argument("--tickers", type=int, default=500)
    demo.add_argument("--minute-days", type=int, default=5)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--resimulate", action="store_true", help="rewrite the landing zone even if present")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
