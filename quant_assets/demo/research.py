"""The research group's part of ``quant-assets demo``: the simulated Ken French factor files,
then technical features and range labels over every trading day, the MACD features, events and
training rows of the minute days, and the models and analyses.

The demo keeps every Config default except where its three-minute budget needs less (said in
its output): the daily research tables cover the newest 150 sessions (the indicators still read
the whole history of ``market/daily_bars`` from the lake, so their values are the same as a full
backfill's), the backtests run on the 3 most liquid members of each rebalance date of the dated
liquid universe (vectorbt compiles on its first call),
LightGBM fits 100 rounds on 3 walk-forward folds, and on a short history the folds, purge gap and
regression minimum shrink -- or the models are skipped -- to fit the days there are.
"""

from __future__ import annotations

import time

from quant_assets.demo.launch import RunSpec
from quant_assets.demo.run import DemoDomain, DemoSettings

# Below this many sessions the technical indicators (lookbacks up to 200 bars) leave too little
# to train on: the demo skips the four models.
MIN_SESSIONS_FOR_MODELS = 60
DEMO_BACKTEST_TICKERS = 3
DEMO_LGBM_ROUNDS = 100
DEMO_FOLDS = 3
# Sessions of daily research tables the demo materializes (the newest ones). Every partition is
# a Dagster event to record; 150 sessions (seven months) keep the demo inside its time budget.
DEMO_RESEARCH_SESSIONS = 150


def prepare(s: DemoSettings) -> list[str]:
    from quant_assets.defs.resources import configured_landing_store
    from quant_assets.lib.sources import kenfrench
    from quant_assets.simulate import simulate_kenfrench

    store = configured_landing_store()
    keys = [kenfrench.landing_key(d) for d in (kenfrench.THREE_FACTOR, kenfrench.FIVE_FACTOR)]
    if all(store.exists(k) for k in keys) and not s.resimulate:
        return [f"landing zone {store.url} already holds the Ken French factor files; skipping the simulator"]
    t0 = time.perf_counter()
    rep = simulate_kenfrench(store, s.start, s.end, seed=s.seed)
    return [f"simulated Ken French daily factor zips ({rep.rows} days) into {store.url}/{kenfrench.LANDING_PREFIX} ({time.perf_counter() - t0:.1f}s)"]


def _op(name: str) -> str:
    return f"research__{name}"


def analysis_run_config(sessions: int) -> dict:
    """Config overrides of the demo's analysis run for a history of ``sessions`` days."""
    n_splits = DEMO_FOLDS
    gap = 5 if sessions >= 120 else 2
    model = {"n_splits": n_splits, "gap_days": gap}
    return {
        "ops": {
            _op("lgbm_classifier"): {"config": {**model, "n_estimators": DEMO_LGBM_ROUNDS}},
            _op("lgbm_regressor"): {"config": {**model, "n_estimators": DEMO_LGBM_ROUNDS}},
            _op("linear_model"): {"config": model},
            _op("logistic_model"): {"config": model},
            _op("backtests"): {"config": {"n_liquid": DEMO_BACKTEST_TICKERS, "min_bars": 35}},
            _op("factor_models"): {"config": {"min_obs": max(5, min(60, sessions // 2))}},
            **({_op("liquid_universe"): {"config": short_history_universe(sessions)}} if sessions < SHORT_HISTORY else {}),
        }
    }


# Below this many sessions the liquid universe's default 63-session window leaves few rebalance
# dates: the demo ranks on half the history, re-ranked weekly (the Config defaults otherwise).
SHORT_HISTORY = 126


def short_history_universe(sessions: int) -> dict:
    window = max(2, min(63, sessions // 2))
    return {"window": window, "min_history": max(1, (4 * window) // 5), "rebalance": "weekly"}


def research_days(s: DemoSettings) -> list[str]:
    """The trading-day partitions of the demo's daily research tables: the newest
    ``DEMO_RESEARCH_SESSIONS`` sessions' worth of weekdays."""
    from quant_assets.defs.partitions import trading_days

    keys = trading_days.get_partition_keys()
    sessions = s.sessions()
    if len(sessions) <= DEMO_RESEARCH_SESSIONS:
        return keys
    first = sessions[-DEMO_RESEARCH_SESSIONS].isoformat()
    return [k for k in keys if k >= first]


def runs(s: DemoSettings) -> list[RunSpec]:
    from quant_assets.defs.research import automation as auto

    sessions = s.sessions()
    days = research_days(s)
    minute_days = [d.isoformat() for d in sessions[-s.minute_days :]] if s.minute_days else []
    specs = [
        RunSpec("technical features", auto.research_technical_job.name, first=days[0], last=days[-1]),
        RunSpec("range-expansion labels", auto.research_range_labels_job.name, first=days[0], last=days[-1]),
    ]
    if minute_days:
        specs.append(RunSpec("MACD, events, dataset", auto.research_minute_job.name, first=minute_days[0], last=minute_days[-1]))
    config = analysis_run_config(min(len(sessions), DEMO_RESEARCH_SESSIONS))
    if len(sessions) >= MIN_SESSIONS_FOR_MODELS:
        specs.append(RunSpec("models and analyses", auto.research_analysis_job.name, run_config=config))
    else:
        keep = [a for a in auto.ANALYSIS_ASSETS if a.key.path[-1] not in ("lgbm_classifier", "lgbm_regressor", "linear_model", "logistic_model")]
        ops = {k: v for k, v in config["ops"].items() if k in {_op(a.key.path[-1]) for a in keep}}
        specs.append(
            RunSpec("analyses (no models)", auto.research_analysis_job.name, assets=[a.key for a in keep], run_config={"ops": ops})
        )
    return specs


def _latest(instance, name: str) -> dict:
    from dagster import AssetKey, AssetRecordsFilter

    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(["research", name])), limit=1).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def report(instance, s: DemoSettings) -> list[str]:
    import polars as pl
    from dagster_aws.s3 import S3Resource

    from quant_assets.defs.resources import Lake
    from quant_assets.lib import settings as qs

    lake = Lake(url=qs.lake_url(), s3=S3Resource())
    days = research_days(s)
    lines = [
        f"demo settings: daily research tables for {days[0]}..{days[-1]} (the newest {DEMO_RESEARCH_SESSIONS} sessions at most, to fit the demo's time budget; "
        "indicators read the full history from the lake); backtests on the "
        f"{DEMO_BACKTEST_TICKERS} most liquid names of each rebalance date; LightGBM {DEMO_LGBM_ROUNDS} rounds, {DEMO_FOLDS} folds "
        "(Config defaults: 10 names, 200 rounds, 5 folds)"
    ]
    if len(s.sessions()) < MIN_SESSIONS_FOR_MODELS:
        lines.append(f"models skipped: {len(s.sessions())} sessions, fewer than {MIN_SESSIONS_FOR_MODELS}")
    for name, metric in (
        ("lgbm_classifier", "cv/roc_auc"),
        ("lgbm_regressor", "cv/ic"),
        ("linear_model", "cv/r2"),
        ("logistic_model", "cv/roc_auc"),
    ):
        meta = _latest(instance, name)
        if metric in meta:
            m = metric.split("/")[1]

            def fmt(key: str, sign: str = "") -> str:
                v = meta.get(f"cv/{key}")
                return "-" if v is None else format(v, f"{sign}.3f")

            lines.append(
                f"{name}: walk-forward {m} {meta[metric]:.3f} on {meta.get('training_rows', 0):,} rows | no-skill baselines: "
                f"shuffled labels {fmt('shuffled_' + m)}, constant {fmt('constant_' + m)} | gap {fmt('gap_' + m, '+')}"
            )

    def table(name: str) -> pl.DataFrame | None:
        try:
            return lake.read_frame(f"research/{name}.parquet")
        except FileNotFoundError:
            return None

    ic = table("factor_evaluation")
    if ic is not None and ic.height:
        for h in sorted(set(ic["horizon"].to_list())):
            best = ic.filter(pl.col("horizon") == h).drop_nulls("icir").sort(pl.col("icir").abs(), descending=True).head(3)
            for r in best.iter_rows(named=True):
                t = "-" if r["t_stat"] is None else f"{r['t_stat']:+.2f}"
                how = r["t_method"] + (f", {r['hac_lags']} lags" if r["hac_lags"] else "")
                shuffled = "-" if r["shuffled_ic_mean"] is None else f"{r['shuffled_ic_mean']:+.4f}"
                lines.append(
                    f"factor IC h={h}: {r['feature']} mean IC {r['ic_mean']:+.4f}, ICIR {r['icir']:+.2f}, t {t} ({how}) "
                    f"over {r['n_dates']} dates; shuffled factor IC {shuffled}"
                )
    fm = table("factor_models")
    if fm is not None and fm.height:
        spy = fm.filter((pl.col("ticker") == "SPY") & (pl.col("model") == "capm"))
        if spy.height:
            r = spy.row(0, named=True)
            lines.append(f"factor models: SPY CAPM beta {r['beta_mkt_rf']:.3f}, R^2 {r['r_squared']:.3f} ({fm['ticker'].n_unique()} tickers)")
    bt = table("backtests")
    if bt is not None and bt.height:
        for r in bt.group_by("strategy").agg(pl.col("total_return").mean(), pl.col("n_trades").sum()).sort("strategy").iter_rows(named=True):
            lines.append(f"backtest {r['strategy']}: mean total return {r['total_return']:+.1%}, {r['n_trades']} trades")
    universe = table("liquid_universe")
    if universe is not None and universe.height:
        exits = _latest(instance, "performance_report").get("portfolio_exits")
        lines.append(
            f"liquid universe: {universe['rebalance_date'].n_unique()} rebalance dates, {universe['ticker'].n_unique()} distinct members"
            + (f"; the filtered portfolio sold {exits} name(s) that stopped trading" if exits is not None else "")
        )
    perf = table("performance_report")
    if perf is not None and perf.height:
        p = perf.filter(pl.col("name") == "portfolio")
        if p.height and p["sharpe_ratio"][0] is not None:
            r = p.row(0, named=True)
            lines.append(f"equal-weight filtered portfolio: {r['n_days']} days, Sharpe {r['sharpe_ratio']:.2f}, beta {r['beta'] if r['beta'] is not None else float('nan'):.2f}")
    return lines


DEMO = DemoDomain(name="research", prepare=prepare, runs=runs, report=report)
