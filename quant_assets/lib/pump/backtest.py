"""The detailed backtest: the composite strategy replayed over the research set, trade by trade.

Signals are taken in time order (window start, then signal id). A signal is traded when its
score range has a champion, it passes that champion's filter, and no earlier accepted trade is
still open: with ``position_scope = "score_range"`` each range is its own sleeve with one
position at a time (exactly the optimizer's assumption, so each range's trades, total PnL, win
rate, profit factor and drawdown equal the figures in composite_strategy.json); with
``"global"`` one position is shared by all ranges (a stricter, portfolio-like view).

Each trade is walked bar by bar on the signal's 1-second closes with the champion's rule
(:func:`quant_assets.lib.pump.optimizer.simulate_one`), which also names the exit reason --
an implementation independent of the optimizer's block search.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl

from quant_assets.lib.pump import filters, optimizer, walkforward
from quant_assets.lib.pump.schemas import BACKTEST_TRADES_SCHEMA, FIGURES_SCHEMA, UTC_MS

SCOPES = ("score_range", "global")


def passes_champion(row: dict, champion: dict) -> bool:
    """The optimizer's filter semantics for one signal (``lo <= x < hi``; a missing attribute
    passes only an open range)."""
    if not filters.in_band(np.array([row["total_score"]]), int(champion["score_min"]), int(champion["score_max"] - champion["score_min"]))[0]:
        return False
    for col, lo_key, hi_key in (
        ("rsi", "rsi_min", "rsi_max"),
        ("volume_zscore", "volume_zscore_min", "volume_zscore_max"),
        ("oi_change_pct", "oi_change_min", "oi_change_max"),
    ):
        x = row[col]
        value = np.array([np.nan if x is None else float(x)])
        if not filters.passes(value, champion[lo_key], champion[hi_key])[0]:
            return False
    return True


@dataclasses.dataclass
class Replay:
    trades: pl.DataFrame
    skipped_busy: int
    no_entry: int


def replay(
    research: pl.DataFrame,
    closes: np.ndarray,
    offsets: np.ndarray,
    champions: pl.DataFrame,
    *,
    position_scope: str = "score_range",
) -> Replay:
    """Trades of the composite strategy. ``closes``/``offsets`` hold the 1-second closes of the
    ``research`` rows in their order.

    ``champions`` holds one row per (fold, range). Walk-forward champions trade only the
    signals of their fold's evaluation window (out of sample: each signal under the champion
    of the latest fold evaluating it); an in-sample champion (``selection = "in_sample"``)
    trades every research signal, the ones it was chosen on."""
    if position_scope not in SCOPES:
        raise ValueError(f"position_scope must be one of {SCOPES}, got {position_scope!r}")
    champs = {(int(r["fold"]), r["score_range"]): r for r in champions.iter_rows(named=True) if r["has_champion"]}
    walk_forward = champions.height > 0 and champions["selection"][0] == "walk_forward"
    ws = research["window_start"].to_numpy()
    if walk_forward:
        fold_of = walkforward.evaluation_fold(ws, walkforward.folds_from_frame(champions))
    else:
        fold_of = np.zeros(research.height, dtype=np.int64)
    sample = "out_of_sample" if walk_forward else "in_sample"
    order = np.lexsort((research["signal_id"].to_numpy(), ws))
    rows = research.to_dicts()
    busy: dict[str, int] = {}
    cum: dict[str, float] = {}
    out = []
    skipped_busy = no_entry = 0
    for i in order:
        row = rows[i]
        band = row["score_range"]
        champ = champs.get((int(fold_of[i]), band))
        if champ is None or not passes_champion(row, champ):
            continue
        sleeve = band if position_scope == "score_range" else "all"
        start = int(row["window_start"])
        if start < busy.get(sleeve, -(2**62)):
            skipped_busy += 1
            continue
        c = closes[offsets[i] : offsets[i + 1]]
        e = int(champ["entry_delay_s"])
        pnl, exit_s, reason = optimizer.simulate_one(
            c, e, float(champ["sl"]), float(champ["activation"]), float(champ["callback"]), int(champ["timeout_s"]), float(champ["fee"])
        )
        if reason == optimizer.NO_ENTRY:
            no_entry += 1
            continue
        busy[sleeve] = start + e + int(exit_s)
        cum[sleeve] = cum.get(sleeve, 0.0) + pnl
        out.append(
            {
                "sample": sample,
                "fold": int(fold_of[i]),
                "score_range": band,
                "signal_id": row["signal_id"],
                "symbol": row["symbol"],
                "total_score": row["total_score"],
                "strategy_id": champ["strategy_id"],
                "signal_ts": row["signal_ts"],
                "entry_time": (start + e) * 1000,
                "entry_price": float(c[e]),
                "exit_time": (start + e + int(exit_s)) * 1000,
                "exit_price": float(c[e + int(exit_s)]),
                "exit_reason": optimizer.REASONS[int(reason)],
                "hold_s": int(exit_s),
                "pnl": float(pnl),
                "cumulative_pnl": cum[sleeve],
            }
        )
    if not out:
        return Replay(pl.DataFrame(schema=BACKTEST_TRADES_SCHEMA), skipped_busy, no_entry)
    frame = pl.DataFrame(out, infer_schema_length=None).with_columns(
        pl.col("entry_time").cast(pl.Int64).cast(UTC_MS), pl.col("exit_time").cast(pl.Int64).cast(UTC_MS)
    )
    frame = frame.with_row_index("trade_no", offset=1)
    return Replay(frame.select([pl.col(c).cast(t) for c, t in BACKTEST_TRADES_SCHEMA.items()]), skipped_busy, no_entry)


def figures(trades: pl.DataFrame, by: tuple[str, ...] = ("score_range",)) -> dict:
    """The optimizer's figures computed from the trade list (same order, same arithmetic, so
    equal to the last bit), per score range -- or per ``by`` group (a tuple key when ``by``
    has more than one column)."""
    out: dict = {}
    for key, group in trades.group_by(list(by), maintain_order=True):
        out[key if len(by) > 1 else key[0]] = walkforward.figures_from_returns(group["pnl"].to_list())
    return out


def disagreements(champions: pl.DataFrame, trades: pl.DataFrame) -> list[str]:
    """Where the replay's figures differ from the composite's (empty when they agree exactly):
    per (fold, range), the out-of-sample figures of a walk-forward champion, the in-sample
    figures of an in-sample one."""
    got = figures(trades, ("fold", "score_range")) if trades.height else {}
    walk_forward = champions.height > 0 and champions["selection"][0] == "walk_forward"
    problems = []
    empty = {"trades": 0, "total_pnl": 0.0, "win_rate": math.nan, "profit_factor": math.inf, "max_drawdown": 0.0}
    for row in champions.filter(pl.col("has_champion")).iter_rows(named=True):
        band = row["score_range"]
        if walk_forward and row["evaluation_start"] is None:
            continue
        mine = got.get((int(row["fold"]), band), empty)
        for key in FIGURES_SCHEMA:
            a, b = row[f"oos_{key}" if walk_forward else key], mine[key]
            same = (
                a == b
                or (isinstance(a, float) and isinstance(b, float) and (math.isinf(a) and math.isinf(b) or math.isnan(a) and math.isnan(b)))
                or (a is None and isinstance(b, float) and math.isnan(b))
            )
            if not same:
                problems.append(f"fold {row['fold']} {band}: {key} composite {a!r} vs replay {b!r}")
    return problems


def range_figures_json(trades: pl.DataFrame) -> dict:
    """:func:`figures` per score range, JSON-safe (an infinite profit factor -- no losing
    trade -- is null)."""
    if not trades.height:
        return {}
    return {k: {**v, "profit_factor": None if math.isinf(v["profit_factor"]) else v["profit_factor"]} for k, v in figures(trades).items()}
