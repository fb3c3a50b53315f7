"""Walk-forward selection of the composite strategy: choose on one window of signals, report on
a later window the choice never saw, and step forward by signal time.

Folds (``selection="walk_forward"``, the default): the research set's UTC days from its first
signal day are cut into a selection window of ``train_days`` days followed by an evaluation
window of ``test_days`` days; the next fold starts ``step_days`` later. The last evaluation
window may be shorter (it stops at the last signal day); folds continue while an evaluation
window has at least one day.

* A signal is **selectable** in a fold when its 24 h window opens inside the selection window
  and has closed by the time the evaluation window opens: its outcome was known when the
  champion was chosen (a purge of the signals whose trades run into the evaluation window).
* A signal is **evaluated** by the fold whose champion was the latest one chosen when it
  fired: the fold with the latest evaluation start at or before the signal among those whose
  evaluation window contains it (with ``step_days < test_days`` windows overlap and the newest
  champion rules).
* Out-of-sample trades are walked per score range in time order across folds, each signal
  under its fold's champion, one position at a time per range (a position opened in one fold
  blocks signals of the next until it exits) -- the optimizer's rule.

``selection="in_sample"`` is the old behaviour: one fold selecting on every research signal
and no evaluation window. Everything it produces is labelled ``in_sample``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from quant_assets.lib.knobs import check_knobs, knob
from quant_assets.lib.pump import filters

SELECTIONS = ("walk_forward", "in_sample")
DAY_S = 86_400


class WalkForwardError(ValueError):
    """The research set cannot hold one fold of the requested windows."""


@dataclasses.dataclass(frozen=True)
class WalkForwardSpec:
    """How champions are selected (the defaults of the assets' Config).

    4 selection days, 2 evaluation days, stepping 2 days: the demo's ten signal days give three folds
    or more, and a year of signals gives about 180 folds whose evaluation windows tile the year
    after its first 4 days.
    """

    selection: str = knob(
        "walk_forward",
        "'walk_forward': rank on a selection window, report on the later evaluation window it never saw, "
        "stepping forward; 'in_sample': rank on every research signal (figures labelled in sample).",
    )
    train_days: int = knob(4, "Walk-forward selection window, UTC days.", ge=1)
    test_days: int = knob(2, "Walk-forward evaluation window, UTC days.", ge=1)
    step_days: int = knob(2, "Days between consecutive folds' starts.", ge=1)

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise WalkForwardError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        for name in ("train_days", "test_days", "step_days"):
            if int(getattr(self, name)) < 1:
                raise WalkForwardError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_knobs(self)


@dataclasses.dataclass(frozen=True)
class Fold:
    fold: int
    selection_start: dt.datetime
    selection_end: dt.datetime  # exclusive
    evaluation_start: dt.datetime | None
    evaluation_end: dt.datetime | None  # exclusive

    def as_dict(self) -> dict:
        def iso(t):
            return None if t is None else t.isoformat()

        return {
            "fold": self.fold,
            "selection_window": {"start": iso(self.selection_start), "end": iso(self.selection_end)},
            "evaluation_window": (
                None if self.evaluation_start is None else {"start": iso(self.evaluation_start), "end": iso(self.evaluation_end)}
            ),
        }


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _s(t: dt.datetime) -> int:
    return int(t.timestamp())


def make_folds(first_day: dt.date, last_day: dt.date, spec: WalkForwardSpec) -> list[Fold]:
    """The folds over the signal days ``first_day .. last_day`` (inclusive)."""
    end = _midnight(last_day + dt.timedelta(days=1))
    start = _midnight(first_day)
    if spec.selection == "in_sample":
        return [Fold(0, start, end, None, None)]
    folds = []
    i = 0
    while True:
        sel_start = start + dt.timedelta(days=i * spec.step_days)
        sel_end = sel_start + dt.timedelta(days=spec.train_days)
        if sel_end >= end:
            break
        folds.append(Fold(i, sel_start, sel_end, sel_end, min(sel_end + dt.timedelta(days=spec.test_days), end)))
        i += 1
    if not folds:
        span = (last_day - first_day).days + 1
        raise WalkForwardError(
            f"walk-forward needs more than train_days={spec.train_days} days of signals for one evaluation day; "
            f"the research set spans {span} day(s) ({first_day} .. {last_day}): lower train_days, widen the research "
            "window (signal_analysis days), or choose selection='in_sample' (labelled in sample)"
        )
    return folds


def selectable(window_start: np.ndarray, fold: Fold, horizon_s: int = DAY_S) -> np.ndarray:
    """Signals the fold may select on: opened in its selection window, outcome known before the
    evaluation opens (an in-sample fold takes every signal of its window)."""
    ws = np.asarray(window_start, dtype=np.int64)
    ok = (ws >= _s(fold.selection_start)) & (ws < _s(fold.selection_end))
    if fold.evaluation_start is not None:
        ok &= ws + int(horizon_s) <= _s(fold.evaluation_start)
    return ok


def evaluation_fold(window_start: np.ndarray, folds: Sequence[Fold]) -> np.ndarray:
    """Per signal: the fold whose champion trades it out of sample, or -1 (not evaluated)."""
    ws = np.asarray(window_start, dtype=np.int64)
    out = np.full(ws.shape[0], -1, dtype=np.int64)
    for f in folds:  # later folds overwrite: the newest champion rules
        if f.evaluation_start is None:
            continue
        inside = (ws >= _s(f.evaluation_start)) & (ws < _s(f.evaluation_end))
        out[inside] = f.fold
    return out


def fold_frame(folds: Sequence[Fold], selection: str) -> pl.DataFrame:
    """One row per fold: ``fold``, ``selection`` and its windows (UTC)."""
    ms = pl.Datetime("ms", "UTC")
    return pl.DataFrame(
        {
            "fold": [f.fold for f in folds],
            "selection": [selection] * len(folds),
            "selection_start": [f.selection_start for f in folds],
            "selection_end": [f.selection_end for f in folds],
            "evaluation_start": [f.evaluation_start for f in folds],
            "evaluation_end": [f.evaluation_end for f in folds],
        },
        schema={
            "fold": pl.Int32(),
            "selection": pl.String(),
            "selection_start": ms,
            "selection_end": ms,
            "evaluation_start": ms,
            "evaluation_end": ms,
        },
    )


def folds_from_frame(frame: pl.DataFrame) -> list[Fold]:
    """The folds back from a frame with ``fold`` and the window columns (composite champions)."""
    cols = ["fold", "selection_start", "selection_end", "evaluation_start", "evaluation_end"]
    rows = frame.select(cols).unique(subset="fold").sort("fold").iter_rows()
    return [Fold(int(f), a, b, c, d) for f, a, b, c, d in rows]


# --------------------------------------------------------------------------- figures


def figures_from_returns(returns: Sequence[float]) -> dict:
    """The optimizer's figures of a sequence of trade returns in time order: trades, total PnL
    (summed in order), win rate (> 0), profit factor (inf without a loss), max drawdown of the
    cumulative sum from a running peak that starts at 0."""
    total = peak = mdd = gp = gl = 0.0
    wins = n = 0
    for p in returns:
        n += 1
        total += p
        if total > peak:
            peak = total
        if peak - total > mdd:
            mdd = peak - total
        if p > 0.0:
            wins += 1
            gp += p
        else:
            gl -= p
    return {
        "trades": n,
        "total_pnl": total,
        "win_rate": wins / n if n else math.nan,
        "profit_factor": gp / gl if gl > 0 else math.inf,
        "max_drawdown": mdd,
    }


def champion_mask(signals: pl.DataFrame, champion: dict) -> np.ndarray:
    """Signals passing a champion's filter (band and attribute ranges, the optimizer's rules)."""
    score = signals["total_score"].to_numpy()
    lo = int(champion["score_min"])
    ok = filters.in_band(score, lo, int(champion["score_max"]) - lo)
    for col, lo_key, hi_key in (
        ("rsi", "rsi_min", "rsi_max"),
        ("volume_zscore", "volume_zscore_min", "volume_zscore_max"),
        ("oi_change_pct", "oi_change_min", "oi_change_max"),
    ):
        values = signals[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        ok &= filters.passes(values, champion[lo_key], champion[hi_key])
    return ok


@dataclasses.dataclass
class OutOfSample:
    trades: pl.DataFrame  # score_range, fold, signal_id, strategy_id, window_start, pnl (time order per range)
    by_fold: dict[tuple[int, str], dict]  # (fold, range) -> figures of that fold's trades
    by_range: dict[str, dict]  # range -> figures of the whole out-of-sample sequence
    signals_evaluated: int


def out_of_sample(
    research: pl.DataFrame,
    pnl: np.ndarray,
    exit_s: np.ndarray,
    champions: pl.DataFrame,
    folds: Sequence[Fold],
) -> OutOfSample:
    """Each fold's champions traded on the signals it evaluates (``pnl``/``exit_s``: phase 1's
    (strategies, signals) arrays in ``research``'s order, rows by ``strategy_id``)."""
    ws = research["window_start"].to_numpy().astype(np.int64)
    ids = research["signal_id"].to_numpy()
    which = evaluation_fold(ws, folds)
    order = np.lexsort((ids, ws))
    champs = {(int(r["fold"]), r["score_range"]): r for r in champions.iter_rows(named=True) if r["has_champion"]}
    passing = {key: champion_mask(research, row) for key, row in champs.items()}
    ranges = sorted({band for _, band in champs} | set(champions["score_range"].to_list()), key=lambda b: int(b.split("-")[0]))
    rows = []
    for band in ranges:
        busy = -(2**62)
        for i in order:
            f = int(which[i])
            champ = champs.get((f, band))
            if champ is None or not passing[(f, band)][i] or ws[i] < busy:
                continue
            k = int(champ["strategy_id"])
            p = float(pnl[k, i])
            if p != p:
                continue
            busy = int(ws[i]) + int(champ["entry_delay_s"]) + int(exit_s[k, i])
            rows.append((band, f, int(ids[i]), k, int(ws[i]), p))
    trades = pl.DataFrame(
        rows,
        schema={"score_range": pl.String, "fold": pl.Int32, "signal_id": pl.Int64, "strategy_id": pl.Int32, "window_start": pl.Int64, "pnl": pl.Float64},
        orient="row",
    )
    by_fold = {}
    for (f, band) in champs:
        sub = trades.filter((pl.col("fold") == f) & (pl.col("score_range") == band))["pnl"].to_list()
        by_fold[(f, band)] = figures_from_returns(sub)
    by_range = {band: figures_from_returns(trades.filter(pl.col("score_range") == band)["pnl"].to_list()) for band in ranges}
    return OutOfSample(trades, by_fold, by_range, int((which >= 0).sum()))


# --------------------------------------------------------------------------- phase 2 per fold


@dataclasses.dataclass
class FoldSelection:
    results: pl.DataFrame  # optimization results of every fold (FOLD_SCHEMA columns first)
    stats: list[dict]  # per fold: windows, signals selected on, evaluated / profitable / kept configurations
    evaluated_pairs: int
    profitable_pairs: int


def select_per_fold(
    research: pl.DataFrame,
    pnl: np.ndarray,
    exit_s: np.ndarray,
    strategies: pl.DataFrame,
    grid: filters.FilterGrid,
    folds: Sequence[Fold],
    selection: str,
    *,
    horizon_s: int = DAY_S,
    **phase2,
) -> FoldSelection:
    """Phase 2 (:func:`quant_assets.lib.pump.filters.optimize_filters`) on each fold's selectable
    signals; the rows carry their fold and selection window."""
    from quant_assets.lib.pump.schemas import OPTIMIZATION_RESULTS_SCHEMA

    ws = research["window_start"].to_numpy().astype(np.int64)
    frames, stats = [], []
    evaluated = profitable = 0
    meta = fold_frame(folds, selection)
    for f in folds:
        mask = selectable(ws, f, horizon_s)
        idx = np.flatnonzero(mask)
        res = filters.optimize_filters(
            research[idx], np.ascontiguousarray(pnl[:, idx]), np.ascontiguousarray(exit_s[:, idx]), strategies, grid, **phase2
        )
        evaluated += res.evaluated_pairs
        profitable += res.profitable_pairs
        stats.append({**f.as_dict(), "signals_selected_on": int(idx.size), "profitable_configurations": res.profitable_pairs, "kept_rows": res.results.height})
        if res.results.height:
            trials = pl.DataFrame(
                {
                    "score_range": [b.band for b in res.bands],
                    "sharpe_trials": [b.sharpe_trials for b in res.bands],
                    "sharpe_trials_variance": [b.sharpe_variance for b in res.bands],
                },
                schema={"score_range": pl.String, "sharpe_trials": pl.Int64, "sharpe_trials_variance": pl.Float64},
            )
            kept = res.results.with_columns(
                pl.lit(grid.per_band * strategies.height, dtype=pl.Int64).alias("configurations_tried")
            ).join(trials, on="score_range", how="left")
            frames.append(meta.filter(pl.col("fold") == f.fold).join(kept, how="cross"))
    results = pl.concat(frames) if frames else pl.DataFrame(schema=OPTIMIZATION_RESULTS_SCHEMA)
    return FoldSelection(results.select([pl.col(c).cast(t) for c, t in OPTIMIZATION_RESULTS_SCHEMA.items()]), stats, evaluated, profitable)
