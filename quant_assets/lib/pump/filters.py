"""Phase 2 of the pump optimizer: signal filters x exit strategies, with global position tracking.

A filter is a score range (one of the bands 100-200 ... 800-900) and a range on each of RSI,
volume z-score and open-interest change: ``lo <= x < hi``, either bound possibly open. The
ranges of an attribute are every pair of its cut points plus the open ends, so ``k`` cuts give
``(k + 2)(k + 1) / 2`` ranges, the unbounded one included (a signal without the attribute passes
only that one). The default grid: 8 bands x 55 RSI ranges x 21 volume ranges x 21 OI ranges =
194,040 filters.

For one filter and one strategy, the signals passing the filter are walked in time order (by
window start, then signal id); a signal is traded only when no earlier accepted trade is still
open -- its window start is at or after the previous trade's exit second -- and a signal the
strategy cannot enter (no bar at its entry delay) is passed over. The figures: trades, total
PnL (the returns summed in time order), win rate (returns > 0), profit factor (winning returns /
|losing returns|, inf without a loss) and max drawdown (largest fall of the cumulative sum from
its running peak, which starts at 0).

How it stays fast: filters of a band that select the same signals give the same figures, so
each distinct signal set (a bitmask over the band's signals) is evaluated once. For a strategy,
the next signal that can be taken after accepting signal ``i`` is known in advance (the first
band signal at or after ``i``'s exit), so a walk jumps from trade to trade with bit operations
instead of visiting every passing signal.

What is kept: per distinct signal set, its ``per_filter`` most profitable strategies with at
least ``min_trades`` trades and total PnL > 0; per band, the ``max_per_range`` best of those.
Counts of every profitable (filter, strategy) pair are reported alongside.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl
from numba.cpython.unsafe.numbers import trailing_zeros

from quant_assets.lib.knobs import knob
from quant_assets.lib.pump.schemas import PHASE2_RESULTS_SCHEMA
from quant_assets.lib.pump.signals import SCORE_MAX, SCORE_MIN

DEFAULT_BANDS: tuple[int, ...] = (100, 200, 300, 400, 500, 600, 700, 800)
DEFAULT_RSI_CUTS: tuple[float, ...] = (30, 40, 45, 50, 55, 60, 65, 70, 80)
DEFAULT_VOLUME_CUTS: tuple[float, ...] = (0, 1, 2, 3, 5)
DEFAULT_OI_CUTS: tuple[float, ...] = (-5, 0, 2, 5, 10)
ATTRIBUTES = (("rsi", "rsi"), ("volume_zscore", "volume_zscore"), ("oi_change_pct", "oi_change"))


@dataclasses.dataclass(frozen=True)
class FilterGrid:
    bands: Sequence[int] = DEFAULT_BANDS
    band_width: int = 100
    rsi_cuts: Sequence[float] = knob(DEFAULT_RSI_CUTS, "RSI cut points; every pair (and the open ends) is a range.")
    volume_cuts: Sequence[float] = DEFAULT_VOLUME_CUTS
    oi_cuts: Sequence[float] = DEFAULT_OI_CUTS

    def __post_init__(self) -> None:
        for name in ("rsi_cuts", "volume_cuts", "oi_cuts"):
            cuts = list(getattr(self, name))
            if cuts != sorted(set(cuts)):
                raise ValueError(f"{name} must be strictly increasing, got {cuts}")
        if not self.bands:
            raise ValueError("the filter grid needs at least one score band")
        for lo in self.bands:
            if lo < SCORE_MIN or lo + self.band_width > SCORE_MAX:
                raise ValueError(f"score band {lo}-{lo + self.band_width} is outside {SCORE_MIN}-{SCORE_MAX}")

    @staticmethod
    def ranges(cuts: Sequence[float]) -> list[tuple[float | None, float | None]]:
        """Every ``(lo, hi)`` over the cuts and the open ends (None), widest first."""
        k = len(cuts)
        out = []
        for i in range(k + 1):
            for j in range(k + 1, i, -1):
                out.append((None if i == 0 else float(cuts[i - 1]), None if j == k + 1 else float(cuts[j - 1])))
        return out

    def attribute_ranges(self) -> list[list[tuple[float | None, float | None]]]:
        return [self.ranges(self.rsi_cuts), self.ranges(self.volume_cuts), self.ranges(self.oi_cuts)]

    @property
    def per_band(self) -> int:
        r = self.attribute_ranges()
        return len(r[0]) * len(r[1]) * len(r[2])

    @property
    def size(self) -> int:
        return len(self.bands) * self.per_band

    def band_label(self, lo: int) -> str:
        return f"{lo}-{lo + self.band_width}"

    def describe(self, filter_id: int) -> dict:
        """The bounds of one filter of the grid."""
        r = self.attribute_ranges()
        b, rest = divmod(int(filter_id), self.per_band)
        i, rest = divmod(rest, len(r[1]) * len(r[2]))
        j, k = divmod(rest, len(r[2]))
        lo = self.bands[b]
        return {
            "score_range": self.band_label(lo),
            "score_min": lo,
            "score_max": lo + self.band_width,
            "rsi_min": r[0][i][0],
            "rsi_max": r[0][i][1],
            "volume_zscore_min": r[1][j][0],
            "volume_zscore_max": r[1][j][1],
            "oi_change_min": r[2][k][0],
            "oi_change_max": r[2][k][1],
        }


def in_band(score: np.ndarray, lo: int, width: int) -> np.ndarray:
    """Scores of band ``lo`` (the top band includes 900)."""
    hi = lo + width
    return (score >= lo) & ((score < hi) | ((hi == SCORE_MAX) & (score == SCORE_MAX)))


def passes(values: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """``lo <= x < hi`` with open bounds; a missing value (nan) passes only the unbounded range."""
    if lo is None and hi is None:
        return np.ones(values.shape[0], dtype=bool)
    ok = ~np.isnan(values)
    if lo is not None:
        ok &= values >= lo
    if hi is not None:
        ok &= values < hi
    return ok


def _bits(ok: np.ndarray, words: int) -> np.ndarray:
    """Boolean rows -> uint64 bitmask rows (signal i is bit i % 64 of word i // 64)."""
    rows = ok.shape[0]
    padded = np.zeros((rows, words * 64), dtype=bool)
    padded[:, : ok.shape[1]] = ok
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").reshape(rows, words)


# --------------------------------------------------------------------------- the kernel


@nb.njit(cache=True, inline="always")
def _next_set(mask, words, i):
    """First set bit at index >= i, or -1."""
    w = i >> 6
    if w >= words:
        return -1
    word = mask[w] & (np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(i & 63))
    while word == 0:
        w += 1
        if w >= words:
            return -1
        word = mask[w]
    return (w << 6) + trailing_zeros(word)


@nb.njit(cache=True, inline="always")
def walk(mask, words, pnl_row, next_row):
    """Figures of one strategy on one signal set: trades, total, wins, gross win, gross loss,
    max drawdown (the returns summed in time order), sum of squared returns."""
    trades = 0
    wins = 0
    total = 0.0
    sq = 0.0
    peak = 0.0
    mdd = 0.0
    gp = 0.0
    gl = 0.0
    i = _next_set(mask, words, 0)
    while i >= 0:
        p = pnl_row[i]
        if p != p:
            i = _next_set(mask, words, i + 1)
            continue
        trades += 1
        total += p
        sq += p * p
        if total > peak:
            peak = total
        dd = peak - total
        if dd > mdd:
            mdd = dd
        if p > 0.0:
            wins += 1
            gp += p
        else:
            gl -= p
        i = _next_set(mask, words, next_row[i])
    return trades, total, wins, gp, gl, mdd, sq


@nb.njit(cache=True, parallel=True)
def _evaluate_sets(masks, pnl, nxt, min_trades, keep, trial_sharpe):
    """Per distinct signal set: how many strategies are profitable, and the ``keep`` best
    (strategy index and figures), best first; ties go to the lower strategy index. Also, over
    every strategy with a trade (a trial): how many, and the sum and sum of squares of their
    Sharpe ratios per signal of the band (mean / sample standard deviation of the band's
    signals' returns, 0 for a signal not traded)."""
    n_sets, words = masks.shape
    n_st, n_sig = pnl.shape
    profitable = np.zeros(n_sets, dtype=np.int64)
    best_k = np.full((n_sets, keep), -1, dtype=np.int32)
    best = np.zeros((n_sets, keep, 6))
    sharpe = np.zeros((n_sets, 3))
    for u in nb.prange(n_sets):
        mask = masks[u]
        filled = 0
        count = 0
        for k in range(n_st):
            trades, total, wins, gp, gl, mdd, sq = walk(mask, words, pnl[k], nxt[k])
            if trial_sharpe and trades >= 1 and n_sig >= 2:
                mean = total / n_sig
                var = (sq - n_sig * mean * mean) / (n_sig - 1)
                if var > 1e-24:
                    sr = mean / np.sqrt(var)
                    sharpe[u, 0] += 1.0
                    sharpe[u, 1] += sr
                    sharpe[u, 2] += sr * sr
            if trades < min_trades or not total > 0.0:
                continue
            count += 1
            if filled == keep and not total > best[u, keep - 1, 1]:
                continue
            pos = filled if filled < keep else keep - 1
            while pos > 0 and total > best[u, pos - 1, 1]:
                best[u, pos] = best[u, pos - 1]
                best_k[u, pos] = best_k[u, pos - 1]
                pos -= 1
            best[u, pos, 0] = trades
            best[u, pos, 1] = total
            best[u, pos, 2] = wins
            best[u, pos, 3] = gp
            best[u, pos, 4] = gl
            best[u, pos, 5] = mdd
            best_k[u, pos] = k
            if filled < keep:
                filled += 1
        profitable[u] = count
    return profitable, best_k, best, sharpe


# --------------------------------------------------------------------------- driver


@dataclasses.dataclass
class BandStats:
    band: str
    signals: int
    filters: int
    distinct_sets: int
    profitable_pairs: int
    kept: int
    sharpe_trials: int = 0  # distinct (signal set, strategy) configurations with a trade
    sharpe_variance: float = float("nan")  # variance (population) of their Sharpe ratios per band signal


@dataclasses.dataclass
class Phase2Result:
    results: pl.DataFrame
    bands: list[BandStats]
    evaluated_pairs: int
    profitable_per_filter: np.ndarray  # by filter_id: strategies profitable with min_trades

    @property
    def profitable_pairs(self) -> int:
        return sum(b.profitable_pairs for b in self.bands)


def next_free(times: np.ndarray, pnl: np.ndarray, exit_s: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """For each (strategy, signal) of a band (signals sorted by time): the first band signal
    that may be taken after accepting this one -- the first at or after its exit second."""
    busy = times[None, :] + delays[:, None] + np.where(exit_s >= 0, exit_s, 0)
    nxt = np.searchsorted(times, busy.ravel(), side="left").reshape(busy.shape)
    own = np.arange(times.shape[0])[None, :] + 1
    return np.maximum(nxt, own).astype(np.int64)


def optimize_filters(
    signals: pl.DataFrame,
    pnl: np.ndarray,
    exit_s: np.ndarray,
    strategies: pl.DataFrame,
    grid: FilterGrid = FilterGrid(),
    *,
    min_trades: int = 3,
    per_filter: int = 5,
    max_per_range: int = 5000,
    trial_sharpe: bool = True,
) -> Phase2Result:
    """Phase 2 over ``signals`` (columns ``signal_id``, ``window_start``, ``total_score``, ``rsi``,
    ``volume_zscore``, ``oi_change_pct``; in the column order of ``pnl``/``exit_s``, which are
    (strategies, signals) from phase 1). ``trial_sharpe``: count the trials (distinct signal
    set x strategy with a trade) and measure the variance of their Sharpe ratios per band signal (``BandStats.sharpe_trials`` / ``sharpe_variance``,
    for the deflated Sharpe ratio)."""
    if per_filter < 1:
        raise ValueError("per_filter must be at least 1")
    n_sig = signals.height
    if pnl.shape != (strategies.height, n_sig) or exit_s.shape != pnl.shape:
        raise ValueError(f"pnl/exit_s must be (strategies, signals) = ({strategies.height}, {n_sig}), got {pnl.shape}")
    times = signals["window_start"].to_numpy().astype(np.int64)
    ids = signals["signal_id"].to_numpy()
    score = signals["total_score"].to_numpy()
    attrs = [signals[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c, _ in ATTRIBUTES]
    delays = strategies["entry_delay_s"].to_numpy().astype(np.int64)
    ranges = grid.attribute_ranges()
    frames: list[pl.DataFrame] = []
    stats: list[BandStats] = []
    evaluated = 0
    by_filter = np.zeros(grid.size, dtype=np.int64)
    for b, lo in enumerate(grid.bands):
        label = grid.band_label(lo)
        members = np.flatnonzero(in_band(score, lo, grid.band_width))
        members = members[np.lexsort((ids[members], times[members]))]
        n_b = members.shape[0]
        evaluated += grid.per_band * strategies.height
        if n_b == 0:
            stats.append(BandStats(label, 0, grid.per_band, 0, 0, 0))
            continue
        words = (n_b + 63) // 64
        masks_by_attr = [
            _bits(np.stack([passes(a[members], r_lo, r_hi) for r_lo, r_hi in rs]), words) for a, rs in zip(attrs, ranges)
        ]
        m = (
            masks_by_attr[0][:, None, None, :]
            & masks_by_attr[1][None, :, None, :]
            & masks_by_attr[2][None, None, :, :]
        ).reshape(-1, words)
        keyed = np.ascontiguousarray(m).view(np.dtype((np.void, 8 * words))).ravel()
        _, first, inverse, counts = np.unique(keyed, return_index=True, return_inverse=True, return_counts=True)
        sets = np.ascontiguousarray(m[first])
        nonempty = sets.any(axis=1)
        pnl_b = np.ascontiguousarray(pnl[:, members])
        nxt = next_free(times[members], pnl_b, np.ascontiguousarray(exit_s[:, members]), delays)
        profitable, best_k, best, sharpe = _evaluate_sets(sets[nonempty], pnl_b, nxt, int(min_trades), int(per_filter), bool(trial_sharpe))
        n_sr, s1, s2 = sharpe.sum(axis=0)
        sr_var = float(s2 / n_sr - (s1 / n_sr) ** 2) if n_sr > 0 else float("nan")
        by_set = np.zeros(sets.shape[0], dtype=np.int64)
        by_set[nonempty] = profitable
        by_filter[b * grid.per_band : (b + 1) * grid.per_band] = by_set[inverse.ravel()]
        set_first = first[nonempty]
        set_counts = counts[nonempty]
        set_size = np.array([int(np.unpackbits(s.view(np.uint8)).sum()) for s in sets[nonempty]], dtype=np.int64)
        u_idx, slot = np.nonzero(best_k >= 0)
        k_idx = best_k[u_idx, slot]
        fig = best[u_idx, slot]
        total = fig[:, 1]
        gl = fig[:, 4]
        pf = np.where(gl > 0, fig[:, 3] / np.where(gl > 0, gl, 1.0), np.inf)
        filter_id = b * grid.per_band + set_first[u_idx]
        order = np.lexsort((k_idx, filter_id, fig[:, 5], -pf, -total))
        if max_per_range > 0:
            order = order[:max_per_range]
        stats.append(
            BandStats(
                label,
                int(n_b),
                grid.per_band,
                int(nonempty.sum()),
                int((profitable * set_counts).sum()),
                len(order),
                int(n_sr),
                max(sr_var, 0.0) if sr_var == sr_var else sr_var,
            )
        )
        if order.size == 0:
            continue
        frames.append(
            _rows(
                grid,
                b,
                set_first[u_idx[order]],
                set_counts[u_idx[order]],
                set_size[u_idx[order]],
                k_idx[order],
                fig[order],
                pf[order],
                strategies,
            )
        )
    results = pl.concat(frames) if frames else pl.DataFrame(schema=PHASE2_RESULTS_SCHEMA)
    return Phase2Result(results.select(list(PHASE2_RESULTS_SCHEMA)), stats, evaluated, by_filter)


def _rows(grid, b, local_ids, counts, sizes, k_idx, fig, pf, strategies) -> pl.DataFrame:
    ranges = grid.attribute_ranges()
    n2, n3 = len(ranges[1]), len(ranges[2])
    i = local_ids // (n2 * n3)
    j = (local_ids // n3) % n2
    k = local_ids % n3

    def bound(rs, idx, side):
        return pl.Series([rs[x][side] for x in idx], dtype=pl.Float64)

    lo = grid.bands[b]
    n = len(local_ids)
    frame = pl.DataFrame(
        {
            "rank": np.arange(1, n + 1, dtype=np.int32),
            "score_range": [grid.band_label(lo)] * n,
            "score_min": np.full(n, lo, dtype=np.int32),
            "score_max": np.full(n, lo + grid.band_width, dtype=np.int32),
            "rsi_min": bound(ranges[0], i, 0),
            "rsi_max": bound(ranges[0], i, 1),
            "volume_zscore_min": bound(ranges[1], j, 0),
            "volume_zscore_max": bound(ranges[1], j, 1),
            "oi_change_min": bound(ranges[2], k, 0),
            "oi_change_max": bound(ranges[2], k, 1),
            "filter_id": (b * grid.per_band + local_ids).astype(np.int64),
            "equivalent_filters": counts.astype(np.int32),
            "signals_passing": sizes.astype(np.int32),
            "_k": k_idx.astype(np.int64),
            "trades": fig[:, 0].astype(np.int32),
            "total_pnl": fig[:, 1],
            "win_rate": fig[:, 2] / fig[:, 0],
            "profit_factor": pf,
            "max_drawdown": fig[:, 5],
        }
    )
    strat = strategies.with_row_index("_k").with_columns(pl.col("_k").cast(pl.Int64))
    return frame.join(strat, on="_k", how="left").drop("_k")


def evaluate_filter(
    signals: pl.DataFrame,
    pnl: np.ndarray,
    exit_s: np.ndarray,
    delays: np.ndarray,
    selected: np.ndarray,
) -> dict[str, float]:
    """Figures of one strategy (rows ``pnl``/``exit_s`` of one strategy over ``signals``) on the
    signals marked in ``selected``, walked one signal at a time (a reference for the kernel)."""
    times = signals["window_start"].to_numpy().astype(np.int64)
    ids = signals["signal_id"].to_numpy()
    order = np.lexsort((ids, times))
    busy_until = -np.iinfo(np.int64).max
    trades = wins = 0
    total = peak = mdd = gp = gl = 0.0
    for i in order:
        if not selected[i] or times[i] < busy_until or np.isnan(pnl[i]):
            continue
        p = float(pnl[i])
        trades += 1
        total += p
        peak = max(peak, total)
        mdd = max(mdd, peak - total)
        if p > 0:
            wins += 1
            gp += p
        else:
            gl -= p
        busy_until = times[i] + int(delays) + int(exit_s[i])
    return {
        "trades": trades,
        "total_pnl": total,
        "win_rate": wins / trades if trades else float("nan"),
        "profit_factor": gp / gl if gl > 0 else float("inf"),
        "max_drawdown": mdd,
    }


def combos(grid: FilterGrid):
    """Every filter of the grid in filter_id order (for references and tests)."""
    r = grid.attribute_ranges()
    for lo in grid.bands:
        for a, v, o in itertools.product(r[0], r[1], r[2]):
            yield lo, a, v, o
