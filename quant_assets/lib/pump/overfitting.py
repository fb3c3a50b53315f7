"""Overfitting measured for each pump champion (per walk-forward fold and score range).

* **PBO** over the configurations phase 2 keeps for the range: the (periods x configurations)
  matrix has one row per signal of the range in the fold's selection window, in time order,
  holding each configuration's trade return on that signal (0 where it did not trade: filtered
  out, no entry, or a position still open). Rows are synchronous across configurations, as CSCV
  requires. ``S`` = 16 blocks, fewer with fewer than 32 signals; under 4 signals or 2
  configurations it is undefined (null).
* **Deflated Sharpe ratio** of the champion's in-sample trades: its per-trade Sharpe ratio
  against the maximum expected from ``sharpe_trials`` skill-less trials -- every distinct
  (signal set, strategy) configuration of the range with two trades or more, counted and their
  per-trade Sharpe ratios' variance measured by phase 2 over the whole grid, not only the kept
  rows.
* **SPA** p-value of "no kept configuration beats doing nothing" on the same matrix (Hansen's
  test, ``arch``; stationary bootstrap).

The maths is in :mod:`quant_assets.lib.overfitting`; this module builds the pump's matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba as nb
import numpy as np
import polars as pl

from quant_assets.lib import overfitting as of
from quant_assets.lib.pump import walkforward as wf

DSR_BAR = 0.95
PBO_BAR = 0.5
OVERFITTING_SCHEMA: dict[str, pl.DataType] = {
    "fold": pl.Int32(),
    "score_range": pl.String(),
    "sharpe_per_trade": pl.Float64(),
    "sharpe_benchmark": pl.Float64(),
    "deflated_sharpe": pl.Float64(),
    "pbo": pl.Float64(),
    "pbo_configurations": pl.Int32(),
    "pbo_periods": pl.Int32(),
    "spa_pvalue": pl.Float64(),
}


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
    """Per signal (rows, ``signals`` in time order, all of one score range) and configuration
    (columns, rows of ``configs``: filter bounds, ``strategy_id``, ``entry_delay_s``): the trade
    return (0 without a trade) and whether it traded. ``pnl``/``exit_s`` are phase 1's arrays
    over ``signals``' columns."""
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
    folds: Sequence[wf.Fold],
    *,
    horizon_s: int = wf.DAY_S,
    spa_reps: int = 1000,
) -> pl.DataFrame:
    """One row per (fold, range) with a champion: PBO and SPA over the range's kept
    configurations, the champion's deflated Sharpe ratio (``OVERFITTING_SCHEMA``)."""
    ws = research["window_start"].to_numpy().astype(np.int64)
    ids = research["signal_id"].to_numpy()
    by_fold = {f.fold: f for f in folds}
    rows = []
    for champ in champions.filter(pl.col("has_champion")).iter_rows(named=True):
        f, band = int(champ["fold"]), champ["score_range"]
        members = np.flatnonzero(wf.selectable(ws, by_fold[f], horizon_s) & (research["score_range"] == band).to_numpy())
        members = members[np.lexsort((ids[members], ws[members]))]
        kept = results.filter((pl.col("fold") == f) & (pl.col("score_range") == band))
        series, traded = config_series(research[members], pnl[:, members], exit_s[:, members], kept)
        pos = kept.with_row_index("_j").filter(
            (pl.col("filter_id") == champ["filter_id"]) & (pl.col("strategy_id") == champ["strategy_id"])
        )["_j"]
        j = int(pos[0])
        returns = series[traded[:, j], j]
        trials = champ.get("sharpe_trials") or 0
        variance = champ.get("sharpe_trials_variance")
        d = of.deflated_sharpe(returns, max(int(trials), 2), variance if variance is not None and variance == variance else 0.0)
        p = of.pbo_cscv(series)
        spa = of.spa_pvalue(series, reps=spa_reps, seed=f * 1009 + int(band.split("-")[0])) if series.shape[1] else {}
        rows.append(
            {
                "fold": f,
                "score_range": band,
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
