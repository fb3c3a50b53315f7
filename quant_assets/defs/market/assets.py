"""Market data: Polygon flat files -> typed day/minute tables -> research daily, weekly, filtered
and minute-feature tables. One partition per trading day (weekday, New York date)."""


import datetime as dt

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from quant_assets.defs.partitions import history_start, partition_dates, trading_days, trading_weeks
from quant_assets.defs.resources import Lake, LandingZone, WarehouseResource
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.sources import polygon

GROUP = "market"
# Weekday partitions an asset looks back over; they bound the Config lookbacks below.
DAY_AGGS_LOOKBACK = 5
FILTER_LOOKBACK = 100
SPIKE_LOOKBACK = 60
# Minute days are ~2M rows each: range backfills run a few days per run to bound memory.
MINUTE_DAYS_PER_RUN = 5


class FlatFileConfig(Config):
    allow_extra_columns: bool = Field(
        default=False,
        description="Load files with unknown extra columns (ignoring them) instead of failing on the schema change.",
    )
    max_rejected_fraction: float = Field(
        default=0.05,
        description="Fail the file when more than this fraction of its rows break a quarantine rule.",
    )


def _window(start: int, end: int = 0) -> TimeWindowPartitionMapping:
    return TimeWindowPartitionMapping(start_offset=start, end_offset=end, allow_nonexistent_upstream_partitions=True)


def _ingest(
    context: AssetExecutionContext,
    config: FlatFileConfig,
    landing: LandingZone,
    lake: Lake,
    *,
    kind: str,
    to_table,
    schema: dict,
) -> pl.DataFrame:
    """Read, validate and type the flat files of every partition in the run.

    Nothing is written until every file of the run has passed, so a bad file leaves all
    partitions of the run as they were.
    """
    store = landing.store()
    key_of = polygon.day_aggs_key if kind == "day" else polygon.minute_aggs_key
    frames, quarantined, no_data = [], {}, []
    totals = {r: 0 for r in polygon.QUARANTINE_RULES}
    rows_read = 0
    ignored: set[str] = set()
    for day in partition_dates(context.partition_keys):
        key = key_of(day)
        source = landing.describe(key)
        try:
            data = store.read_bytes(key)
        except FileNotFoundError:
            if not cal.is_trading_day(day):
                no_data.append(day)
                continue
            raise Failure(
                description=f"{source}: no file for trading session {day} (not published yet, or missing "
                "from the landing zone)",
                metadata={"file": source, "rule": "missing_file"},
            ) from None
        try:
            parsed = polygon.load_aggs(
                data,
                source,
                day,
                allow_extra_columns=config.allow_extra_columns,
                max_rejected_fraction=config.max_rejected_fraction,
            )
        except polygon.PolygonFileError as exc:
            raise Failure(
                description=str(exc),
                metadata={"file": source, "rule": exc.rule, "line": exc.line if exc.line is not None else -1},
            ) from None
        rows_read += parsed.rows_read
        ignored.update(parsed.ignored_columns)
        for rule, n in parsed.rule_counts.items():
            totals[rule] += n
        quarantined[day] = parsed.rejected
        frames.append(to_table(parsed.rows, day))

    qprefix = f"quarantine/{'/'.join(context.asset_key.path)}"
    for day, rejected in quarantined.items():
        qkey = f"{qprefix}/{day.isoformat()}.parquet"
        if rejected.height:
            lake.write_frame(qkey, rejected.with_columns(pl.lit(day).alias("date")))
        elif lake.exists(qkey):
            lake.delete(qkey)  # a re-published clean file clears the old quarantine
    out = pl.concat(frames) if frames else market.empty_frame(schema)
    n_quarantined = sum(totals.values())
    if n_quarantined:
        context.log.warning(f"quarantined {n_quarantined} row(s): { {k: v for k, v in totals.items() if v} }")
    context.add_output_metadata(
        {
            "files_read": len(frames),
            "rows_read": rows_read,
            "rows_quarantined": n_quarantined,
            **{f"quarantined/{rule}": n for rule, n in totals.items()},
            "quarantine_location": MetadataValue.path(f"{lake.url.rstrip('/')}/{qprefix}/"),
            "no_data_days": MetadataValue.json([d.isoformat() for d in no_data]),
            "ignored_columns": MetadataValue.json(sorted(ignored)),
            "tickers": out["ticker"].n_unique() if out.height else 0,
        }
    )
    return out


@asset(
    key=["market", "day_aggs"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata={"partition_column": "date"},
    kinds={"polars", "parquet"},
)
def day_aggs(context: AssetExecutionContext, config: FlatFileConfig, landing: LandingZone, lake: Lake) -> pl.DataFrame:
    """Polygon day aggregates of one trading day as typed Parquet.

    Source: ``us_stocks_sip/day_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`` in the landing zone.
    Grain: one row per ticker and day. Prices USD unadjusted; volume in shares. A holiday has no
    file and materializes as an empty partition; rows breaking a rule are quarantined (see
    ``quant_assets.lib.sources.polygon``) under ``quarantine/market/day_aggs/`` in the lake.
    """
    return _ingest(
        context, config, landing, lake, kind="day", to_table=market.to_day_aggs, schema=market.DAY_AGGS_SCHEMA
    )


@asset(
    key=["market", "minute_aggs"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata={"partition_column": "date"},
    kinds={"polars", "parquet"},
)
def minute_aggs(
    context: AssetExecutionContext, config: FlatFileConfig, landing: LandingZone, lake: Lake
) -> pl.DataFrame:
    """Polygon minute aggregates of one trading day, with the trading ``session``.

    Source: ``us_stocks_sip/minute_aggs_v1/...``. Grain: ticker x minute with trades (a minute
    without trades has no row), 04:00-20:00 New York time. ``window_start`` is the minute's start
    in New York time; ``session`` is ``pre`` (04:00-09:30), ``rth`` (09:30-16:00) or ``post``.
    """
    return _ingest(
        context, config, landing, lake, kind="minute", to_table=market.to_minute_aggs, schema=market.MINUTE_AGGS_SCHEMA
    )


@asset(
    key=["market", "daily_bars"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata={"partition_column": "date"},
    ins={"day_aggs": AssetIn(key=["market", "day_aggs"], partition_mapping=_window(-DAY_AGGS_LOOKBACK))},
    kinds={"polars", "parquet"},
)
def daily_bars(context: AssetExecutionContext, day_aggs: pl.DataFrame) -> pl.DataFrame:
    """The research daily table: tradable tickers only, with 1-day simple and log returns.

    Non-tradable tickers (warrants, units, rights, preferreds, test issues; see
    ``market.classify_tickers``) are removed, with a count per rule in the metadata. ``prev_close``
    is the ticker's close in the previous NYSE session, read from the earlier ``day_aggs``
    partitions, so one new day is computed without touching the history.
    """
    targets = partition_dates(context.partition_keys)
    day_aggs = _typed(day_aggs, market.DAY_AGGS_SCHEMA)
    try:
        out, removed = market.build_daily_bars(day_aggs, targets, history_start())
    except market.MissingHistoryError as exc:
        raise Failure(description=str(exc)) from None
    context.add_output_metadata(
        {
            "removed_non_tradable": sum(removed.values()),
            **{f"removed/{rule}": n for rule, n in removed.items()},
            "tickers": out["ticker"].n_unique() if out.height else 0,
            "returns_null": int(out["ret_1d"].null_count()),
        }
    )
    return out


@asset(
    key=["market", "weekly_bars"],
    group_name=GROUP,
    partitions_def=trading_weeks,
    backfill_policy=BackfillPolicy.single_run(),
    metadata={"partition_column": "week_start"},
    ins={"daily_bars": AssetIn(key=["market", "daily_bars"], partition_mapping=_window(0))},
    kinds={"polars", "parquet"},
)
def weekly_bars(context: AssetExecutionContext, daily_bars: pl.DataFrame) -> pl.DataFrame:
    """Weekly bars ending Friday, one partition per week (key: the Monday).

    First open, max high, min low, last close, summed volume and transactions, and the number of
    sessions the ticker traded (``trading_days``) from ``market/daily_bars``.
    """
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    weeks = partition_dates(context.partition_keys)
    out = market.build_weekly_bars(daily).filter(pl.col("week_start").is_in(weeks))
    context.add_output_metadata({"tickers": out["ticker"].n_unique() if out.height else 0})
    return out


class DailyFilteredConfig(Config):
    price_min: float = Field(default=1.0, description="Lowest close on the day, USD (inclusive).")
    price_max: float = Field(default=9.99, description="Highest close on the day, USD (inclusive).")
    min_avg_volume: float = Field(
        default=750_000,
        description="Minimum mean daily share volume over the trailing `min_days` sessions ending on the day.",
    )
    min_days: int = Field(
        default=60,
        ge=1,
        le=FILTER_LOOKBACK - 10,
        description="Window length in NYSE sessions; the ticker must have a bar in every one of them.",
    )


@asset(
    key=["market", "daily_filtered"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata={"partition_column": "date"},
    ins={"daily_bars": AssetIn(key=["market", "daily_bars"], partition_mapping=_window(-FILTER_LOOKBACK))},
    kinds={"polars", "parquet"},
)
def daily_filtered(
    context: AssetExecutionContext, config: DailyFilteredConfig, daily_bars: pl.DataFrame
) -> pl.DataFrame:
    """The swing-trading universe (the old ``daily_filtered_1_9.99``): daily bars of the tickers
    that, on that day, close within [price_min, price_max], traded in each of the last ``min_days``
    sessions, and averaged at least ``min_avg_volume`` shares a day over those sessions (the
    arithmetic mean of daily share volume over the window, which ends on the day itself). Only data
    up to the day is used; ``avg_volume`` and ``days_observed`` are kept as columns.
    """
    targets = partition_dates(context.partition_keys)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    _require_sessions(daily, min(targets), max(targets), config.min_days, "market/daily_bars")
    out = market.build_daily_filtered(
        daily,
        targets,
        price_min=config.price_min,
        price_max=config.price_max,
        min_avg_volume=config.min_avg_volume,
        min_days=config.min_days,
    )
    per_day = out.group_by("date").len() if out.height else None
    context.add_output_metadata(
        {
            "tickers": out["ticker"].n_unique() if out.height else 0,
            "median_names_per_day": float(per_day["len"].median()) if per_day is not None else 0.0,
        }
    )
    return out


class MinuteFeaturesConfig(Config):
    vol_spike_lookback: int = Field(
        default=20,
        ge=1,
        le=SPIKE_LOOKBACK - 15,
        description="Sessions before the day whose mean daily volume is the spike ratio's baseline.",
    )


@asset(
    key=["market", "minute_features"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata={"partition_column": "date"},
    ins={
        "minute_aggs": AssetIn(key=["market", "minute_aggs"]),
        "daily_bars": AssetIn(key=["market", "daily_bars"], partition_mapping=_window(-SPIKE_LOOKBACK, -1)),
    },
    kinds={"polars", "parquet"},
)
def minute_features(
    context: AssetExecutionContext,
    config: MinuteFeaturesConfig,
    minute_aggs: pl.DataFrame,
    daily_bars: pl.DataFrame,
) -> pl.DataFrame:
    """Per ticker and day, from minute bars: realized volatility, intraday range, volume by session,
    VWAP, and ``volume_spike_ratio`` = the day's volume over the mean daily volume of the previous
    ``vol_spike_lookback`` sessions (from ``market/daily_bars``, strictly before the day).

    Tradable tickers only (the same rules as ``market/daily_bars``). Units: range and volatility as
    fractions per day (not annualised), volume in shares, VWAP in USD.
    """
    targets = partition_dates(context.partition_keys)
    minute = _typed(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    first_prev = cal.previous_trading_day(min(targets))
    _require_sessions(daily, first_prev, first_prev, config.vol_spike_lookback, "market/daily_bars")
    if minute.height:
        reasons = market.classify_tickers(minute["ticker"].unique())
        keep = reasons.filter(pl.col("reason").is_null())["ticker"]
        minute = minute.filter(pl.col("ticker").is_in(keep.implode()))
    feats = market.add_volume_spike(market.minute_day_features(minute), daily, config.vol_spike_lookback)
    context.add_output_metadata(
        {
            "tickers": feats["ticker"].n_unique() if feats.height else 0,
            "with_spike_ratio": int(feats["volume_spike_ratio"].is_not_null().sum()) if feats.height else 0,
        }
    )
    return feats


@asset(
    key=["market", "warehouse_daily_bars"],
    group_name=GROUP,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    ins={"daily_bars": AssetIn(key=["market", "daily_bars"])},
    kinds={"sql"},
    # DuckDB allows one writing process per file: warehouse loads queue behind each other.
    pool="warehouse",
)
def warehouse_daily_bars(
    context: AssetExecutionContext, daily_bars: pl.DataFrame, warehouse: WarehouseResource
) -> MaterializeResult:
    """``market/daily_bars`` loaded into the warehouse table ``market_daily_bars`` (DDL in ``sql/``).

    Idempotent over the run's window: the rows of exactly those dates are deleted and re-inserted
    in one transaction.
    """
    targets = partition_dates(context.partition_keys)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    with warehouse.connect() as wh:
        inserted = wh.replace_range("market_daily_bars", daily, "date", min(targets), max(targets))
        dialect = wh.dialect
    return MaterializeResult(metadata={"rows": inserted, "table": "market_daily_bars", "dialect": dialect})


def _typed(df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """An upstream frame, or an empty frame of the right schema when no upstream rows exist."""
    if df.width == 0:
        return market.empty_frame(schema)
    return df


def _require_sessions(df: pl.DataFrame, first: dt.date, last: dt.date, lookback: int, name: str) -> None:
    """Fail when a session inside the lookback window (and inside history) was never materialized."""
    lo = market.nth_session_back(cal.previous_trading_day(first), lookback)
    have = set(df["date"].unique().to_list()) if df.height else set()
    gaps = market.missing_sessions(have, lo, last, history_start())
    if gaps:
        raise Failure(
            description=f"{name} has no rows for session(s) {', '.join(map(str, gaps[:10]))}"
            f"{' ...' if len(gaps) > 10 else ''} inside the lookback window; materialize them first"
        )
