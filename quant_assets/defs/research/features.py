"""Research, features: TA-Lib-exact technical indicators per trading day and the MACD day
features of the minute bars (``quant_assets.lib.research.indicators``, ``.macd``)."""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import history_start, partition_dates, trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.common import closed, table_meta
from quant_assets.defs.research.keys import JOIN_CHECK, KEYS, MINUTE_DAYS_PER_RUN, MODE_CHECK, RANGE_CHECK
from quant_assets.defs.resources import Lake
from quant_assets.lib import frames, market
from quant_assets.lib.research import indicators, macd

TECHNICAL_CHECKS = qc.AssetChecks(
    KEYS["technical_features"],
    qc.Check(RANGE_CHECK, "Oscillators within 0-100, Bollinger bands ordered, ATR and volatility non-negative."),
)
MACD_DAY_CHECKS = qc.AssetChecks(KEYS["macd_day_features"], qc.Check(MODE_CHECK, "Exactly one row per ticker, day and requested mode."))
PLUS_MACD_CHECKS = qc.AssetChecks(
    KEYS["minute_features_plus_macd"],
    qc.Check(JOIN_CHECK, "Every minute-features row found its MACD-day row (warns otherwise).", blocking=False),
)


@house_asset(
    KEYS["technical_features"], "features", {"polars", "numba", "parquet"}, "1",
    partitions_def=trading_days, backfill_policy=BackfillPolicy.single_run(),
    metadata=table_meta(indicators.TECHNICAL_SCHEMA, indicators.COLUMN_DOCS), ins={"daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"])},
    checks=TECHNICAL_CHECKS,
)
def technical_features(context: AssetExecutionContext, daily_bars: pl.DataFrame, lake: Lake):
    """TA-Lib-exact technical indicators: one row per ticker and trading day with a bar.

    Source: ``market/daily_bars``. The value on day D is the indicator over the ticker's own bars
    from the first trading-day partition through D (a session without a bar is skipped, not
    filled), so a one-day run -- which reads the earlier partitions it needs from the lake -- and
    a full backfill write identical numbers. Indicators are null for the first bars of a ticker's
    history (its lookback; ``bars_history`` says how many bars it had). Units: prices USD, RSI /
    stochastic / ADX / DI 0-100, ROC percent, hv_20 annualised fraction, OBV shares.
    """
    targets = partition_dates(context.partition_keys)
    cols = ["ticker", "date", "high", "low", "close", "volume"]
    history = _daily_history(lake, min(targets), cols)
    full = frames.stitch(history, frames.conform(daily_bars, market.DAILY_BARS_SCHEMA).select(cols))
    try:
        out = indicators.technical_features(full, keep_dates=targets) if full.height else indicators.empty_technical()
    except ValueError as exc:
        raise Failure(description=f"market/daily_bars: {exc}") from None
    figures = frames.per_day_counts(out, targets, {"with_rsi_14": pl.col("rsi_14").is_not_null().sum()}, rows="tickers")
    md.per_day(context, figures, closed=closed, history_rows_read=int(history.height))
    violations = indicators.range_violations(out)
    bad = {k: v for k, v in violations.items() if v}
    outcome = qc.Outcome(
        not bad,
        f"Rows out of range: {bad}" if bad else f"All {out.height:,} rows within their ranges.",
        {k: int(v) for k, v in violations.items()},
    )
    return TECHNICAL_CHECKS.materialize(context, out, outcomes={RANGE_CHECK: outcome})


def _daily_history(lake: Lake, first: dt.date, columns: list[str]) -> pl.DataFrame:
    """market/daily_bars of every session before ``first`` (the indicators' lookback), or a
    Failure naming the sessions not materialized yet."""
    keys = lakeio.weekday_keys(history_start(), first - dt.timedelta(days=1)) if first > history_start() else []
    history, missing = lakeio.read_partitions(lake, MARKET_KEYS["daily_bars"], keys, columns)
    gaps = lakeio.missing_sessions(missing)
    if gaps:
        raise Failure(
            description=f"market/daily_bars is not materialized for {len(gaps)} session(s) of the history the "
            f"indicators need (first: {', '.join(gaps[:5])}); materialize them first",
            metadata={"missing_sessions": MetadataValue.json(gaps[:100])},
        )
    return history


class MacdDayConfig(BaseModel):
    modes: list[str] = Field(
        default=list(macd.MODES),
        description="Bar sets to summarise: 'all' (every session, the old --mode default) and/or 'rth' "
        "(regular hours only). Both by default, as the mode column.",
    )
    write_bar_level: bool = Field(
        default=False,
        description="Also write the 1-minute MACD, signal and histogram of every bar (each mode) to "
        "research/macd_bars/<date>.parquet in the lake (large: one row per bar and mode).",
    )


@house_asset(
    KEYS["macd_day_features"], "features", {"polars", "numba", "parquet"}, "1",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, metadata=table_meta(macd.MACD_DAY_SCHEMA, macd.COLUMN_DOCS),
    ins={"minute_aggs": AssetIn(key=MARKET_KEYS["minute_aggs"])}, checks=MACD_DAY_CHECKS, config=MacdDayConfig,
)
def macd_day_features(context: AssetExecutionContext, minute_aggs: pl.DataFrame, lake: Lake):
    """MACD(12,26,9) histogram summaries of each ticker-day's minute bars, per ``mode``.

    Source: ``market/minute_aggs``. One row per ticker, trading day and mode (``all`` = every
    session's bars, ``rth`` = 09:30-16:00 only): last / min / max histogram and zero-cross counts
    on 1-minute closes (``__1m``) and on 5-minute closes (``__5m``, the last close of each
    5-minute window). MACD is TA-Lib's and runs on that ticker-day's bars alone; it needs 34 bars,
    so thinner ticker-days get nulls (``bars__1m`` / ``bars__5m`` give the counts). Histogram in USD.
    ``write_bar_level`` also stores every bar's MACD under ``research/macd_bars/`` in the lake.
    """
    config = parse(MacdDayConfig, context)
    bad = [m for m in config.modes if m not in macd.MODES]
    if bad or not config.modes:
        raise Failure(description=f"modes must be a non-empty subset of {list(macd.MODES)}, got {config.modes}")
    targets = partition_dates(context.partition_keys)
    minute = frames.conform(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    try:
        out = macd.macd_day_features(minute).filter(pl.col("mode").is_in(config.modes))
    except ValueError as exc:
        raise Failure(description=f"market/minute_aggs: {exc}") from None
    with_hist = {"with_hist_1m": pl.col("hist_last__1m").is_not_null().sum()}
    md.per_day(context, frames.per_day_counts(out, targets, with_hist, rows="tickers", by="mode", by_values=config.modes), closed=closed)
    if config.write_bar_level:
        for day, rows in frames.split_by_day(macd.macd_bars(minute, config.modes), targets).items():
            key = f"research/macd_bars/{day}.parquet"
            lake.write_frame(key, rows)
            context.add_asset_metadata({"bar_level_file": MetadataValue.path(lake.describe(key))}, partition_key=day)
    ticker_days, wrong = macd.mode_row_violations(out, config.modes)
    outcome = qc.Outcome(
        wrong == 0,
        f"{wrong} ticker-day(s) without exactly one row per mode." if wrong else "One row per ticker, day and mode.",
        {"ticker_days": ticker_days, "wrong": wrong},
    )
    return MACD_DAY_CHECKS.materialize(context, out, outcomes={MODE_CHECK: outcome})


@house_asset(
    KEYS["minute_features_plus_macd"], "features", {"polars", "parquet"}, "1",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, metadata=table_meta(macd.PLUS_MACD_SCHEMA, macd.PLUS_MACD_DOCS),
    ins={
        "minute_features": AssetIn(key=MARKET_KEYS["minute_features"]),
        "macd_day_features": AssetIn(key=KEYS["macd_day_features"]),
    },
    checks=PLUS_MACD_CHECKS,
)
def minute_features_plus_macd(context: AssetExecutionContext, minute_features: pl.DataFrame, macd_day_features: pl.DataFrame):
    """``market/minute_features`` with the day's MACD summaries beside them: one row per
    tradable ticker and day. MACD columns of mode ``all`` keep their names; mode ``rth`` columns
    end in ``_rth``. Units as in the two sources."""
    out = macd.with_macd_day(frames.conform(minute_features, market.MINUTE_FEATURES_SCHEMA), frames.conform(macd_day_features, macd.MACD_DAY_SCHEMA))
    joined = int(out["bars__1m"].is_not_null().sum()) if out.height else 0
    md.per_day(context, frames.per_day_counts(out, partition_dates(context.partition_keys), rows="tickers"))
    outcome = qc.Outcome(joined == out.height, f"{joined:,} of {out.height:,} rows have MACD-day features.", {"rows": out.height, "with_macd": joined})
    return PLUS_MACD_CHECKS.materialize(context, out, outcomes={JOIN_CHECK: outcome})
