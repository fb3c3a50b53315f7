"""Pump, backtests: the composite replayed bar by bar on out-of-sample signals, and the
portfolio backtest (``quant_assets.lib.pump.backtest``, ``.portfolio``)."""


import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.pump.common import fail, read_lake_partition, research_closes, table_meta
from quant_assets.defs.pump.keys import AGREEMENT_CHECK, BACKTEST_CSV, EQUITY_CHECK, KEYS
from quant_assets.defs.resources import Lake
from quant_assets.lib import frames
from quant_assets.lib.pump import backtest, composite, portfolio, schemas

TRADE_CHECKS = qc.AssetChecks(
    KEYS["backtest_trades"],
    qc.Check(
        AGREEMENT_CHECK,
        "With position_scope 'score_range', each range's trades, total PnL, win rate, profit factor and drawdown "
        "equal the composite strategy's figures exactly.",
    ),
)
EQUITY_CHECKS = qc.AssetChecks(
    KEYS["portfolio_backtest"],
    qc.Check(
        EQUITY_CHECK,
        "Equity = cash + positions at every minute, cash never negative, the final equity equals initial capital "
        "plus the trades' net PnL.",
    ),
)


class BacktestConfig(BaseModel):
    position_scope: str = Field(
        default="score_range",
        description="'score_range': one position at a time per score range (the optimizer's assumption; figures "
        "agree exactly); 'global': one position shared by all ranges.",
    )


@house_asset(
    KEYS["backtest_trades"], "analysis", {"csv", "parquet"}, "2",
    metadata=table_meta(schemas.BACKTEST_TRADES_SCHEMA, file=f"lake: {BACKTEST_CSV}"),
    ins={"composite_strategy": AssetIn(key=KEYS["composite_strategy"]), "signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    deps=[KEYS["delta_bars_1s"]], checks=TRADE_CHECKS, config=BacktestConfig,
)
def backtest_trades(context: AssetExecutionContext, composite_strategy: pl.DataFrame, signal_analysis: pl.DataFrame, lake: Lake):
    """The composite strategy replayed on the timeline with position tracking, walked bar by bar:
    one row per trade (entry, exit, reason, PnL fraction after the fee, cumulative PnL), also
    written as ``backtest_trades.csv`` in the lake. With walk-forward champions (the default)
    only out-of-sample signals are traded, each under the champion of the fold evaluating it
    (``sample = out_of_sample``); in-sample champions trade the signals they were chosen on
    (``sample = in_sample``)."""
    config = parse(BacktestConfig, context)
    if config.position_scope not in backtest.SCOPES:
        raise fail(f"position_scope must be one of {backtest.SCOPES}, got {config.position_scope!r}")
    research = schemas.conform(signal_analysis, schemas.SIGNAL_ANALYSIS_SCHEMA)
    champions = schemas.conform(composite_strategy, schemas.COMPOSITE_SCHEMA)
    closes, offsets = research_closes(lake, research)
    rep = backtest.replay(research, closes, offsets, champions, position_scope=config.position_scope)
    trades = rep.trades
    lake.store().write_bytes(BACKTEST_CSV, trades.write_csv().encode())
    run_meta = {
        "sample": "out_of_sample" if champions.height and champions["selection"][0] == "walk_forward" else "in_sample",
        **composite.evaluation_window(champions),
        "file": MetadataValue.path(lake.describe(BACKTEST_CSV)),
        "trades": trades.height,
        "total_pnl": float(trades["pnl"].sum()) if trades.height else 0.0,
        "skipped_position_open": rep.skipped_busy,
        "skipped_no_entry": rep.no_entry,
        "exit_reasons": MetadataValue.json(frames.value_counts(trades, "exit_reason")),
        "by_score_range": MetadataValue.json(backtest.range_figures_json(trades)),
    }
    return TRADE_CHECKS.materialize(context, trades, run_meta, {AGREEMENT_CHECK: _agreement(config.position_scope, champions, trades)})


def _agreement(scope: str, champions: pl.DataFrame, trades: pl.DataFrame) -> qc.Outcome:
    if scope != "score_range":
        return qc.Outcome(
            True,
            "position_scope 'global' shares one position across ranges: the figures differ from the per-range optimizer "
            "by design; nothing to compare.",
        )
    problems = backtest.disagreements(champions, trades)
    return qc.Outcome(
        not problems,
        "; ".join(problems[:5]) if problems else "Every score range's figures equal the composite strategy's exactly.",
        {"differences": MetadataValue.json(problems[:50])},
    )


@mirrors(portfolio.PortfolioRules, rename={"timeout": "timeout_minutes", "slippage_bps": "slippage"}, convert={"slippage_bps": lambda bps: bps / 10_000.0})
class PortfolioConfig(BaseModel):
    timeout: int = Field(default=portfolio.PortfolioRules.timeout_minutes, ge=1, description="Longest hold, minutes.")
    slippage_bps: float = Field(default=portfolio.PortfolioRules.slippage * 10_000.0, ge=0, description="Slippage per fill, basis points (entries pay up, exits give up).")
    only_composite_signals: bool = Field(
        default=False, description="Trade only signals passing their score range's champion filter (else every research signal)."
    )
    signals: str = Field(
        default="out_of_sample",
        description="'out_of_sample': only signals of the walk-forward evaluation windows (each under its fold's champion "
        "filter with only_composite_signals); 'all': every research signal (in sample for the champions' filters).",
    )

@house_asset(
    KEYS["portfolio_backtest"], "analysis", {"polars", "parquet"}, "2",
    metadata=table_meta(schemas.EQUITY_SCHEMA),
    ins={"signal_analysis": AssetIn(key=KEYS["signal_analysis"]), "composite_strategy": AssetIn(key=KEYS["composite_strategy"])},
    deps=[KEYS["minute_candles"]], checks=EQUITY_CHECKS, config=PortfolioConfig,
)
def portfolio_backtest(context: AssetExecutionContext, signal_analysis: pl.DataFrame, composite_strategy: pl.DataFrame, lake: Lake):
    """A multi-asset portfolio on 1-minute candles: every research signal (or only those passing
    the composite filters) traded with one rule -- stop ``sl``, trailing ``activation`` /
    ``callback``, ``timeout`` minutes -- with slippage and fees, sized from book equity, at most
    ``max_positions`` at once. One row per minute of the equity curve (USDT); the metrics
    (return, drawdown, daily Sharpe annualised with sqrt(365), win rate, skips) are in the
    metadata, with a text chart of the curve."""
    config = parse(PortfolioConfig, context)
    if config.signals not in ("out_of_sample", "all"):
        raise fail(f"signals must be 'out_of_sample' or 'all', got {config.signals!r}")
    research = schemas.conform(signal_analysis, schemas.SIGNAL_ANALYSIS_SCHEMA)
    champions = schemas.conform(composite_strategy, schemas.COMPOSITE_SCHEMA)
    chosen = portfolio.portfolio_signals(research, champions, out_of_sample=config.signals == "out_of_sample", only_composite=config.only_composite_signals)
    window = composite.evaluation_window(champions) if config.signals == "out_of_sample" else {"window": "all research signals"}
    res = portfolio.simulate_portfolio(chosen, _candles(lake, chosen), lib_params(config, portfolio.PortfolioRules))
    eq = res.equity
    problems = portfolio.ledger_problems(eq, res.trades, config.initial_capital)
    metrics = {k: (v if v is not None else float("nan")) for k, v in res.metrics.items()}
    run_meta = {
        "sample": "out_of_sample" if config.signals == "out_of_sample" and "evaluation_start" in window else "in_sample",
        **window,
        "signals_traded_from": chosen.height,
        **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
        "equity_chart": MetadataValue.md(portfolio.text_chart(eq)),
        "trades_preview": MetadataValue.md(md.markdown_preview(res.trades, 10)),
    }
    outcome = qc.Outcome(
        not problems,
        "; ".join(problems) if problems else f"{eq.height:,} minutes consistent; {res.trades.height} trade(s).",
        {"problems": MetadataValue.json(problems)},
    )
    return EQUITY_CHECKS.materialize(context, eq, run_meta, {EQUITY_CHECK: outcome})


def _candles(lake: Lake, research: pl.DataFrame) -> pl.DataFrame:
    """The minute candles of the research signals' days, from the lake."""
    days = []
    for d in sorted(set(research["signal_date"].to_list())):
        c = read_lake_partition(lake, KEYS["minute_candles"], d.isoformat())
        if c is None:
            raise fail(f"pump/minute_candles {d} is not materialized; materialize the signal days first")
        days.append(c)
    return pl.concat(days) if days else schemas.empty(schemas.MINUTE_CANDLES_SCHEMA)
