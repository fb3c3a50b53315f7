"""Research, backtests: vectorbt strategy backtests and the performance report over the dated
liquid universe, delisting exits realised (``quant_assets.lib.research.backtests``,
``.performance``)."""


import polars as pl
from dagster import AssetDep, AssetExecutionContext, AssetIn, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.common import all_daily, dated_returns, key_table, require_bars, table_meta
from quant_assets.defs.research.keys import ALL_DAYS, BENCHMARK, KEYS, TRADES_CHECK
from quant_assets.defs.resources import Lake
from quant_assets.lib.research import performance, universe
from quant_assets.lib.research.backtests import (
    BACKTEST_DOCS,
    BACKTEST_SCHEMA,
    BacktestParams,
    delisted_names,
    growth_series,
    idle_strategies,
    run_backtests,
)

BACKTEST_CHECKS = qc.AssetChecks(
    KEYS["backtests"], qc.Check(TRADES_CHECK, "Every strategy traded at least once on some ticker (warns).", blocking=False)
)
PERFORMANCE_CHECKS = qc.AssetChecks(KEYS["performance_report"])


def delisting_field():
    """The ``delisting_return`` knob, the same on every asset that trades or reports held names."""
    return Field(
        default=universe.DELISTING_RETURN,
        ge=-1.0,
        le=10.0,
        description="A held name that stops trading is sold at its last close x (1 + this); 0 = at the last close, -0.3 = a typical performance delisting.",
    )


@mirrors(BacktestParams)
class BacktestConfig(BaseModel):
    tickers: list[str] = Field(default=[], description="Tickers to backtest on all their bars; empty = the members of research/liquid_universe.")
    n_liquid: int = Field(
        default=10, ge=1, description="When tickers is empty: the first n_liquid members of each rebalance date, each traded only while a member."
    )
    strategies: list[str] = Field(default=["macd", "rsi"], description="Strategies to run: 'macd' and/or 'rsi'.")
    min_bars: int = Field(default=60, ge=35, description="Tickers with fewer bars are skipped (and listed).")
    delisting_return: float = delisting_field()


@house_asset(
    KEYS["backtests"], "analysis", {"vectorbt", "polars"}, "2",
    metadata=table_meta(BACKTEST_SCHEMA, BACKTEST_DOCS, partitioned=False), ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])},
    deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)], checks=BACKTEST_CHECKS, config=BacktestConfig,
)
def backtests(context: AssetExecutionContext, liquid_universe: pl.DataFrame, lake: Lake):
    """vectorbt backtests of the MACD zero-cross and RSI mean-reversion strategies, one row per
    (ticker, strategy), long only, all-in.

    Signals from each ticker's own daily bars (TA-Lib-exact MACD / RSI); a signal on bar t's close
    fills at bar t+1's open with ``fees`` and ``slippage``. Stats use 252 days a year. Equity
    curves (USD) are stored beside the table (``research/backtests/equity_curves.parquet``).

    Names: ``tickers`` on all their bars, or the dated ``research/liquid_universe``: each of its
    first ``n_liquid`` members is simulated from its first member session, enters only while a
    member and is sold at the open of the first session it is not. A held name that stops
    trading is sold on the next session at its last close x (1 + ``delisting_return``).
    """
    config = parse(BacktestConfig, context)
    daily = all_daily(lake, ["ticker", "date", "open", "close", "volume"])
    if config.tickers:
        tickers, membership = list(config.tickers), None
        require_bars(daily, tickers)
    else:
        tickers, membership = universe.selection(liquid_universe, config.n_liquid, daily["date"].unique().to_list())
    params = lib_params(config, BacktestParams)
    try:
        stats, equity, notes = run_backtests(
            daily, tickers, config.strategies, params, min_bars=config.min_bars, membership=membership, delisting_return=config.delisting_return
        )
    except ValueError as exc:
        raise Failure(description=f"research/backtests: {exc}") from None
    curve_key = "research/backtests/equity_curves.parquet"
    lake.write_frame(curve_key, equity)
    if not tickers:
        notes.append("research/liquid_universe has no member yet: the history is shorter than its window (window, min_history)")
    meta = {
        "stats": key_table(stats, 60),
        "equity_curves_file": MetadataValue.path(lake.describe(curve_key)),
        "tickers": MetadataValue.json(tickers),
        "universe": "tickers (config)" if config.tickers else f"research/liquid_universe, first {config.n_liquid} of each rebalance date",
        "delisted": MetadataValue.json(delisted_names(stats)),
        "skipped": MetadataValue.json(notes),
    }
    series = growth_series(stats, equity, daily, config.strategies, config.init_cash)
    if series:
        title = "Equity per 1 USD invested, mean over tickers"
        meta.update(lakeio.chart(lake, "research/charts/backtests_equity.png", series, title, "growth of 1 USD", fmt="{:.3f}"))
    idle = idle_strategies(stats, config.strategies)
    outcome = qc.Outcome(not idle, f"No trade at all for {idle}." if idle else "Every strategy traded.", {"idle_strategies": MetadataValue.json(idle)})
    return BACKTEST_CHECKS.materialize(context, stats, meta, {TRADES_CHECK: outcome})


class PerformanceConfig(BaseModel):
    tickers: list[str] = Field(default=[], description="Names to report over their whole history; empty = the members of research/liquid_universe.")
    n_liquid: int = Field(
        default=20, ge=0, description="When tickers is empty: the first n_liquid members of each rebalance date, each reported over the sessions it was held."
    )
    benchmark: str = Field(default=BENCHMARK, description="Benchmark ticker for alpha, beta and the information ratio.")
    delisting_return: float = delisting_field()


@house_asset(
    KEYS["performance_report"], "analysis", {"polars", "numpy"}, "2",
    metadata=table_meta(performance.PERFORMANCE_SCHEMA, performance.COLUMN_DOCS, partitioned=False),
    ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])},
    deps=[
        AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS),
        AssetDep(MARKET_KEYS["daily_filtered"], partition_mapping=ALL_DAYS),
    ],
    checks=PERFORMANCE_CHECKS, config=PerformanceConfig,
)
def performance_report(context: AssetExecutionContext, liquid_universe: pl.DataFrame, lake: Lake):
    """Risk and return of each name against the benchmark, and of the equal-weight portfolio of
    ``market/daily_filtered`` (row ``name = 'portfolio'``).

    Daily simple returns ``ret_1d`` of ``market/daily_bars`` on the dates where both the name and
    the benchmark have one. The portfolio holds, over day D's return, the names in the filtered
    universe on the previous session (membership known before D); a held name that stops trading
    is sold at its last close x (1 + ``delisting_return``), never dropped. Names: ``tickers``
    over their whole history, or the first ``n_liquid`` members of each rebalance date of
    ``research/liquid_universe``, each over the sessions it was held. Every figure is empyrical's
    function of the same name (252 days a year, zero risk-free rate, historical VaR / CVaR at 5 %);
    undefined figures (no variance, no drawdown) are null.
    """
    config = parse(PerformanceConfig, context)
    daily = all_daily(lake, ["ticker", "date", "close", "volume", "ret_1d"])
    bench = daily.filter(pl.col("ticker") == config.benchmark)
    if bench.drop_nulls("ret_1d").is_empty():
        raise Failure(description=f"benchmark {config.benchmark} has no daily returns in market/daily_bars")
    returns, names = dated_returns(daily, liquid_universe.filter(pl.col("ticker") != config.benchmark), config.tickers, config.n_liquid, config.delisting_return)
    filtered, _ = lakeio.read_partitions(lake, MARKET_KEYS["daily_filtered"], trading_days.get_partition_keys(), ["ticker", "date"])
    series = performance.name_series(returns, names)
    series["portfolio"] = portfolio = performance.equal_weight_portfolio(daily, filtered, delisting_return=config.delisting_return)
    table, aligned = performance.performance_table(series, bench)
    meta = {
        "report": key_table(table, 40),
        "benchmark": config.benchmark,
        **performance.portfolio_figures(portfolio),
        "names_from": "tickers (config)" if config.tickers else f"research/liquid_universe, first {config.n_liquid} of each rebalance date",
        "delisting_return": config.delisting_return,
    }
    lines = performance.cumulative_lines(aligned["portfolio"], "portfolio", config.benchmark)
    if lines:
        title = "Cumulative return: equal-weight filtered universe vs benchmark"
        meta.update(lakeio.chart(lake, "research/charts/performance_report.png", lines, title, "cumulative return", zero_line=True, fmt="{:+.1%}"))
    return PERFORMANCE_CHECKS.materialize(context, table, meta)
