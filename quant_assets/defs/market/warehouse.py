"""Market, warehouse: the daily bars loaded into the SQL warehouse, row counts checked."""


import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.market.keys import DAYS_PER_RUN, KEYS, PUBLICATION_FRESHNESS, WAREHOUSE_CHECK
from quant_assets.defs.partitions import partition_dates, trading_days
from quant_assets.defs.resources import WarehouseResource
from quant_assets.lib import frames, market

WAREHOUSE_CHECKS = qc.AssetChecks(
    KEYS["warehouse_daily_bars"], qc.Check(WAREHOUSE_CHECK, "The warehouse holds exactly the lake's rows for every loaded date."), schema=False
)


@house_asset(
    KEYS["warehouse_daily_bars"], "warehouse", {"sql", "duckdb", "postgres"}, "2",
    partitions_def=trading_days, per_run=DAYS_PER_RUN, freshness_policy=PUBLICATION_FRESHNESS,
    metadata={
        **md.table_definition_metadata(market.DAILY_BARS_SCHEMA, market.COLUMN_DOCS),
        md.TABLE_NAME: "market_daily_bars",
    },
    ins={"daily_bars": AssetIn(key=KEYS["daily_bars"])}, checks=WAREHOUSE_CHECKS,
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
    daily = frames.conform(daily_bars, market.DAILY_BARS_SCHEMA)
    with warehouse.connect() as wh:
        wh.replace_range("market_daily_bars", daily, "date", min(targets), max(targets))
        counts = wh.count_by("market_daily_bars", "date", min(targets), max(targets))
        dialect = wh.dialect
    lake_counts = {d: f["rows"] for d, f in frames.per_day_counts(daily, targets).items()}
    md.per_day(context, {d: {md.ROW_COUNT: int(counts.get(d, 0)), md.TABLE_NAME: "market_daily_bars", "dialect": dialect} for d in targets})
    mismatched = [d.isoformat() for d in targets if counts.get(d, 0) != lake_counts[d]]
    outcome = qc.Outcome(
        not mismatched,
        f"Row counts differ from the lake on {mismatched[:10]}" if mismatched else f"{sum(counts.values()):,} rows over {len(targets)} date(s), equal to the lake.",
        {"dates_mismatched": MetadataValue.json(mismatched[:100])},
    )
    return WAREHOUSE_CHECKS.materialize(context, outcomes={WAREHOUSE_CHECK: outcome})
