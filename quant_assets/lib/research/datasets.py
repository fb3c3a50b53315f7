"""The training dataset: MACD events joined with what was known when each event happened.

An event at minute t of day D may use the bars of D up to and including t (its own columns:
MACD values at the event bar, direction, time of day) and the *completed* summaries of the
previous NYSE session D-1: that day's technical features, daily return, minute features and
MACD-day summaries. Nothing of day D's completed summaries (they need D's close) and nothing
after t enters a feature. ``feature_date`` names the session the joined features come from.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.research import indicators
from quant_assets.lib.research.macd import COLUMN_DOCS as MACD_DOCS
from quant_assets.lib.research.macd import EVENT_DOCS, EVENTS_SCHEMA, MACD_DAY_SCHEMA, MACD_FEATURE_COLUMNS

# Columns of an event row that are outcomes: they look forward and are never features.
TARGET_COLUMNS: tuple[str, ...] = ("label", "ret_fwd", "outcome", "bars_to_outcome", "forward_bars")
KEY_COLUMNS: tuple[str, ...] = ("ticker", "date", "mode", "event_time", "feature_date")
# Event-time columns known at the event bar's close.
EVENT_FEATURES: tuple[str, ...] = (
    "bar_index",
    "minute_of_day",
    "direction",
    "entry_price",
    "macd_at_event",
    "signal_at_event",
    "hist_at_event",
    "prev_hist",
)

PREVIOUS_DAY_SOURCES = ("technical_features", "daily_bars", "minute_features", "macd_day_features")
DAILY_COLUMNS = ("ret_1d",)


def feature_columns(source: str, frame: pl.DataFrame) -> list[str]:
    """The columns a previous-day source contributes."""
    if source == "technical_features":
        return [c for c in indicators.FEATURE_COLUMNS if c in frame.columns]
    if source == "daily_bars":
        return [c for c in DAILY_COLUMNS if c in frame.columns]
    if source == "macd_day_features":
        return [c for c in MACD_FEATURE_COLUMNS if c in frame.columns]
    if source == "minute_features":
        return [c for c in frame.columns if c not in ("ticker", "date")]
    raise ValueError(f"unknown feature source {source!r}")


def previous_sessions(days) -> pl.DataFrame:
    days = sorted(set(days))
    return pl.DataFrame(
        {"date": days, "feature_date": [cal.previous_trading_day(d) for d in days]},
        schema={"date": pl.Date, "feature_date": pl.Date},
    )


def build_training_dataset(events: pl.DataFrame, previous: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """``events`` (rows of ``research/macd_event_labels``) joined, by ticker, with each frame of
    ``previous`` on ``date == feature_date`` (the previous NYSE session of the event's date). The
    MACD-day summaries are joined for the event's own mode. A ticker without a row in a source on
    that session gets nulls from it."""
    unknown = sorted(set(previous) - set(PREVIOUS_DAY_SOURCES))
    if unknown:
        raise ValueError(f"unknown feature sources {unknown}; expected {PREVIOUS_DAY_SOURCES}")
    base = events.with_columns(
        (pl.col("event_time").dt.hour().cast(pl.Int16) * 60 + pl.col("event_time").dt.minute().cast(pl.Int16)).alias(
            "minute_of_day"
        )
    )
    if base.is_empty():
        base = base.with_columns(pl.lit(None, dtype=pl.Date).alias("feature_date"))
    else:
        base = base.join(previous_sessions(base["date"].unique().to_list()), on="date", how="left")
    taken = set(base.columns)
    for source in PREVIOUS_DAY_SOURCES:
        frame = previous.get(source)
        if frame is None:
            continue
        cols = feature_columns(source, frame)
        clash = sorted(set(cols) & taken)
        if clash:
            raise ValueError(f"{source} would overwrite columns {clash}")
        keys = ["ticker", "date"] + (["mode"] if source == "macd_day_features" else [])
        right = frame.select(*keys, *cols).rename({"date": "feature_date"})
        if source == "macd_day_features":
            right = right.with_columns(pl.col("mode").cast(EVENTS_SCHEMA["mode"]))
        base = base.join(right, on=["ticker", "feature_date"] + (["mode"] if source == "macd_day_features" else []), how="left")
        taken |= set(cols)
    front = [c for c in (*KEY_COLUMNS, *EVENT_FEATURES) if c in base.columns]
    targets = [c for c in TARGET_COLUMNS if c in base.columns]
    rest = [c for c in base.columns if c not in front and c not in targets]
    return base.select(*front, *rest, *targets).sort(["date", "event_time", "ticker"])


def dataset_schema(minute_feature_schema: Mapping[str, pl.DataType], daily_bars_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """The columns and types :func:`build_training_dataset` returns when every previous-day source
    is present, in its order -- derived from the sources' schemas without running a query (the
    code location computes it at import, and a process that later forks must not have started
    polars' thread pool by then)."""
    joined: dict[str, pl.DataType] = {**EVENTS_SCHEMA, "minute_of_day": pl.Int16(), "feature_date": pl.Date()}
    joined.update({c: indicators.TECHNICAL_SCHEMA[c] for c in indicators.FEATURE_COLUMNS})
    joined.update({c: daily_bars_schema[c] for c in DAILY_COLUMNS})
    joined.update({c: t for c, t in minute_feature_schema.items() if c not in ("ticker", "date")})
    joined.update({c: MACD_DAY_SCHEMA[c] for c in MACD_FEATURE_COLUMNS})
    front = [c for c in (*KEY_COLUMNS, *EVENT_FEATURES) if c in joined]
    targets = [c for c in TARGET_COLUMNS if c in joined]
    rest = [c for c in joined if c not in front and c not in targets]
    return {c: joined[c] for c in (*front, *rest, *targets)}


def dataset_docs(minute_feature_docs: Mapping[str, str]) -> dict[str, str]:
    """Column documentation of the training dataset."""
    docs = {k: v for k, v in EVENT_DOCS.items()}
    docs["feature_date"] = "The previous NYSE session: every joined feature below describes that session (known before the event)"
    docs["minute_of_day"] = "Minutes after New York midnight of the event bar's start"
    prev = "Previous session's "
    for c in indicators.FEATURE_COLUMNS:
        docs[c] = prev + indicators.COLUMN_DOCS[c]
    docs["ret_1d"] = prev + "simple return close / previous close - 1 (market/daily_bars)"
    for c in MACD_FEATURE_COLUMNS:
        docs[c] = prev + "(same mode) " + MACD_DOCS[c]
    for c, d in minute_feature_docs.items():
        if c not in ("ticker", "date"):
            docs[c] = prev + d
    return docs


def point_in_time_violations(dataset: pl.DataFrame) -> int:
    """Rows whose joined features do not come from a session strictly before the event's date."""
    if dataset.is_empty():
        return 0
    return int(dataset.filter(pl.col("feature_date").is_null() | (pl.col("feature_date") >= pl.col("date"))).height)

