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

from quant_assets.lib.pump import filters as pf
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump.schemas import BACKTEST_TRADES_SCHEMA, FIGURES_SCHEMA, UTC_MS

SCOPES = ("score_range", "global")


def passes_champion(row: dict, champion: dict) -> bool:
    """The optimizer's filter semantics for one signal (``lo <= x < hi``; a missing attribute
    passes only an open range)."""
    if not pf.in_band(np.array([row["total_score"]]), int(champion["score_min"]), int(champion["score_max"] - champion["score_min"]))[0]:
        return False
    for col, lo_key, hi_key in (
        ("rsi", "rsi_min", "rsi_max"),
        ("volume_zscore", "volume_zscore_min", "volume_zscore_max"),
        ("oi_change_pct", "oi_change_min", "oi_change_max"),
    ):
        x = row[col]
        value = np.array([np.nan if x is None else float(x)])
        if not pf.passes(value, champion[lo_key], champion[hi_key])[0]:
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
    ``research`` rows in their order."""
    if position_scope not in SCOPES:
        raise ValueError(f"position_scope must be one of {SCOPES}, got {position_scope!r}")
    champs = {r["score_range"]: r for r in champions.iter_rows(named=True) if r["has_champion"]}
    order = np.lexsort((research["signal_id"].to_numpy(), research["window_start"].to_numpy()))
    rows = research.to_dicts()
    busy: dict[str, int] = {}
    cum: dict[str, float] = {}
    out = []
    skipped_busy = no_entry = 0
    for i in order:
        row = rows[i]
        band = row["score_range"]
        champ = champs.get(band)
        if champ is None or not passes_champion(row, champ):
            continue
        sleeve = band if position_scope == "score_range" else "all"
        start = int(row["window_start"])
        if start < busy.get(sleeve, -(2**62)):
            skipped_busy += 1
            continue
        c = closes[offsets[i] : offsets[i + 1]]
        e = int(champ["entry_delay_s"])
        pnl, exit_s, reason = opt.simulate_one(
            c, e, float(champ["sl"]), float(champ["activation"]), float(champ["callback"]), int(champ["timeout_s"]), float(champ["fee"])
        )
        if reason == opt.NO_ENTRY:
            no_entry += 1
            continue
        busy[sleeve] = start + e + int(exit_s)
        cum[sleeve] = cum.get(sleeve, 0.0) + pnl
        out.append(
            {
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
                "exit_reason": opt.REASONS[int(reason)],
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


def figures(trades: pl.DataFrame) -> dict[str, dict]:
    """Per score range: the optimizer's figures computed from the trade list (same order, same
    arithmetic, so equal to the last bit)."""
    out: dict[str, dict] = {}
    for band in trades["score_range"].unique(maintain_order=True).to_list():
        total = peak = mdd = gp = gl = 0.0
        wins = n = 0
        for p in trades.filter(pl.col("score_range") == band)["pnl"].to_list():
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
        out[band] = {
            "trades": n,
            "total_pnl": total,
            "win_rate": wins / n if n else math.nan,
            "profit_factor": gp / gl if gl > 0 else math.inf,
            "max_drawdown": mdd,
        }
    return out


def disagreements(champions: pl.DataFrame, trades: pl.DataFrame) -> list[str]:
    """Where the replay's figures differ from the composite's (empty when they agree exactly)."""
    got = figures(trades) if trades.height else {}
    problems = []
    for row in champions.filter(pl.col("has_champion")).iter_rows(named=True):
        band = row["score_range"]
        mine = got.get(band, {"trades": 0, "total_pnl": 0.0, "win_rate": math.nan, "profit_factor": math.inf, "max_drawdown": 0.0})
        for key in FIGURES_SCHEMA:
            a, b = row[key], mine[key]
            same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isinf(a) and math.isinf(b))
            if not same:
                problems.append(f"{band}: {key} composite {a!r} vs replay {b!r}")
    return problems
