"""Slow, obviously-correct per-trade Python loops over the published tables.

The tests compare the vectorised book (``book``, ``features``) with these, and the benchmark
times them as its baseline: this is what a straightforward script does, one trade and one day at
a time.
"""

from __future__ import annotations

import collections
import datetime as dt
import math

import polars as pl

from quant_assets.lib.client_intel import spec

_BASE_IS_USD = {i.symbol: i.base == "USD" for i in spec.INSTRUMENTS}


def fifo_replay(trades: pl.DataFrame) -> tuple[list[dict], dict[tuple[str, str], list[list]]]:
    """Closed lot pieces [{client_id, instrument, qty, open_date, close_date, open_price, close_price,
    direction}] and the open lots {(client, instrument): [[signed qty, price, date], ...]}."""
    closed: list[dict] = []
    lots: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)
    rows = trades.sort("client_id", "instrument", "executed_at", "trade_id").iter_rows(named=True)
    for t in rows:
        key = (t["client_id"], t["instrument"])
        signed = t["quantity"] if t["side"] == "BUY" else -t["quantity"]
        book = lots[key]
        while signed != 0 and book and (book[0][0] > 0) != (signed > 0):
            lot = book[0]
            take = min(abs(signed), abs(lot[0]))
            direction = 1 if lot[0] > 0 else -1
            closed.append(
                {
                    "client_id": key[0],
                    "instrument": key[1],
                    "qty": take,
                    "open_date": lot[2],
                    "close_date": t["trade_date"],
                    "open_price": lot[1],
                    "close_price": t["price"],
                    "direction": direction,
                }
            )
            lot[0] -= direction * take
            signed += direction * take
            if lot[0] == 0:
                book.popleft()
        if signed != 0:
            book.append([signed, t["price"], t["trade_date"]])
    return closed, {k: [list(x) for x in v] for k, v in lots.items() if v}


def positions(trades: pl.DataFrame) -> dict[tuple[str, str], tuple[int, float]]:
    """{(client, instrument): (net quantity, average entry price of the open lots)} for non-flat books."""
    _, open_lots = fifo_replay(trades)
    out = {}
    for key, lots in open_lots.items():
        qty = sum(q for q, _, _ in lots)
        if qty:
            out[key] = (qty, sum(q * p for q, p, _ in lots) / qty)
    return out


def holding_period_avg(trades: pl.DataFrame) -> dict[str, float]:
    closed, _ = fifo_replay(trades)
    num: dict[str, float] = collections.defaultdict(float)
    den: dict[str, float] = collections.defaultdict(float)
    for piece in closed:
        num[piece["client_id"]] += piece["qty"] * (piece["close_date"] - piece["open_date"]).days
        den[piece["client_id"]] += piece["qty"]
    return {c: num[c] / den[c] for c in den}


def daily_pnl_usd(trades: pl.DataFrame, bars: pl.DataFrame) -> dict[tuple[str, dt.date], float]:
    """{(client, day): PnL in USD}: yesterday's position times the price change plus the day's
    trades marked to the close, in the quote currency, converted at the close; day by day."""
    close = {(r["instrument"], r["date"]): r["close"] for r in bars.iter_rows(named=True)}
    days = sorted({d for _, d in close})
    by_day: dict[dt.date, list[dict]] = collections.defaultdict(list)
    for t in trades.iter_rows(named=True):
        by_day[t["trade_date"]].append(t)
    clients = sorted(set(trades["client_id"].to_list()))
    pos: dict[tuple[str, str], int] = collections.defaultdict(int)
    out: dict[tuple[str, dt.date], float] = {}
    prev_day = None
    for day in days:
        pnl = collections.defaultdict(float)
        if prev_day is not None:
            for (client, inst), q in pos.items():
                if q:
                    quote = q * (close[(inst, day)] - close[(inst, prev_day)])
                    pnl[client] += quote / close[(inst, day)] if _BASE_IS_USD[inst] else quote
        for t in by_day.get(day, []):
            signed = t["quantity"] if t["side"] == "BUY" else -t["quantity"]
            c = close[(t["instrument"], day)]
            quote = signed * (c - t["price"])
            pnl[t["client_id"]] += quote / c if _BASE_IS_USD[t["instrument"]] else quote
            pos[(t["client_id"], t["instrument"])] += signed
        for client in clients:
            out[(client, day)] = pnl[client]
        prev_day = day
    return out


def trading_features(trades: pl.DataFrame, days: int) -> dict[str, dict[str, float]]:
    """{client: {turnover, aggressiveness, n_trades}} one trade at a time."""
    seen: dict[str, set] = collections.defaultdict(set)
    market: dict[str, int] = collections.defaultdict(int)
    count: dict[str, int] = collections.defaultdict(int)
    for t in trades.iter_rows(named=True):
        seen[t["client_id"]].add(t["trade_date"])
        market[t["client_id"]] += t["order_type"] == "MARKET"
        count[t["client_id"]] += 1
    return {
        c: {"turnover": len(seen[c]) / days, "aggressiveness": market[c] / count[c], "n_trades": count[c]} for c in count
    }


def historical_var(exposures: list[float], scenario_returns: list[list[float]], level: float = 0.95) -> float:
    """One-day historical VaR of USD exposures under past log-return scenarios (numpy's linear quantile)."""
    pnl = sorted(sum(e * math.expm1(r) for e, r in zip(exposures, rets, strict=True)) for rets in scenario_returns)
    h = (len(pnl) - 1) * (1 - level)
    j = math.floor(h)
    q = pnl[j] + (h - j) * (pnl[min(j + 1, len(pnl) - 1)] - pnl[j])
    return max(0.0, -q)
