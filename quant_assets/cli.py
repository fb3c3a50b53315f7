"""``quant-assets`` console script: ``demo`` and ``simulate`` (Dagster's own CLI does the rest)."""

from __future__ import annotations

import argparse
import sys
import time


def cmd_simulate(args: argparse.Namespace) -> int:
    from quant_assets.defs.resources import configured_landing_store
    from quant_assets.lib import calendar as cal
    from quant_assets.lib import settings
    from quant_assets.lib.storage import open_store
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    start = cal.as_date(args.start) if args.start else settings.start_date()
    end = cal.as_date(args.end) if args.end else (settings.end_date() or cal.latest_complete_weekday())
    store = open_store(args.landing) if args.landing else configured_landing_store()
    spec = PolygonSimSpec(start=start, end=end, tickers=args.tickers, minute_days=args.minute_days, seed=args.seed)
    t0 = time.perf_counter()
    report = simulate_polygon(store, spec)
    print(
        f"simulated {report.day_files} day files ({report.day_rows:,} rows) and {report.minute_files} minute files "
        f"({report.minute_rows:,} rows) into {store.url} in {time.perf_counter() - t0:.1f}s"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from quant_assets import demo

    return demo.run(args)


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
    demo.add_argument(
        "--domains", nargs="+", metavar="DOMAIN", help="only these domains (default: all, in dependency order)"
    )
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
