"""Pump, research: the research set (selected signals with their 24 h outcome) and phase 1, the
strategy matrix of every exit strategy on every signal (``quant_assets.lib.pump.analysis``,
``.optimizer``)."""

import datetime as dt
import time

import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetKey, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.pump.common import fail, read_lake_partition, research_closes, table_meta
from quant_assets.defs.pump.keys import KEYS, REFERENCE_CHECK, RESEARCH_CHECK
from quant_assets.defs.resources import Lake
from quant_assets.lib import frames
from quant_assets.lib.pump import analysis, optimizer, schemas
from quant_assets.lib.pump.signals import select_research_set

ANALYSIS_CHECKS = qc.AssetChecks(KEYS["signal_analysis"], qc.Check(RESEARCH_CHECK, "The research set holds at least one signal with bars."))
MATRIX_CHECKS = qc.AssetChecks(
    KEYS["strategy_matrix"],
    qc.Check(REFERENCE_CHECK, "A random sample of (strategy, signal) cells equals a bar-by-bar walk of the exit rule exactly."),
)
BAR_COLUMNS = ["signal_id", "second_ts", "open_price", "high_price", "low_price", "close_price", "volume"]


class SignalAnalysisConfig(BaseModel):
    days: int = Field(default=30, ge=1, description="Research window: the last `days` UTC days ending at end_date.")
    min_score: int = Field(default=100, ge=100, le=900, description="Lowest total_score kept (inclusive).")
    max_score: int = Field(default=900, ge=100, le=900, description="Highest total_score kept (inclusive).")
    dedup: bool = Field(
        default=True,
        description="Drop a signal when the same symbol had a kept signal less than dedup_hours before it.",
    )
    dedup_hours: float = Field(default=24.0, gt=0, description="Window of the dedup rule, hours.")
    end_date: str = Field(
        default="",
        description="Last UTC day of the window (YYYY-MM-DD); empty = the latest day with signals materialized.",
    )


def _materialized_days(context, key: AssetKey) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(k) for k in context.instance.get_materialized_partitions(key))


@house_asset(
    KEYS["signal_analysis"], "analysis", {"polars", "parquet"}, "1",
    metadata=table_meta(schemas.SIGNAL_ANALYSIS_SCHEMA), deps=[KEYS["signals"], KEYS["delta_bars_1s"]], checks=ANALYSIS_CHECKS,
    config=SignalAnalysisConfig,
)
def signal_analysis(context: AssetExecutionContext, lake: Lake):
    """The research set: one row per selected signal of the last ``days`` UTC days, with its
    24 h outcome from the 1-second bars -- ``max_growth_pct`` / ``max_drawdown_pct`` (highest /
    lowest price vs the first close, percent), ``time_to_peak_seconds`` and ``candles_data``
    (24 h of UTC-aligned 5-minute candles as JSON).

    Selection: ``min_score <= total_score <= max_score``; with ``dedup``, the first signal of a
    symbol within ``dedup_hours`` wins. Signals skipped upstream (no trades, no price) are
    counted, not guessed.
    """
    config = parse(SignalAnalysisConfig, context)
    window, first, end = _window(context, config)
    all_signals, bars = _read_window(lake, window)
    chosen = select_research_set(all_signals, min_score=config.min_score, max_score=config.max_score, dedup=config.dedup, dedup_hours=config.dedup_hours)
    result = analysis.build_signal_analysis(chosen.signals, bars.filter(pl.col("signal_id").is_in(chosen.signals["signal_id"].implode())))
    table = result.table
    run_meta = {
        "window_first_day": first.isoformat(),
        "window_last_day": end.isoformat(),
        "days_with_data": len(window),
        "signals_in_window": all_signals.height,
        "excluded/outside_score": chosen.outside_score,
        "excluded/dedup": chosen.duplicates,
        "excluded/no_bars": len(result.without_bars),
        "signals_by_score_range": MetadataValue.json(frames.value_counts(table, "score_range")),
        "median_max_growth_pct": float(table["max_growth_pct"].median()) if table.height else 0.0,
    }
    outcome = qc.Outcome(table.height > 0, f"{table.height} signal(s) in the research set." if table.height else "The research set is empty.", {"signals": table.height})
    return ANALYSIS_CHECKS.materialize(context, table, run_meta, {RESEARCH_CHECK: outcome})


def _window(context, config: SignalAnalysisConfig) -> tuple[list[dt.date], dt.date, dt.date]:
    """The materialized signal days of the research window, its first and last day; a Failure
    when a day of it has signals but no bars."""
    signal_days = _materialized_days(context, KEYS["signals"])
    if not signal_days:
        raise fail("pump/signals has no materialized day: run pump_daily_job for the signal days first")
    end = dt.date.fromisoformat(config.end_date) if config.end_date else signal_days[-1]
    first = end - dt.timedelta(days=config.days - 1)
    window = [d for d in signal_days if first <= d <= end]
    if not window:
        raise fail(f"no pump/signals day materialized between {first} and {end}")
    # A day whose signals are in but whose bars are not would silently drop out of the research.
    bar_days = set(_materialized_days(context, KEYS["delta_bars_1s"]))
    gaps = [d for d in window if d not in bar_days]
    if gaps:
        raise fail(
            f"pump/signals is materialized but pump/delta_bars_1s is not for {', '.join(map(str, gaps[:10]))}"
            f"{' ...' if len(gaps) > 10 else ''}: run pump_daily_job for those days, or narrow the window (days, end_date)"
        )
    return window, first, end


def _read_window(lake: Lake, window: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The signals and 1-second bars of the window's days, from the lake."""
    sig_frames, bar_frames = [], []
    for d in window:
        s = read_lake_partition(lake, KEYS["signals"], d.isoformat())
        if s is None:
            raise fail(f"pump/signals {d} is not in the lake although its bars are; re-materialize that day")
        sig_frames.append(s)
        b = read_lake_partition(lake, KEYS["delta_bars_1s"], d.isoformat(), BAR_COLUMNS)
        if b is not None:
            bar_frames.append(b)
    all_signals = schemas.conform(pl.concat(sig_frames), schemas.SIGNALS_SCHEMA)
    return all_signals, frames.stitch(*bar_frames, schemas.empty(schemas.DELTA_BARS_SCHEMA))



@mirrors(optimizer.GridSpec)
class StrategyMatrixConfig(BaseModel):
    reference_sample: int = Field(
        default=2000, ge=0, description="(strategy, signal) cells re-walked bar by bar by the matches_bar_by_bar check."
    )

    def grid(self) -> optimizer.GridSpec:
        return lib_params(self, optimizer.GridSpec)

@house_asset(
    KEYS["strategy_matrix"], "analysis", {"numba", "parquet"}, "1",
    metadata=table_meta(schemas.STRATEGY_MATRIX_SCHEMA), ins={"signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    deps=[KEYS["delta_bars_1s"]], checks=MATRIX_CHECKS, config=StrategyMatrixConfig,
)
def strategy_matrix(context: AssetExecutionContext, signal_analysis: pl.DataFrame, lake: Lake):
    """Phase 1 of the optimizer: PnL (fraction, after the round-trip fee) and seconds to exit of
    every exit strategy of the grid on every signal of the research set -- one row per
    (strategy, signal), strategy-major.

    The rule: enter ``entry_delay_s`` after the signal's first second at that close; exit at the
    first close at or below ``entry * (1 - sl)``, or -- once the running high reached
    ``entry * (1 + activation)`` -- at or below ``high * (1 - callback)``; else at the close
    ``timeout_s`` after entry (or the window's last). Default grid: 15 stop levels x 4 trailing
    profiles x 9 timeouts x 10 entry delays = 5,400 strategies.
    """
    config = parse(StrategyMatrixConfig, context)
    research = schemas.conform(signal_analysis, schemas.SIGNAL_ANALYSIS_SCHEMA)
    try:
        strategies = optimizer.strategy_grid(config.grid())
    except optimizer.StrategyError as exc:
        raise fail(f"strategy grid: {exc}") from None
    closes, offsets = research_closes(lake, research)
    t0 = time.perf_counter()
    pnl, exit_s = optimizer.evaluate_strategies(closes, offsets, strategies)
    seconds = time.perf_counter() - t0
    frame = optimizer.matrix_frame(strategies, research["signal_id"].to_numpy(), pnl, exit_s, schemas.STRATEGY_MATRIX_SCHEMA)
    n_st, n_sig = pnl.shape
    run_meta = {
        "strategies": n_st,
        "signals": n_sig,
        "simulations": pnl.size,
        "seconds": round(seconds, 3),
        "simulations_per_second": round(pnl.size / seconds) if seconds > 0 else 0,
        "strategy_grid": MetadataValue.md(
            f"{len(config.sl_levels)} stop levels x {len(config.profiles)} profiles x {len(config.timeouts_s)} "
            f"timeouts x {len(config.entry_delays_s)} entry delays = {n_st:,} strategies"
        ),
    }
    cells, bad = optimizer.reference_mismatches(closes, offsets, strategies, pnl, exit_s, config.reference_sample)
    if not cells:
        outcome = qc.Outcome(True, "No cell sampled.", {"cells": 0})
    else:
        verdict = f"{len(bad)} of {cells} sampled cells differ from the bar-by-bar walk" if bad else f"{cells} sampled cells equal the bar-by-bar walk."
        outcome = qc.Outcome(not bad, verdict, {"cells": cells, "mismatches": MetadataValue.json(bad[:20])})
    return MATRIX_CHECKS.materialize(context, frame, run_meta, {REFERENCE_CHECK: outcome})
