"""Market data: Polygon flat files -> typed day/minute tables -> research daily, weekly, filtered
and minute-feature tables. One partition per trading day (weekday, New York date)."""


import dataclasses
import datetime as dt
import hashlib
import statistics

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetRecordsFilter,
    BackfillPolicy,
    DataVersion,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.market import landing as lz
from quant_assets.defs import metadata as md
from quant_assets.defs.partitions import history_start, partition_dates, trading_days, trading_weeks
from quant_assets.defs.resources import Lake, LandingZone, WarehouseResource
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.landing import LandingFile
from quant_assets.lib.sources import polygon

DOMAIN = "market"
# Weekday partitions an asset looks back over; they bound the Config lookbacks below.
DAY_AGGS_LOOKBACK = 5
FILTER_LOOKBACK = 100
SPIKE_LOOKBACK = 60
# Minute days are ~2M rows each: range backfills run a few days per run to bound memory.
MINUTE_DAYS_PER_RUN = 5
# A backfill of the day-file assets runs at most this many sessions (about a year) per run, and
# the weekly bars this many weeks: a run's memory is bounded by a year of the universe (about
# 2.5 M rows at 10,000 tickers), whatever the length of the history.
DAYS_PER_RUN = 250
WEEKS_PER_RUN = 52
# Sessions whose row counts are the yardstick for "implausibly few rows".
ROW_COUNT_REFERENCE_SESSIONS = 5

KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in (
        "day_aggs",
        "minute_aggs",
        "daily_bars",
        "weekly_bars",
        "daily_filtered",
        "minute_features",
        "warehouse_daily_bars",
    )
}

# Polygon publishes the previous session's flat files by about 11:00 New York time; with an
# hour's margin, the previous session's partition is due by 12:00, Tuesday to Saturday.
PUBLICATION_DEADLINE_CRON = "0 12 * * 2-6"
PUBLICATION_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron=PUBLICATION_DEADLINE_CRON, lower_bound_delta=dt.timedelta(hours=12), timezone=cal.NY_TZ_NAME
)
# Weekly bars are built on Monday at 12:00 for the week before; due by 14:00.
WEEKLY_DEADLINE_CRON = "0 14 * * 1"
WEEKLY_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron=WEEKLY_DEADLINE_CRON, lower_bound_delta=dt.timedelta(hours=14), timezone=cal.NY_TZ_NAME
)

HOLIDAY = "NYSE holiday: no session, so the vendor publishes no file"

QUARANTINE_CHECK = "quarantine_share"
UNIVERSE_CHECK = "universe_not_empty"
RETURNS_CHECK = "returns_complete"
WAREHOUSE_CHECK = "rows_match_lake"


class FlatFileConfig(BaseModel):
    allow_extra_columns: bool = Field(
        default=False,
        description="Load files with unknown extra columns (ignoring them) instead of failing on the schema change.",
    )
    max_rejected_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The quarantine_share check fails (and blocks downstream) when more than this fraction "
        "of a file's rows break a quarantine rule.",
    )
    min_rows_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Fail a session's file with fewer rows than this fraction of the median row count of "
        "the previous 5 sessions (a file that parses but carries almost nothing). 0 disables the rule; "
        "a file with no rows always fails.",
    )
    max_price: float = Field(
        default=polygon.DEFAULT_BOUNDS.max_price,
        gt=0,
        description="Quarantine bars with a price above this many USD (rule implausible_value).",
    )
    max_volume: int = Field(
        default=polygon.DEFAULT_BOUNDS.max_volume,
        gt=0,
        description="Quarantine bars with more shares than this (rule implausible_value).",
    )
    max_transactions: int = Field(
        default=polygon.DEFAULT_BOUNDS.max_transactions,
        gt=0,
        description="Quarantine bars with more trades than this (rule implausible_value).",
    )

    def bounds(self) -> polygon.Bounds:
        return polygon.Bounds(max_price=self.max_price, max_volume=self.max_volume, max_transactions=self.max_transactions)


def _window(start: int, end: int = 0) -> TimeWindowPartitionMapping:
    return TimeWindowPartitionMapping(start_offset=start, end_offset=end, allow_nonexistent_upstream_partitions=True)


def _table_meta(schema: dict, partition_column: str = "date") -> dict:
    return md.table_definition_metadata(schema, market.COLUMN_DOCS, partition_column=partition_column)


@dataclasses.dataclass
class _FileReport:
    """What one landing file gave: its partition's own figures."""

    day: dt.date
    source: str
    etag: str
    rows_read: int
    rows: int
    quarantined: dict[str, int]

    @property
    def share(self) -> float:
        return sum(self.quarantined.values()) / self.rows_read if self.rows_read else 0.0


def latest_row_counts(instance, asset_key: AssetKey, partition_keys: list[str]) -> dict[str, int]:
    """``dagster/row_count`` of the latest materialization of each given partition."""
    if not partition_keys:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=partition_keys), limit=4 * len(partition_keys)
    ).records
    out: dict[str, int] = {}
    for rec in records:  # newest first
        mat = rec.asset_materialization
        if mat is None or mat.partition in out:
            continue
        value = mat.metadata.get(md.ROW_COUNT)
        if value is not None:
            out[mat.partition] = int(value.value)
    return out


def _reference_rows(context, day: dt.date, known: dict[dt.date, int]) -> int | None:
    """Median row count of the sessions before ``day``: from this run where it has them, else
    from the latest materializations of those partitions."""
    sessions = cal.trading_days(day - dt.timedelta(days=14), day - dt.timedelta(days=1))
    sessions = [s for s in sessions if s >= history_start()][-ROW_COUNT_REFERENCE_SESSIONS:]
    counts = {s: known[s] for s in sessions if s in known}
    missing = [s.isoformat() for s in sessions if s not in counts]
    if missing:
        for k, n in latest_row_counts(context.instance, context.assets_def.key, missing).items():
            counts[dt.date.fromisoformat(k)] = n
    values = [n for n in counts.values() if n > 0]
    return int(statistics.median(values)) if values else None


def _ingest(
    context: AssetExecutionContext,
    config: FlatFileConfig,
    landing: LandingZone,
    lake: Lake,
    *,
    kind: str,
    to_table,
    schema: dict,
) -> MaterializeResult:
    """Read, validate and type the flat files of every partition in the run.

    Nothing is written until every file of the run has passed, so a bad file leaves all
    partitions of the run as they were. Each partition records its own figures.
    """
    store = landing.store()
    key_of = polygon.day_aggs_key if kind == "day" else polygon.minute_aggs_key
    asset_key = context.assets_def.key
    frames: list[pl.DataFrame] = []
    reports: list[_FileReport] = []
    rejected_by_day: dict[dt.date, pl.DataFrame] = {}
    partition_meta: dict[str, dict] = {}
    rows_by_day: dict[dt.date, int] = {}
    infos = {day: store.stat(key_of(day)) for day in partition_dates(context.partition_keys)}
    _observe_sources(context, kind, {d.isoformat(): (landing.describe(key_of(d)), i) for d, i in infos.items() if i})
    for day, info in infos.items():
        key = key_of(day)
        source = landing.describe(key)
        if info is None:
            if not cal.is_trading_day(day):
                partition_meta[day.isoformat()] = md.no_data(HOLIDAY)
                continue
            raise Failure(
                description=f"{source}: [missing_file] no file for trading session {day} (not published yet, "
                "or missing from the landing zone)",
                metadata={"file": source, "rule": "missing_file"},
            )
        try:
            data = store.read_bytes(key)
            parsed = polygon.load_aggs(
                data,
                source,
                day,
                allow_extra_columns=config.allow_extra_columns,
                bounds=config.bounds(),
            )
            if not cal.is_trading_day(day) and parsed.rows.height == 0:
                partition_meta[day.isoformat()] = md.no_data(HOLIDAY)
            else:
                polygon.require_rows(
                    parsed, source, _reference_rows(context, day, rows_by_day), config.min_rows_ratio
                )
        except polygon.PolygonFileError as exc:
            raise Failure(
                description=str(exc),
                metadata={"file": source, "rule": exc.rule, "line": exc.line if exc.line is not None else -1},
            ) from None
        rows_by_day[day] = parsed.rows.height
        report = _FileReport(day, source, info.etag, parsed.rows_read, parsed.rows.height, parsed.rule_counts)
        reports.append(report)
        rejected_by_day[day] = parsed.rejected
        frames.append(to_table(parsed.rows, day))
        partition_meta[day.isoformat()] = {
            "source_file": MetadataValue.path(source),
            lz.SOURCE_ETAG: info.etag,
            "rows_read": report.rows_read,
            "rows_quarantined": sum(report.quarantined.values()),
            "quarantine_share": round(report.share, 6),
            # Only the rules that fired: a clean file's partition stays short to read.
            **{f"quarantined/{rule}": n for rule, n in report.quarantined.items() if n},
            "ignored_columns": MetadataValue.json(parsed.ignored_columns),
            "tickers": int(parsed.rows["ticker"].n_unique()) if parsed.rows.height else 0,
        }

    qprefix = f"quarantine/{'/'.join(asset_key.path)}"
    for day, rejected in rejected_by_day.items():
        qkey = f"{qprefix}/{day.isoformat()}.parquet"
        if rejected.height:
            lake.write_frame(qkey, rejected.with_columns(pl.lit(day).alias("date")))
            partition_meta[day.isoformat()]["quarantine_file"] = MetadataValue.path(lake.describe(qkey))
        elif lake.exists(qkey):
            lake.delete(qkey)  # a re-published clean file clears the old quarantine
    md.per_partition(context, partition_meta)
    out = pl.concat(frames) if frames else market.empty_frame(schema)
    n_quarantined = sum(sum(r.quarantined.values()) for r in reports)
    context.log.info(
        f"read {len(reports)} file(s), {sum(r.rows_read for r in reports):,} rows; {n_quarantined:,} quarantined; "
        f"{sum(1 for v in partition_meta.values() if v.get('no_data'))} holiday partition(s) with no data"
    )
    return MaterializeResult(
        value=out,
        # The data is what the vendor's bytes say: a re-published file gives a new data version,
        # so what was built from the old one shows as stale until it is rebuilt.
        data_version=_files_version(context, reports),
        check_results=[
            _quarantine_result(asset_key, reports, config.max_rejected_fraction),
            qc.schema_result(context, asset_key, out.schema),
        ],
    )


def _files_version(context: AssetExecutionContext, reports: list[_FileReport]) -> DataVersion:
    code = context.assets_def.code_versions_by_key.get(context.assets_def.key) or ""
    h = hashlib.sha256(code.encode())
    for r in sorted(reports, key=lambda r: r.day):
        h.update(f"|{r.day}:{r.etag}".encode())
    return DataVersion(h.hexdigest()[:32])


def _observe_sources(context: AssetExecutionContext, kind: str, files: dict[str, tuple[str, object]]) -> None:
    """Record each landing file's ETag as the data version of its source partition before this
    materialization's provenance is taken, so that a later re-publish shows what was built from
    the old bytes as stale in the UI, however this run was started."""
    seen = lz.observed_etags(context.instance, kind, sorted(files))
    fresh = {pk: v for pk, v in files.items() if seen.get(pk) != v[1].etag}
    for pk, (source, info) in fresh.items():
        context.log_event(lz.observation(LandingFile(info.key, kind, dt.date.fromisoformat(pk), info.etag), source))
    if fresh:
        # Dagster read the inputs' versions when the step started; read them again with these.
        context.op_execution_context._step_execution_context.wipe_input_asset_version_info(lz.SOURCE_OF[kind])


def _quarantine_result(asset_key: AssetKey, reports: list[_FileReport], limit: float):
    over = [r for r in reports if r.share > limit]
    worst = max(reports, key=lambda r: r.share, default=None)
    meta = {
        "limit": limit,
        "files": len(reports),
        "max_share": round(worst.share, 6) if worst else 0.0,
        "worst_file": MetadataValue.path(worst.source) if worst else "",
        "files_over_limit": MetadataValue.json(
            [{"file": r.source, "share": round(r.share, 6), "rules": {k: v for k, v in r.quarantined.items() if v}} for r in over[:50]]
        ),
    }
    if over:
        desc = (
            f"{len(over)} file(s) had more than {limit:.1%} of their rows quarantined; worst {worst.source} "
            f"at {worst.share:.1%}"
        )
    else:
        desc = f"Every file within the {limit:.1%} quarantine limit" + (f" (worst {worst.share:.2%})." if worst else ".")
    return qc.result(asset_key, QUARANTINE_CHECK, not over, desc, meta)


def _quarantine_spec(key: AssetKey):
    return qc.spec(
        key,
        QUARANTINE_CHECK,
        "Each file's share of quarantined rows is within max_rejected_fraction; above it the data is "
        "suspect and downstream steps are blocked.",
    )


@asset(
    key=KEYS["day_aggs"],
    **md.asset_kwargs(DOMAIN, layer="raw", kinds={"polars", "parquet"}, code_version="2", tags={"vendor": "polygon"}),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_table_meta(market.DAY_AGGS_SCHEMA),
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[_quarantine_spec(KEYS["day_aggs"]), qc.schema_spec(KEYS["day_aggs"])],
    config_schema=config_schema(FlatFileConfig),
    deps=[lz.POLYGON_DAY_FILES],
)
def day_aggs(context: AssetExecutionContext, landing: LandingZone, lake: Lake):
    """Polygon day aggregates: one row per ticker and trading day, as delivered, typed.

    Source: ``us_stocks_sip/day_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`` in the landing zone. Prices
    in USD, unadjusted; volume in shares. A holiday has no file and materializes as an empty
    partition flagged ``no_data``. Rows that break a rule are quarantined under
    ``quarantine/market/day_aggs/`` in the lake (rules: ``quant_assets.lib.sources.polygon``).
    """
    return _ingest(context, parse(FlatFileConfig, context), landing, lake, kind="day", to_table=market.to_day_aggs, schema=market.DAY_AGGS_SCHEMA)


@asset(
    key=KEYS["minute_aggs"],
    **md.asset_kwargs(DOMAIN, layer="raw", kinds={"polars", "parquet"}, code_version="2", tags={"vendor": "polygon"}),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(market.MINUTE_AGGS_SCHEMA),
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[_quarantine_spec(KEYS["minute_aggs"]), qc.schema_spec(KEYS["minute_aggs"])],
    config_schema=config_schema(FlatFileConfig),
    deps=[lz.POLYGON_MINUTE_FILES],
)
def minute_aggs(context: AssetExecutionContext, landing: LandingZone, lake: Lake):
    """Polygon minute aggregates: one row per ticker and minute with trades, with its ``session``.

    Source: ``us_stocks_sip/minute_aggs_v1/...``. 04:00-20:00 New York time; a minute without
    trades has no row. ``window_start`` is the minute's start in New York time; ``session`` is
    ``pre`` (04:00-09:30), ``rth`` (09:30-16:00) or ``post``. Prices USD unadjusted, volume in
    shares.
    """
    return _ingest(
        context, parse(FlatFileConfig, context), landing, lake, kind="minute", to_table=market.to_minute_aggs, schema=market.MINUTE_AGGS_SCHEMA
    )


def _universe_result(asset_key: AssetKey, out: pl.DataFrame, targets: list[dt.date], expected_from: dt.date | None):
    """Every NYSE session at or after ``expected_from`` must have at least one row."""
    have = set(out["date"].unique().to_list()) if out.height else set()
    due = [d for d in targets if cal.is_trading_day(d) and expected_from is not None and d >= expected_from]
    empty = [d.isoformat() for d in due if d not in have]
    desc = (
        f"No rows on trading session(s) {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}."
        if empty
        else f"Every one of {len(due)} trading session(s) has rows."
    )
    return qc.result(
        asset_key, UNIVERSE_CHECK, not empty, desc, {"sessions_checked": len(due), "empty_sessions": MetadataValue.json(empty[:100])}
    )


@asset(
    key=KEYS["daily_bars"],
    **md.asset_kwargs(DOMAIN, layer="curated", kinds={"polars", "parquet"}, code_version="2"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_table_meta(market.DAILY_BARS_SCHEMA),
    ins={"day_aggs": AssetIn(key=KEYS["day_aggs"], partition_mapping=_window(-DAY_AGGS_LOOKBACK))},
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[
        qc.spec(KEYS["daily_bars"], UNIVERSE_CHECK, "Every trading session has at least one tradable ticker."),
        qc.spec(
            KEYS["daily_bars"],
            RETURNS_CHECK,
            "Every ticker that traded in the previous session has ret_1d and log_ret_1d.",
        ),
        qc.schema_spec(KEYS["daily_bars"]),
    ],
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
    day_aggs = _typed(day_aggs, market.DAY_AGGS_SCHEMA)
    try:
        out, removed = market.build_daily_bars(day_aggs, targets, history_start())
    except market.MissingHistoryError as exc:
        raise Failure(description=str(exc)) from None
    stats = market.daily_bar_stats(out, targets)
    meta = {}
    for d in targets:
        s = stats.get(d, {})
        meta[d.isoformat()] = {
            "tickers": s.get("tickers", 0),
            "returns_null": s.get("returns_null", 0),
            "removed_non_tradable": sum(removed.get(d, {}).values()),
            **{f"removed/{rule}": n for rule, n in removed.get(d, {}).items() if n},
            **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
        }
    md.per_partition(context, meta)
    missing = market.returns_missing(out)
    returns_desc = (
        f"{missing.height} ticker-day(s) traded in the previous session but have no return, e.g. "
        + ", ".join(f"{t} {d}" for t, d in missing.head(5).iter_rows())
        if missing.height
        else "Every ticker that traded in the previous session has its return."
    )
    return MaterializeResult(
        value=out,
        check_results=[
            _universe_result(KEYS["daily_bars"], out, targets, history_start()),
            qc.result(KEYS["daily_bars"], RETURNS_CHECK, missing.height == 0, returns_desc, {"missing": missing.height}),
            qc.schema_result(context, KEYS["daily_bars"], out.schema),
        ],
    )


@asset(
    key=KEYS["weekly_bars"],
    **md.asset_kwargs(DOMAIN, layer="curated", kinds={"polars", "parquet"}, code_version="2"),
    partitions_def=trading_weeks,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=WEEKS_PER_RUN),
    metadata=_table_meta(market.WEEKLY_BARS_SCHEMA, "week_start"),
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=_window(0))},
    freshness_policy=WEEKLY_FRESHNESS,
    check_specs=[qc.schema_spec(KEYS["weekly_bars"])],
)
def weekly_bars(context: AssetExecutionContext, daily_bars: pl.DataFrame):
    """Weekly bars: one row per ticker and week ending Friday (partition key: the Monday).

    First open, max high, min low, last close (USD unadjusted), summed share volume and trades,
    and the number of sessions the ticker traded (``trading_days``), from ``market/daily_bars``.
    """
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    weeks = partition_dates(context.partition_keys)
    out = market.build_weekly_bars(daily).filter(pl.col("week_start").is_in(weeks))
    counts = dict(out.group_by("week_start").agg(pl.col("ticker").n_unique()).iter_rows()) if out.height else {}
    sessions = market.sessions_per_week(daily)
    md.per_partition(
        context,
        {w.isoformat(): {"tickers": int(counts.get(w, 0)), "sessions": int(sessions.get(w, 0))} for w in weeks},
    )
    return MaterializeResult(value=out, check_results=[qc.schema_result(context, KEYS["weekly_bars"], out.schema)])


class DailyFilteredConfig(BaseModel):
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
    key=KEYS["daily_filtered"],
    **md.asset_kwargs(DOMAIN, layer="curated", kinds={"polars", "parquet"}, code_version="2"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_table_meta({**market.DAILY_BARS_SCHEMA, **market.DAILY_FILTERED_EXTRA}),
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=_window(-FILTER_LOOKBACK))},
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[
        qc.spec(
            KEYS["daily_filtered"],
            UNIVERSE_CHECK,
            "Every trading session with min_days sessions of history before it has at least one name.",
        ),
        qc.schema_spec(KEYS["daily_filtered"]),
    ],
    config_schema=config_schema(DailyFilteredConfig),
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
    per_day = dict(out.group_by("date").len().iter_rows()) if out.height else {}
    first_full = market.first_full_window(history_start(), config.min_days)
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "tickers": int(per_day.get(d, 0)),
                "full_history": bool(first_full is not None and d >= first_full),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(
        value=out,
        check_results=[
            _universe_result(KEYS["daily_filtered"], out, targets, first_full),
            qc.schema_result(context, KEYS["daily_filtered"], out.schema),
        ],
    )


class MinuteFeaturesConfig(BaseModel):
    vol_spike_lookback: int = Field(
        default=20,
        ge=1,
        le=SPIKE_LOOKBACK - 15,
        description="Sessions before the day whose mean daily volume is the spike ratio's baseline.",
    )


@asset(
    key=KEYS["minute_features"],
    **md.asset_kwargs(DOMAIN, layer="features", kinds={"polars", "parquet"}, code_version="2"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(market.MINUTE_FEATURES_SCHEMA),
    ins={
        "minute_aggs": AssetIn(key=KEYS["minute_aggs"]),
        "daily_bars": AssetIn(key=KEYS["daily_bars"], partition_mapping=_window(-SPIKE_LOOKBACK, -1)),
    },
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[qc.schema_spec(KEYS["minute_features"])],
    config_schema=config_schema(MinuteFeaturesConfig),
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
    minute = _typed(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    first_prev = cal.previous_trading_day(min(targets))
    _require_sessions(daily, first_prev, first_prev, config.vol_spike_lookback, "market/daily_bars")
    if minute.height:
        reasons = market.classify_tickers(minute["ticker"].unique())
        keep = reasons.filter(pl.col("reason").is_null())["ticker"]
        minute = minute.filter(pl.col("ticker").is_in(keep.implode()))
    feats = market.add_volume_spike(market.minute_day_features(minute), daily, config.vol_spike_lookback)
    per_day = (
        {
            d: (n, s)
            for d, n, s in feats.group_by("date")
            .agg(pl.len(), pl.col("volume_spike_ratio").is_not_null().sum())
            .iter_rows()
        }
        if feats.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "tickers": int(per_day.get(d, (0, 0))[0]),
                "with_spike_ratio": int(per_day.get(d, (0, 0))[1]),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(value=feats, check_results=[qc.schema_result(context, KEYS["minute_features"], feats.schema)])


@asset(
    key=KEYS["warehouse_daily_bars"],
    **md.asset_kwargs(DOMAIN, layer="warehouse", kinds={"sql", "duckdb", "postgres"}, code_version="2"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"])},
    metadata={
        **md.table_definition_metadata(market.DAILY_BARS_SCHEMA, market.COLUMN_DOCS),
        md.TABLE_NAME: "market_daily_bars",
    },
    freshness_policy=PUBLICATION_FRESHNESS,
    check_specs=[
        qc.spec(
            KEYS["warehouse_daily_bars"],
            WAREHOUSE_CHECK,
            "The warehouse holds exactly the lake's rows for every loaded date.",
        )
    ],
    # DuckDB allows one writing process per file: warehouse loads queue behind each other.
    pool="warehouse",
)
def warehouse_daily_bars(context: AssetExecutionContext, daily_bars: pl.DataFrame, warehouse: WarehouseResource):
    """``market/daily_bars`` loaded into the warehouse table ``market_daily_bars`` (DDL in ``sql/``):
    one row per tradable ticker and trading day.

    Idempotent over the run's window: the rows of exactly those dates are deleted and re-inserted
    in one transaction.
    """
    targets = partition_dates(context.partition_keys)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    with warehouse.connect() as wh:
        wh.replace_range("market_daily_bars", daily, "date", min(targets), max(targets))
        counts = wh.count_by("market_daily_bars", "date", min(targets), max(targets))
        dialect = wh.dialect
    lake_counts = dict(daily.group_by("date").len().iter_rows()) if daily.height else {}
    md.per_partition(
        context,
        {
            d.isoformat(): {md.ROW_COUNT: int(counts.get(d, 0)), md.TABLE_NAME: "market_daily_bars", "dialect": dialect}
            for d in targets
        },
    )
    mismatched = [d.isoformat() for d in targets if counts.get(d, 0) != lake_counts.get(d, 0)]
    return MaterializeResult(
        check_results=[
            qc.result(
                KEYS["warehouse_daily_bars"],
                WAREHOUSE_CHECK,
                not mismatched,
                f"Row counts differ from the lake on {mismatched[:10]}"
                if mismatched
                else f"{sum(counts.values()):,} rows over {len(targets)} date(s), equal to the lake.",
                {"dates_mismatched": MetadataValue.json(mismatched[:100])},
            )
        ]
    )


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
