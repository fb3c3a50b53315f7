"""Helpers the market stage modules share: partition windows, column metadata, typed empty
frames and the lookback-session guard."""

import datetime as dt

import polars as pl
from dagster import Failure, TimeWindowPartitionMapping

from quant_assets.defs import metadata as md
from quant_assets.defs.partitions import history_start
from quant_assets.lib import calendar as cal
from quant_assets.lib import market


def day_window(start: int, end: int = 0) -> TimeWindowPartitionMapping:
    return TimeWindowPartitionMapping(start_offset=start, end_offset=end, allow_nonexistent_upstream_partitions=True)


def table_meta(schema: dict, partition_column: str = "date") -> dict:
    return md.table_definition_metadata(schema, market.COLUMN_DOCS, partition_column=partition_column)




def require_sessions(df: pl.DataFrame, first: dt.date, last: dt.date, lookback: int, name: str) -> None:
    """Fail when a session inside the lookback window (and inside history) was never materialized."""
    lo = market.nth_session_back(cal.previous_trading_day(first), lookback)
    have = set(df["date"].unique().to_list()) if df.height else set()
    gaps = market.missing_sessions(have, lo, last, history_start())
    if gaps:
        raise Failure(
            description=f"{name} has no rows for session(s) {', '.join(map(str, gaps[:10]))}"
            f"{' ...' if len(gaps) > 10 else ''} inside the lookback window; materialize them first"
        )
