"""The clients' books replayed from the trades: FIFO lots, current positions, daily positions,
and daily PnL, exposure and risk.

Accounting conventions
    * FIFO: a closing quantity is matched against the oldest open lots of the same client and
      instrument. ``holding days`` of a matched quantity = closing trade date - opening trade
      date, in calendar days.
    * PnL is made in the instrument's quote currency and converted to USD at that day's close
      (USDJPY and USDCHF PnL is in JPY and CHF). Daily PnL = yesterday's position times today's
      price change + today's trades marked from their price to today's close.
    * Exposure of a position in USD = quantity times the base currency's USD value at the close
      (the quantity itself for USD-based pairs). Gross = sum of absolute exposures, net = sum.
    * VaR: one-day 95% historical-simulation VaR of the end-of-day positions, from the last
      ``VAR_WINDOW`` daily log returns up to and including the day (never later ones), with
      numpy's linear quantile interpolation; null while fewer than ``VAR_MIN_RETURNS`` returns
      exist; reported as a positive loss (0 when flat).
    * Drawdown = cumulative PnL minus its running peak (the peak starts at 0), <= 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
from numba import njit, prange

from quant_assets.lib.client_intel import spec
from quant_assets.lib.client_intel.market import Panel

VAR_WINDOW = 60
VAR_MIN_RETURNS = 20
VAR_LEVEL = 0.95

POSITIONS_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "instrument": pl.String(),
    "quantity": pl.Int64(),
    "avg_entry_price": pl.Float64(),
    "market_price": pl.Float64(),
    "market_value_usd": pl.Float64(),
    "unrealized_pnl_usd": pl.Float64(),
    "opened_on": pl.Date(),
    "as_of": pl.Date(),
}

PNL_RISK_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "date": pl.Date(),
    "realized_pnl_usd": pl.Float64(),
    "unrealized_pnl_usd": pl.Float64(),
    "pnl_usd": pl.Float64(),
    "cumulative_pnl_usd": pl.Float64(),
    "gross_exposure_usd": pl.Float64(),
    "net_exposure_usd": pl.Float64(),
    "var_95_1d_usd": pl.Float64(),
    "drawdown_usd": pl.Float64(),
    "open_positions": pl.Int64(),
}


class TradesError(ValueError):
    pass


@dataclasses.dataclass
class TradeArrays:
    """The trades table as arrays, sorted by client, instrument, time (FIFO order)."""

    client: np.ndarray
    instrument: np.ndarray
    day: np.ndarray
    signed_qty: np.ndarray
    price: np.ndarray
    market: np.ndarray
    opening: np.ndarray
    trade_id: np.ndarray

    @property
    def side(self) -> np.ndarray:
        return np.sign(self.signed_qty)

    @classmethod
    def from_frame(cls, trades: pl.DataFrame, client_ids: list[str], panel: Panel) -> TradeArrays:
        """Fails, naming the rows' problem, when a trade references an unknown client or
        instrument, falls outside the bars' days, or has a non-positive quantity."""
        unknown = trades.filter(~pl.col("client_id").is_in(list(client_ids)))
        if unknown.height:
            raise TradesError(
                f"{unknown.height} trade(s) of unknown client(s) {unknown['client_id'].unique().head(5).to_list()} "
                "(not in client_intel/clients)"
            )
        bad_inst = trades.filter(~pl.col("instrument").is_in(list(spec.SYMBOLS)))
        if bad_inst.height:
            raise TradesError(f"{bad_inst.height} trade(s) in unknown instrument(s) {bad_inst['instrument'].unique().to_list()}")
        day = (trades["trade_date"].to_numpy().astype("datetime64[D]") - panel.dates[0]).astype(np.int64)
        outside = (day < 0) | (day >= panel.days)
        if outside.any():
            raise TradesError(
                f"{int(outside.sum())} trade(s) dated outside the bars' days {panel.dates[0]}..{panel.dates[-1]}"
            )
        qty = trades["quantity"].to_numpy()
        if (qty <= 0).any():
            raise TradesError(f"{int((qty <= 0).sum())} trade(s) with a quantity <= 0")
        for column, allowed in (("side", ("BUY", "SELL")), ("order_type", ("MARKET", "LIMIT")), ("position_effect", ("OPEN", "CLOSE"))):
            other = sorted(set(trades[column].unique().to_list()) - set(allowed))
            if other:
                raise TradesError(f"trades.{column} has value(s) {other}; expected {list(allowed)}")
        codes = trades.select(
            pl.col("client_id").cast(pl.Enum(client_ids)).to_physical().cast(pl.Int64).alias("client"),
            pl.col("instrument").cast(pl.Enum(list(spec.SYMBOLS))).to_physical().cast(pl.Int64).alias("instrument"),
            pl.Series("day", day),
            pl.col("executed_at"),
            pl.col("trade_id"),
            pl.when(pl.col("side") == "BUY").then(pl.col("quantity")).otherwise(-pl.col("quantity")).alias("signed"),
            pl.col("price").cast(pl.Float64),
            (pl.col("order_type") == "MARKET").alias("market"),
            (pl.col("position_effect") == "OPEN").alias("opening"),
        )
        # FIFO order (client, instrument, time, trade_id) as one int64 key: a multi-column sort
        # of two million rows is several times slower.
        by_time = codes.select(pl.arg_sort_by("executed_at", "trade_id")).to_series().to_numpy()
        rank = np.empty(len(by_time), dtype=np.int64)
        rank[by_time] = np.arange(len(by_time))
        key = (codes["client"].to_numpy() * 8 + codes["instrument"].to_numpy()) * max(len(rank), 1) + rank
        codes = codes[pl.Series(key).arg_sort()]
        return cls(
            client=codes["client"].to_numpy(),
            instrument=codes["instrument"].to_numpy(),
            day=codes["day"].to_numpy(),
            signed_qty=codes["signed"].to_numpy().astype(np.int64),
            price=codes["price"].to_numpy(),
            market=codes["market"].to_numpy(),
            opening=codes["opening"].to_numpy(),
            trade_id=codes["trade_id"].to_numpy(),
        )


@njit(cache=True)
def _fifo_group(lo, hi, qty, price, day, lot_qty, lot_price, lot_day, realized, closed_qty, hold_qty_days, dcost, lot_start):
    head = lo
    tail = lo
    pos = np.int64(0)
    for k in range(lo, hi):
        q = qty[k]
        p = price[k]
        remaining = q
        # Close against open lots of the opposite sign, oldest first.
        if pos != 0 and (pos > 0) != (q > 0):
            while remaining != 0 and head < tail:
                lq = lot_qty[head]
                take = min(abs(remaining), abs(lq))
                signed_take = take if lq > 0 else -take
                realized[k] += signed_take * (p - lot_price[head])
                dcost[k] -= signed_take * lot_price[head]
                closed_qty[k] += take
                hold_qty_days[k] += take * (day[k] - lot_day[head])
                lot_qty[head] -= signed_take
                remaining += signed_take
                pos -= signed_take
                if lot_qty[head] == 0:
                    head += 1
        if remaining != 0:
            lot_qty[tail] = remaining
            lot_price[tail] = p
            lot_day[tail] = day[k]
            tail += 1
            pos += remaining
            dcost[k] += remaining * p
    lot_start[0] = head
    lot_start[1] = tail


@njit(parallel=True, cache=True)
def _fifo(bounds, qty, price, day, realized, closed_qty, hold_qty_days, dcost, open_qty, open_cost, open_day):
    n = len(qty)
    lot_qty = np.zeros(n, dtype=np.int64)
    lot_price = np.zeros(n)
    lot_day = np.zeros(n, dtype=np.int64)
    for g in prange(len(bounds) - 1):
        lo, hi = bounds[g], bounds[g + 1]
        span = np.zeros(2, dtype=np.int64)
        _fifo_group(lo, hi, qty, price, day, lot_qty, lot_price, lot_day, realized, closed_qty, hold_qty_days, dcost, span)
        q = np.int64(0)
        c = 0.0
        first = -1
        for k in range(span[0], span[1]):
            q += lot_qty[k]
            c += lot_qty[k] * lot_price[k]
            if first < 0:
                first = lot_day[k]
        open_qty[g] = q
        open_cost[g] = c
        open_day[g] = first


@dataclasses.dataclass
class Fifo:
    """Per-trade FIFO results (in ``TradeArrays`` order) and the open lots per (client, instrument)."""

    realized_quote: np.ndarray  # realized PnL of the trade's closing part, quote currency
    closed_qty: np.ndarray
    hold_qty_days: np.ndarray  # sum over matched quantity of holding days
    dcost: np.ndarray  # change of the open lots' signed cost, quote currency
    group_client: np.ndarray
    group_instrument: np.ndarray
    open_qty: np.ndarray
    open_cost: np.ndarray
    open_day: np.ndarray  # first day of the oldest open lot, -1 when flat


def fifo(tr: TradeArrays) -> Fifo:
    n = len(tr.client)
    key = tr.client * 8 + tr.instrument
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if n else np.empty(0, dtype=np.int64)
    bounds = np.concatenate([starts, [n]]).astype(np.int64)
    g = len(starts)
    realized = np.zeros(n)
    closed = np.zeros(n, dtype=np.int64)
    hold = np.zeros(n, dtype=np.int64)
    dcost = np.zeros(n)
    open_qty = np.zeros(g, dtype=np.int64)
    open_cost = np.zeros(g)
    open_day = np.full(g, -1, dtype=np.int64)
    if n:
        _fifo(bounds, tr.signed_qty, tr.price, tr.day, realized, closed, hold, dcost, open_qty, open_cost, open_day)
    return Fifo(realized, closed, hold, dcost, tr.client[starts], tr.instrument[starts], open_qty, open_cost, open_day)


def positions_frame(fi: Fifo, panel: Panel, client_ids: list[str]) -> pl.DataFrame:
    """Current positions on the last day of the bars: one row per (client, instrument) whose
    trades do not net to zero."""
    keep = fi.open_qty != 0
    c, i = fi.group_client[keep], fi.group_instrument[keep]
    qty, cost = fi.open_qty[keep], fi.open_cost[keep]
    last = panel.close[:, -1]
    q2usd = panel.quote_to_usd()[:, -1]
    b2usd = panel.base_to_usd()[:, -1]
    df = pl.DataFrame(
        {
            "client_id": pl.Series(client_ids).gather(c),
            "instrument": pl.Series(spec.SYMBOLS).gather(i),
            "quantity": qty,
            "avg_entry_price": cost / qty,
            "market_price": last[i],
            "market_value_usd": qty * b2usd[i],
            "unrealized_pnl_usd": (qty * last[i] - cost) * q2usd[i],
            "opened_on": panel.dates[fi.open_day[keep]],
            "as_of": np.full(len(c), panel.dates[-1]),
        }
    )
    return df.cast(POSITIONS_SCHEMA).sort("client_id", "instrument")


@dataclasses.dataclass
class Daily:
    """End-of-day state per (client, instrument, day)."""

    position: np.ndarray  # signed base units
    exposure_usd: np.ndarray
    realized_usd: np.ndarray  # realized that day
    unrealized_usd: np.ndarray
    pnl_usd: np.ndarray  # that day's PnL


def daily(tr: TradeArrays, fi: Fifo, panel: Panel, n_clients: int) -> Daily:
    n_inst, T = panel.close.shape
    shape = (n_clients, n_inst, T)
    flat = (tr.client * n_inst + tr.instrument) * T + tr.day
    size = n_clients * n_inst * T
    flow = np.bincount(flat, weights=tr.signed_qty.astype(np.float64), minlength=size).reshape(shape)
    position = np.cumsum(flow, axis=2)
    cost = np.cumsum(np.bincount(flat, weights=fi.dcost, minlength=size).reshape(shape), axis=2)
    close = panel.close[None]
    q2usd = panel.quote_to_usd()[None]
    # Trades marked from their price to the day's close, plus yesterday's position carried.
    marked = np.bincount(flat, weights=tr.signed_qty * (panel.close[tr.instrument, tr.day] - tr.price), minlength=size)
    pnl_quote = marked.reshape(shape)
    pnl_quote[:, :, 1:] += position[:, :, :-1] * np.diff(panel.close, axis=1)[None]
    realized_quote = np.bincount(flat, weights=fi.realized_quote, minlength=size).reshape(shape)
    return Daily(
        position=position,
        exposure_usd=position * panel.base_to_usd()[None],
        realized_usd=realized_quote * q2usd,
        unrealized_usd=(position * close - cost) * q2usd,
        pnl_usd=pnl_quote * q2usd,
    )


@njit(parallel=True, cache=True)
def _historical_var(exposure, returns, window, min_returns, level):
    """exposure (client, instrument, day) USD; returns (instrument, day) log returns, NaN on day 0.

    Only the few smallest scenario PnLs matter for the quantile, so they are kept in a small
    sorted buffer instead of sorting every scenario.
    """
    n_c, n_i, T = exposure.shape
    out = np.full((n_c, T), np.nan)
    growth = np.expm1(returns)
    for c in prange(n_c):
        held = np.empty(n_i, dtype=np.int64)
        for t in range(T):
            lo = max(1, t - window + 1)
            m = t - lo + 1
            if m < min_returns:
                continue
            k = 0
            for i in range(n_i):
                if exposure[c, i, t] != 0.0:
                    held[k] = i
                    k += 1
            if k == 0:
                out[c, t] = 0.0
                continue
            # numpy's default ("linear") quantile: between order statistics j and j + 1.
            h = (m - 1) * (1.0 - level)
            j = int(np.floor(h))
            keep = min(j + 2, m)
            low = np.full(keep, np.inf)
            for s in range(m):
                v = 0.0
                for q in range(k):
                    i = held[q]
                    v += exposure[c, i, t] * growth[i, lo + s]
                if v < low[keep - 1]:
                    pos = keep - 1
                    while pos > 0 and low[pos - 1] > v:
                        low[pos] = low[pos - 1]
                        pos -= 1
                    low[pos] = v
            q_value = low[j] + (h - j) * (low[min(j + 1, keep - 1)] - low[j])
            out[c, t] = max(0.0, -q_value)
    return out


def pnl_risk_frame(dl: Daily, panel: Panel, client_ids: list[str]) -> pl.DataFrame:
    """One row per client and day of the history."""
    n_c, n_i, T = dl.position.shape
    pnl = dl.pnl_usd.sum(axis=1)
    cum = np.cumsum(pnl, axis=1)
    peak = np.maximum.accumulate(np.maximum(cum, 0.0), axis=1)
    var = _historical_var(dl.exposure_usd, panel.log_returns(), VAR_WINDOW, VAR_MIN_RETURNS, VAR_LEVEL)
    df = pl.DataFrame(
        {
            "client_id": pl.Series(client_ids).gather(np.repeat(np.arange(n_c), T)),
            "date": np.tile(panel.dates, n_c),
            "realized_pnl_usd": dl.realized_usd.sum(axis=1).ravel(),
            "unrealized_pnl_usd": dl.unrealized_usd.sum(axis=1).ravel(),
            "pnl_usd": pnl.ravel(),
            "cumulative_pnl_usd": cum.ravel(),
            "gross_exposure_usd": np.abs(dl.exposure_usd).sum(axis=1).ravel(),
            "net_exposure_usd": dl.exposure_usd.sum(axis=1).ravel(),
            "var_95_1d_usd": var.ravel(),
            "drawdown_usd": (cum - peak).ravel(),
            "open_positions": (dl.position != 0).sum(axis=1).ravel().astype(np.int64),
        }
    )
    return df.with_columns(pl.col("var_95_1d_usd").fill_nan(None)).cast(PNL_RISK_SCHEMA)
