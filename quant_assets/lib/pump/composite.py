"""The composite strategy: one champion configuration (filter + exit strategy) per score range.

The champion of a range is its best row of the optimization results (highest total PnL; ties:
higher profit factor, lower drawdown, lower filter id, lower strategy id) among rows with at
least ``min_trades`` trades. A range without such a row has no champion and trades nothing.

``composite_strategy.json``::

    {"version": 1, "generated_at": "...", "min_trades": 5, "signals": 300,
     "window": {"first_signal": "...", "last_signal": "..."},
     "score_ranges": {
        "100-200": {"filters": {"score_min": 100, "score_max": 200, "rsi_min": 40.0, "rsi_max": null, ...,
                                "filter_id": 1234},
                    "strategy": {"strategy_id": 17, "profile": "BALANCED", "sl": 0.05, "activation": 0.04,
                                 "callback": 0.02, "timeout_s": 14400, "entry_delay_s": 30, "fee": 0.001},
                    "figures": {"trades": 12, "total_pnl": 0.41, "win_rate": 0.58, "profit_factor": 2.1,
                                "max_drawdown": 0.07, "signals_passing": 19}},
        "800-900": null, ...}}

Bounds: ``min`` inclusive, ``max`` exclusive, ``null`` open; 900 belongs to 800-900. Returns and
drawdowns are fractions; a profit factor without a losing trade is ``null`` (JSON has no inf).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import polars as pl

from quant_assets.lib.pump.schemas import COMPOSITE_SCHEMA, FIGURES_SCHEMA, FILTER_SCHEMA, STRATEGY_SCHEMA

FILTER_KEYS = [k for k in FILTER_SCHEMA if k != "score_range"]
STRATEGY_KEYS = list(STRATEGY_SCHEMA)
FIGURE_KEYS = list(FIGURES_SCHEMA)


def choose_champions(results: pl.DataFrame, ranges: list[str], min_trades: int) -> pl.DataFrame:
    """One row per score range (``has_champion`` false and nulls where none qualifies)."""
    eligible = results.filter(pl.col("trades") >= min_trades).sort(
        ["total_pnl", "profit_factor", "max_drawdown", "filter_id", "strategy_id"],
        descending=[True, True, False, False, False],
        nulls_last=True,
    )
    best = eligible.group_by("score_range", maintain_order=True).first()
    frame = pl.DataFrame({"score_range": ranges}, schema={"score_range": pl.String})
    out = frame.join(best, on="score_range", how="left").with_columns(pl.col("trades").is_not_null().alias("has_champion"))
    return out.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def _num(v: Any) -> Any:
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return None
    return v


def composite_document(champions: pl.DataFrame, *, min_trades: int, research: pl.DataFrame) -> dict:
    """The JSON document of the composite strategy."""
    ranges: dict[str, Any] = {}
    for row in champions.iter_rows(named=True):
        if not row["has_champion"]:
            ranges[row["score_range"]] = None
            continue
        figures = {k: _num(row[k]) for k in FIGURE_KEYS}
        figures["signals_passing"] = row["signals_passing"]
        ranges[row["score_range"]] = {
            "filters": {**{k: _num(row[k]) for k in FILTER_KEYS}, "filter_id": row["filter_id"]},
            "strategy": {k: _num(row[k]) for k in STRATEGY_KEYS},
            "figures": figures,
        }
    window = {}
    if research.height:
        window = {
            "first_signal": research["signal_ts"].min().isoformat(),
            "last_signal": research["signal_ts"].max().isoformat(),
        }
    return {
        "version": 1,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "min_trades": int(min_trades),
        "signals": int(research.height),
        "window": window,
        "score_ranges": ranges,
    }


def to_json(document: dict) -> bytes:
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()


def champions_from_document(document: dict) -> pl.DataFrame:
    """The champions frame back from a composite_strategy.json document."""
    rows = []
    for label, entry in document["score_ranges"].items():
        row: dict[str, Any] = {"score_range": label, "has_champion": entry is not None}
        if entry is not None:
            row.update(entry["filters"])
            row.update(entry["strategy"])
            row.update({k: entry["figures"].get(k) for k in FIGURE_KEYS})
            row["signals_passing"] = entry["figures"].get("signals_passing")
            if row.get("profit_factor") is None:
                row["profit_factor"] = math.inf
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for c in COMPOSITE_SCHEMA:
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(c))
    return frame.select([pl.col(c).cast(t) for c, t in COMPOSITE_SCHEMA.items()])


def summary_lines(champions: pl.DataFrame) -> list[str]:
    """One line per score range, as the demo prints them."""
    lines = []
    for row in champions.iter_rows(named=True):
        if not row["has_champion"]:
            lines.append(f"{row['score_range']:>8}: no configuration with enough trades")
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
        pf = row["profit_factor"]
        lines.append(
            f"{row['score_range']:>8}: {row['profile']:<12} sl {row['sl'] * 100:>4.1f}% timeout {span:>4} "
            f"delay {int(row['entry_delay_s']):>3}s | {' '.join(bounds) or 'no attribute filter'} | "
            f"{int(row['trades'])} trades, pnl {row['total_pnl'] * 100:+.1f}%, win {row['win_rate'] * 100:.0f}%, "
            f"PF {'inf' if pf is None or math.isinf(pf) else f'{pf:.2f}'}, maxDD {row['max_drawdown'] * 100:.1f}%"
        )
    return lines
