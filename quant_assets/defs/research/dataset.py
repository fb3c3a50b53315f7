"""Research, dataset: the training rows, events joined with what was known at each event
(``quant_assets.lib.research.datasets``)."""


import polars as pl
from dagster import AssetExecutionContext, AssetIn

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import partition_dates, trading_days
from quant_assets.defs.research.common import closed, day_window, table_meta
from quant_assets.defs.research.keys import KEYS, MINUTE_DAYS_PER_RUN, PIT_CHECK, PREVIOUS_WINDOW
from quant_assets.lib import calendar as cal
from quant_assets.lib import frames, market
from quant_assets.lib.research import datasets, indicators, labels, macd


def _dataset_schema() -> tuple[dict, dict]:
    """Schema and docs of the training dataset (no query runs at import: see
    ``datasets.dataset_schema``)."""
    schema = datasets.dataset_schema(market.MINUTE_FEATURES_SCHEMA, market.DAILY_BARS_SCHEMA)
    docs = datasets.dataset_docs({c: market.COLUMN_DOCS[c] for c in market.MINUTE_FEATURES_SCHEMA})
    return schema, docs


DATASET_SCHEMA, DATASET_DOCS = _dataset_schema()
DATASET_CHECKS = qc.AssetChecks(
    KEYS["training_dataset"], qc.Check(PIT_CHECK, "Every joined feature comes from a session strictly before the event's day.")
)


@house_asset(
    KEYS["training_dataset"], "dataset", {"polars", "parquet"}, "1",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, metadata=table_meta(DATASET_SCHEMA, DATASET_DOCS),
    ins={
        "macd_event_labels": AssetIn(key=KEYS["macd_event_labels"]),
        "technical_features": AssetIn(key=KEYS["technical_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "minute_features": AssetIn(key=MARKET_KEYS["minute_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "macd_day_features": AssetIn(key=KEYS["macd_day_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
    },
    checks=DATASET_CHECKS,
)
def training_dataset(
    context: AssetExecutionContext,
    macd_event_labels: pl.DataFrame,
    technical_features: pl.DataFrame,
    daily_bars: pl.DataFrame,
    minute_features: pl.DataFrame,
    macd_day_features: pl.DataFrame,
):
    """The model-ready table: every MACD event of the day with what was known at its time.

    Event columns (direction, MACD values at the event bar, minute of day) are known at the event
    bar's close; every other feature is the *previous NYSE session's* completed summary
    (``feature_date``): its technical indicators, daily return, minute features and MACD-day
    summaries of the event's mode. A ticker absent from a source that session has nulls there
    (e.g. the previous session had no minute file). Targets (label, ret_fwd, outcome,
    bars_to_outcome, forward_bars) look forward by definition and are never features.
    """
    targets = partition_dates(context.partition_keys)
    events = frames.conform(macd_event_labels, labels.EVENTS_SCHEMA)
    previous = {
        "technical_features": frames.conform(technical_features, indicators.TECHNICAL_SCHEMA),
        "daily_bars": frames.conform(daily_bars, market.DAILY_BARS_SCHEMA),
        "minute_features": frames.conform(minute_features, market.MINUTE_FEATURES_SCHEMA),
        "macd_day_features": frames.conform(macd_day_features, macd.MACD_DAY_SCHEMA),
    }
    out = datasets.build_training_dataset(events, previous).select(list(DATASET_SCHEMA))
    leaks = datasets.point_in_time_violations(out)
    figures = frames.per_day_counts(out, targets, {"with_previous_day_technicals": pl.col("rsi_14").is_not_null().sum()}, rows="events")
    md.per_day(context, figures, closed=closed, each=lambda day: {"feature_date": cal.previous_trading_day(day).isoformat()})
    outcome = qc.Outcome(
        leaks == 0,
        f"{leaks} row(s) with features not strictly before the event day." if leaks else "All features precede their event's day.",
        {"violations": leaks},
    )
    return DATASET_CHECKS.materialize(context, out, outcomes={PIT_CHECK: outcome})
