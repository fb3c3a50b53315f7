"""The research set: selected signals with their 24 h outcome, from their 1-second bars."""

from __future__ import annotations

import dataclasses

import polars as pl

from quant_assets.lib.pump.bars import candles_json, window_figures
from quant_assets.lib.pump.schemas import SIGNAL_ANALYSIS_SCHEMA
from quant_assets.lib.pump.signals import score_band_expr
from quant_assets.lib.pump.trades import window_start_expr


@dataclasses.dataclass
class Analysis:
    table: pl.DataFrame
    without_bars: list[int]


def build_signal_analysis(signals: pl.DataFrame, bars: pl.DataFrame) -> Analysis:
    """One row per signal that has bars: its attributes, score range, entry price (the first
    close), max growth / drawdown over 24 h (percent), seconds to the peak and the 5-minute
    candles as JSON. Signals without bars (skipped upstream) are listed, not guessed."""
    figures = window_figures(bars) if bars.height else pl.DataFrame(
        schema={
            "signal_id": pl.Int64,
            "entry_price": pl.Float64,
            "time_to_peak_seconds": pl.Int32,
            "max_growth_pct": pl.Float64,
            "max_drawdown_pct": pl.Float64,
        }
    )
    json_by_signal = candles_json(bars)
    candles = pl.DataFrame(
        {"signal_id": list(json_by_signal), "candles_data": list(json_by_signal.values())},
        schema={"signal_id": pl.Int64, "candles_data": pl.String},
    )
    base = signals.with_columns(
        pl.col("signal_ts").dt.date().alias("signal_date"),
        window_start_expr(),
        score_band_expr().alias("score_range"),
    )
    table = base.join(figures, on="signal_id", how="inner").join(candles, on="signal_id", how="left")
    missing = sorted(set(base["signal_id"].to_list()) - set(table["signal_id"].to_list()))
    table = table.select([pl.col(c).cast(t) for c, t in SIGNAL_ANALYSIS_SCHEMA.items()]).sort("window_start", "signal_id")
    return Analysis(table, missing)
