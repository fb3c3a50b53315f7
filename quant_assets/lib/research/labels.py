"""Labels: MACD zero-cross events with barrier outcomes (see :mod:`.macd`) and next-day range
expansion of daily bars."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.research.macd import EVENT_DOCS, EVENTS_SCHEMA, EventRule, macd_events

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_DOCS",
    "EventRule",
    "RANGE_LABEL_DOCS",
    "RANGE_LABEL_SCHEMA",
    "label_balance",
    "macd_events",
    "next_session",
    "range_expansion_labels",
]

RANGE_LABEL_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "range_pct": pl.Float64(),
    "next_date": pl.Date(),
    "next_range_pct": pl.Float64(),
    "label": pl.Int8(),
}

RANGE_LABEL_DOCS: dict[str, str] = {
    "ticker": "Symbol as the vendor spells it",
    "date": "Trading day the label is attached to (the features' day)",
    "range_pct": "(high - low) / close of the day itself, fraction",
    "next_date": "The next NYSE session after date",
    "next_range_pct": "(high - low) / close of the ticker's bar on next_date, fraction; null when it has no bar that session or the session is not in market/daily_bars yet",
    "label": "1 when next_range_pct >= threshold, 0 when below; null when next_range_pct is null",
}


def next_session(day: dt.date) -> dt.date:
    """The first NYSE session strictly after ``day``."""
    probe = day
    while True:
        sessions = cal.trading_days(probe + dt.timedelta(days=1), probe + dt.timedelta(days=15))
        if sessions:
            return sessions[0]
        probe += dt.timedelta(days=15)


def range_expansion_labels(daily: pl.DataFrame, targets: Iterable[dt.date], threshold: float) -> pl.DataFrame:
    """For every ticker with a bar on a target date D: label 1 when the ticker's range on the next
    NYSE session, (high - low) / close of that session's bar, is at least ``threshold``.

    ``daily`` holds the target dates' bars and the following sessions' bars (as far as they exist).
    """
    if not 0 < threshold:
        raise ValueError(f"threshold must be a positive fraction, got {threshold}")
    targets = sorted(set(targets))
    if daily.is_empty() or not targets:
        return pl.DataFrame(schema=RANGE_LABEL_SCHEMA)
    rng = ((pl.col("high") - pl.col("low")) / pl.col("close")).alias("range_pct")
    nexts = pl.DataFrame(
        {"date": targets, "next_date": [next_session(d) for d in targets]}, schema={"date": pl.Date, "next_date": pl.Date}
    )
    today = daily.filter(pl.col("date").is_in(targets)).select("ticker", "date", rng).join(nexts, on="date")
    tomorrow = daily.select("ticker", pl.col("date").alias("next_date"), rng.alias("next_range_pct"))
    return (
        today.join(tomorrow, on=["ticker", "next_date"], how="left")
        .with_columns((pl.col("next_range_pct") >= threshold).cast(pl.Int8).alias("label"))
        .select(list(RANGE_LABEL_SCHEMA))
        .sort(["date", "ticker"])
    )


def label_balance(labels: pl.Series) -> dict[str, float | int]:
    """Counts and positive share of a 0/1 label column (nulls counted apart)."""
    n = labels.len()
    nulls = labels.null_count()
    pos = int(labels.fill_null(0).sum())
    known = n - nulls
    return {"rows": n, "labelled": known, "positive": pos, "null": nulls, "positive_share": pos / known if known else float("nan")}
