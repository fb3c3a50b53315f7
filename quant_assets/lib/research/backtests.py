"""Daily long-only strategy backtests with vectorbt.

Strategies (signals on each ticker's own daily bars, indicators from :mod:`.indicators`):

* ``macd``: enter when the MACD(12,26,9) histogram crosses above zero, exit when it crosses below
  (the zero-cross rule of :mod:`.macd`: zeros skipped);
* ``rsi``: mean reversion -- enter when RSI(``rsi_period``) crosses below ``oversold`` (previous
  bar >= oversold, this bar < oversold), exit when it crosses above ``overbought``.

Execution: a signal computed on bar t's close is filled at bar t+1's **open** (no trading on a
close that was needed to compute the signal), all-in with ``init_cash``, paying ``fees`` (fraction
of traded value) and ``slippage`` (fraction of price, against us) on every fill. A position still
open at the end is valued at the last close. Figures use 252 trading days a year, like
:mod:`.performance`; ``total_return`` is vectorbt's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from quant_assets.lib.research import indicators, performance

STRATEGIES = ("macd", "rsi")

BACKTEST_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "strategy": pl.String(),
    "start": pl.Date(),
    "end": pl.Date(),
    "n_days": pl.Int64(),
    "total_return": pl.Float64(),
    "annual_return": pl.Float64(),
    "annual_volatility": pl.Float64(),
    "sharpe_ratio": pl.Float64(),
    "max_drawdown": pl.Float64(),
    "n_trades": pl.Int64(),
    "win_rate": pl.Float64(),
    "exposure": pl.Float64(),
    "fees_paid": pl.Float64(),
    "final_value": pl.Float64(),
    "buy_and_hold_return": pl.Float64(),
}
BACKTEST_DOCS: dict[str, str] = {
    "ticker": "Symbol traded",
    "strategy": "macd (histogram zero crosses) or rsi (oversold / overbought mean reversion)",
    "start": "First bar of the ticker in the sample",
    "end": "Last bar",
    "n_days": "Bars simulated",
    "total_return": "Final value / init_cash - 1 (vectorbt total_return), fraction",
    "annual_return": "Compound annual growth rate of the equity curve, 252 bars a year",
    "annual_volatility": "Sample std of daily equity returns x sqrt(252)",
    "sharpe_ratio": "mean / std of daily equity returns x sqrt(252), zero risk-free rate; null without variance",
    "max_drawdown": "Largest peak-to-trough fall of the equity curve, negative fraction",
    "n_trades": "Round trips opened (one still open at the end included)",
    "win_rate": "Share of closed round trips whose sale proceeds exceed the purchase cost, fees included; null without closed trades",
    "exposure": "Share of bars holding a position",
    "fees_paid": "Fees paid, USD",
    "final_value": "Equity at the last close, USD",
    "buy_and_hold_return": "Last close / first open - 1 of the ticker over the same bars, fraction",
}
EQUITY_SCHEMA = {"date": pl.Date(), "ticker": pl.String(), "strategy": pl.String(), "equity": pl.Float64()}


@dataclasses.dataclass(frozen=True)
class BacktestParams:
    rsi_period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0
    fees: float = 0.001
    slippage: float = 0.0005
    init_cash: float = 10_000.0


def macd_signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits) on the bars where the MACD histogram crosses above / below zero."""
    _, _, hist = indicators.macd(close)
    entries = np.zeros(close.size, dtype=bool)
    exits = np.zeros(close.size, dtype=bool)
    last = 0
    for i, h in enumerate(hist):
        if not h == h:  # NaN before the lookback
            continue
        s = 1 if h > 0 else (-1 if h < 0 else 0)
        if s == 0:
            continue
        if last == -1 and s == 1:
            entries[i] = True
        elif last == 1 and s == -1:
            exits[i] = True
        last = s
    return entries, exits


def rsi_signals(close: np.ndarray, period: int, oversold: float, overbought: float) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits): RSI crossing below ``oversold`` / above ``overbought``."""
    if not 0 < oversold < overbought < 100:
        raise ValueError(f"need 0 < oversold < overbought < 100, got oversold={oversold}, overbought={overbought}")
    r = indicators.rsi(close, period)
    prev = np.r_[np.nan, r[:-1]]
    with np.errstate(invalid="ignore"):
        entries = (prev >= oversold) & (r < oversold)
        exits = (prev <= overbought) & (r > overbought)
    return entries, exits


def _shift(signal: np.ndarray) -> np.ndarray:
    """Move signals one bar later: decided on bar t's close, executed on bar t+1."""
    out = np.zeros_like(signal)
    out[1:] = signal[:-1]
    return out


def order_sizes(entries: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """vectorbt order sizes of a long-only all-in strategy: +inf (buy with all cash) on an entry
    while flat, -inf (sell everything) on an exit while long, NaN (no order) otherwise. An exit
    and an entry on the same bar while flat enter; while long they exit."""
    size = np.full(entries.size, np.nan)
    long = False
    for i in range(entries.size):
        if not long and entries[i] and not exits[i]:
            size[i] = np.inf
            long = True
        elif long and exits[i]:
            size[i] = -np.inf
            long = False
    return size


def _trade_stats(records: np.ndarray, column: int) -> tuple[int, float]:
    """(round trips opened, share of closed ones with a positive P&L after fees)."""
    rec = records[records["col"] == column]
    buys = rec[rec["side"] == 0]
    sells = rec[rec["side"] == 1]
    wins = 0
    for buy, sell in zip(buys, sells):
        pnl = sell["size"] * sell["price"] - sell["fees"] - (buy["size"] * buy["price"] + buy["fees"])
        wins += pnl > 0
    closed = len(sells)
    return len(buys), (wins / closed if closed else math.nan)


def backtest_ticker(bars: pl.DataFrame, ticker: str, strategies: Sequence[str], params: BacktestParams):
    """Stats rows and equity curve of each strategy on one ticker's bars (date, open, close)."""
    import pandas as pd
    import vectorbt as vbt

    bars = bars.sort("date")
    close = bars["close"].to_numpy().astype(float)
    open_ = bars["open"].to_numpy().astype(float)
    index = pd.DatetimeIndex(bars["date"].to_list())
    cols = list(strategies)
    sizes = {}
    for s in cols:
        if s == "macd":
            e, x = macd_signals(close)
        elif s == "rsi":
            e, x = rsi_signals(close, params.rsi_period, params.oversold, params.overbought)
        else:
            raise ValueError(f"unknown strategy {s!r}; choose from {STRATEGIES}")
        sizes[s] = order_sizes(_shift(e), _shift(x))
    # from_orders (not from_signals): its compiled simulator is cached by numba between runs.
    pf = vbt.Portfolio.from_orders(
        close=pd.DataFrame({s: close for s in cols}, index=index),
        size=pd.DataFrame(sizes, index=index)[cols],
        price=pd.DataFrame({s: open_ for s in cols}, index=index),
        fees=params.fees,
        slippage=params.slippage,
        init_cash=params.init_cash,
        direction="longonly",
        freq="1D",
    )
    value = pf.value()
    total = pf.total_return()
    held = pf.asset_value() > 0
    records = pf.orders.values  # structured array: col, idx, size, price, fees, side
    rows, curves = [], []
    for j, s in enumerate(cols):
        v = value[s].to_numpy()
        rets = np.diff(np.r_[params.init_cash, v]) / np.r_[params.init_cash, v[:-1]]
        n_trades, win_rate = _trade_stats(records, j)
        row = {
            "ticker": ticker,
            "strategy": s,
            "start": bars["date"][0],
            "end": bars["date"][-1],
            "n_days": int(v.size),
            "total_return": float(total[s]),
            "annual_return": performance.annual_return(rets),
            "annual_volatility": performance.annual_volatility(rets),
            "sharpe_ratio": performance.sharpe_ratio(rets),
            "max_drawdown": performance.max_drawdown(rets),
            "n_trades": n_trades,
            "win_rate": win_rate,
            "exposure": float(held[s].mean()),
            "fees_paid": float(records[records["col"] == j]["fees"].sum()),
            "final_value": float(v[-1]),
            "buy_and_hold_return": float(close[-1] / open_[0] - 1.0),
        }
        rows.append({k: (None if isinstance(x, float) and not math.isfinite(x) else x) for k, x in row.items()})
        curves.append(
            pl.DataFrame({"date": bars["date"], "equity": v}).with_columns(
                pl.lit(ticker).alias("ticker"), pl.lit(s).alias("strategy")
            )
        )
    return rows, curves


def run_backtests(
    daily: pl.DataFrame, tickers: Sequence[str], strategies: Sequence[str], params: BacktestParams, *, min_bars: int = 60
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(stats, equity curves, notes) for every ticker with at least ``min_bars`` bars."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {STRATEGIES}")
    if not strategies:
        raise ValueError("no strategy selected")
    rows, curves, notes = [], [], []
    for t in tickers:
        bars = daily.filter(pl.col("ticker") == t).select("date", "open", "close").drop_nulls()
        if bars.height < min_bars:
            notes.append(f"{t}: {bars.height} bar(s), fewer than min_bars={min_bars}; not backtested")
            continue
        r, c = backtest_ticker(bars, t, strategies, params)
        rows += r
        curves += c
    stats = pl.DataFrame(rows, schema=BACKTEST_SCHEMA) if rows else pl.DataFrame(schema=BACKTEST_SCHEMA)
    equity = pl.concat(curves).select(list(EQUITY_SCHEMA)) if curves else pl.DataFrame(schema=EQUITY_SCHEMA)
    return stats, equity, notes
