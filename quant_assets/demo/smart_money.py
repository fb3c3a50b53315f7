"""The smart-money group's part of ``quant-assets demo``: a ``top50`` universe of a simulated dated
index membership file (eight large caps, two removed during the sample -- one re-added -- and one
added) on the simulated FMP -- universe, raw sources and features per symbol, then the dataset,
splits, model and evaluation -- and the dataset's size, label balance and the model's test
metrics."""

from __future__ import annotations

from quant_assets.demo.launch import RunSpec
from quant_assets.demo.run import DemoDomain, DemoSettings

UNIVERSE = "top50"
# The simulated FMP has no quota; the demo lifts the client's limit so that the rate limiter is
# exercised without making the demo wait on it (the real vendor keeps the 300/minute default).
DEMO_CALLS_PER_MINUTE = 6000


def membership_file() -> str:
    """The simulated index membership file the demo's universe reads (written by ``prepare``)."""
    from quant_assets.lib import settings as qs

    return str(qs.data_dir() / "smart_money" / "index_membership.csv")


def _write_membership() -> None:
    from pathlib import Path

    from quant_assets.lib.smart_money.universe import Schedule
    from quant_assets.simulate.fmp import index_membership_csv

    schedule = Schedule()
    dates = schedule.nominal_dates()
    path = Path(membership_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(index_membership_csv(dates[0].replace(day=1), dates[-1]))


def _selection():
    from quant_assets.lib.smart_money.universe import Schedule, resolve_universe

    return resolve_universe(UNIVERSE, Schedule().sample_dates(), universe_file=membership_file())


def _symbols() -> list[str]:
    return _selection().symbols


def prepare(s: DemoSettings) -> list[str]:
    from dagster import DagsterInstance

    from quant_assets.defs.partitions import smart_money_symbols
    from quant_assets.defs.vendors import FmpResource

    fmp = FmpResource.from_environment()
    lines = []
    _write_membership()
    if s.resimulate:
        cache = fmp.cache("simulated")
        if cache.clear():
            lines.append(f"cleared the simulated FMP's response cache {cache.root}")
    # Registered now (the universe run registers them too) so the runs below can name them.
    instance = DagsterInstance.get()
    existing = set(instance.get_dynamic_partitions(smart_money_symbols.name))
    new = [sym for sym in _symbols() if sym not in existing]
    if new:
        instance.add_dynamic_partitions(smart_money_symbols.name, new)
    sel = _selection()
    per_date = sorted({len(v) for v in sel.sampled.values()})
    lines.append(
        f"universe {UNIVERSE} of the simulated index membership file {membership_file()}: {len(sel.symbols)} symbols "
        f"({', '.join(sel.symbols)}), {per_date[0]}-{per_date[-1]} members per sample date"
    )
    lines.append(
        f"FMP: the simulated vendor, served in-process; "
        f"responses cached under {fmp.cache('simulated').root}"
    )
    return lines


def runs(s: DemoSettings) -> list[RunSpec]:
    from dagster import DagsterInstance

    from quant_assets.defs.partitions import smart_money_symbols
    from quant_assets.defs.smart_money.automation import smart_money_symbols_job, smart_money_training_job, smart_money_universe_job

    fetch = {"ops": {"raw_fmp_sources": {"config": {"source": "simulated", "calls_per_minute": DEMO_CALLS_PER_MINUTE}}}}
    specs = [
        RunSpec(
            "smart-money universe",
            smart_money_universe_job.name,
            run_config={"ops": {"smart_money__universe": {"config": {"universe": UNIVERSE, "universe_file": membership_file()}}}},
        )
    ]
    keys = DagsterInstance.get().get_dynamic_partitions(smart_money_symbols.name)
    symbols = _symbols()
    positions = sorted(keys.index(sym) for sym in symbols)
    if positions[-1] - positions[0] == len(symbols) - 1:
        specs.append(
            RunSpec("smart-money symbols", smart_money_symbols_job.name, first=keys[positions[0]], last=keys[positions[-1]], run_config=fetch)
        )
    else:
        # The instance knows other symbols in between: one run per symbol instead of a range.
        specs += [RunSpec(f"smart-money {sym}", smart_money_symbols_job.name, first=sym, run_config=fetch) for sym in symbols]
    specs.append(RunSpec("smart-money training", smart_money_training_job.name))
    return specs


def _latest(instance, key):
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    return records[0].asset_materialization if records else None


def report(instance, s: DemoSettings) -> list[str]:
    from dagster import AssetRecordsFilter

    from quant_assets.defs.smart_money.keys import KEYS, RAW_KEYS

    def value(event, name, default=None):
        v = event.metadata.get(name) if event is not None else None
        return v.value if v is not None else default

    data, ev = _latest(instance, KEYS["dataset"]), _latest(instance, KEYS["evaluation"])
    hits = misses = calls = 0
    # raw_hedge_fund_holdings is read from the institutional responses: counting it would count them twice.
    for table, key in RAW_KEYS.items():
        if table == "hedge_fund_holdings":
            continue
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=_symbols()), limit=len(_symbols())
        ).records
        for rec in records:
            meta = rec.asset_materialization.metadata
            hits += int(meta["cache_hits"].value) if "cache_hits" in meta else 0
            misses += int(meta["cache_misses"].value) if "cache_misses" in meta else 0
            calls += int(meta["http_calls"].value) if "http_calls" in meta else 0
    lines = []
    if data is not None:
        lines.append(
            f"dataset ({value(data, 'universe')}, survivorship: {value(data, 'survivorship', '-')}): "
            f"{value(data, 'dagster/row_count', 0):,} examples of "
            f"{value(data, 'expected_examples', 0):,} expected ({value(data, 'completeness', 0):.1%}), "
            f"{value(data, 'bullish_share', 0):.1%} bullish, {value(data, 'missing_feature_share', 0):.1%} with a missing feature"
        )
        lines.append(f"dataset CSV: {value(data, 'csv')}")
    lines.append(f"FMP sources: {calls} HTTP call(s), cache {hits} hit(s) / {misses} miss(es)")
    if ev is not None:
        lines.append(
            f"model v{value(ev, 'version')} on test ({value(ev, 'test_rows')} examples, {value(ev, 'test_dates')}): "
            f"accuracy {value(ev, 'accuracy'):.3f}, precision {value(ev, 'precision'):.3f}, "
            f"recall {value(ev, 'recall'):.3f}, F1 {value(ev, 'f1'):.3f}, ROC-AUC {value(ev, 'roc_auc'):.3f}, "
            f"precision at top 10 % {value(ev, 'precision_at_k', -1.0):.3f}"
        )
        base = value(ev, "no_skill_baselines", None)
        if base:
            lines.append(
                f"  no-skill baselines on the same test rows: ROC-AUC constant {base['constant']['roc_auc']:.3f}, "
                f"shuffled labels {base['shuffled']['roc_auc']:.3f} (gap {base['gap']['roc_auc']:+.3f}); precision at k "
                f"base rate {base['constant']['precision_at_k']:.3f}, shuffled {base['shuffled']['precision_at_k']:.3f} "
                f"(gap {base['gap']['precision_at_k']:+.3f})"
            )
    return lines


DEMO = DemoDomain(name="smart_money", prepare=prepare, runs=runs, report=report)
