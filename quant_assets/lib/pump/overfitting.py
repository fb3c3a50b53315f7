"""Overfitting measured for the pump champions (per walk-forward fold).

* **PBO** over the configurations phase 2 keeps in the fold (every score range's): the
  (periods x configurations) matrix has one row per signal of the fold's selection window, in
  time order, holding each configuration's trade return on that signal (0 where it did not
  trade: another score range, filtered out, no entry, or a position still open). Rows are
  synchronous across configurations, as CSCV requires. Halves are ranked by their total PnL,
  the criterion champions are chosen by. ``S`` = 16 blocks, fewer with fewer than
  32 signals; under 4 signals or 2 configurations it is undefined (null). It measures the
  selection the composite makes -- the best of the grid on a window -- and is shown beside
  every champion of the fold.
* **Deflated Sharpe ratio** of each champion on its selection window: its Sharpe ratio per
  signal of its score range (the returns of the range's signals in time order, 0 where it did
  not trade; T = those signals) against the maximum expected from ``sharpe_trials`` skill-less
  trials -- every distinct (signal set, strategy) configuration of the range with a trade,
  counted and the variance of their Sharpe ratios measured by phase 2 over the whole grid, not
  only the kept rows.
* **SPA** p-value of "no kept configuration of the fold beats doing nothing" on the PBO matrix
  (Hansen's test, ``arch``; stationary bootstrap).

The maths is in :mod:`quant_assets.lib.overfitting`; this module builds the pump's matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl

from quant_assets.lib import overfitting
from quant_assets.lib.pump import walkforward
from quant_assets.lib.pump.schemas import OVERFITTING_FIGURES_SCHEMA

DSR_BAR = 0.95
PBO_BAR = 0.5
OVERFITTING_SCHEMA: dict[str, pl.DataType] = {"fold": pl.Int32(), "score_range": pl.String(), **OVERFITTING_FIGURES_SCHEMA}


@nb.njit(cache=True)
def _series(ws, passing, pnl, exit_s, delay):
    n, t = passing.shape
    out = np.zeros((t, n))
    traded = np.zeros((t, n), dtype=np.bool_)
    for j in range(n):
        busy = -(2**62)
        for i in range(t):
            if not passing[j, i] or ws[i] < busy:
                continue
            p = pnl[j, i]
            if p != p:
                continue
            out[i, j] = p
            traded[i, j] = True
            busy = ws[i] + delay[j] + exit_s[j, i]
    return out, traded


def _bound(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(configurations x signals): ``lo <= x < hi`` with nan bounds open; a missing value passes
    only when both bounds are open (the optimizer's rule)."""
    v = values[None, :]
    lo_c, hi_c = lo[:, None], hi[:, None]
    open_both = np.isnan(lo_c) & np.isnan(hi_c)
    with np.errstate(invalid="ignore"):
        ok = (np.isnan(lo_c) | (v >= lo_c)) & (np.isnan(hi_c) | (v < hi_c)) & ~np.isnan(v)
    return ok | open_both


def config_series(signals: pl.DataFrame, pnl: np.ndarray, exit_s: np.ndarray, configs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per signal (rows, ``signals`` in time order) and configuration (columns, rows of
    ``configs``: score range, filter bounds, ``strategy_id``, ``entry_delay_s``): the trade
    return (0 without a trade) and whether it traded, walked with one position at a time per
    configuration. ``pnl``/``exit_s`` are phase 1's arrays over ``signals``' columns."""
    ws = signals["window_start"].to_numpy().astype(np.int64)
    passing = np.ones((configs.height, signals.height), dtype=bool)
    for col, lo, hi in (
        ("rsi", "rsi_min", "rsi_max"),
        ("volume_zscore", "volume_zscore_min", "volume_zscore_max"),
        ("oi_change_pct", "oi_change_min", "oi_change_max"),
    ):
        v = signals[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        passing &= _bound(
            v, configs[lo].cast(pl.Float64).fill_null(np.nan).to_numpy(), configs[hi].cast(pl.Float64).fill_null(np.nan).to_numpy()
        )
    passing &= configs["score_range"].to_numpy()[:, None] == signals["score_range"].to_numpy()[None, :]
    k = configs["strategy_id"].to_numpy().astype(np.int64)
    return _series(
        ws,
        np.ascontiguousarray(passing),
        np.ascontiguousarray(pnl[k]),
        np.ascontiguousarray(exit_s[k]).astype(np.int64),
        configs["entry_delay_s"].to_numpy().astype(np.int64),
    )


def measure(
    research: pl.DataFrame,
    pnl: np.ndarray,
    exit_s: np.ndarray,
    results: pl.DataFrame,
    champions: pl.DataFrame,
    folds: Sequence[walkforward.Fold],
    *,
    horizon_s: int = walkforward.DAY_S,
    spa_reps: int = 200,
) -> pl.DataFrame:
    """One row per (fold, range) with a champion (``OVERFITTING_SCHEMA``): the fold's PBO and
    SPA over its kept configurations (``spa_reps`` bootstrap replications; 0 skips SPA), the
    champion's deflated Sharpe ratio."""
    ws = research["window_start"].to_numpy().astype(np.int64)
    ids = research["signal_id"].to_numpy()
    rows = []
    for fold in folds:
        champs = champions.filter((pl.col("fold") == fold.fold) & pl.col("has_champion"))
        if not champs.height:
            continue
        members = np.flatnonzero(walkforward.selectable(ws, fold, horizon_s))
        members = members[np.lexsort((ids[members], ws[members]))]
        kept = results.filter(pl.col("fold") == fold.fold).with_row_index("_j")
        series, traded = config_series(research[members], pnl[:, members], exit_s[:, members], kept)
        band_of = research["score_range"].to_numpy()[members]
        p = overfitting.pbo_cscv(series, metric="total")
        # Identical columns (configurations trading the same signals the same way) change
        # nothing in SPA's maximum statistic: test each distinct one once.
        spa = overfitting.spa_pvalue(np.unique(series, axis=1), reps=spa_reps, seed=fold.fold + 1) if series.shape[1] and spa_reps else {}
        for champ in champs.iter_rows(named=True):
            pos = kept.filter(
                (pl.col("score_range") == champ["score_range"])
                & (pl.col("filter_id") == champ["filter_id"])
                & (pl.col("strategy_id") == champ["strategy_id"])
            )["_j"]
            j = int(pos[0])
            returns = series[band_of == champ["score_range"], j]
            trials = champ.get("sharpe_trials") or 0
            variance = champ.get("sharpe_trials_variance")
            d = overfitting.deflated_sharpe(returns, max(int(trials), 2), variance if variance is not None and variance == variance else 0.0)
            rows.append(
                {
                    "fold": fold.fold,
                    "score_range": champ["score_range"],
                    "sharpe_per_trade": _finite(d.sharpe),
                    "sharpe_benchmark": _finite(d.benchmark),
                    "deflated_sharpe": _finite(d.dsr),
                    "pbo": _finite(p.pbo),
                    "pbo_configurations": p.configurations,
                    "pbo_periods": p.periods,
                    "spa_pvalue": spa.get("spa_pvalue"),
                }
            )
    return pl.DataFrame(rows, schema=OVERFITTING_SCHEMA)


def _finite(v: float) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def warnings(frame: pl.DataFrame) -> list[str]:
    """The (fold, range) champions whose PBO is above 0.5 or DSR below 0.95."""
    out = []
    for r in frame.iter_rows(named=True):
        why = []
        if r["pbo"] is not None and r["pbo"] > PBO_BAR:
            why.append(f"PBO {r['pbo']:.2f} > {PBO_BAR}")
        if r["deflated_sharpe"] is None or r["deflated_sharpe"] < DSR_BAR:
            dsr = "undefined" if r["deflated_sharpe"] is None else f"{r['deflated_sharpe']:.2f}"
            why.append(f"DSR {dsr} < {DSR_BAR}")
        if why:
            out.append(f"fold {r['fold']} {r['score_range']}: {', '.join(why)}")
    return out


def markdown(frame: pl.DataFrame) -> str:
    """The measures as a Markdown table (metadata)."""
    if not frame.height:
        return "No champion: nothing measured."

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [
        "| fold | range | Sharpe/trade | SR0 | DSR | PBO | configs x periods | SPA p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in frame.iter_rows(named=True):
        lines.append(
            f"| {r['fold']} | {r['score_range']} | {f(r['sharpe_per_trade'], '.3f')} | {f(r['sharpe_benchmark'], '.3f')} | "
            f"{f(r['deflated_sharpe'], '.3f')} | {f(r['pbo'], '.3f')} | {r['pbo_configurations']} x {r['pbo_periods']} | "
            f"{f(r['spa_pvalue'], '.3f')} |"
        )
    return "\n".join(lines)
