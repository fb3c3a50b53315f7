"""Trades generated from each segment's behaviour against the simulated market.

Every client trades a few instruments. For each (client, instrument) the generator walks the
days of the history; when the client is flat it may open a lot, and closes it after a holding
period drawn from its segment's band (a client holds at most one lot per instrument at a time,
so FIFO matching recovers exactly the generated holding periods):

* Trend Follower: opens in the direction of the 5-day trend (log return of the last 5 closes
  beyond ``theta`` daily-vol units), holds 2-5 days.
* Mean Reverter: opens against the distance of the last close from its 20-day moving average
  (buys below, sells above), holds 1-3 days, LIMIT orders only.
* Trend Setter: opens before the move: buys after a 5-day dip when the price recovers over the
  holding period, sells after a rally that fades (an informed client: it sees the simulated
  path ahead, which is what "trend setter" means here), holds 5-15 days.
* Hedger: builds a hedge in 2-4 tranches a few days apart (90% of hedges are short, i.e.
  SELLs), unwinds it in one trade 30-90 days after each tranche; 5-15 trades per 6 months.

A lot still open on ``as_of`` is closed after it (in the hidden future): its closing trade is
not published and the lot is a current position. Some clients drift during the last 40% of the
history (fewer trades, longer holds within the band, fewer market orders); the switch
probability history picks that up.

Quantities are whole lots of base currency (1,000 units; 1 troy ounce for gold), prices are in
the quote currency per unit, inside the day's [low, high] and on the instrument's tick.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
from numba import njit, prange

from quant_assets.lib.client_intel.market import MA_WINDOW, Market
from quant_assets.lib.client_intel.rng import randint, uniform
from quant_assets.lib.client_intel.spec import (
    BEHAVIOURS,
    HEDGER,
    INSTRUMENTS,
    MEAN_REVERTER,
    SEGMENT_CODE,
    SEGMENTS,
    SYMBOLS,
    TREND_FOLLOWER,
    TREND_SETTER,
    WorldSpec,
    instrument_arrays,
)

TRADES_SCHEMA: dict[str, pl.DataType] = {
    "trade_id": pl.Int64(),
    "client_id": pl.String(),
    "instrument": pl.String(),
    "trade_date": pl.Date(),
    "executed_at": pl.Datetime("us"),
    "side": pl.String(),
    "order_type": pl.String(),
    "position_effect": pl.String(),
    "quantity": pl.Int64(),
    "price": pl.Float64(),
    "notional_usd": pl.Float64(),
}

TREND_LOOKBACK = 5
DIP_LOOKBACK = 5
DRIFT_START = 0.6  # share of the history after which a drifting client starts to drift
DRIFTING_SHARE = 0.2
CLIENT_SHARE_SD = 0.04  # spread of the clients' market-order shares around their segment's

# Entry probability per day when flat, before the signal filter, by segment code.
_ENTRY_PROB = {TREND_FOLLOWER: 0.9, MEAN_REVERTER: 0.95, TREND_SETTER: 1.0}
_TICKET_USD = {TREND_FOLLOWER: 5e6, MEAN_REVERTER: 2e6, HEDGER: 25e6, TREND_SETTER: 10e6}
_INSTRUMENTS_PER_CLIENT = {TREND_FOLLOWER: (3, 6), MEAN_REVERTER: (3, 6), TREND_SETTER: (3, 6)}

TF, MR, HE, TS = (SEGMENT_CODE[s] for s in (TREND_FOLLOWER, MEAN_REVERTER, HEDGER, TREND_SETTER))


@dataclasses.dataclass
class ClientParams:
    """Per-client behaviour parameters (row order of the clients table)."""

    segment: np.ndarray  # int code
    market_share: np.ndarray
    ticket_usd: np.ndarray
    theta: np.ndarray
    theta2: np.ndarray
    drift: np.ndarray  # 0 = steady; up to 1 = full drift by as_of
    activity: np.ndarray  # client's multiplier on its segment's entry probability


def client_params(segments: np.ndarray, seed: int) -> ClientParams:
    rng = np.random.default_rng([seed, 4])
    n = len(segments)
    share = np.zeros(n)
    for name, code in SEGMENT_CODE.items():
        b = BEHAVIOURS[name]
        mask = segments == code
        if b.market_share > 0:
            lo, hi = max(0.0, b.market_share - 0.2), min(1.0, b.market_share + 0.15)
            share[mask] = np.clip(b.market_share + CLIENT_SHARE_SD * rng.standard_normal(mask.sum()), lo, hi)
    ticket = np.array([_TICKET_USD[SEGMENTS[c]] for c in segments]) * np.exp(0.5 * rng.standard_normal(n))
    theta = rng.uniform(0.25, 0.6, n)
    theta = np.where(segments == MR, rng.uniform(0.3, 0.7, n), theta)
    theta = np.where(segments == TS, rng.uniform(0.1, 0.3, n), theta)
    theta2 = rng.uniform(0.1, 0.3, n)
    drifting = (rng.random(n) < DRIFTING_SHARE) & (segments != HE)
    drift = np.where(drifting, rng.uniform(0.5, 1.0, n), 0.0)
    activity = np.exp(0.25 * rng.standard_normal(n))
    return ClientParams(segments, share, ticket, theta, theta2, drift, activity)


@dataclasses.dataclass
class RawTrades:
    """Trades as arrays, one element per trade (unsorted)."""

    client: np.ndarray
    instrument: np.ndarray
    day: np.ndarray  # index into the history (0 = first day)
    side: np.ndarray  # +1 buy, -1 sell
    market: np.ndarray  # bool
    opening: np.ndarray  # bool
    quantity: np.ndarray
    price: np.ndarray
    seconds: np.ndarray  # seconds after midnight UTC


@njit(cache=True, inline="always")
def _blend(drift, t_rel, T):
    start = DRIFT_START * T
    if drift <= 0.0 or t_rel < start:
        return 0.0
    return drift * min(1.0, (t_rel - start) / (T - start))


@njit(cache=True, inline="always")
def _price(seed, pid, t, slot, side, is_market, low, high):
    u = uniform(seed, pid, t, slot)
    frac = 0.35 + 0.65 * u if is_market else 0.5 * u
    if side < 0:
        frac = 1.0 - frac
    return low + frac * (high - low)


@njit(cache=True, inline="always")
def _quantity(seed, pid, t, ticket, base_usd, lot):
    u = uniform(seed, pid, t, 9)
    units = ticket * (0.7 + 0.6 * u) / base_usd
    lots = max(1, np.int64(math.floor(units / lot + 0.5)))
    return lots * lot


@njit(cache=True)
def _walk_active(
    seed, pid, seg, inst, prob, theta, theta2, mshare, ticket, drift,
    close, low, high, lot, base_is_usd, sigma, offset, T, write, pos,
    o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
):  # fmt: skip
    """Walk one (client, instrument) through the history; count or write its trades."""
    end = offset + T
    n = 0
    t = offset
    while t < end:
        t_rel = t - offset
        b = _blend(drift, t_rel, T)
        if uniform(seed, pid, t, 0) >= prob * (1.0 - 0.7 * b):
            t += 1
            continue
        c1 = close[inst, t - 1]
        direction = 0
        if seg == TF:
            hold = randint(seed, pid, t, 1, 2 + np.int64(2.0 * b + 0.5), 5)
            m = math.log(c1 / close[inst, t - 1 - TREND_LOOKBACK]) / (sigma * math.sqrt(TREND_LOOKBACK))
            if m > theta:
                direction = 1
            elif m < -theta:
                direction = -1
        elif seg == MR:
            hold = randint(seed, pid, t, 1, 1 + np.int64(b + 0.5), 3)
            ma = 0.0
            for k in range(1, MA_WINDOW + 1):
                ma += close[inst, t - k]
            ma /= MA_WINDOW
            z = math.log(c1 / ma) / (sigma * math.sqrt(TREND_LOOKBACK))
            if z < -theta:
                direction = 1
            elif z > theta:
                direction = -1
        else:  # Trend Setter
            hold = randint(seed, pid, t, 1, 5 + np.int64(5.0 * b + 0.5), 15)
            back = math.log(c1 / close[inst, t - 1 - DIP_LOOKBACK]) / (sigma * math.sqrt(DIP_LOOKBACK))
            fwd = math.log(close[inst, t + hold - 1] / c1) / (sigma * math.sqrt(hold))
            if back < -theta and fwd > theta2:
                direction = 1
            elif back > theta and fwd < -theta2:
                direction = -1
        if direction == 0:
            t += 1
            continue
        share = mshare * (1.0 - 0.35 * b)
        base_usd = 1.0 if base_is_usd else c1
        qty = _quantity(seed, pid, t, ticket, base_usd, lot)
        exit_day = t + hold
        for leg in range(2):
            d = t if leg == 0 else exit_day
            if d >= end:
                break
            side = direction if leg == 0 else -direction
            if write:
                is_market = uniform(seed, pid, d, 2 + 3 * leg) < share
                o_pair[pos + n] = pid
                o_day[pos + n] = d - offset
                o_side[pos + n] = side
                o_market[pos + n] = is_market
                o_open[pos + n] = leg == 0
                o_qty[pos + n] = qty
                o_price[pos + n] = _price(seed, pid, d, 3 + 3 * leg, side, is_market, low[inst, d], high[inst, d])
                o_secs[pos + n] = randint(seed, pid, d, 4 + 3 * leg, 0, 86399)
            n += 1
        t = exit_day + 1
    return n


@njit(parallel=True, cache=True)
def _active_counts(seed, pid, seg, inst, prob, theta, theta2, mshare, ticket, drift, close, low, high, lot, base_is_usd, sigma, offset, T):
    counts = np.zeros(len(pid), dtype=np.int64)
    dummy_i = np.empty(0, dtype=np.int64)
    dummy_b = np.empty(0, dtype=np.bool_)
    dummy_f = np.empty(0, dtype=np.float64)
    for p in prange(len(pid)):
        i = inst[p]
        counts[p] = _walk_active(
            seed, pid[p], seg[p], i, prob[p], theta[p], theta2[p], mshare[p], ticket[p], drift[p],
            close, low, high, lot[i], base_is_usd[i], sigma[i], offset, T, False, 0,
            dummy_i, dummy_i, dummy_i, dummy_b, dummy_b, dummy_i, dummy_f, dummy_i,
        )  # fmt: skip
    return counts


@njit(parallel=True, cache=True)
def _active_fill(
    seed, pid, seg, inst, prob, theta, theta2, mshare, ticket, drift, close, low, high, lot, base_is_usd, sigma,
    offset, T, starts, o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
):  # fmt: skip
    for p in prange(len(pid)):
        i = inst[p]
        _walk_active(
            seed, pid[p], seg[p], i, prob[p], theta[p], theta2[p], mshare[p], ticket[p], drift[p],
            close, low, high, lot[i], base_is_usd[i], sigma[i], offset, T, True, starts[p],
            o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
        )  # fmt: skip


@njit(cache=True)
def _walk_hedger(
    seed, client, insts, n_target, mshare, ticket, close, low, high, lot, base_is_usd, offset, T, write, pos,
    o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
):  # fmt: skip
    """One Hedger's hedges across its instruments; returns the number of published trades."""
    end = offset + T
    m = len(insts)
    free = np.full(m, offset, dtype=np.int64)
    t = offset + randint(seed, client, 0, 100, 0, 20)
    count = 0
    episode = 0
    while n_target - count >= 2 and t < end:
        j = episode % m
        if free[j] > t:
            # Another instrument may be free now; otherwise wait for the first that frees up.
            best = 0
            for k in range(m):
                if free[k] < free[best]:
                    best = k
            if free[best] > t:
                t = free[best]
                continue
            j = best
        inst = insts[j]
        pid = client * 8 + inst
        budget = n_target - count - 1
        k = min(randint(seed, pid, t, 101, 2, 4), budget)
        direction = -1 if uniform(seed, pid, t, 102) < 0.9 else 1
        gaps = np.zeros(k, dtype=np.int64)
        for q in range(1, k):
            gaps[q] = gaps[q - 1] + randint(seed, pid, t, 103 + q, 1, 3)
        hi_hold = 90
        if episode == 0:
            # The first hedge is unwound inside the history, so every Hedger has a closed lot.
            hi_hold = min(90, end - 1 - t)
        hold = randint(seed, pid, t, 110, gaps[k - 1] + 30, max(hi_hold, gaps[k - 1] + 30))
        total = np.int64(0)
        for q in range(k + 1):
            is_exit = q == k
            d = t + (hold if is_exit else gaps[q])
            if d >= end:
                break
            base_usd = 1.0 if base_is_usd[inst] else close[inst, d - 1]
            qty = total if is_exit else _quantity(seed, pid, d, ticket / k, base_usd, lot[inst])
            total += 0 if is_exit else qty
            side = -direction if is_exit else direction
            if write:
                is_market = uniform(seed, pid, d, 120 + q) < mshare
                o_pair[pos + count] = pid
                o_day[pos + count] = d - offset
                o_side[pos + count] = side
                o_market[pos + count] = is_market
                o_open[pos + count] = not is_exit
                o_qty[pos + count] = qty
                o_price[pos + count] = _price(seed, pid, d, 130 + q, side, is_market, low[inst, d], high[inst, d])
                o_secs[pos + count] = randint(seed, pid, d, 140 + q, 0, 86399)
            count += 1
        free[j] = t + hold + 1
        episode += 1
        t += randint(seed, pid, t, 150, 3, 25)
    return count


@njit(cache=True)
def _hedgers(
    seed, clients, inst_start, inst_flat, n_target, mshare, ticket, close, low, high, lot, base_is_usd, offset, T,
    write, starts, o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
):  # fmt: skip
    counts = np.zeros(len(clients), dtype=np.int64)
    for h in range(len(clients)):
        insts = inst_flat[inst_start[h] : inst_start[h + 1]]
        counts[h] = _walk_hedger(
            seed, clients[h], insts, n_target[h], mshare[h], ticket[h], close, low, high, lot, base_is_usd,
            offset, T, write, starts[h] if write else 0, o_pair, o_day, o_side, o_market, o_open, o_qty, o_price, o_secs,
        )  # fmt: skip
    return counts


def _alloc(n: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty(n, dtype=np.int64),  # pair
        np.empty(n, dtype=np.int64),  # day
        np.empty(n, dtype=np.int64),  # side
        np.empty(n, dtype=np.bool_),  # market
        np.empty(n, dtype=np.bool_),  # opening
        np.empty(n, dtype=np.int64),  # quantity
        np.empty(n, dtype=np.float64),  # price
        np.empty(n, dtype=np.int64),  # seconds
    )


def generate_trades(market: Market, segments: np.ndarray, params: ClientParams, spec: WorldSpec) -> RawTrades:
    """Every client's trades over the history (see the module docstring for the behaviours)."""
    consts = instrument_arrays()
    n_inst = len(INSTRUMENTS)
    rng = np.random.default_rng([spec.seed, 5])
    close, low, high = market.close, market.low, market.high
    offset, T = market.offset, market.days
    lot, base_is_usd, sigma = consts["lot"], consts["base_is_usd"], consts["daily_vol"]
    seed = np.uint64(spec.seed)

    # Active clients: a random subset of instruments each, with uneven activity across them.
    active = np.flatnonzero(segments != HE)
    pair_client, pair_inst, pair_prob = [], [], []
    for code in (TF, MR, TS):
        members = active[segments[active] == code]
        if not len(members):
            continue
        lo, hi = _INSTRUMENTS_PER_CLIENT[SEGMENTS[code]]
        n_each = rng.integers(lo, hi + 1, size=len(members))
        keys = rng.random((len(members), n_inst))
        weights = rng.dirichlet(np.full(n_inst, 2.0), size=len(members))
        for row, c in enumerate(members):
            chosen = np.sort(np.argsort(keys[row])[: n_each[row]])
            w = weights[row, chosen] / weights[row, chosen].sum() * len(chosen)
            pair_client.append(np.full(len(chosen), c))
            pair_inst.append(chosen)
            pair_prob.append(np.clip(_ENTRY_PROB[SEGMENTS[code]] * params.activity[c] * np.sqrt(w), 0.02, 1.0))
    if pair_client:
        pc = np.concatenate(pair_client).astype(np.int64)
        pi = np.concatenate(pair_inst).astype(np.int64)
        pp = np.concatenate(pair_prob)
    else:
        pc = pi = np.empty(0, dtype=np.int64)
        pp = np.empty(0)
    pid = pc * 8 + pi
    args = (
        seed, pid, segments[pc], pi, pp, params.theta[pc], params.theta2[pc], params.market_share[pc],
        params.ticket_usd[pc], params.drift[pc], close, low, high, lot, base_is_usd, sigma, offset, T,
    )  # fmt: skip
    counts = _active_counts(*args)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    active_out = _alloc(int(counts.sum()))
    _active_fill(*args, starts, *active_out)

    # Hedgers: 1-3 instruments, a trade budget inside the 5-15 per 6 months band.
    hedgers = np.flatnonzero(segments == HE).astype(np.int64)
    lo_n, hi_n = spec.hedger_trade_band()
    n_target = rng.integers(lo_n + 1, hi_n + 1, size=len(hedgers)).astype(np.int64)
    n_hinst = 1 + (n_target > 0.47 * hi_n).astype(np.int64) + (n_target > 0.73 * hi_n).astype(np.int64)
    inst_flat = np.concatenate(
        [np.sort(rng.permutation(n_inst)[:k]) for k in n_hinst] or [np.empty(0, dtype=np.int64)]
    ).astype(np.int64)
    inst_start = np.concatenate([[0], np.cumsum(n_hinst)]).astype(np.int64)
    hargs = (
        seed, hedgers, inst_start, inst_flat, n_target, params.market_share[hedgers], params.ticket_usd[hedgers],
        close, low, high, lot, base_is_usd, offset, T,
    )  # fmt: skip
    empty = _alloc(0)
    h_counts = _hedgers(*hargs, False, np.zeros(len(hedgers), dtype=np.int64), *empty)
    h_starts = np.concatenate([[0], np.cumsum(h_counts)[:-1]]).astype(np.int64)
    hedger_out = _alloc(int(h_counts.sum()))
    _hedgers(*hargs, True, h_starts, *hedger_out)

    pair, day, side, is_market, opening, qty, price, secs = (
        np.concatenate([a, h]) for a, h in zip(active_out, hedger_out, strict=True)
    )
    client, inst = np.divmod(pair, 8)
    # Round to the tick: low and high are on it, so a price inside [low, high] stays inside.
    for i, instrument in enumerate(INSTRUMENTS):
        mask = inst == i
        price[mask] = np.round(price[mask], int(round(-math.log10(instrument.tick))))
    return RawTrades(client, inst, day, side, is_market, opening, qty, price, secs)


def trades_frame(raw: RawTrades, client_ids: list[str], dates: np.ndarray) -> pl.DataFrame:
    """The published trades table, in time order, ``trade_id`` 1..n."""
    base_is_usd = instrument_arrays()["base_is_usd"]
    ts = (dates[raw.day].astype("datetime64[s]").astype(np.int64) + raw.seconds) * 1_000_000
    notional = np.where(base_is_usd[raw.instrument], raw.quantity, raw.quantity * raw.price).astype(np.float64)
    # One int64 key (second, client, instrument) sorts faster than a three-key lexsort; a client
    # trades an instrument at most once a day, so the key is unique.
    key = (ts // 1_000_000) * (8 * (int(raw.client.max(initial=0)) + 1)) + raw.client * 8 + raw.instrument
    order = pl.Series(key).arg_sort().to_numpy()
    df = pl.DataFrame(
        {
            "trade_id": np.arange(1, len(order) + 1, dtype=np.int64),
            "client_id": pl.Series(client_ids, dtype=pl.String).gather(raw.client[order]),
            "instrument": pl.Series(SYMBOLS, dtype=pl.String).gather(raw.instrument[order]),
            "executed_at": pl.Series(ts[order]).cast(pl.Datetime("us")),
            "_buy": raw.side[order] > 0,
            "_market": raw.market[order],
            "_open": raw.opening[order],
            "quantity": raw.quantity[order],
            "price": raw.price[order],
            "notional_usd": np.round(notional[order], 2),
        }
    )
    return df.with_columns(
        pl.col("executed_at").dt.date().alias("trade_date"),
        pl.when("_buy").then(pl.lit("BUY")).otherwise(pl.lit("SELL")).alias("side"),
        pl.when("_market").then(pl.lit("MARKET")).otherwise(pl.lit("LIMIT")).alias("order_type"),
        pl.when("_open").then(pl.lit("OPEN")).otherwise(pl.lit("CLOSE")).alias("position_effect"),
    ).select(list(TRADES_SCHEMA)).cast(TRADES_SCHEMA)
