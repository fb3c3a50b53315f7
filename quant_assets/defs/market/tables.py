"""Market, tables: daily bars with returns, weekly bars, the filtered universe and minute
features (``quant_assets.lib.market``)."""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue
from pydantic import BaseModel

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import mirrors, parse
from quant_assets.defs.market.common import day_window, require_sessions, table_meta
from quant_assets.defs.market.keys import (
    DAY_AGGS_LOOKBACK,
    DAYS_PER_RUN,
    FILTER_LOOKBACK,
    HOLIDAY,
    KEYS,
    MINUTE_DAYS_PER_RUN,
    PUBLICATION_FRESHNESS,
    RETURNS_CHECK,
    SPIKE_LOOKBACK,
    UNIVERSE_CHECK,
    WEEKLY_FRESHNESS,
    WEEKS_PER_RUN,
)
from quant_assets.defs.partitions import history_start, partition_dates, trading_days, trading_weeks
from quant_assets.lib import calendar as cal
from quant_assets.lib import frames, market

DAILY_CHECKS = qc.AssetChecks(
    KEYS["daily_bars"],
    qc.Check(UNIVERSE_CHECK, "Every trading session has at least one tradable ticker."),
    qc.Check(RETURNS_CHECK, "Every ticker that traded in the previous session has ret_1d and log_ret_1d."),
)
WEEKLY_CHECKS = qc.AssetChecks(KEYS["weekly_bars"])
FILTERED_CHECKS = qc.AssetChecks(
    KEYS["daily_filtered"],
    qc.Check(UNIVERSE_CHECK, "Every trading session with min_days sessions of history before it has at least one name."),
)
MINUTE_CHECKS = qc.AssetChecks(KEYS["minute_features"])


def closed(day: dt.date) -> str | None:
    return None if cal.is_trading_day(day) else HOLIDAY


def _universe(out: pl.DataFrame, targets: list[dt.date], expected_from: dt.date | None) -> qc.Outcome:
    """Every NYSE session at or after ``expected_from`` must have at least one row."""
    due, empty = market.empty_sessions(out, targets, expected_from)
    desc = (
        f"No rows on trading session(s) {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}."
        if empty
        else f"Every one of {len(due)} trading session(s) has rows."
    )
    return qc.Outcome(not empty, desc, {"sessions_checked": len(due), "empty_sessions": MetadataValue.json(empty[:100])})


@house_asset(
    KEYS["daily_bars"], "curated", {"polars", "parquet"}, "2",
    partitions_def=trading_days, per_run=DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS,
    metadata=table_meta(market.DAILY_BARS_SCHEMA),
    ins={"day_aggs": AssetIn(key=KEYS["day_aggs"], partition_mapping=day_window(-DAY_AGGS_LOOKBACK))}, checks=DAILY_CHECKS,
)
def daily_bars(context: AssetExecutionContext, day_aggs: pl.DataFrame):
    """The research daily table: one row per tradable ticker and trading day, with 1-day returns.

    Non-tradable tickers (warrants, units, rights, preferreds, test issues; see
    ``market.classify_tickers``) are removed, with a count per rule per partition. ``prev_close``
    is the ticker's close in the previous NYSE session, read from the earlier ``day_aggs``
    partitions, so one new day is computed without touching the history. Prices USD
    unadjusted; returns as fractions.
    """
    targets = partition_dates(context.partition_keys)
    day_aggs = frames.conform(day_aggs, market.DAY_AGGS_SCHEMA)
    try:
        out, removed = market.build_daily_bars(day_aggs, targets, history_start())
    except market.MissingHistoryError as exc:
        raise Failure(description=str(exc)) from None
    stats = market.daily_bar_stats(out, targets)

    def figures(d: dt.date) -> dict:
        counts = removed.get(d, {})
        return {
            "tickers": stats.get(d, {}).get("tickers", 0),
            "returns_null": stats.get(d, {}).get("returns_null", 0),
            "removed_non_tradable": sum(counts.values()),
            **{f"removed/{rule}": n for rule, n in counts.items() if n},
        }

    md.per_day(context, {d: figures(d) for d in targets}, closed=closed)
    missing = market.returns_missing(out)
    returns_desc = (
        f"{missing.height} ticker-day(s) traded in the previous session but have no return, e.g. "
        + ", ".join(f"{t} {d}" for t, d in missing.head(5).iter_rows())
        if missing.height
        else "Every ticker that traded in the previous session has its return."
    )
    outcomes = {
        UNIVERSE_CHECK: _universe(out, targets, history_start()),
        RETURNS_CHECK: qc.Outcome(missing.height == 0, returns_desc, {"missing": missing.height}),
    }
    return DAILY_CHECKS.materialize(context, out, outcomes=outcomes)


@house_asset(
    KEYS["weekly_bars"], "curated", {"polars", "parquet"}, "2",
    partitions_def=trading_weeks, per_run=WEEKS_PER_RUN, freshness_policy=WEEKLY_FRESHNESS,
    metadata=table_meta(market.WEEKLY_BARS_SCHEMA, "week_start"),
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=day_window(0))}, checks=WEEKLY_CHECKS,
)
def weekly_bars(context: AssetExecutionContext, daily_bars: pl.DataFrame):
    """Weekly bars: one row per ticker and week ending Friday (partition key: the Monday).

    First open, max high, min low, last close (USD unadjusted), summed share volume and trades,
    and the number of sessions the ticker traded (``trading_days``), from ``market/daily_bars``.
    """
    daily = frames.conform(daily_bars, market.DAILY_BARS_SCHEMA)
    weeks = partition_dates(context.partition_keys)
    out = market.build_weekly_bars(daily).filter(pl.col("week_start").is_in(weeks))
    md.per_day(context, market.weekly_figures(out, daily, weeks))
    return WEEKLY_CHECKS.materialize(context, out)


@mirrors(market.UniverseRule)
class DailyFilteredConfig(BaseModel):
    """The universe rule's knobs (declared in ``lib.market.UniverseRule``)."""


@house_asset(
    KEYS["daily_filtered"], "curated", {"polars", "parquet"}, "2",
    partitions_def=trading_days, per_run=DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS,
    metadata=table_meta({**market.DAILY_BARS_SCHEMA, **market.DAILY_FILTERED_EXTRA}),
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=day_window(-FILTER_LOOKBACK))}, checks=FILTERED_CHECKS,
    config=DailyFilteredConfig,
)
def daily_filtered(context: AssetExecutionContext, daily_bars: pl.DataFrame):
    """The swing-trading universe (the old ``daily_filtered_1_9.99``): one row per ticker in the
    universe and trading day, with its daily bar.

    A ticker is in on day D when it closes within [price_min, price_max] USD, traded in each of
    the last ``min_days`` NYSE sessions ending on D, and averaged at least ``min_avg_volume``
    shares a day over them (``avg_volume``, the arithmetic mean of daily share volume over that
    window). Only data up to D is used, so nobody qualifies before ``min_days`` sessions of
    history exist.
    """
    config = parse(DailyFilteredConfig, context)
    targets = partition_dates(context.partition_keys)
    daily = frames.conform(daily_bars, market.DAILY_BARS_SCHEMA)
    require_sessions(daily, min(targets), max(targets), config.min_days, "market/daily_bars")
    out = market.build_daily_filtered(
        daily,
        targets,
        price_min=config.price_min,
        price_max=config.price_max,
        min_avg_volume=config.min_avg_volume,
        min_days=config.min_days,
    )
    first_full = market.first_full_window(history_start(), config.min_days)
    full_history = lambda d: {"full_history": bool(first_full is not None and d >= first_full)}  # noqa: E731
    md.per_day(context, frames.per_day_counts(out, targets, rows="tickers"), closed=closed, each=full_history)
    return FILTERED_CHECKS.materialize(context, out, outcomes={UNIVERSE_CHECK: _universe(out, targets, first_full)})


@mirrors(market.SpikeBaseline)
class MinuteFeaturesConfig(BaseModel):
    """The spike baseline's knob (declared in ``lib.market.SpikeBaseline``)."""


@house_asset(
    KEYS["minute_features"], "features", {"polars", "parquet"}, "2",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS,
    metadata=table_meta(market.MINUTE_FEATURES_SCHEMA),
    ins={
        "minute_aggs": AssetIn(key=KEYS["minute_aggs"]),
        "daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=day_window(-SPIKE_LOOKBACK, -1)),
    },
    checks=MINUTE_CHECKS, config=MinuteFeaturesConfig,
)
def minute_features(context: AssetExecutionContext, minute_aggs: pl.DataFrame, daily_bars: pl.DataFrame):
    """Per tradable ticker and day, from minute bars: realized volatility, intraday range, volume
    by session, VWAP, and ``volume_spike_ratio`` = the day's volume over the mean daily volume of
    the previous ``vol_spike_lookback`` sessions (from ``market/daily_bars``, strictly before the
    day).

    Units: range and volatility as fractions per day (not annualised), volume in shares, VWAP in
    USD. Tradable tickers only (the same rules as ``market/daily_bars``).
    """
    config = parse(MinuteFeaturesConfig, context)
    targets = partition_dates(context.partition_keys)
    minute = frames.conform(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    daily = frames.conform(daily_bars, market.DAILY_BARS_SCHEMA)
    first_prev = cal.previous_trading_day(min(targets))
    require_sessions(daily, first_prev, first_prev, config.vol_spike_lookback, "market/daily_bars")
    feats = market.add_volume_spike(market.minute_day_features(market.tradable_only(minute)), daily, config.vol_spike_lookback)
    figures = frames.per_day_counts(feats, targets, {"with_spike_ratio": pl.col("volume_spike_ratio").is_not_null().sum()}, rows="tickers")
    md.per_day(context, figures, closed=closed)
    return MINUTE_CHECKS.materialize(context, feats)
