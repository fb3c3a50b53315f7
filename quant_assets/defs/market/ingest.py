"""Market, ingest: Polygon flat files from the landing zone into typed day and minute tables,
validated row by row with quarantine (``quant_assets.lib.sources.polygon``)."""

import dataclasses
import datetime as dt
import hashlib
import statistics

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    BackfillPolicy,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.market import landing as lz
from quant_assets.defs.market.common import (
    table_meta,
)
from quant_assets.defs.market.keys import (
    DAYS_PER_RUN,
    DOMAIN,
    HOLIDAY,
    KEYS,
    MINUTE_DAYS_PER_RUN,
    PUBLICATION_FRESHNESS,
    QUARANTINE_CHECK,
    ROW_COUNT_REFERENCE_SESSIONS,
)
from quant_assets.defs.partitions import history_start, partition_dates, trading_days
from quant_assets.defs.resources import Lake, LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.landing import LandingFile
from quant_assets.lib.sources import polygon


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
    metadata=table_meta(market.DAY_AGGS_SCHEMA),
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
    metadata=table_meta(market.MINUTE_AGGS_SCHEMA),
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


