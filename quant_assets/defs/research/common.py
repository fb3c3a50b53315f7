"""Helpers the research stage modules share: column metadata, partition windows, key-figure
tables, and the market's daily bars read from the lake."""

import math

import polars as pl
from dagster import Failure, MetadataValue, TableColumn, TableRecord, TableSchema, TimeWindowPartitionMapping

from quant_assets.defs import metadata as md
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.keys import HOLIDAY
from quant_assets.defs.resources import Lake
from quant_assets.lib import calendar as cal
from quant_assets.lib.research import universe


def closed(day) -> str | None:
    """Why a weekday partition holds no rows (an NYSE holiday), or None on a session."""
    return None if cal.is_trading_day(day) else HOLIDAY


def table_meta(schema: dict, docs: dict, partitioned: bool = True) -> dict:
    return md.table_definition_metadata(schema, docs, partition_column="date" if partitioned else None)


def day_window(start: int, end: int) -> TimeWindowPartitionMapping:
    return TimeWindowPartitionMapping(start_offset=start, end_offset=end, allow_nonexistent_upstream_partitions=True)


def key_table(df: pl.DataFrame, n: int = 30) -> MetadataValue:
    """A table of key figures, shown inline on the asset page (first ``n`` rows; floats to six
    significant digits)."""
    head = df.head(n)

    def cell(v):
        if isinstance(v, float):
            return float(f"{v:.6g}") if math.isfinite(v) else None
        if isinstance(v, (int, bool, str)) or v is None:
            return v
        return str(v)

    return MetadataValue.table(
        records=[TableRecord({c: cell(v) for c, v in row.items()}) for row in head.iter_rows(named=True)],
        schema=TableSchema(columns=[TableColumn(c, md.dtype_name(t)) for c, t in head.schema.items()]),
    )


def rounded(values: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items() if v is not None}


def all_daily(lake: Lake, columns=None) -> pl.DataFrame:
    """Every materialized partition of market/daily_bars (holidays and gaps are simply absent)."""
    keys = trading_days.get_partition_keys()
    frame, _ = lakeio.read_partitions(lake, MARKET_KEYS["daily_bars"], keys, columns)
    if frame.is_empty():
        raise Failure(description="market/daily_bars has no materialized partition in the lake; materialize it first")
    return frame


def require_bars(daily: pl.DataFrame, tickers: list[str]) -> None:
    absent = sorted(set(tickers) - set(daily["ticker"].unique().to_list()))
    if absent:
        raise Failure(description=f"ticker(s) {absent} have no bar in market/daily_bars")


def dated_returns(
    daily: pl.DataFrame, members: pl.DataFrame, tickers: list[str], n_liquid: int, delisting_return: float = universe.DELISTING_RETURN
) -> tuple[pl.DataFrame, list[str]]:
    """(ticker, date, ret_1d) and the names: the configured tickers over their whole history,
    or the first ``n_liquid`` members of the dated universe over the sessions each was held."""
    if tickers:
        require_bars(daily, list(tickers))
        return daily.filter(pl.col("ticker").is_in(list(tickers))).select("ticker", "date", "ret_1d"), list(tickers)
    names, membership = universe.selection(members, n_liquid, daily["date"].unique().to_list())
    held = universe.held_returns(daily, membership, delisting_return=delisting_return)
    return held.select("ticker", "date", "ret_1d"), names


