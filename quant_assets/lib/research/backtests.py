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

Over a dated universe (``membership``: the sessions each name may be held, decided before the
session opens), a name is simulated from its first member session: entries fill only on member
sessions, and a position is sold at the open of the first session the name is no longer a
member. Signals still use the name's whole past (indicators need their warm-up), never a bar
after the signal. A name whose bars stop before the sample's last session (a delisting) while
it may still be held gets one more bar on the next session, priced at its last close times
``1 + delisting_return``, where any open position is sold: the exit is realised, never dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from quant_assets.lib.knobs import check_knobs, knob
from quant_assets.lib.research import indicators, performance
from quant_assets.lib.research.universe import DELISTING_RETURN

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
    "delisted": pl.Boolean(),
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
    "delisted": "The name stopped trading before the sample's end while it could be held: a held position was sold at its last close x (1 + delisting_return)",
}
EQUITY_SCHEMA = {"date": pl.Date(), "ticker": pl.String(), "strategy": pl.String(), "equity": pl.Float64()}


@dataclasses.dataclass(frozen=True)
class BacktestParams:
    rsi_period: int = knob(14, "RSI lookback of the rsi strategy.", ge=2)
    oversold: float = knob(indicators.RSI_OVERSOLD, "RSI crossing below this enters.")
    overbought: float = knob(indicators.RSI_OVERBOUGHT, "RSI crossing above this exits.")
    fees: float = knob(0.001, "Fees per fill, fraction of traded value (0.001 = 10 bp).", ge=0)
    slippage: float = knob(0.0005, "Slippage per fill, fraction of price, against the trade.", ge=0)
    init_cash: float = knob(10_000.0, "Starting cash per ticker and strategy, USD.", gt=0)

    def __post_init__(self) -> None:
        check_knobs(self)


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


def _simulated_bars(
    bars: pl.DataFrame, allowed: np.ndarray | None, next_session: dt.date | None, delisting_return: float
) -> tuple[pl.DataFrame, np.ndarray, int, bool]:
    """(bars to simulate, may-hold mask, first simulated row, delisted) of one name: its bars
    from the first allowed one, and the delisting bar when its bars stop before the sample
    does while it may still be held."""
    allow = np.ones(bars.height, dtype=bool) if allowed is None else allowed.astype(bool)
    first = int(np.argmax(allow)) if allow.any() else bars.height
    delisted = next_session is not None and bool(allow[-1])  # it could be held on its last bar
    if delisted:
        last_close = float(bars["close"][-1]) * (1.0 + delisting_return)
        extra = pl.DataFrame({"date": [next_session], "open": [last_close], "close": [last_close]}, schema=bars.schema)
        bars = pl.concat([bars, extra])
        allow = np.r_[allow, False]
    return bars, allow, first, delisted


def backtest_ticker(
    bars: pl.DataFrame,
    ticker: str,
    strategies: Sequence[str],
    params: BacktestParams,
    *,
    allowed: np.ndarray | None = None,
    next_session: dt.date | None = None,
    delisting_return: float = DELISTING_RETURN,
):
    """Stats rows and equity curve of each strategy on one ticker's bars (date, open, close),
    sorted by date. ``allowed``: per bar, whether the name may be held over it (None: always);
    ``next_session``: the session after the name's last bar when the sample goes on without it
    (its delisting day): a position held on the last bar is sold there at the last close x
    (1 + ``delisting_return``)."""
    import pandas as pd
    import vectorbt as vbt

    close_all = bars["close"].to_numpy().astype(float)
    cols = list(strategies)
    signals = {}
    for s in cols:
        if s == "macd":
            signals[s] = macd_signals(close_all)
        elif s == "rsi":
            signals[s] = rsi_signals(close_all, params.rsi_period, params.oversold, params.overbought)
        else:
            raise ValueError(f"unknown strategy {s!r}; choose from {STRATEGIES}")
    bars, allow, first, delisted = _simulated_bars(bars, allowed, next_session, delisting_return)
    pad = bars.height - close_all.size
    sizes = {}
    for s in cols:
        e, x = (np.r_[sig, np.zeros(pad, dtype=bool)] for sig in signals[s])
        # Decided on bar t's close, filled at bar t+1's open, only while the name may be held;
        # a name that may no longer be held is sold at that open.
        sizes[s] = order_sizes(_shift(e) & allow, _shift(x) | ~allow)[first:]
    bars = bars[first:]
    close = bars["close"].to_numpy().astype(float)
    open_ = bars["open"].to_numpy().astype(float)
    index = pd.DatetimeIndex(bars["date"].to_list())
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
            "delisted": delisted,
        }
        rows.append({k: (None if isinstance(x, float) and not math.isfinite(x) else x) for k, x in row.items()})
        curves.append(
            pl.DataFrame({"date": bars["date"], "equity": v}).with_columns(
                pl.lit(ticker).alias("ticker"), pl.lit(s).alias("strategy")
            )
        )
    return rows, curves


def run_backtests(
    daily: pl.DataFrame,
    tickers: Sequence[str],
    strategies: Sequence[str],
    params: BacktestParams,
    *,
    min_bars: int = 60,
    membership: pl.DataFrame | None = None,
    delisting_return: float = DELISTING_RETURN,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(stats, equity curves, notes) for every ticker with at least ``min_bars`` bars.

    ``membership`` (date, ticker): the sessions each name may be held (a dated universe); None
    holds any name on any of its bars. A name whose bars stop before the last session of
    ``daily`` is sold on the next session at its last close x (1 + ``delisting_return``)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {STRATEGIES}")
    if not strategies:
        raise ValueError("no strategy selected")
    if not -1.0 <= delisting_return <= 10.0:
        raise ValueError(f"delisting_return is a fraction of the last close, between -1 and 10; got {delisting_return}")
    sessions = sorted(set(daily["date"].to_list()))
    rows, curves, notes = [], [], []
    for t in tickers:
        bars = daily.filter(pl.col("ticker") == t).select("date", "open", "close").drop_nulls().sort("date")
        if bars.height < min_bars:
            notes.append(f"{t}: {bars.height} bar(s), fewer than min_bars={min_bars}; not backtested")
            continue
        allowed = None
        if membership is not None:
            member_days = set(membership.filter(pl.col("ticker") == t)["date"].to_list())
            allowed = np.array([d in member_days for d in bars["date"].to_list()], dtype=bool)
            if not allowed.any():
                notes.append(f"{t}: never a member on a session it traded; not backtested")
                continue
        last = bars["date"][-1]
        after = sessions[sessions.index(last) + 1] if last != sessions[-1] else None
        r, c = backtest_ticker(bars, t, strategies, params, allowed=allowed, next_session=after, delisting_return=delisting_return)
        rows += r
        curves += c
    stats = pl.DataFrame(rows, schema=BACKTEST_SCHEMA) if rows else pl.DataFrame(schema=BACKTEST_SCHEMA)
    equity = pl.concat(curves).select(list(EQUITY_SCHEMA)) if curves else pl.DataFrame(schema=EQUITY_SCHEMA)
    return stats, equity, notes


def growth_series(stats: pl.DataFrame, equity: pl.DataFrame, daily: pl.DataFrame, strategies, init_cash: float) -> dict:
    """``{label: (dates, growth of 1 USD)}`` for the equity chart: each strategy's mean over its
    (ticker) curves, and buy and hold of the same names over the same spans (bought at the first
    open, valued at each close), averaged over names."""
    if not equity.height:
        return {}
    norm = equity.with_columns((pl.col("equity") / init_cash).alias("growth"))
    avg = norm.group_by("date", "strategy").agg(pl.col("growth").mean()).sort("date")
    series = {}
    for s in strategies:
        g = avg.filter(pl.col("strategy") == s)
        if g.height:
            series[f"{s} (mean of {stats.filter(pl.col('strategy') == s).height})"] = (g["date"].to_list(), g["growth"].to_list())
    spans = stats.select("ticker", "start", "end").unique()
    held = daily.join(spans, on="ticker").filter(pl.col("date").is_between(pl.col("start"), pl.col("end"))).sort("date")
    first = held.group_by("ticker").agg(pl.col("open").first().alias("o0"))
    held = held.join(first, on="ticker").with_columns((pl.col("close") / pl.col("o0")).alias("growth"))
    mean = held.group_by("date").agg(pl.col("growth").mean()).sort("date")
    series["buy and hold (mean)"] = (mean["date"].to_list(), mean["growth"].to_list())
    return series


def idle_strategies(stats: pl.DataFrame, strategies) -> list[str]:
    """Strategies without a single trade on any ticker."""
    traded = set(stats.filter(pl.col("n_trades") > 0)["strategy"].to_list()) if stats.height else set()
    return [s for s in strategies if s not in traded]


def delisted_names(stats: pl.DataFrame) -> list[str]:
    """Tickers whose backtest ended in a delisting exit."""
    return sorted(set(stats.filter(pl.col("delisted"))["ticker"].to_list()))
