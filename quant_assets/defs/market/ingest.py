"""Market, ingest: Polygon flat files from the landing zone into typed day and minute tables,
validated row by row with quarantine (``quant_assets.lib.sources.polygon``)."""

import datetime as dt
import hashlib
import statistics

import polars as pl
from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter, DataVersion, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import fraction, lib_params, mirrors, parse
from quant_assets.defs.market.common import table_meta
from quant_assets.defs.market.keys import (
    DAYS_PER_RUN,
    HOLIDAY,
    KEYS,
    MINUTE_DAYS_PER_RUN,
    PUBLICATION_FRESHNESS,
    QUARANTINE_CHECK,
    ROW_COUNT_REFERENCE_SESSIONS,
)
from quant_assets.defs.market.landing import POLYGON_DAY_FILES, POLYGON_MINUTE_FILES, SOURCE_ETAG, SOURCE_OF, observation, observed_etags
from quant_assets.defs.partitions import history_start, partition_dates, trading_days
from quant_assets.defs.quarantine import keep_rejected, share_outcome
from quant_assets.defs.resources import Lake, LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.landing import LandingFile
from quant_assets.lib.sources import polygon


@mirrors(polygon.Bounds)
class FlatFileConfig(BaseModel):
    allow_extra_columns: bool = Field(
        default=False,
        description="Load files with unknown extra columns (ignoring them) instead of failing on the schema change.",
    )
    max_rejected_fraction: float = fraction(
        0.05,
        "The quarantine_share check fails (and blocks downstream) when more than this fraction "
        "of a file's rows break a quarantine rule.",
    )
    min_rows_ratio: float = fraction(
        polygon.MIN_ROWS_RATIO,
        "Fail a session's file with fewer rows than this fraction of the median row count of "
        "the previous 5 sessions (a file that parses but carries almost nothing). 0 disables the rule; "
        "a file with no rows always fails.",
    )




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


def _ingest(context: AssetExecutionContext, config: FlatFileConfig, landing: LandingZone, lake: Lake, *, kind: str, to_table, schema: dict):
    """Read, validate and type the flat files of every partition in the run
    (``polygon.ingest_days``). Nothing is written until every file of the run has passed, so a
    bad file leaves all partitions of the run as they were. Each partition records its own figures."""
    store = landing.store()
    key_of = polygon.day_aggs_key if kind == "day" else polygon.minute_aggs_key
    infos = {day: store.stat(key_of(day)) for day in partition_dates(context.partition_keys)}
    _observe_sources(context, kind, {d.isoformat(): (landing.describe(key_of(d)), i) for d, i in infos.items() if i})
    try:
        run = polygon.ingest_days(
            infos, store.read_bytes, landing.describe, key_of=key_of, to_table=to_table, empty=market.empty_frame(schema),
            reference_rows=lambda day, known: _reference_rows(context, day, known), allow_extra_columns=config.allow_extra_columns,
            bounds=lib_params(config, polygon.Bounds), min_rows_ratio=config.min_rows_ratio,
        )
    except polygon.PolygonFileError as exc:
        raise Failure(description=str(exc), metadata={"file": exc.source, "rule": exc.rule, "line": exc.line if exc.line is not None else -1}) from None
    qprefix = f"quarantine/{'/'.join(context.assets_def.key.path)}"
    meta = {day.isoformat(): md.no_data(HOLIDAY) for day in run.holidays}
    for r in run.reports:
        rejected = run.rejected[r.day].with_columns(pl.lit(r.day).alias("date")) if run.rejected[r.day].height else run.rejected[r.day]
        figures = {**r.figures(), "ignored_columns": MetadataValue.json(r.ignored_columns)}
        meta[r.day.isoformat()] = {"source_file": MetadataValue.path(r.source), SOURCE_ETAG: r.etag, **figures}
        meta[r.day.isoformat()].update(keep_rejected(lake, f"{qprefix}/{r.day.isoformat()}.parquet", rejected))
    md.per_partition(context, meta)
    context.log.info(
        f"read {len(run.reports)} file(s), {sum(r.rows_read for r in run.reports):,} rows; "
        f"{sum(sum(r.quarantined.values()) for r in run.reports):,} quarantined; {len(run.holidays)} holiday partition(s) with no data"
    )
    worst = max(run.reports, key=lambda r: r.share, default=None)
    shares = {"limit": config.max_rejected_fraction, "files": len(run.reports), "max_share": round(worst.share, 6) if worst else 0.0, "worst_file": MetadataValue.path(worst.source) if worst else ""}
    outcome = share_outcome(
        run.reports, config.max_rejected_fraction, shares, lambda r: {"file": r.source, "share": round(r.share, 6), "rules": {k: v for k, v in r.quarantined.items() if v}}
    )
    # The data is what the vendor's bytes say: a re-published file gives a new data version,
    # so what was built from the old one shows as stale until it is rebuilt.
    version = _files_version(context, run.reports)
    return CHECKS[kind].materialize(context, run.table, outcomes={QUARANTINE_CHECK: outcome}, data_version=version)


def _files_version(context: AssetExecutionContext, reports: list[polygon.FileReport]) -> DataVersion:
    code = context.assets_def.code_versions_by_key.get(context.assets_def.key) or ""
    h = hashlib.sha256(code.encode())
    for r in sorted(reports, key=lambda r: r.day):
        h.update(f"|{r.day}:{r.etag}".encode())
    return DataVersion(h.hexdigest()[:32])


def _observe_sources(context: AssetExecutionContext, kind: str, files: dict[str, tuple[str, object]]) -> None:
    """Record each landing file's ETag as the data version of its source partition before this
    materialization's provenance is taken, so that a later re-publish shows what was built from
    the old bytes as stale in the UI, however this run was started."""
    seen = observed_etags(context.instance, kind, sorted(files))
    fresh = {pk: v for pk, v in files.items() if seen.get(pk) != v[1].etag}
    for pk, (source, info) in fresh.items():
        context.log_event(observation(LandingFile(info.key, kind, dt.date.fromisoformat(pk), info.etag), source))
    if fresh:
        # Dagster read the inputs' versions when the step started; read them again with these.
        context.op_execution_context._step_execution_context.wipe_input_asset_version_info(SOURCE_OF[kind])


QUARANTINE = qc.Check(
    QUARANTINE_CHECK,
    "Each file's share of quarantined rows is within max_rejected_fraction; above it the data is "
    "suspect and downstream steps are blocked.",
)
CHECKS = {"day": qc.AssetChecks(KEYS["day_aggs"], QUARANTINE), "minute": qc.AssetChecks(KEYS["minute_aggs"], QUARANTINE)}


@house_asset(
    KEYS["day_aggs"], "raw", {"polars", "parquet"}, "2",
    partitions_def=trading_days, per_run=DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS, metadata=table_meta(market.DAY_AGGS_SCHEMA),
    deps=[POLYGON_DAY_FILES], checks=CHECKS["day"], config=FlatFileConfig, tags={"vendor": "polygon"},
)
def day_aggs(context: AssetExecutionContext, landing: LandingZone, lake: Lake):
    """Polygon day aggregates: one row per ticker and trading day, as delivered, typed.

    Source: ``us_stocks_sip/day_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`` in the landing zone. Prices
    in USD, unadjusted; volume in shares. A holiday has no file and materializes as an empty
    partition flagged ``no_data``. Rows that break a rule are quarantined under
    ``quarantine/market/day_aggs/`` in the lake (rules: ``quant_assets.lib.sources.polygon``).
    """
    return _ingest(context, parse(FlatFileConfig, context), landing, lake, kind="day", to_table=market.to_day_aggs, schema=market.DAY_AGGS_SCHEMA)


@house_asset(
    KEYS["minute_aggs"], "raw", {"polars", "parquet"}, "2",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS,
    metadata=table_meta(market.MINUTE_AGGS_SCHEMA), deps=[POLYGON_MINUTE_FILES], checks=CHECKS["minute"], config=FlatFileConfig,
    tags={"vendor": "polygon"},
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


