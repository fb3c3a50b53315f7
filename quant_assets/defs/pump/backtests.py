"""Pump, backtests: the composite replayed bar by bar on out-of-sample signals, and the
portfolio backtest (``quant_assets.lib.pump.backtest``, ``.portfolio``)."""


import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.pump.common import (
    fail,
    pump_kwargs,
    read_lake_partition,
    research_closes,
    table_meta,
)
from quant_assets.defs.pump.keys import (
    AGREEMENT_CHECK,
    BACKTEST_CSV,
    EQUITY_CHECK,
    KEYS,
)
from quant_assets.defs.resources import Lake
from quant_assets.lib.pump import backtest as pbt
from quant_assets.lib.pump import portfolio as pport
from quant_assets.lib.pump import schemas as sch


class BacktestConfig(BaseModel):
    position_scope: str = Field(
        default="score_range",
        description="'score_range': one position at a time per score range (the optimizer's assumption; figures "
        "agree exactly); 'global': one position shared by all ranges.",
    )


@asset(
    key=KEYS["backtest_trades"],
    **pump_kwargs("analysis", {"csv", "parquet"}, "2"),
    metadata=table_meta(sch.BACKTEST_TRADES_SCHEMA, file=f"lake: {BACKTEST_CSV}"),
    ins={"composite_strategy": AssetIn(key=KEYS["composite_strategy"]), "signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    deps=[KEYS["delta_bars_1s"]],
    check_specs=[
        qc.spec(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            "With position_scope 'score_range', each range's trades, total PnL, win rate, profit factor and drawdown "
            "equal the composite strategy's figures exactly.",
        ),
        qc.schema_spec(KEYS["backtest_trades"]),
    ],
    config_schema=config_schema(BacktestConfig),
)
def backtest_trades(
    context: AssetExecutionContext,
    composite_strategy: pl.DataFrame,
    signal_analysis: pl.DataFrame,
    lake: Lake,
):
    """The composite strategy replayed on the timeline with position tracking, walked bar by bar:
    one row per trade (entry, exit, reason, PnL fraction after the fee, cumulative PnL), also
    written as ``backtest_trades.csv`` in the lake. With walk-forward champions (the default)
    only out-of-sample signals are traded, each under the champion of the fold evaluating it
    (``sample = out_of_sample``); in-sample champions trade the signals they were chosen on
    (``sample = in_sample``)."""
    config = parse(BacktestConfig, context)
    if config.position_scope not in pbt.SCOPES:
        raise fail(f"position_scope must be one of {pbt.SCOPES}, got {config.position_scope!r}")
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    champions = sch.conform(composite_strategy, sch.COMPOSITE_SCHEMA)
    closes, offsets = research_closes(lake, research)
    rep = pbt.replay(research, closes, offsets, champions, position_scope=config.position_scope)
    trades = rep.trades
    lake.store().write_bytes(BACKTEST_CSV, trades.write_csv().encode())
    per_range = pbt.figures(trades) if trades.height else {}
    if config.position_scope == "score_range":
        problems = pbt.disagreements(champions, trades)
        agreement = qc.result(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            not problems,
            "; ".join(problems[:5]) if problems else "Every score range's figures equal the composite strategy's exactly.",
            {"differences": MetadataValue.json(problems[:50])},
        )
    else:
        agreement = qc.result(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            True,
            "position_scope 'global' shares one position across ranges: the figures differ from the per-range optimizer "
            "by design; nothing to compare.",
        )
    sample = "out_of_sample" if champions.height and champions["selection"][0] == "walk_forward" else "in_sample"
    run_meta = (
        {
            "sample": sample,
            **_evaluation_window(champions),
            "file": MetadataValue.path(lake.describe(BACKTEST_CSV)),
            "trades": trades.height,
            "total_pnl": float(trades["pnl"].sum()) if trades.height else 0.0,
            "skipped_position_open": rep.skipped_busy,
            "skipped_no_entry": rep.no_entry,
            "exit_reasons": MetadataValue.json(dict(trades.group_by("exit_reason").len().iter_rows()) if trades.height else {}),
            "by_score_range": MetadataValue.json({k: {**v, "profit_factor": None if np.isinf(v["profit_factor"]) else v["profit_factor"]} for k, v in per_range.items()}),
        }
    )
    return MaterializeResult(metadata=run_meta, value=trades, check_results=[agreement, qc.schema_result(context, KEYS["backtest_trades"], trades.schema)])


class PortfolioConfig(BaseModel):
    sl: float = Field(default=0.05, gt=0, lt=1, description="Stop loss below the entry reference price, fraction.")
    activation: float = Field(default=0.04, ge=0, description="Rise over the entry that arms the trailing exit, fraction.")
    callback: float = Field(default=0.02, gt=0, lt=1, description="Fall from the running high that exits once armed, fraction.")
    timeout: int = Field(default=240, ge=1, description="Longest hold, minutes.")
    fee_rate: float = Field(default=0.0005, ge=0, description="Fee per side, fraction of the notional (0.05 % taker).")
    slippage_bps: float = Field(default=10.0, ge=0, description="Slippage per fill, basis points (entries pay up, exits give up).")
    initial_capital: float = Field(default=10_000.0, gt=0, description="Starting cash, USDT.")
    position_size: float = Field(default=0.1, gt=0, le=1, description="Notional per position, fraction of book equity.")
    max_positions: int = Field(default=5, ge=1, description="Most positions open at once.")
    only_composite_signals: bool = Field(
        default=False, description="Trade only signals passing their score range's champion filter (else every research signal)."
    )
    signals: str = Field(
        default="out_of_sample",
        description="'out_of_sample': only signals of the walk-forward evaluation windows (each under its fold's champion "
        "filter with only_composite_signals); 'all': every research signal (in sample for the champions' filters).",
    )


@asset(
    key=KEYS["portfolio_backtest"],
    **pump_kwargs("analysis", {"polars", "parquet"}, "2"),
    metadata=table_meta(sch.EQUITY_SCHEMA),
    ins={"signal_analysis": AssetIn(key=KEYS["signal_analysis"]), "composite_strategy": AssetIn(key=KEYS["composite_strategy"])},
    deps=[KEYS["minute_candles"]],
    check_specs=[
        qc.spec(
            KEYS["portfolio_backtest"],
            EQUITY_CHECK,
            "Equity = cash + positions at every minute, cash never negative, the final equity equals initial capital "
            "plus the trades' net PnL.",
        ),
        qc.schema_spec(KEYS["portfolio_backtest"]),
    ],
    config_schema=config_schema(PortfolioConfig),
)
def portfolio_backtest(
    context: AssetExecutionContext,
    signal_analysis: pl.DataFrame,
    composite_strategy: pl.DataFrame,
    lake: Lake,
):
    """A multi-asset portfolio on 1-minute candles: every research signal (or only those passing
    the composite filters) traded with one rule -- stop ``sl``, trailing ``activation`` /
    ``callback``, ``timeout`` minutes -- with slippage and fees, sized from book equity, at most
    ``max_positions`` at once. One row per minute of the equity curve (USDT); the metrics
    (return, drawdown, daily Sharpe annualised with sqrt(365), win rate, skips) are in the
    metadata, with a text chart of the curve."""
    config = parse(PortfolioConfig, context)
    if config.signals not in ("out_of_sample", "all"):
        raise fail(f"signals must be 'out_of_sample' or 'all', got {config.signals!r}")
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    champions = sch.conform(composite_strategy, sch.COMPOSITE_SCHEMA)
    chosen = pport.portfolio_signals(research, champions, out_of_sample=config.signals == "out_of_sample", only_composite=config.only_composite_signals)
    window = _evaluation_window(champions) if config.signals == "out_of_sample" else {"window": "all research signals"}
    sample = "out_of_sample" if config.signals == "out_of_sample" and "evaluation_start" in window else "in_sample"
    research = chosen
    frames = []
    for d in sorted(set(research["signal_date"].to_list())):
        c = read_lake_partition(lake, KEYS["minute_candles"], d.isoformat())
        if c is None:
            raise fail(f"pump/minute_candles {d} is not materialized; materialize the signal days first")
        frames.append(c)
    candles = pl.concat(frames) if frames else sch.empty(sch.MINUTE_CANDLES_SCHEMA)
    rules = pport.PortfolioRules(
        sl=config.sl,
        activation=config.activation,
        callback=config.callback,
        timeout_minutes=config.timeout,
        fee_rate=config.fee_rate,
        slippage=config.slippage_bps / 10_000.0,
        initial_capital=config.initial_capital,
        position_size=config.position_size,
        max_positions=config.max_positions,
    )
    res = pport.simulate_portfolio(research, candles, rules)
    eq = res.equity
    problems = []
    if eq.height:
        if (eq["cash"] < -1e-9).any():
            problems.append("cash went negative")
        if ((eq["equity"] - eq["cash"] - eq["positions_value"]).abs() > 1e-6).any():
            problems.append("equity != cash + positions")
        net = float((res.trades["proceeds"] - res.trades["cost"]).sum())
        if abs(float(eq["equity"][-1]) - (config.initial_capital + net)) > 1e-6 * config.initial_capital:
            problems.append(f"final equity {float(eq['equity'][-1]):.2f} != capital + net PnL {config.initial_capital + net:.2f}")
    metrics = {k: (v if v is not None else float("nan")) for k, v in res.metrics.items()}
    run_meta = (
        {
            "sample": sample,
            **window,
            "signals_traded_from": research.height,
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
            "equity_chart": MetadataValue.md(pport.text_chart(eq)),
            "trades_preview": MetadataValue.md(md.markdown_preview(res.trades, 10)),
        }
    )
    return MaterializeResult(
        metadata=run_meta,
        value=eq,
        check_results=[
            qc.result(
                KEYS["portfolio_backtest"],
                EQUITY_CHECK,
                not problems,
                "; ".join(problems) if problems else f"{eq.height:,} minutes consistent; {res.trades.height} trade(s).",
                {"problems": MetadataValue.json(problems)},
            ),
            qc.schema_result(context, KEYS["portfolio_backtest"], eq.schema),
        ],
    )


def _evaluation_window(champions: pl.DataFrame) -> dict:
    """Metadata naming the signals a backtest traded: the out-of-sample window, or in sample."""
    if not champions.height or champions["selection"][0] != "walk_forward":
        return {"window": "in sample: every research signal (the signals the champions were chosen on)"}
    start, end = champions["evaluation_start"].min(), champions["evaluation_end"].max()
    return {
        "window": f"out of sample: {start.isoformat()} .. {end.isoformat()} (each fold's evaluation window)",
        "evaluation_start": start.isoformat(),
        "evaluation_end": end.isoformat(),
    }
