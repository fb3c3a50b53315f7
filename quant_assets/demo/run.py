"""``quant-assets demo``: simulate every vendor, materialize every domain, print what was built.

Each domain contributes a :class:`DemoDomain` from ``quant_assets/demo/<domain>.py``:
``prepare`` writes its simulated vendor inputs, ``runs`` lists the runs to launch (in order) and
``report`` returns the figures to print at the end. Runs are launched against the workspace's
code location (see :mod:`quant_assets.demo.launch`), so the UI lists and re-executes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from quant_assets.demo.launch import RunSpec

# Order matters: later domains read what earlier ones materialized.
DOMAIN_MODULES = ("market", "research", "client_intel", "smart_money", "pump")


@dataclasses.dataclass
class DemoSettings:
    start: dt.date
    end: dt.date
    tickers: int
    minute_days: int
    seed: int
    resimulate: bool

    def sessions(self) -> list[dt.date]:
        from quant_assets.lib import calendar as cal

        return cal.trading_days(self.start, self.end)


@dataclasses.dataclass
class DemoDomain:
    name: str
    prepare: Callable[[DemoSettings], list[str]]
    runs: Callable[[DemoSettings], list[RunSpec]]
    report: Callable[[object, DemoSettings], list[str]] = lambda instance, settings: []


def load_domains(names: Sequence[str] | None = None) -> list[DemoDomain]:
    wanted = list(names) if names else list(DOMAIN_MODULES)
    unknown = [n for n in wanted if n not in DOMAIN_MODULES]
    if unknown:
        raise SystemExit(f"unknown domain(s) {unknown}; choose from {list(DOMAIN_MODULES)}")
    return [importlib.import_module(f"quant_assets.demo.{n}").DEMO for n in DOMAIN_MODULES if n in wanted]


def summarise(instance, run_ids: Sequence[str]) -> list[tuple[str, int, int | None, float]]:
    """(asset, partitions materialized, rows, seconds): rows from each partition's own
    ``dagster/row_count`` (None for an asset that is not a table: a model, a report), seconds
    from the steps that materialized the asset."""
    from dagster import DagsterEventType

    partitions: dict[str, set] = defaultdict(set)
    rows: dict[str, int | None] = defaultdict(lambda: None)
    seconds: dict[str, float] = defaultdict(float)
    for run_id in run_ids:
        step_assets: dict[str, set[str]] = defaultdict(set)
        step_secs: dict[str, float] = {}
        for rec in instance.all_logs(run_id):
            ev = rec.dagster_event
            if ev is None:
                continue
            if ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                mat = ev.event_specific_data.materialization
                name = mat.asset_key.to_user_string()
                step_assets[ev.step_key].add(name)
                partitions[name].add(mat.partition)
                value = mat.metadata.get("dagster/row_count")
                if value is not None:
                    rows[name] = (rows[name] or 0) + int(value.value)
            elif ev.event_type == DagsterEventType.STEP_SUCCESS:
                step_secs[ev.step_key] = ev.event_specific_data.duration_ms / 1000.0
        for step, names in step_assets.items():
            for name in names:
                seconds[name] += step_secs.get(step, 0.0) / len(names)
    return [(name, len(partitions[name]), rows[name], seconds[name]) for name in sorted(partitions)]


def _failure_text(instance, run_id: str) -> str:
    lines = []
    for rec in instance.all_logs(run_id):
        ev = rec.dagster_event
        if ev is not None and ev.is_failure:
            err = getattr(ev.event_specific_data, "error", None)
            lines.append(err.message.strip() if err is not None else (ev.message or ""))
    return "\n".join(lines[-3:])


def run(args) -> int:
    from dagster import DagsterInstance, DagsterRunStatus

    from quant_assets.demo.launch import WorkspaceLauncher
    from quant_assets.lib import calendar as cal
    from quant_assets.lib import settings as qs

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    settings = DemoSettings(
        start=qs.start_date(),
        end=qs.end_date() or cal.latest_complete_weekday(),
        tickers=args.tickers,
        minute_days=args.minute_days,
        seed=args.seed,
        resimulate=args.resimulate,
    )
    domains = load_domains(args.domains)
    instance = DagsterInstance.get()
    run_ids: list[str] = []
    reports: list[tuple[str, list[str]]] = []
    with WorkspaceLauncher(instance) as launcher:
        for domain in domains:
            print(f"{domain.name}:")
            for line in domain.prepare(settings):
                print(f"  {line}")
            for spec in domain.runs(settings):
                t0 = time.perf_counter()
                finished = launcher.execute(spec)
                ok = finished.status == DagsterRunStatus.SUCCESS
                span = f"{spec.first}..{spec.last}" if spec.first and spec.last and spec.last != spec.first else (spec.first or "-")
                print(
                    f"  run {finished.run_id[:8]} {spec.label:<26} {span:<24} "
                    f"{'ok' if ok else 'FAILED'} ({time.perf_counter() - t0:.1f}s)"
                )
                run_ids.append(finished.run_id)
                if not ok:
                    print(_failure_text(instance, finished.run_id), file=sys.stderr)
                    return 1
            reports.append((domain.name, domain.report(instance, settings)))

    print()
    print(f"{'asset':<40}{'partitions':>11}{'rows':>13}{'seconds':>10}")
    print("-" * 74)
    for name, n_parts, n_rows, secs in summarise(instance, run_ids):
        shown = f"{n_rows:,}" if n_rows is not None else "-"
        print(f"{name:<40}{n_parts:>11}{shown:>13}{secs:>10.1f}")
    print("-" * 74)
    for name, lines in reports:
        if lines:
            print(f"\n{name}:")
            for line in lines:
                print(f"  {line}")
    print(f"\ntotal {time.perf_counter() - t_all:.1f}s")
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    print("Open the UI on the same instance:  make dev   (then http://127.0.0.1:3000)")
    return 0
