"""1-second delta bars, minute candles and 5-minute candles from a signal's aggregate trades.

One bar per second from the window start for ``window_s`` seconds. A second with trades has
the first / highest / lowest / last trade price, the volume bought by aggressive buyers
(``is_buyer_maker`` false) and sold by aggressive sellers (``is_buyer_maker`` true), their
difference ``delta``, the number of aggregate trades, and how many of them were large: size
above mean + 2 sample standard deviations of the trade sizes inside that signal's window (fewer
than two trades in the window: none is large). A second without trades carries the last close
(open = high = low = close) with zero volume; the first seconds take the last trade before the
window. A window whose first seconds have no price at all (no trade before them within the
pre-window) cannot be priced without looking ahead and is reported, not filled.
"""

from __future__ import annotations

import dataclasses
import json

import numba as nb
import numpy as np
import polars as pl

from quant_assets.lib.pump.schemas import DELTA_BARS_SCHEMA, MINUTE_CANDLES_SCHEMA, UTC_MS
from quant_assets.lib.pump.trades import window_start_expr


@nb.njit(cache=True)
def _aggregate(sec, price, qty, maker, n, seed):
    """Bars from trades sorted in time; ``sec`` = second relative to the window start. A trade is
    large when its size exceeds mean + 2 sample standard deviations of the window's earlier
    trades (Welford's running moments; none is large before two earlier trades): only trades
    already printed decide it, so a later trade never changes an earlier bar."""
    o = np.empty(n)
    h = np.empty(n)
    lo = np.empty(n)
    c = np.empty(n)
    vol = np.zeros(n)
    buy = np.zeros(n)
    sell = np.zeros(n)
    cnt = np.zeros(n, dtype=np.int32)
    lbuy = np.zeros(n, dtype=np.int32)
    lsell = np.zeros(n, dtype=np.int32)
    seen = 0
    mean = 0.0
    m2 = 0.0
    for i in range(sec.shape[0]):
        k = sec[i]
        if k < 0 or k >= n:
            continue
        p = price[i]
        q = qty[i]
        threshold = mean + 2.0 * np.sqrt(m2 / (seen - 1)) if seen >= 2 else np.inf
        seen += 1
        delta = q - mean
        mean += delta / seen
        m2 += delta * (q - mean)
        if cnt[k] == 0:
            o[k] = p
            h[k] = p
            lo[k] = p
        else:
            if p > h[k]:
                h[k] = p
            if p < lo[k]:
                lo[k] = p
        c[k] = p
        cnt[k] += 1
        vol[k] += q
        if maker[i]:
            sell[k] += q
            if q > threshold:
                lsell[k] += 1
        else:
            buy[k] += q
            if q > threshold:
                lbuy[k] += 1
    last = seed
    for k in range(n):
        if cnt[k] == 0:
            o[k] = last
            h[k] = last
            lo[k] = last
            c[k] = last
        else:
            last = c[k]
    return o, h, lo, c, vol, buy, sell, cnt, lbuy, lsell


@dataclasses.dataclass
class SignalBars:
    signal_id: int
    bars: pl.DataFrame | None  # None when the window cannot be priced
    problem: str | None = None


def delta_bars(trades: pl.DataFrame, signal_id: int, start_s: int, window_s: int) -> SignalBars:
    """The bars of one signal from its trades (any order; sorted here by agg_trade_id)."""
    t = trades.sort("agg_trade_id")
    us = t["transact_time"].dt.epoch("us").to_numpy()
    sec = us // 1_000_000 - start_s
    price = t["price"].to_numpy().astype(np.float64)
    qty = t["quantity"].to_numpy().astype(np.float64)
    maker = t["is_buyer_maker"].to_numpy().astype(np.bool_)
    before = np.flatnonzero(sec < 0)
    seed = float(price[before[-1]]) if before.size else np.nan
    o, h, lo, c, vol, buy, sell, cnt, lbuy, lsell = _aggregate(sec.astype(np.int64), price, qty, maker, int(window_s), seed)
    if window_s and np.isnan(c[0]):
        first = int(np.argmax(~np.isnan(c))) if not np.all(np.isnan(c)) else -1
        return SignalBars(
            signal_id,
            None,
            f"no trade before second {first} of the window and none in the pre-window: its first seconds have no price",
        )
    bars = pl.DataFrame(
        {
            "signal_id": np.full(window_s, signal_id, dtype=np.int64),
            "second_ts": np.arange(start_s, start_s + window_s, dtype=np.int64),
            "open_price": o,
            "high_price": h,
            "low_price": lo,
            "close_price": c,
            "volume": vol,
            "buy_volume": buy,
            "sell_volume": sell,
            "delta": buy - sell,
            "trade_count": cnt,
            "large_buy_count": lbuy,
            "large_sell_count": lsell,
        },
        schema=DELTA_BARS_SCHEMA,
    )
    return SignalBars(signal_id, bars)


def delta_bars_for(trades: pl.DataFrame, starts: dict[int, int], window_s: int) -> tuple[pl.DataFrame, dict[int, str]]:
    """Bars of every signal in ``starts`` ({signal_id: window start}) from a partition's trades."""
    frames, problems = [], {}
    by_signal = trades.partition_by("signal_id", as_dict=True) if trades.height else {}
    for sid, start in starts.items():
        part = by_signal.get((sid,))
        if part is None:
            problems[sid] = "no trades stored for the signal"
            continue
        got = delta_bars(part, sid, start, window_s)
        if got.bars is None:
            problems[sid] = got.problem or "unpriced"
        else:
            frames.append(got.bars)
    out = pl.concat(frames) if frames else pl.DataFrame(schema=DELTA_BARS_SCHEMA)
    return out, problems


@nb.njit(cache=True)
def _buckets(sig, sec, o, h, lo, c, v, bv, cnt, seconds):
    """Candles of ``seconds`` from bars sorted by (signal, second): one pass over the runs."""
    n = sig.shape[0]
    m = 0
    for i in range(n):
        if i == 0 or sig[i] != sig[i - 1] or sec[i] // seconds != sec[i - 1] // seconds:
            m += 1
    out_sig = np.empty(m, dtype=np.int64)
    out_t = np.empty(m, dtype=np.int64)
    oo = np.empty(m)
    hh = np.empty(m)
    ll = np.empty(m)
    cc = np.empty(m)
    vv = np.zeros(m)
    bb = np.zeros(m)
    nn = np.zeros(m, dtype=np.int64)
    k = -1
    for i in range(n):
        if i == 0 or sig[i] != sig[i - 1] or sec[i] // seconds != sec[i - 1] // seconds:
            k += 1
            out_sig[k] = sig[i]
            out_t[k] = sec[i] // seconds * seconds
            oo[k] = o[i]
            hh[k] = h[i]
            ll[k] = lo[i]
        else:
            if h[i] > hh[k]:
                hh[k] = h[i]
            if lo[i] < ll[k]:
                ll[k] = lo[i]
        cc[k] = c[i]
        vv[k] += v[i]
        bb[k] += bv[i]
        nn[k] += cnt[i]
    return out_sig, out_t, oo, hh, ll, cc, vv, bb, nn


def _sorted_bars(bars: pl.DataFrame) -> pl.DataFrame:
    if bars.height < 2:
        return bars
    sig = bars["signal_id"].to_numpy()
    sec = bars["second_ts"].to_numpy()
    change = sig[1:] != sig[:-1]
    # Grouped by signal (in any signal order) with seconds rising inside each group.
    firsts = sig[np.concatenate(([0], np.flatnonzero(change) + 1))]
    grouped = bool(np.all(change | (sec[1:] > sec[:-1]))) and len(np.unique(firsts)) == firsts.shape[0]
    return bars if grouped else bars.sort("signal_id", "second_ts")


def candles(bars: pl.DataFrame, seconds: int) -> pl.DataFrame:
    """UTC-aligned candles of ``seconds`` from 1-second bars (per signal): open of the first
    second, extreme highs/lows, last close, summed volumes and trade counts."""
    b = _sorted_bars(bars)
    zeros = np.zeros(b.height)
    sig, t, o, h, lo, c, v, bv, n = _buckets(
        b["signal_id"].to_numpy().astype(np.int64),
        b["second_ts"].to_numpy().astype(np.int64),
        b["open_price"].to_numpy(),
        b["high_price"].to_numpy(),
        b["low_price"].to_numpy(),
        b["close_price"].to_numpy(),
        b["volume"].to_numpy(),
        b["buy_volume"].to_numpy() if "buy_volume" in b.columns else zeros,
        b["trade_count"].to_numpy().astype(np.int64) if "trade_count" in b.columns else zeros.astype(np.int64),
        int(seconds),
    )
    return pl.DataFrame(
        {
            "signal_id": sig,
            "open_time": (t * 1000).astype(np.int64),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
            "buy_volume": bv,
            "trade_count": n.astype(np.int32),
        }
    ).with_columns(pl.col("open_time").cast(UTC_MS))


def minute_candles(bars: pl.DataFrame, symbols: dict[int, str]) -> pl.DataFrame:
    """1-minute OHLCV for the portfolio backtest."""
    if bars.height == 0:
        return pl.DataFrame(schema=MINUTE_CANDLES_SCHEMA)
    out = candles(bars, 60)
    sym = pl.DataFrame({"signal_id": list(symbols), "symbol": list(symbols.values())}, schema={"signal_id": pl.Int64, "symbol": pl.String})
    return out.join(sym, on="signal_id", how="left").select(list(MINUTE_CANDLES_SCHEMA))


def candles_json(bars: pl.DataFrame) -> dict[int, str]:
    """Per signal, its 5-minute candles as a JSON list ``[open_time_ms, o, h, l, c, volume]``."""
    if bars.height == 0:
        return {}
    five = candles(bars, 300)
    out: dict[int, str] = {}
    for (sid,), part in five.partition_by("signal_id", as_dict=True).items():
        rows = zip(
            part["open_time"].dt.epoch("ms").to_list(),
            part["open"].to_list(),
            part["high"].to_list(),
            part["low"].to_list(),
            part["close"].to_list(),
            part["volume"].to_list(),
        )
        out[int(sid)] = json.dumps([[t, o, h, lo, c, round(v, 8)] for t, o, h, lo, c, v in rows], separators=(",", ":"))
    return out


@nb.njit(cache=True)
def _figures(sig, h, lo, c):
    n = sig.shape[0]
    runs = 0
    for i in range(n):
        if i == 0 or sig[i] != sig[i - 1]:
            runs += 1
    ids = np.empty(runs, dtype=np.int64)
    entry = np.empty(runs)
    hi = np.empty(runs)
    low = np.empty(runs)
    peak_at = np.empty(runs, dtype=np.int64)
    k = -1
    start = 0
    for i in range(n):
        if i == 0 or sig[i] != sig[i - 1]:
            k += 1
            start = i
            ids[k] = sig[i]
            entry[k] = c[i]
            hi[k] = h[i]
            low[k] = lo[i]
            peak_at[k] = 0
        else:
            if h[i] > hi[k]:
                hi[k] = h[i]
                peak_at[k] = i - start
            if lo[i] < low[k]:
                low[k] = lo[i]
    return ids, entry, hi, low, peak_at


def window_figures(bars: pl.DataFrame) -> pl.DataFrame:
    """Per signal: entry price (first close), max growth / drawdown (percent) and seconds to the
    first second holding the window's high."""
    b = _sorted_bars(bars)
    ids, entry, hi, low, peak_at = _figures(
        b["signal_id"].to_numpy().astype(np.int64), b["high_price"].to_numpy(), b["low_price"].to_numpy(), b["close_price"].to_numpy()
    )
    return pl.DataFrame(
        {
            "signal_id": ids,
            "entry_price": entry,
            "time_to_peak_seconds": peak_at.astype(np.int32),
            "max_growth_pct": (hi / entry - 1.0) * 100.0,
            "max_drawdown_pct": (low / entry - 1.0) * 100.0,
        }
    )


@dataclasses.dataclass
class DayBars:
    """Delta bars of a run, day by day: ``by_day`` {ISO day: bars of that day's signals},
    ``problems`` {signal_id: why it has no bars}, ``figures`` {day: counts for the partition}."""

    by_day: dict[str, pl.DataFrame]
    problems: dict[int, str]
    figures: dict


def delta_bars_by_day(signals: pl.DataFrame, trades: pl.DataFrame, days, window_s: int) -> DayBars:
    """The 1-second delta bars of every signal (columns ``signal_id``, ``signal_ts``) whose UTC
    day is one of ``days``, built day by day from that day's signals only. Signals without a
    trade are counted as ``skipped/no_trades_upstream``, those whose first seconds have no price
    as ``skipped/unpriced_start``."""
    ids = signals["signal_id"].to_list()
    starts = dict(zip(ids, signals.select(window_start_expr())["window_start"].to_list()))
    day_of = dict(zip(ids, signals["signal_ts"].dt.date().to_list()))
    with_trades = set(trades["signal_id"].unique().to_list()) if trades.height else set()
    out, problems, figures = {}, {}, {}
    for d in days:
        todo = {s: t for s, t in starts.items() if s in with_trades and day_of[s] == d}
        day_trades = trades.filter(pl.col("signal_id").is_in(list(todo))) if todo else trades.clear()
        out[d.isoformat()], day_problems = delta_bars_for(day_trades, todo, window_s)
        problems.update(day_problems)
        of_day = [s for s in ids if day_of[s] == d]
        figures[d] = {
            "signals": len(of_day),
            "signals_with_bars": out[d.isoformat()]["signal_id"].n_unique() if out[d.isoformat()].height else 0,
            "skipped/no_trades_upstream": sum(1 for s in of_day if s not in with_trades),
            "skipped/unpriced_start": sum(1 for s in of_day if s in day_problems),
        }
        if any(s in day_problems for s in of_day):
            figures[d]["skipped_signals"] = {str(s): day_problems[s] for s in of_day if s in day_problems}
    return DayBars(out, problems, figures)


def second_violations(bars: pl.DataFrame, window_s: int) -> tuple[int, list[int]]:
    """(signals with bars, those without exactly ``window_s`` consecutive seconds each with a
    finite positive close)."""
    if not bars.height:
        return 0, []
    step = bars.select(
        pl.col("signal_id"),
        ((pl.col("signal_id") == pl.col("signal_id").shift()) & (pl.col("second_ts").diff() != 1)).alias("gap"),
        (~pl.col("close_price").is_finite() | (pl.col("close_price") <= 0)).fill_null(True).alias("bad_price"),
    )
    per = step.group_by("signal_id").agg(pl.len().alias("rows"), pl.col("gap").sum(), pl.col("bad_price").sum())
    bad = per.filter((pl.col("rows") != window_s) | (pl.col("gap") > 0) | (pl.col("bad_price") > 0))
    return per.height, bad["signal_id"].to_list()


def identity_violations(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars breaking low <= open, close <= high; delta = buy - sell; volume = buy + sell;
    non-negative counts with large trades among them."""
    if not bars.height:
        return bars
    tol = 1e-9 * pl.max_horizontal(pl.col("volume").abs(), pl.lit(1.0))
    return bars.filter(
        (pl.col("low_price") > pl.min_horizontal("open_price", "close_price"))
        | (pl.col("high_price") < pl.max_horizontal("open_price", "close_price"))
        | (pl.col("delta") != pl.col("buy_volume") - pl.col("sell_volume"))
        | ((pl.col("volume") - pl.col("buy_volume") - pl.col("sell_volume")).abs() > tol)
        | (pl.col("trade_count") < 0)
        | (pl.col("large_buy_count") + pl.col("large_sell_count") > pl.col("trade_count"))
    )
