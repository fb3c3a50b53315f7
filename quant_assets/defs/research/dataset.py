"""Research, dataset: the training rows, events joined with what was known at each event
(``quant_assets.lib.research.datasets``)."""


import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import partition_dates, trading_days
from quant_assets.defs.research.common import (
    conform,
    day_window,
    schema_check,
    table_meta,
)
from quant_assets.defs.research.keys import (
    DOMAIN,
    HOLIDAY,
    KEYS,
    MINUTE_DAYS_PER_RUN,
    PIT_CHECK,
    PREVIOUS_WINDOW,
)
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.research import (
    datasets,
    indicators,
    labels,
    macd,
)

# ---------------------------------------------------------------------------------------------
# Training dataset


def _dataset_schema() -> tuple[dict, dict]:
    """Schema and docs of the training dataset (no query runs at import: see
    ``datasets.dataset_schema``)."""
    schema = datasets.dataset_schema(market.MINUTE_FEATURES_SCHEMA, market.DAILY_BARS_SCHEMA)
    docs = datasets.dataset_docs({c: market.COLUMN_DOCS[c] for c in market.MINUTE_FEATURES_SCHEMA})
    return schema, docs


DATASET_SCHEMA, DATASET_DOCS = _dataset_schema()


@asset(
    key=KEYS["training_dataset"],
    **md.asset_kwargs(DOMAIN, layer="dataset", kinds={"polars", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=table_meta(DATASET_SCHEMA, DATASET_DOCS),
    ins={
        "macd_event_labels": AssetIn(key=KEYS["macd_event_labels"]),
        "technical_features": AssetIn(key=KEYS["technical_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "minute_features": AssetIn(key=MARKET_KEYS["minute_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
        "macd_day_features": AssetIn(key=KEYS["macd_day_features"], partition_mapping=day_window(-PREVIOUS_WINDOW, -1)),
    },
    check_specs=[
        qc.spec(
            KEYS["training_dataset"],
            PIT_CHECK,
            "Every joined feature comes from a session strictly before the event's day.",
        ),
        schema_check(KEYS["training_dataset"]),
    ],
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
    events = conform(macd_event_labels, labels.EVENTS_SCHEMA)
    previous = {
        "technical_features": conform(technical_features, indicators.TECHNICAL_SCHEMA),
        "daily_bars": conform(daily_bars, market.DAILY_BARS_SCHEMA),
        "minute_features": conform(minute_features, market.MINUTE_FEATURES_SCHEMA),
        "macd_day_features": conform(macd_day_features, macd.MACD_DAY_SCHEMA),
    }
    out = datasets.build_training_dataset(events, previous).select(list(DATASET_SCHEMA))
    leaks = datasets.point_in_time_violations(out)
    stats = (
        {d: (n, k) for d, n, k in out.group_by("date").agg(pl.len(), pl.col("rsi_14").is_not_null().sum()).iter_rows()}
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "events": int(stats.get(d, (0, 0))[0]),
                "with_previous_day_technicals": int(stats.get(d, (0, 0))[1]),
                "feature_date": cal.previous_trading_day(d).isoformat(),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["training_dataset"],
                PIT_CHECK,
                leaks == 0,
                f"{leaks} row(s) with features not strictly before the event day." if leaks else "All features precede their event's day.",
                {"violations": leaks},
            ),
            qc.schema_result(context, KEYS["training_dataset"], out.schema),
        ],
    )


