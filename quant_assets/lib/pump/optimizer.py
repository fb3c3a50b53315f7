"""Phase 1 of the pump optimizer: every exit strategy on every signal's 1-second closes.

The exit rule, for one strategy on one signal's closes ``c`` (the signal's second is index 0):

* enter at ``e = entry_delay_s`` at ``P = c[e]`` (no trade when the path has no bar ``e``);
* for each later second ``t`` up to ``min(e + timeout_s, last)``: exit at ``c[t]`` when
  ``c[t] <= P * (1 - sl)`` (stop); else, once ``max(c[e..t]) >= P * (1 + activation)``, exit at
  ``c[t]`` when ``c[t] <= max(c[e..t]) * (1 - callback)`` (trailing);
* otherwise exit at ``c[min(e + timeout_s, last)]`` (timeout, or end of window when the path ends
  before the timeout).

PnL is ``exit / P - 1 - fee`` (``fee`` is the round trip, a fraction); the exit time is counted
in seconds from the entry. All rates are fractions (``sl = 0.05`` is 5 %).

Why it is fast: the exit bar is the earliest of three independent first-passage times -- the
first stop bar (depends on the signal, the entry delay and ``sl``), the first trailing bar
(signal, delay, activation/callback) and the timeout -- so one search per (signal, delay, stop
level) and one per (signal, delay, trailing profile) serves every combination with every
timeout. Each search skips whole 64-second blocks (and 64-block super-blocks) whose min/max
cannot trigger, using summaries built once per signal. The thresholds and comparisons are the
very expressions of the rule above, so the result is exactly that of a bar-by-bar walk
(:func:`simulate_one` is that walk, kept as the reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl
from llvmlite import ir as llvm_ir
from numba.core import types
from numba.extending import intrinsic

from quant_assets.lib.knobs import knob
from quant_assets.lib.pump.schemas import STRATEGY_SCHEMA

# Trailing profiles: (activation, callback) as fractions.
PROFILES: dict[str, tuple[float, float]] = {
    "SCALPING": (0.004, 0.002),
    "BALANCED": (0.04, 0.02),
    "MODERATE": (0.07, 0.03),
    "CONSERVATIVE": (0.10, 0.04),
}
DEFAULT_SL_LEVELS: tuple[float, ...] = tuple(round(k / 100, 2) for k in range(1, 16))  # 1 % .. 15 %
DEFAULT_TIMEOUTS_S: tuple[int, ...] = (900, 1800, 3600, 7200, 14400, 21600, 28800, 43200, 86400)
DEFAULT_ENTRY_DELAYS_S: tuple[int, ...] = (0, 5, 10, 15, 30, 60, 120, 300, 600, 900)
# Round trip at Binance's regular USDT-M taker rate (0.05 % a side).
DEFAULT_FEE = 0.001

STRATEGY_COLUMNS = ("sl", "activation", "callback", "timeout_s", "entry_delay_s", "fee")

# Exit reasons (codes used by the reference walk and the detailed backtest).
NO_ENTRY, STOP, TRAILING, TIMEOUT, END_OF_WINDOW = 0, 1, 2, 3, 4
REASONS = {NO_ENTRY: "no_entry", STOP: "stop", TRAILING: "trailing", TIMEOUT: "timeout", END_OF_WINDOW: "end_of_window"}

BLOCK_SHIFT = 6  # 64-second blocks; 64 blocks to a super-block
BLOCK = 1 << BLOCK_SHIFT


class StrategyError(ValueError):
    """A strategy table or a closes array the optimizer cannot evaluate."""


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """A product grid of exit strategies."""

    sl_levels: Sequence[float] = knob(DEFAULT_SL_LEVELS, "Stop-loss levels below the entry, fractions (0.05 = 5 %).")
    profiles: Sequence[str] = knob(
        tuple(PROFILES),
        "Trailing profiles: SCALPING 0.4/0.2, BALANCED 4/2, MODERATE 7/3, CONSERVATIVE 10/4 (activation/callback, %).",
    )
    timeouts_s: Sequence[int] = knob(DEFAULT_TIMEOUTS_S, "Longest holds, seconds after entry.")
    entry_delays_s: Sequence[int] = knob(DEFAULT_ENTRY_DELAYS_S, "Entry delays, seconds after the signal's first second.")
    fee: float = knob(DEFAULT_FEE, "Round-trip fee deducted from each trade, fraction.")

    @property
    def size(self) -> int:
        return len(self.sl_levels) * len(self.profiles) * len(self.timeouts_s) * len(self.entry_delays_s)


def strategy_grid(spec: GridSpec = GridSpec()) -> pl.DataFrame:
    """One row per strategy: ``strategy_id`` (0..n-1), ``profile`` and the rule's parameters.

    Order: stop level, then profile, then timeout, then entry delay (the last varies fastest).
    """
    unknown = [p for p in spec.profiles if p not in PROFILES]
    if unknown:
        raise StrategyError(f"unknown trailing profile(s) {unknown}; known: {list(PROFILES)}")
    for name, values in (
        ("sl_levels", spec.sl_levels),
        ("profiles", spec.profiles),
        ("timeouts_s", spec.timeouts_s),
        ("entry_delays_s", spec.entry_delays_s),
    ):
        if len(values) == 0:
            raise StrategyError(f"the strategy grid needs at least one value in {name}")
        if len(set(values)) != len(values):
            raise StrategyError(f"{name} has repeated values: {list(values)}")
    rows = [
        (sl, prof, PROFILES[prof][0], PROFILES[prof][1], int(to), int(d))
        for sl in spec.sl_levels
        for prof in spec.profiles
        for to in spec.timeouts_s
        for d in spec.entry_delays_s
    ]
    df = pl.DataFrame(
        rows,
        schema={
            "sl": pl.Float64,
            "profile": pl.String,
            "activation": pl.Float64,
            "callback": pl.Float64,
            "timeout_s": pl.Int64,
            "entry_delay_s": pl.Int64,
        },
        orient="row",
    )
    return df.with_columns(pl.lit(float(spec.fee)).alias("fee")).with_row_index("strategy_id").with_columns(
        pl.col("strategy_id").cast(pl.Int32)
    ).select("strategy_id", "profile", *STRATEGY_COLUMNS)


# --------------------------------------------------------------------------- the reference walk


@nb.njit(cache=True)
def simulate_one(c, e, sl, activation, callback, timeout_s, fee):
    """The rule walked bar by bar: ``(pnl, exit_s, reason)``; ``(nan, -1, NO_ENTRY)`` without an
    entry bar. The obviously-correct reference for :func:`evaluate_strategies`."""
    n = c.shape[0]
    if e < 0 or e >= n:
        return np.nan, -1, NO_ENTRY
    p = c[e]
    stop = p * (1.0 - sl)
    act = p * (1.0 + activation)
    horizon = min(e + timeout_s, n - 1)
    m = p
    for t in range(e + 1, horizon + 1):
        x = c[t]
        if x > m:
            m = x
        if x <= stop:
            return x / p - 1.0 - fee, t - e, STOP
        if m >= act and x <= m * (1.0 - callback):
            return x / p - 1.0 - fee, t - e, TRAILING
    reason = TIMEOUT if e + timeout_s <= n - 1 else END_OF_WINDOW
    return c[horizon] / p - 1.0 - fee, horizon - e, reason


@nb.njit(cache=True)
def naive_matrix(closes, offsets, sl, activation, callback, timeout_s, entry_delay_s, fee):
    """Every (strategy, signal) by :func:`simulate_one`: the bar-by-bar reference (one thread:
    it serves tests, where compiling a parallel kernel would cost more than it saves)."""
    n_sig = offsets.shape[0] - 1
    n_st = sl.shape[0]
    pnl = np.empty((n_st, n_sig))
    ex = np.empty((n_st, n_sig), dtype=np.int64)
    for j in range(n_sig):
        c = closes[offsets[j] : offsets[j + 1]]
        for k in range(n_st):
            r = simulate_one(c, entry_delay_s[k], sl[k], activation[k], callback[k], timeout_s[k], fee[k])
            pnl[k, j] = r[0]
            ex[k, j] = r[1]
    return pnl, ex


# --------------------------------------------------------------------------- the fast path


@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bit pattern of a float64 as an int64 (a free register bitcast)."""
    if not (isinstance(x, types.Float) and x.bitwidth == 64):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(64))

    return types.int64(x), codegen


# Positive finite doubles order exactly like their bit patterns read as int64, so the searches
# run on integers: block summaries vectorise, and a price is valid when its bits lie in
# [1, INF_BITS). A threshold becomes the integer key with the same comparison outcome on every
# positive finite price.
INF_BITS = 0x7FF0000000000000
NEVER_ABOVE = 0x7FFFFFFFFFFFFFFF


@nb.njit(cache=True, inline="always")
def _key_le(lo):
    """Key k with ``bits(x) <= k`` exactly when ``x <= lo`` (x a positive finite price)."""
    if not lo > 0.0:
        return np.int64(0)
    if lo == np.inf:
        return np.int64(INF_BITS)
    return _bits(lo)


@nb.njit(cache=True, inline="always")
def _key_gt(hi):
    """Key k with ``bits(x) > k`` exactly when ``x > hi`` (x a positive finite price)."""
    if hi != hi or hi == np.inf:
        return np.int64(NEVER_ABOVE)
    if not hi > 0.0:
        return np.int64(0)
    return _bits(hi)


@nb.njit(cache=True)
def _ensure(c, bmin, bmax, smin, smax, state, sb):
    """Integer block and super-block min/max up to super-block ``sb``, computed on first use: a
    search never reads the path beyond what some strategy needs, and every value summarised is
    checked to be a finite positive price (``state[1]`` becomes 1 otherwise).

    ``state[0]`` is the number of super-blocks already summarised."""
    n = c.shape[0]
    nblocks = bmin.shape[0]
    while state[0] <= sb:
        s = state[0]
        b_lo = s << BLOCK_SHIFT
        b_hi = min(b_lo + BLOCK, nblocks)
        mn_s = _bits(c[b_lo << BLOCK_SHIFT])
        mx_s = mn_s
        for b in range(b_lo, b_hi):
            lo = b << BLOCK_SHIFT
            mn = _bits(c[lo])
            mx = mn
            if lo + BLOCK <= n:
                # A constant trip count: the loop vectorises.
                for t in range(lo, lo + BLOCK):
                    x = _bits(c[t])
                    mn = x if x < mn else mn
                    mx = x if x > mx else mx
            else:
                for t in range(lo, n):
                    x = _bits(c[t])
                    mn = x if x < mn else mn
                    mx = x if x > mx else mx
            bmin[b] = mn
            bmax[b] = mx
            mn_s = mn if mn < mn_s else mn_s
            mx_s = mx if mx > mx_s else mx_s
        # A sign bit or zero makes the min <= 0; inf and nan have the largest exponent.
        if mn_s <= 0 or mx_s >= INF_BITS:
            state[1] = 1
        smin[s] = mn_s
        smax[s] = mx_s
        state[0] = s + 1


@nb.njit(cache=True)
def _first_exit(c, bmin, bmax, smin, smax, state, start, end, klo, khi):
    """First ``t`` in ``[start, end)`` with ``bits(c[t]) <= klo`` or ``> khi``; ``end`` when none."""
    t = start
    if t >= end:
        return end
    last_block = (end - 1) >> BLOCK_SHIFT
    _ensure(c, bmin, bmax, smin, smax, state, t >> (2 * BLOCK_SHIFT))
    # The partial block we start in, element by element.
    if t & (BLOCK - 1):
        stop_at = min(((t >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT, end)
        while t < stop_at:
            x = _bits(c[t])
            if x <= klo or x > khi:
                return t
            t += 1
        if t >= end:
            return end
    b = t >> BLOCK_SHIFT
    # Whole blocks before the last one: skip those (and whole super-blocks) that cannot trigger.
    while b < last_block:
        if (b & (BLOCK - 1)) == 0:
            s = b >> BLOCK_SHIFT
            _ensure(c, bmin, bmax, smin, smax, state, s)
            while b + BLOCK <= last_block and smin[s] > klo and smax[s] <= khi:
                b += BLOCK
                s += 1
                _ensure(c, bmin, bmax, smin, smax, state, s)
            if b >= last_block:
                break
        if bmin[b] > klo and bmax[b] <= khi:
            b += 1
            continue
        base = b << BLOCK_SHIFT
        for t in range(base, base + BLOCK):
            x = _bits(c[t])
            if x <= klo or x > khi:
                return t
        b += 1  # unreachable for exact summaries; kept so a bad summary cannot loop forever
    # The last (possibly partial) block, element by element.
    _ensure(c, bmin, bmax, smin, smax, state, b >> BLOCK_SHIFT)
    t = max(b << BLOCK_SHIFT, start)
    while t < end:
        x = _bits(c[t])
        if x <= klo or x > khi:
            return t
        t += 1
    return end


@nb.njit(cache=True)
def _trailing_first(c, bmin, bmax, smin, smax, state, e, horizon, activation, callback):
    """First ``t`` in ``(e, horizon]`` where the trailing exit fires; ``horizon + 1`` when none."""
    end = horizon + 1
    if e + 1 > horizon:
        return end
    p = c[e]
    act = p * (1.0 + activation)
    if p >= act:
        t = e + 1
        _ensure(c, bmin, bmax, smin, smax, state, t >> (2 * BLOCK_SHIFT))
        m = max(p, c[t])
    else:
        # c[t] >= act is bits(c[t]) > bits(act) - 1: the first bar that arms the exit.
        t = _first_exit(c, bmin, bmax, smin, smax, state, e + 1, end, np.int64(0), _key_gt(act) - 1 if act < np.inf else np.int64(NEVER_ABOVE))
        if t >= end:
            return end
        m = c[t]
    while True:
        floor = m * (1.0 - callback)
        if c[t] <= floor:
            return t
        t2 = _first_exit(c, bmin, bmax, smin, smax, state, t + 1, end, _key_le(floor), _bits(m))
        if t2 >= end:
            return end
        x = c[t2]
        if x > m:
            m = x
            t = t2
        else:
            return t2


@nb.njit(cache=True, parallel=True)
def _phase1(
    closes,
    offsets,
    delays,
    delay_horizon,
    sls,
    acts,
    cbs,
    tos,
    st_delay,
    st_sl,
    st_prof,
    st_to,
    st_fee,
):
    """(signals, strategies) PnL and exit seconds, and whether each signal's path held only
    finite positive prices where it was read. Strategies refer to unique delays, stop levels
    (ascending), trailing profiles and timeouts by index."""
    n_sig = offsets.shape[0] - 1
    n_st = st_delay.shape[0]
    n_d = delays.shape[0]
    n_sl = sls.shape[0]
    n_pr = acts.shape[0]
    n_to = tos.shape[0]
    pnl = np.empty((n_sig, n_st))
    # int32 seconds: the output is page-faulted in on first touch, and half the bytes is half the faults.
    ex = np.empty((n_sig, n_st), dtype=np.int32)
    valid = np.ones(n_sig, dtype=np.bool_)
    for j in nb.prange(n_sig):
        c = closes[offsets[j] : offsets[j + 1]]
        n = c.shape[0]
        nblocks = (n + BLOCK - 1) >> BLOCK_SHIFT
        bmin = np.empty(nblocks, dtype=np.int64)
        bmax = np.empty(nblocks, dtype=np.int64)
        smin = np.empty((nblocks + BLOCK - 1) >> BLOCK_SHIFT, dtype=np.int64)
        smax = np.empty_like(smin)
        state = np.zeros(2, dtype=np.int64)
        # Candidate exits per delay -- first stop bar per level, first trailing bar per profile,
        # timeout bar per timeout -- and their close / entry ratios, computed once.
        t_stop = np.empty((n_d, n_sl), dtype=np.int64)
        t_trail = np.empty((n_d, n_pr), dtype=np.int64)
        t_out = np.empty((n_d, n_to), dtype=np.int64)
        r_stop = np.empty((n_d, n_sl))
        r_trail = np.empty((n_d, n_pr))
        r_out = np.empty((n_d, n_to))
        for di in range(n_d):
            e = delays[di]
            if e >= n:
                continue
            _ensure(c, bmin, bmax, smin, smax, state, e >> (2 * BLOCK_SHIFT))
            p = c[e]
            horizon = min(e + delay_horizon[di], n - 1)
            end = horizon + 1
            # Lower thresholds are first reached no earlier: each search starts at the last hit.
            start = e + 1
            for si in range(n_sl):
                if start < end:
                    thr = p * (1.0 - sls[si])
                    start = _first_exit(c, bmin, bmax, smin, smax, state, start, end, _key_le(thr), np.int64(NEVER_ABOVE))
                t_stop[di, si] = min(start, end)
                r_stop[di, si] = c[start] / p if start < end else 0.0
            for pi in range(n_pr):
                t = _trailing_first(c, bmin, bmax, smin, smax, state, e, horizon, acts[pi], cbs[pi])
                t_trail[di, pi] = t
                r_trail[di, pi] = c[t] / p if t < end else 0.0
            for ti in range(n_to):
                t = min(e + tos[ti], n - 1)
                t_out[di, ti] = t
                r_out[di, ti] = c[t] / p
        if state[1]:
            valid[j] = False
            continue
        for k in range(n_st):
            di = st_delay[k]
            e = delays[di]
            if e >= n:
                pnl[j, k] = np.nan
                ex[j, k] = -1
                continue
            x = t_out[di, st_to[k]]
            r = r_out[di, st_to[k]]
            ts = t_stop[di, st_sl[k]]
            if ts < x:
                x = ts
                r = r_stop[di, st_sl[k]]
            tt = t_trail[di, st_prof[k]]
            if tt < x:
                x = tt
                r = r_trail[di, st_prof[k]]
            # r is c[x] / c[e], so this is the rule's c[x] / P - 1 - fee to the bit.
            pnl[j, k] = r - 1.0 - st_fee[k]
            ex[j, k] = x - e
    return pnl, ex, valid


def _strategy_arrays(strategies) -> dict[str, np.ndarray]:
    if isinstance(strategies, pl.DataFrame):
        frame = strategies
    else:
        try:
            frame = pl.from_pandas(strategies)
        except (TypeError, ValueError, ImportError) as exc:
            raise StrategyError(f"strategies must be a polars or pandas DataFrame, got {type(strategies).__name__}") from exc
    missing = [c for c in STRATEGY_COLUMNS if c not in frame.columns]
    if missing:
        raise StrategyError(f"strategies lack column(s) {missing}; need {list(STRATEGY_COLUMNS)}")
    out: dict[str, np.ndarray] = {}
    for col in STRATEGY_COLUMNS:
        s = frame.get_column(col)
        if s.null_count():
            raise StrategyError(f"strategies column {col!r} has {s.null_count()} null value(s)")
        values = s.cast(pl.Float64).to_numpy()
        if not np.all(np.isfinite(values)):
            raise StrategyError(f"strategies column {col!r} has non-finite values")
        if col in ("timeout_s", "entry_delay_s"):
            if np.any(values != np.round(values)) or np.any(values < 0):
                raise StrategyError(f"strategies column {col!r} must hold whole seconds >= 0")
            out[col] = values.astype(np.int64)
        else:
            if col != "fee" and np.any(values < 0):
                raise StrategyError(f"strategies column {col!r} must be >= 0 (a fraction: 0.05 is 5 %)")
            out[col] = np.ascontiguousarray(values, dtype=np.float64)
    return out


def _check_paths(closes, offsets) -> tuple[np.ndarray, np.ndarray]:
    closes = np.ascontiguousarray(closes, dtype=np.float64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if closes.ndim != 1 or offsets.ndim != 1:
        raise StrategyError("closes and offsets must be one-dimensional")
    if offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != closes.shape[0]:
        raise StrategyError(
            f"offsets must start at 0 and end at len(closes) = {closes.shape[0]} (got {offsets[:1]}..{offsets[-1:]})"
        )
    if np.any(np.diff(offsets) < 0):
        raise StrategyError("offsets must be non-decreasing")
    return closes, offsets


def _bad_price(closes: np.ndarray, offsets: np.ndarray, signal: int) -> StrategyError:
    c = closes[offsets[signal] : offsets[signal + 1]]
    bad = np.flatnonzero(~(np.isfinite(c) & (c > 0)))
    at = int(bad[0]) if bad.size else -1
    return StrategyError(f"closes must be finite and > 0: signal {signal} has {float(c[at])!r} at second {at}")


def evaluate_strategies(closes, offsets, strategies) -> tuple[np.ndarray, np.ndarray]:
    """PnL and exit seconds of every strategy on every signal.

    ``closes``: all signals' 1-second closes concatenated (float64, finite, > 0), each signal's
    path starting at its signal second; ``offsets``: CSR start indices (length signals + 1);
    ``strategies``: a polars or pandas DataFrame with columns ``sl``, ``activation``,
    ``callback`` (fractions >= 0), ``timeout_s``, ``entry_delay_s`` (whole seconds >= 0) and
    ``fee`` (round-trip fraction).

    Returns ``(pnl, exit_s)`` of shape (strategies, signals): PnL as a fraction after the fee
    (float64), and seconds from entry to exit (int32). A signal whose path has no bar at the entry delay gets
    ``nan`` and ``-1``.
    """
    closes, offsets = _check_paths(closes, offsets)
    st = _strategy_arrays(strategies)
    n_sig = offsets.shape[0] - 1
    n_st = st["sl"].shape[0]
    if n_st == 0 or n_sig == 0:
        return np.empty((n_st, n_sig)), np.empty((n_st, n_sig), dtype=np.int32)
    delays, st_delay = np.unique(st["entry_delay_s"], return_inverse=True)
    sls, st_sl = np.unique(st["sl"], return_inverse=True)  # ascending: thresholds descending
    prof = np.stack([st["activation"], st["callback"]], axis=1)
    profs, st_prof = np.unique(prof, axis=0, return_inverse=True)
    tos, st_to = np.unique(st["timeout_s"], return_inverse=True)
    horizon = np.zeros(delays.shape[0], dtype=np.int64)
    np.maximum.at(horizon, st_delay, st["timeout_s"])
    pnl, ex, valid = _phase1(
        closes,
        offsets,
        delays.astype(np.int64),
        horizon,
        np.ascontiguousarray(sls),
        np.ascontiguousarray(profs[:, 0]),
        np.ascontiguousarray(profs[:, 1]),
        tos.astype(np.int64),
        st_delay.ravel().astype(np.int64),
        st_sl.ravel().astype(np.int64),
        st_prof.ravel().astype(np.int64),
        st_to.ravel().astype(np.int64),
        st["fee"],
    )
    if not valid.all():
        raise _bad_price(closes, offsets, int(np.flatnonzero(~valid)[0]))
    # (signals, strategies) in C order is (strategies, signals) in Fortran order: no copy.
    return pnl.T, ex.T


def reference_strategies(closes, offsets, strategies) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evaluate_strategies` computed bar by bar (slow; for tests and benchmarks)."""
    closes, offsets = _check_paths(closes, offsets)
    if closes.size and not (np.all(np.isfinite(closes)) and closes.min() > 0):
        sig = int(np.searchsorted(offsets, np.flatnonzero(~(np.isfinite(closes) & (closes > 0)))[0], side="right") - 1)
        raise _bad_price(closes, offsets, sig)
    st = _strategy_arrays(strategies)
    return naive_matrix(
        closes, offsets, st["sl"], st["activation"], st["callback"], st["timeout_s"], st["entry_delay_s"], st["fee"]
    )


def paths_from_frame(bars: pl.DataFrame, signal_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """CSR closes/offsets for ``signal_ids`` (in that order) from 1-second bars with columns
    ``signal_id``, ``second_ts``, ``close_price``."""
    order = pl.DataFrame({"signal_id": pl.Series(list(signal_ids), dtype=pl.Int64)}).with_row_index("_pos")
    joined = bars.select("signal_id", "second_ts", "close_price").join(order, on="signal_id", how="inner")
    joined = joined.sort("_pos", "second_ts")
    counts = joined.group_by("_pos").len()
    sizes = np.zeros(len(signal_ids), dtype=np.int64)
    if counts.height:
        sizes[counts["_pos"].to_numpy().astype(np.int64)] = counts["len"].to_numpy()
    offsets = np.zeros(len(signal_ids) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return joined["close_price"].to_numpy().astype(np.float64), offsets


__all__ = [
    "DEFAULT_ENTRY_DELAYS_S",
    "DEFAULT_FEE",
    "DEFAULT_SL_LEVELS",
    "DEFAULT_TIMEOUTS_S",
    "GridSpec",
    "PROFILES",
    "REASONS",
    "StrategyError",
    "evaluate_strategies",
    "reference_strategies",
    "simulate_one",
    "strategy_grid",
]


def matrix_arrays(matrix: pl.DataFrame, research: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Strategies and the (strategies, signals) PnL / exit arrays back from the long strategy
    matrix (strategy_id, signal_id, pnl, exit_s and the strategy columns), in the research
    table's signal order; ValueError when the matrix does not cover every cell."""
    strategies = matrix.select(list(STRATEGY_SCHEMA)).unique(subset="strategy_id").sort("strategy_id")
    pos = pl.DataFrame({"signal_id": research["signal_id"]}).with_row_index("_j")
    m = matrix.select("strategy_id", "signal_id", "pnl", "exit_s").join(pos, on="signal_id", how="inner")
    n_st, n_sig = strategies.height, research.height
    if m.height != n_st * n_sig:
        raise ValueError(
            f"pump/strategy_matrix covers {m.height:,} of {n_st * n_sig:,} (strategy, signal) cells of the current "
            "research set; re-materialize pump/strategy_matrix after pump/signal_analysis"
        )
    m = m.sort("strategy_id", "_j")
    pnl = m["pnl"].fill_null(np.nan).to_numpy().reshape(n_st, n_sig)
    ex = m["exit_s"].to_numpy().reshape(n_st, n_sig)
    return strategies.with_columns(pl.col("strategy_id").cast(pl.Int32)), pnl, ex


def matrix_frame(strategies: pl.DataFrame, signal_ids: np.ndarray, pnl: np.ndarray, exit_s: np.ndarray, columns: Sequence[str]) -> pl.DataFrame:
    """The long strategy matrix (one row per (strategy, signal), strategy-major, ``columns`` in
    order) from the (strategies, signals) PnL and exit arrays; the inverse of
    :func:`matrix_arrays`. A NaN PnL (no trade) is null."""
    n_st, n_sig = pnl.shape
    return (
        strategies.select(pl.all().repeat_by(n_sig).explode())
        .with_columns(
            pl.Series("signal_id", np.tile(np.asarray(signal_ids), n_st), dtype=pl.Int64),
            pl.Series("pnl", np.ascontiguousarray(pnl).ravel()).fill_nan(None),
            pl.Series("exit_s", np.ascontiguousarray(exit_s).ravel()).cast(pl.Int64),
        )
        .select(list(columns))
    )


def reference_mismatches(closes, offsets, strategies: pl.DataFrame, pnl: np.ndarray, exit_s: np.ndarray, sample: int) -> tuple[int, list[dict]]:
    """(cells sampled, those that differ): ``sample`` random (strategy, signal) cells of the
    fast evaluation re-walked bar by bar with :func:`simulate_one`, seeded by the matrix shape
    so a re-run samples the same cells."""
    n_st, n_sig = pnl.shape
    if sample == 0 or pnl.size == 0:
        return 0, []
    rng = np.random.default_rng(n_st * 7919 + n_sig)
    cells = rng.integers(0, pnl.size, min(sample, pnl.size))
    rows = strategies.to_dicts()
    bad = []
    for cell in cells:
        k, j = divmod(int(cell), n_sig)
        s = rows[k]
        ref = simulate_one(
            closes[offsets[j] : offsets[j + 1]], s["entry_delay_s"], s["sl"], s["activation"], s["callback"], s["timeout_s"], s["fee"]
        )
        same = (ref[0] == pnl[k, j] or (np.isnan(ref[0]) and np.isnan(pnl[k, j]))) and ref[1] == exit_s[k, j]
        if not same:
            bad.append({"strategy_id": k, "signal": j, "fast": [float(pnl[k, j]), int(exit_s[k, j])], "walk": [float(ref[0]), int(ref[1])]})
    return len(cells), bad
