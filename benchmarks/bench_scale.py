"""How the cost of the market graph grows: daily backfills of 1,000 / 5,000 / 10,000 tickers over 1 /
2 / 5 years, and one full-universe minute week against five single minute days.

    .venv/bin/python benchmarks/bench_scale.py [--tickers 1000 5000 10000] [--years 1 2 5]
        [--minute-tickers 5000] [--no-minute] [--no-daily] [--executor multiprocess|in_process] [--seed 7]

Each case is a real backfill, launched as Dagster launches one: a run worker process (a fresh
Python with the case's QUANT_* environment) executes ``market_trading_day_job`` over the range
(``day_aggs`` -> ``daily_bars`` -> ``daily_filtered``) in the runs its backfill policy gives -- at
most 250 sessions each, one after the other, as a backfill launches them -- and then
``market_weekly_job`` over its weeks (52 per run), on the default (multiprocess) executor: every
step in its own process. Step seconds and step memory are summed / maximised over those runs. Inputs are simulated Polygon day files (``quant_assets.simulate``),
generated once per universe size under ``benchmarks/.data/scale/`` and reused; the lake and a
SQLite instance are fresh for each case.

Printed per case: rows (day_aggs rows), wall seconds of the run worker (process start, imports,
Dagster's bookkeeping and the steps), step seconds (STEP_START to STEP_SUCCESS, the work the
graph does), rows/s, and peak memory: the peak resident set of the whole process tree (run
worker + step processes, sampled every 50 ms) and the high-water mark of the largest single step
process (``VmHWM``, exact). Then the slope of cost against rows (least squares over the cases)
and the targets: the largest case within 1.3x of the linear extrapolation from the smallest, a
10,000-ticker x 5-year backfill under 3 GB, and the minute week within 1.2x of five single days.

The machine is shared and noisy: read the ratios measured in one invocation. The script always
exits 0: it is a report, not a gate.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / ".data" / "scale"
END = dt.date(2024, 12, 31)
MINUTE_WEEK = (dt.date(2024, 6, 3), dt.date(2024, 6, 7))
DAY_ASSETS = ["market/day_aggs", "market/daily_bars", "market/daily_filtered"]
MINUTE_ASSETS = ["market/minute_aggs", "market/minute_features"]
GB = 1024**3


# ---------------------------------------------------------------------------------------------
# Inputs


def _sim_hash() -> str:
    from quant_assets.simulate import polygon as sim

    return hashlib.sha256(Path(sim.__file__).read_bytes()).hexdigest()[:10]


def landing_for(tickers: int, start: dt.date, end: dt.date, minute_days: int, seed: int) -> Path:
    """Simulated flat files for ``[start, end]``, written once and reused."""
    from quant_assets.lib.storage import LocalStore
    from quant_assets.simulate import PolygonSimSpec, simulate_polygon

    root = DATA_DIR / f"t{tickers}_{start}_{end}_m{minute_days}_s{seed}_{_sim_hash()}"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"simulating {tickers:,} tickers {start}..{end} ({minute_days} minute days) into {root} (once) ...", flush=True)
        t0 = time.perf_counter()
        report = simulate_polygon(
            LocalStore(root), PolygonSimSpec(start=start, end=end, tickers=tickers, minute_days=minute_days, seed=seed)
        )
        print(
            f"  {report.day_files} day files ({report.day_rows:,} rows), {report.minute_files} minute files "
            f"({report.minute_rows:,} rows) in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        done.write_text("ok")
    return root


# ---------------------------------------------------------------------------------------------
# The run worker (this file, run with --worker): executes the runs of one case, reports timings


def _step_seconds(instance, run_id: str) -> dict[str, dict]:
    from dagster import DagsterEventType

    starts, out = {}, {}
    for record in instance.get_records_for_run(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}).records:
        entry = record.event_log_entry
        key = entry.step_key
        if entry.dagster_event.event_type == DagsterEventType.STEP_START:
            starts[key] = (entry.timestamp, entry.dagster_event.pid)
        else:
            start, pid = starts[key]
            out[key] = {"seconds": entry.timestamp - start, "pid": pid}
    return out


def _policy_size(recon, selected) -> int | None:
    """The most partitions per run the selected assets' backfill policies allow (None: a range
    runs as one run)."""
    graph = recon.get_definition().asset_layer.asset_graph
    sizes = [graph.get(k).backfill_policy.max_partitions_per_run for k in selected if graph.get(k).backfill_policy]
    sizes = [s for s in sizes if s]
    return min(sizes) if sizes else None


def worker(spec: dict) -> None:
    from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from quant_assets.defs.partitions import trading_days, trading_weeks

    repo = ReconstructableRepository.for_module("quant_assets.definitions", "defs", working_directory=str(REPO))
    execution = {"execution": {"config": {spec["executor"]: {}}}, "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    results = []
    with DagsterInstance.get() as instance:
        for run in spec["runs"]:
            keys = (trading_weeks if run["weekly"] else trading_days).get_partition_keys()
            first, last = run.get("first") or keys[0], run.get("last") or keys[-1]
            keys = [k for k in keys if first <= k <= last]
            # The job's own checks on the selected assets (those its steps return), not the
            # cross-partition checks that run on their schedule.
            recon = repo.get_reconstructable_job(run["job"])
            selected = {AssetKey(a.split("/")) for a in run["assets"]}
            checks = {k for k in recon.get_definition().asset_layer.asset_graph.asset_check_keys if k.asset_key in selected}
            subset = recon.get_subset(asset_selection=selected, asset_check_selection=checks)
            # As a backfill launches it: one run per slice the backfill policy allows, in order.
            size = _policy_size(recon, selected) or len(keys)
            slices = [keys[i : i + size] for i in range(0, len(keys), size)]
            wall, steps, by_partition, success, run_ids = 0.0, {}, {}, True, []
            for part in slices:
                tags = {"dagster/asset_partition_range_start": part[0], "dagster/asset_partition_range_end": part[-1]}
                t0 = time.perf_counter()
                result = execute_job(subset, instance, run_config=execution, tags=tags, raise_on_error=False)
                wall += time.perf_counter() - t0
                success = success and result.success
                run_ids.append(result.run_id)
                for key, step in _step_seconds(instance, result.run_id).items():
                    entry = steps.setdefault(key, {"seconds": 0.0, "pids": []})
                    entry["seconds"] += step["seconds"]
                    entry["pids"].append(step["pid"])
                if run.get("count"):
                    wanted = AssetKey(run["count"].split("/"))
                    for record in instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
                        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
                        if mat.asset_key == wanted:
                            by_partition[mat.partition] = int(mat.metadata["dagster/row_count"].value)
                if not result.success:
                    break
            results.append({"label": run["label"], "success": success, "wall": wall, "steps": steps,
                            "rows": sum(by_partition.values()), "first": first, "last": last, "runs": len(run_ids)})
            print("RESULT " + json.dumps(results[-1]), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: starts the run worker, samples memory, prints the report


def _hwm_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclasses.dataclass
class Memory:
    tree_peak: int = 0
    hwm: dict[int, int] = dataclasses.field(default_factory=dict)


def _sample(root_pid: int, memory: Memory, stop: threading.Event) -> None:
    import psutil

    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            memory.hwm[p.pid] = max(memory.hwm.get(p.pid, 0), _hwm_bytes(p.pid))
        memory.tree_peak = max(memory.tree_peak, total)
        stop.wait(0.05)


def default_instance_dir() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def run_case(
    landing: Path, start: dt.date, end: dt.date, runs: list[dict], executor: str, instance_dir: str | None = None
) -> tuple[list[dict], Memory, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    home = Path(tempfile.mkdtemp(prefix="bench-scale-home-", dir=instance_dir))
    try:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANT_", "DAGSTER_"))} | {
            "DAGSTER_HOME": str(home),
            "QUANT_DATA_DIR": str(work / "data"),
            "QUANT_LANDING_URL": str(landing),
            "QUANT_LAKE_URL": str(work / "lake"),
            "QUANT_START_DATE": start.isoformat(),
            "QUANT_END_DATE": end.isoformat(),
        }
        spec = {"executor": executor, "runs": runs}
        t0 = time.perf_counter()
        log = open(work / "worker.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        memory, stop = Memory(), threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, memory, stop), daemon=True)
        sampler.start()
        results = [json.loads(line[7:]) for line in proc.stdout if line.startswith("RESULT ")]
        proc.wait()
        stop.set()
        sampler.join()
        log.close()
        if proc.returncode or not all(r["success"] for r in results) or len(results) < len(runs):
            print(f"  the run worker reported a failure (exit {proc.returncode}); its log ends:", flush=True)
            print((work / "worker.log").read_text(errors="replace")[-4000:], flush=True)
        return results, memory, time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _fmt_gb(n: int) -> str:
    return f"{n / GB:.2f} GB"


def daily_cases(args) -> list[dict]:
    out = []
    for tickers in args.tickers:
        landing = landing_for(tickers, dt.date(END.year - max(args.years) + 1, 1, 1), END, 0, args.seed)
        for years in args.years:
            start = dt.date(END.year - years + 1, 1, 1)
            runs = [
                {"label": "daily", "job": "market_trading_day_job", "assets": DAY_ASSETS, "weekly": False, "count": "market/day_aggs"},
                {"label": "weekly", "job": "market_weekly_job", "assets": ["market/weekly_bars"], "weekly": True},
            ]
            print(f"case {tickers:,} tickers x {years} year(s) ({start}..{END}) ...", flush=True)
            results, memory, _ = run_case(landing, start, END, runs, args.executor, args.instance_dir)
            by = {r["label"]: r for r in results}
            ok = len(by) == 2 and all(r["success"] for r in by.values())
            steps = {k: v for r in results for k, v in r["steps"].items()}
            step_hwm = {k: max(memory.hwm.get(p, 0) for p in v["pids"]) for k, v in steps.items()}
            case = {
                "tickers": tickers,
                "years": years,
                "ok": ok,
                "rows": by.get("daily", {}).get("rows", 0),
                "wall": sum(r["wall"] for r in results),
                "step_seconds": sum(v["seconds"] for v in steps.values()),
                "steps": {k: round(v["seconds"], 1) for k, v in steps.items()},
                "runs": sum(r.get("runs", 1) for r in results),
                "tree_peak": memory.tree_peak,
                "step_hwm": max(step_hwm.values(), default=0),
                "step_hwm_by_step": step_hwm,
            }
            out.append(case)
            print(
                f"  {'ok' if ok else 'FAILED'}: {case['rows']:,} rows in {case['runs']} runs, wall {case['wall']:.1f}s, steps {case['step_seconds']:.1f}s "
                f"({case['steps']}), peak tree {_fmt_gb(case['tree_peak'])}, step peaks "
                + ", ".join(f"{k.split('__')[-1]} {_fmt_gb(v)}" for k, v in step_hwm.items()),
                flush=True,
            )
    return out


def minute_case(args) -> dict:
    first, last = MINUTE_WEEK
    start = first - dt.timedelta(days=7)  # a week of day files before: the spike baseline has sessions
    landing = landing_for(args.minute_tickers, start, last, 5, args.seed)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(5)]
    runs = [{"label": "daily_bars", "job": "market_trading_day_job", "assets": DAY_ASSETS[:2], "weekly": False}]
    # Interleaved: week, five days, week, five days (best of two for each side).
    for rep in range(args.minute_repeat):
        runs.append({"label": f"week{rep}", "job": "market_minute_job", "assets": MINUTE_ASSETS, "weekly": False,
                     "first": days[0], "last": days[-1], "count": "market/minute_aggs"})
        for d in days:
            runs.append({"label": f"day{rep}_{d}", "job": "market_minute_job", "assets": MINUTE_ASSETS, "weekly": False,
                         "first": d, "last": d, "count": "market/minute_aggs"})
    print(f"minute week {days[0]}..{days[-1]}, {args.minute_tickers:,} tickers ...", flush=True)
    results, memory, _ = run_case(landing, start, last, runs, args.executor, args.instance_dir)
    by = {r["label"]: r for r in results}
    out = {"ok": all(r["success"] for r in results) and len(results) == len(runs), "reps": []}
    for rep in range(args.minute_repeat):
        week = by.get(f"week{rep}")
        singles = [by.get(f"day{rep}_{d}") for d in days]
        if week is None or any(s is None for s in singles):
            continue
        out["reps"].append({
            "rows": week["rows"],
            "week_wall": week["wall"],
            "days_wall": sum(s["wall"] for s in singles),
            "week_steps": sum(v["seconds"] for v in week["steps"].values()),
            "days_steps": sum(v["seconds"] for s in singles for v in s["steps"].values()),
            "week_hwm": max((memory.hwm.get(p, 0) for v in week["steps"].values() for p in v["pids"]), default=0),
        })
    out["tree_peak"] = memory.tree_peak
    return out


def report(daily: list[dict], minute: dict | None) -> None:
    import numpy as np

    if daily:
        print("\n== daily market graph (day_aggs -> daily_bars -> daily_filtered, then weekly_bars), default executor")
        print(f"{'tickers':>8} {'years':>5} {'rows':>12} {'wall s':>8} {'step s':>8} {'rows/s (steps)':>15} {'peak tree':>10} {'largest step':>12}")
        for c in daily:
            rate = c["rows"] / c["step_seconds"] if c["step_seconds"] else 0
            print(
                f"{c['tickers']:>8,} {c['years']:>5} {c['rows']:>12,} {c['wall']:>8.1f} {c['step_seconds']:>8.1f} "
                f"{rate:>15,.0f} {_fmt_gb(c['tree_peak']):>10} {_fmt_gb(c['step_hwm']):>12}" + ("" if c["ok"] else "  FAILED")
            )
        good = sorted((c for c in daily if c["ok"] and c["rows"]), key=lambda c: c["rows"])
        if len(good) >= 2:
            rows = np.array([c["rows"] for c in good], dtype=float)
            for name, key in (("step seconds", "step_seconds"), ("wall seconds", "wall")):
                cost = np.array([c[key] for c in good])
                slope, intercept = np.polyfit(rows, cost, 1)
                small, large = good[0], good[-1]
                extrapolated = small[key] * large["rows"] / small["rows"]
                print(
                    f"slope of {name} against rows: {slope * 1e6:.2f} s per million rows (+ {intercept:.1f} s fixed); "
                    f"largest case {large[key]:.1f}s vs {extrapolated:.1f}s extrapolated linearly from the smallest: "
                    f"{large[key] / extrapolated:.2f}x (target <= 1.3x: {'met' if large[key] <= 1.3 * extrapolated else 'MISSED'})"
                )
        big = [c for c in daily if c["tickers"] == 10_000 and c["years"] == 5]
        if big:
            c = big[0]
            print(
                f"10,000 tickers x 5 years: peak {_fmt_gb(c['tree_peak'])} for the whole process tree, largest step "
                f"{_fmt_gb(c['step_hwm'])} (target < 3 GB: {'met' if c['ok'] and c['tree_peak'] < 3 * GB else 'MISSED'}); "
                f"per step: " + ", ".join(f"{k} {_fmt_gb(v)}" for k, v in c["step_hwm_by_step"].items())
            )
        else:
            print("10,000 tickers x 5 years: not run (pass --tickers 10000 --years 5)")
    if minute:
        print("\n== one full-universe minute week (minute_aggs -> minute_features) vs five single days, default executor")
        for i, r in enumerate(minute["reps"]):
            print(
                f"rep {i}: {r['rows']:,} minute rows; week run wall {r['week_wall']:.1f}s vs five day runs {r['days_wall']:.1f}s "
                f"({r['week_wall'] / r['days_wall']:.2f}x); steps {r['week_steps']:.1f}s vs {r['days_steps']:.1f}s "
                f"({r['week_steps'] / r['days_steps']:.2f}x); week's largest step {_fmt_gb(r['week_hwm'])}"
            )
        if minute["reps"]:
            week = min(r["week_steps"] for r in minute["reps"])
            days = min(r["days_steps"] for r in minute["reps"])
            print(
                f"best of {len(minute['reps'])}: week {week:.1f}s vs five days {days:.1f}s of step time = {week / days:.2f}x "
                f"(target <= 1.2x: {'met' if week <= 1.2 * days else 'MISSED'})" + ("" if minute["ok"] else "  (a run FAILED)")
            )


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--years", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--minute-tickers", type=int, default=5000, help="universe of the minute week (~2.2M rows a day at 5000)")
    parser.add_argument("--minute-repeat", type=int, default=2, help="interleaved repetitions of week vs five days")
    parser.add_argument("--no-minute", action="store_true")
    parser.add_argument("--no-daily", action="store_true")
    parser.add_argument("--executor", choices=("multiprocess", "in_process"), default="multiprocess")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--instance-dir",
        default=default_instance_dir(),
        help="where each case's SQLite Dagster instance lives (default /dev/shm: on a plain disk every event "
        "commit waits for fsync, which then dominates and measures the disk, not the graph)",
    )
    args = parser.parse_args()
    print(f"Dagster instance (SQLite) under {args.instance_dir or tempfile.gettempdir()}; lake and landing zone on disk "
          f"under {tempfile.gettempdir()} and {DATA_DIR}; executor {args.executor}", flush=True)
    daily = [] if args.no_daily else daily_cases(args)
    minute = None if args.no_minute else minute_case(args)
    report(daily, minute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
