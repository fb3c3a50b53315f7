"""``quant-assets`` console script: ``demo``, ``simulate`` and ``dev`` (Dagster's own CLI does the rest)."""

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
    from quant_assets.demo import run

    return run.run(args)


def cmd_dev(args: argparse.Namespace) -> int:
    """``dagster dev -w workspace.yaml`` with the project's warning policy installed."""
    from dagster._cli import cli

    from quant_assets.demo.launch import default_workspace_file

    argv = ["dev", "-w", str(default_workspace_file()), *args.extra]
    return int(cli.main(args=argv, prog_name="dagster", standalone_mode=False) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quant-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", add_help=False, help="the Dagster UI, daemon and code server on this code location (dagster dev)")
    dev.set_defaults(func=cmd_dev)  # any further arguments go to dagster dev (e.g. -p 3001)

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

    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
