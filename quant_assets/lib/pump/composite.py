"""The composite strategy: one champion configuration (filter + exit strategy) per score range.

The champion of a range is its best row of the optimization results (highest total PnL; ties:
higher profit factor, lower drawdown, lower filter id, lower strategy id) among rows with at
least ``min_trades`` trades. A range without such a row has no champion and trades nothing.

``composite_strategy.json``::

    {"version": 2, "generated_at": "...", "selection": "walk_forward",
     "walk_forward": {"selection": "walk_forward", "train_days": 4, "test_days": 2, "step_days": 2, "folds": 12},
     "min_trades": 5, "signals": 300, "window": {"first_signal": "...", "last_signal": "..."},
     "score_ranges": {
        "100-200": {"selection": "walk_forward",
                    "filters": {"score_min": 100, "score_max": 200, "rsi_min": 40.0, "rsi_max": null, ...,
                                "filter_id": 1234},
                    "strategy": {"strategy_id": 17, "profile": "BALANCED", "sl": 0.05, "activation": 0.04,
                                 "callback": 0.02, "timeout_s": 14400, "entry_delay_s": 30, "fee": 0.001},
                    "selection_window": {"start": "...", "end": "..."},      # the deployed rule's
                    "evaluation_window": {"start": "...", "end": "..."},     # every fold's, end to end
                    "configurations_tried": 3117600, "folds": 12,
                    "in_sample": {"trades": 12, "total_pnl": 0.41, "win_rate": 0.58, "profit_factor": 2.1,
                                  "max_drawdown": 0.07, "signals_passing": 19},
                    "figures": {... the same as in_sample ...},
                    "out_of_sample": {"trades": 30, "total_pnl": -0.05, ...},
                    "by_fold": [{"fold": 0, "selection_window": ..., "evaluation_window": ..., "filter_id": ...,
                                 "strategy_id": ..., "in_sample": {...}, "out_of_sample": {...}}, ...]},
        "800-900": null, ...}}

The deployed rule of a range is the champion of the latest fold (``filters``/``strategy`` null
when that fold found none); ``in_sample`` is its figures on its own selection window;
``out_of_sample`` is the walk-forward record: every fold's champion trading the signals of its
evaluation window, one position at a time, end to end. With ``selection = "in_sample"`` there is
one fold, no evaluation window and ``out_of_sample`` is null. A range is ``null`` when no fold
found a champion.

Bounds: ``min`` inclusive, ``max`` exclusive, ``null`` open; 900 belongs to 800-900. Returns and
drawdowns are fractions; a profit factor without a losing trade is ``null`` (JSON has no inf).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
from typing import Any

import numpy as np
import polars as pl

from quant_assets.lib.pump import overfitting, walkforward
from quant_assets.lib.pump.filters import DEFAULT_BANDS
from quant_assets.lib.pump.schemas import (
    COMPOSITE_SCHEMA,
    FIGURES_SCHEMA,
    FILTER_SCHEMA,
    FOLD_SCHEMA,
    OOS_FIGURES_SCHEMA,
    OVERFITTING_FIGURES_SCHEMA,
    STRATEGY_SCHEMA,
)
from quant_assets.lib.pump.signals import score_band

FILTER_KEYS = [k for k in FILTER_SCHEMA if k != "score_range"]
STRATEGY_KEYS = list(STRATEGY_SCHEMA)
FIGURE_KEYS = list(FIGURES_SCHEMA)


def choose_champions(
    results: pl.DataFrame,
    ranges: list[str],
    min_trades: int,
    folds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per (fold, score range) (``has_champion`` false and nulls where none qualifies).

    ``folds``: :func:`quant_assets.lib.pump.walkforward.fold_frame` (default: one in-sample fold
    0 covering whatever ``results`` hold). ``configurations_tried`` is the range's grid size
    (filters x strategies) the champion was chosen among."""
    if folds is None:
        folds = pl.DataFrame(
            {"fold": [0], "selection": ["in_sample"]}, schema={"fold": pl.Int32, "selection": pl.String}
        ).with_columns(
            *(pl.lit(None, dtype=COMPOSITE_SCHEMA[c]).alias(c) for c in ("selection_start", "selection_end", "evaluation_start", "evaluation_end"))
        )
    if "fold" not in results.columns:
        results = results.with_columns(pl.lit(0, dtype=pl.Int32).alias("fold"))
    results = results.with_columns(pl.col("fold").cast(pl.Int32).fill_null(0))
    eligible = results.filter(pl.col("trades") >= min_trades).sort(
        ["total_pnl", "profit_factor", "max_drawdown", "filter_id", "strategy_id"],
        descending=[True, True, False, False, False],
        nulls_last=True,
    )
    best = (
        eligible.drop([c for c in FOLD_SCHEMA if c != "fold"], strict=False)
        .with_columns(pl.col("fold").cast(pl.Int32))
        .group_by(["fold", "score_range"], maintain_order=True)
        .first()
    )
    frame = folds.join(pl.DataFrame({"score_range": ranges}, schema={"score_range": pl.String}), how="cross")
    tried = dict(results.group_by("score_range").agg(pl.col("configurations_tried").max()).iter_rows()) if "configurations_tried" in results.columns else {}
    out = frame.join(best.drop("configurations_tried", strict=False), on=["fold", "score_range"], how="left").with_columns(
        pl.col("trades").is_not_null().alias("has_champion"),
        pl.col("score_range").replace_strict(tried, default=None, return_dtype=pl.Int64).alias("configurations_tried"),
        *(pl.lit(None, dtype=t).alias(c) for c, t in OOS_FIGURES_SCHEMA.items()),
        *(pl.lit(None, dtype=t).alias(c) for c, t in OVERFITTING_FIGURES_SCHEMA.items()),
        *(pl.lit(None, dtype=COMPOSITE_SCHEMA[c]).alias(c) for c in ("sharpe_trials", "sharpe_trials_variance") if c not in best.columns),
    )
    return out.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def with_out_of_sample(champions: pl.DataFrame, by_fold: dict[tuple[int, str], dict]) -> pl.DataFrame:
    """The champions with each fold's out-of-sample figures (``oos_*``) filled in."""
    rows = [
        {"fold": f, "score_range": band, **{f"oos_{k}": v for k, v in fig.items()}} for (f, band), fig in by_fold.items()
    ]
    if not rows:
        return champions
    oos = pl.DataFrame(rows, schema={"fold": pl.Int32, "score_range": pl.String, **OOS_FIGURES_SCHEMA})
    out = champions.drop(list(OOS_FIGURES_SCHEMA)).join(oos, on=["fold", "score_range"], how="left")
    return out.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def with_overfitting(champions: pl.DataFrame, measured: pl.DataFrame) -> pl.DataFrame:
    """The champions with PBO, DSR and SPA (``quant_assets.lib.pump.overfitting.measure``) filled in."""
    if not measured.height:
        return champions
    out = champions.drop(list(OVERFITTING_FIGURES_SCHEMA)).join(
        measured.with_columns(pl.col("fold").cast(pl.Int32)), on=["fold", "score_range"], how="left"
    )
    return out.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def _overfitting(row: dict) -> dict:
    return {
        "deflated_sharpe": _num(row["deflated_sharpe"]),
        "sharpe_per_trade": _num(row["sharpe_per_trade"]),
        "sharpe_benchmark": _num(row["sharpe_benchmark"]),
        "sharpe_trials": row["sharpe_trials"],
        "sharpe_trials_variance": _num(row["sharpe_trials_variance"]),
        "pbo": _num(row["pbo"]),
        "pbo_configurations": row["pbo_configurations"],
        "pbo_periods": row["pbo_periods"],
        "spa_pvalue": _num(row["spa_pvalue"]),
    }


def _num(v: Any) -> Any:
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return None
    return v


def _iso(t: Any) -> Any:
    return None if t is None else t.isoformat()


def _figures(fig: dict | None) -> dict | None:
    if fig is None:
        return None
    return {k: _num(fig[k]) for k in FIGURE_KEYS}


def composite_document(
    champions: pl.DataFrame,
    *,
    min_trades: int,
    research: pl.DataFrame,
    walk_forward: dict | None = None,
    out_of_sample: dict[str, dict] | None = None,
) -> dict:
    """The JSON document of the composite strategy.

    ``champions``: one row per (fold, range); the deployed rule of a range is its champion of the
    latest fold. ``walk_forward``: the selection settings (``selection``, ``train_days``, ...);
    ``out_of_sample``: per range, the figures of the whole out-of-sample sequence."""
    selection = champions["selection"][0] if champions.height else "in_sample"
    last_fold = int(champions["fold"].max()) if champions.height else 0
    ranges: dict[str, Any] = {}
    for label in champions["score_range"].unique(maintain_order=True).to_list():
        rows = champions.filter(pl.col("score_range") == label).sort("fold").to_dicts()
        if not any(r["has_champion"] for r in rows):
            ranges[label] = None
            continue
        latest = next(r for r in rows if r["fold"] == last_fold)
        by_fold = []
        for r in rows:
            entry = {
                "fold": r["fold"],
                "selection_window": {"start": _iso(r["selection_start"]), "end": _iso(r["selection_end"])},
                "evaluation_window": None
                if r["evaluation_start"] is None
                else {"start": _iso(r["evaluation_start"]), "end": _iso(r["evaluation_end"])},
                "filter_id": r["filter_id"],
                "strategy_id": r["strategy_id"],
                "in_sample": _figures(r) if r["has_champion"] else None,
                "out_of_sample": None
                if r["oos_trades"] is None
                else {k: _num(r[f"oos_{k}"]) for k in FIGURE_KEYS},
                "overfitting": _overfitting(r) if r["has_champion"] else None,
            }
            by_fold.append(entry)
        has = latest["has_champion"]
        in_sample = _figures(latest) if has else None
        if in_sample is not None:
            in_sample["signals_passing"] = latest["signals_passing"]
        evaluated = [r for r in rows if r["evaluation_start"] is not None]
        ranges[label] = {
            "selection": selection,
            "filters": {**{k: _num(latest[k]) for k in FILTER_KEYS}, "filter_id": latest["filter_id"]} if has else None,
            "strategy": {k: _num(latest[k]) for k in STRATEGY_KEYS} if has else None,
            "figures": in_sample,
            "selection_window": {"start": _iso(latest["selection_start"]), "end": _iso(latest["selection_end"])},
            "evaluation_window": {"start": _iso(evaluated[0]["evaluation_start"]), "end": _iso(evaluated[-1]["evaluation_end"])}
            if evaluated
            else None,
            "configurations_tried": latest["configurations_tried"],
            "folds": len(rows),
            "in_sample": in_sample,
            "out_of_sample": _figures((out_of_sample or {}).get(label)) if selection == "walk_forward" else None,
            "overfitting": _overfitting(latest) if has else None,
            "by_fold": by_fold,
        }
    window = {}
    if research.height:
        window = {
            "first_signal": research["signal_ts"].min().isoformat(),
            "last_signal": research["signal_ts"].max().isoformat(),
        }
    return {
        "version": 2,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "selection": selection,
        "walk_forward": walk_forward or {"selection": selection},
        "min_trades": int(min_trades),
        "signals": int(research.height),
        "window": window,
        "score_ranges": ranges,
    }


def to_json(document: dict) -> bytes:
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()


def champions_from_document(document: dict) -> pl.DataFrame:
    """The deployed champions back from a composite_strategy.json document (one row per range,
    the latest fold's rule, in-sample figures of its selection window and the out-of-sample
    figures of the whole walk-forward sequence in ``oos_*``)."""
    rows = []
    for label, entry in document["score_ranges"].items():
        has = entry is not None and entry.get("strategy") is not None
        row: dict[str, Any] = {"score_range": label, "has_champion": has, "selection": document.get("selection", "in_sample")}
        if entry is not None and entry.get("by_fold"):
            latest = entry["by_fold"][-1]
            row["fold"] = latest["fold"]
            for side, window in (("selection", latest["selection_window"]), ("evaluation", latest["evaluation_window"])):
                for end in ("start", "end"):
                    value = (window or {}).get(end)
                    row[f"{side}_{end}"] = None if value is None else dt.datetime.fromisoformat(value)
            row["configurations_tried"] = entry.get("configurations_tried")
        if has:
            row.update(entry["filters"])
            row.update(entry["strategy"])
            row.update({k: entry["figures"].get(k) for k in FIGURE_KEYS})
            row["signals_passing"] = entry["figures"].get("signals_passing")
            row.update(entry.get("overfitting") or {})
            if row.get("profit_factor") is None:
                row["profit_factor"] = math.inf
        oos = (entry or {}).get("out_of_sample")
        if oos is not None:
            row.update({f"oos_{k}": oos.get(k) for k in FIGURE_KEYS})
            if oos.get("profit_factor") is None and oos.get("trades"):
                row["oos_profit_factor"] = math.inf
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for c in COMPOSITE_SCHEMA:
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(c))
    return frame.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def _prob(v: Any) -> str:
    return "-" if v is None or v != v else f"{v:.2f}"


def _share(v: Any) -> str:
    return "-" if v is None or v != v else f"{v * 100:.0f}%"


def _pf(v: Any) -> str:
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.2f}")


def summary_lines(champions: pl.DataFrame) -> list[str]:
    """One line per score range, as the demo prints them: the deployed rule, its in-sample
    figures (its selection window) and the out-of-sample figures (walk-forward)."""
    lines = []
    for row in champions.iter_rows(named=True):
        oos = ""
        if row["oos_trades"] is not None:
            oos = (
                f" | out of sample: {int(row['oos_trades'])} trades, pnl {_pct(row['oos_total_pnl'])}, "
                f"win {_share(row['oos_win_rate'])}, PF {_pf(row['oos_profit_factor']) if row['oos_trades'] else '-'}"
            )
        if not row["has_champion"]:
            lines.append(f"{row['score_range']:>8}: no configuration with enough trades{oos}")
            continue
        bounds = []
        for name, lo, hi in (
            ("rsi", row["rsi_min"], row["rsi_max"]),
            ("volz", row["volume_zscore_min"], row["volume_zscore_max"]),
            ("oi%", row["oi_change_min"], row["oi_change_max"]),
        ):
            if lo is not None or hi is not None:
                bounds.append(f"{'' if lo is None else f'{lo:g}<='}{name}{'' if hi is None else f'<{hi:g}'}")
        to = int(row["timeout_s"])
        span = f"{to // 3600}h" if to % 3600 == 0 else f"{to // 60}m"
        tried = row["configurations_tried"]
        lines.append(
            f"{row['score_range']:>8}: {row['profile']:<12} sl {row['sl'] * 100:>4.1f}% timeout {span:>4} "
            f"delay {int(row['entry_delay_s']):>3}s | {' '.join(bounds) or 'no attribute filter'}"
            f"{'' if tried is None else f' | best of {tried:,}'} | "
            f"in sample: {int(row['trades'])} trades, pnl {_pct(row['total_pnl'])}, win {row['win_rate'] * 100:.0f}%, "
            f"PF {_pf(row['profit_factor'])}, maxDD {row['max_drawdown'] * 100:.1f}%{oos}"
            f" | DSR {_prob(row['deflated_sharpe'])}, PBO {_prob(row['pbo'])}"
        )
    return lines


def summary_table(champions: pl.DataFrame) -> list[str]:
    """The deployed champions' figures in columns, in sample beside out of sample (the demo's
    table): trades and total PnL on the selection window, trades, PnL, win rate and profit
    factor of the walk-forward record, the DSR and the PBO."""
    head = (
        f"{'range':>8} {'best of':>13} | {'IS trades':>9} {'IS pnl':>8} | {'OOS trades':>10} {'OOS pnl':>8} "
        f"{'OOS win':>7} {'OOS PF':>6} | {'DSR':>5} {'PBO':>5}"
    )
    lines = [head, "-" * len(head)]
    for row in champions.iter_rows(named=True):
        has = row["has_champion"]
        tried = row["configurations_tried"]
        oos_n = row["oos_trades"]
        lines.append(
            f"{row['score_range']:>8} {'-' if tried is None else f'{tried:,}':>13} | "
            f"{int(row['trades']) if has else '-':>9} {_pct(row['total_pnl']) if has else '-':>8} | "
            f"{'-' if oos_n is None else int(oos_n):>10} {_pct(row['oos_total_pnl']) if oos_n is not None else '-':>8} "
            f"{_share(row['oos_win_rate']) if oos_n else '-':>7} {_pf(row['oos_profit_factor']) if oos_n else '-':>6} | "
            f"{_prob(row['deflated_sharpe']) if has else '-':>5} {_prob(row['pbo']) if has else '-':>5}"
        )
    return lines


@dataclasses.dataclass
class CompositeRun:
    """What building the composite strategy gave: one champion row per (fold, range), the
    ``composite_strategy.json`` document and its deployed champions, the out-of-sample record
    (walk-forward only), the overfitting measures and their warnings."""

    champions: pl.DataFrame
    document: dict
    deployed: pl.DataFrame
    selection: str
    out_of_sample: Any
    measured: Any
    warnings: list[str]
    overfitting_seconds: float

    @property
    def missing_ranges(self) -> list[str]:
        """Score ranges without a deployed champion."""
        return self.deployed.filter(~pl.col("has_champion"))["score_range"].to_list()


def score_ranges(results: pl.DataFrame) -> list[str]:
    """Every default score range and any other range of ``results``, lowest first."""
    found = set(results["score_range"].to_list()) | {score_band(lo) for lo in DEFAULT_BANDS}
    return sorted(found, key=lambda r: int(r.split("-")[0]))


def build_composite(
    results: pl.DataFrame, research: pl.DataFrame, pnl: np.ndarray, exit_s: np.ndarray, *, min_trades: int, spa_reps: int, horizon_s: int
) -> CompositeRun:
    """Champions per fold and range from the phase-2 ``results``, their out-of-sample figures on
    each fold's evaluation window (walk-forward), and PBO / DSR / SPA for every champion."""
    folds_frame = results.select(list(FOLD_SCHEMA)).unique(subset="fold").sort("fold") if results.height else None
    champions = choose_champions(results, score_ranges(results), min_trades, folds_frame)
    selection = champions["selection"][0] if champions.height else "in_sample"
    oos = None
    folds = walkforward.folds_from_frame(champions) if champions.height else []
    if selection == "walk_forward":
        oos = walkforward.out_of_sample(research, pnl, exit_s, champions, folds)
        champions = with_out_of_sample(champions, oos.by_fold)
    t0 = time.perf_counter()
    measured = overfitting.measure(research, pnl, exit_s, results, champions, folds, horizon_s=horizon_s, spa_reps=spa_reps)
    champions = with_overfitting(champions, measured)
    seconds = time.perf_counter() - t0
    doc = composite_document(
        champions,
        min_trades=min_trades,
        research=research,
        walk_forward={"selection": selection, "folds": int(champions["fold"].n_unique()) if champions.height else 0},
        out_of_sample=oos.by_range if oos is not None else None,
    )
    return CompositeRun(champions, doc, champions_from_document(doc), selection, oos, measured, overfitting.warnings(measured), seconds)


def evaluation_window(champions: pl.DataFrame) -> dict:
    """Which signals a backtest of these champions trades: the out-of-sample window spanned by
    the folds' evaluation windows (walk-forward), or every research signal (in sample)."""
    if not champions.height or champions["selection"][0] != "walk_forward":
        return {"window": "in sample: every research signal (the signals the champions were chosen on)"}
    start, end = champions["evaluation_start"].min(), champions["evaluation_end"].max()
    return {
        "window": f"out of sample: {start.isoformat()} .. {end.isoformat()} (each fold's evaluation window)",
        "evaluation_start": start.isoformat(),
        "evaluation_end": end.isoformat(),
    }
