"""Helpers the pump stage modules share: column metadata, reading one stored
partition, splitting a range output by day, failures with metadata."""

import io

import numpy as np
import polars as pl
from dagster import AssetKey, Failure

from quant_assets.defs import metadata as md
from quant_assets.defs.pump.keys import KEYS, WINDOW_S
from quant_assets.defs.resources import Lake, partition_file
from quant_assets.lib.pump import optimizer, schemas


def table_meta(schema: dict, **extra) -> dict:
    return md.table_definition_metadata(schema, schemas.COLUMN_DOCS, **extra)


def read_lake_partition(lake: Lake, key: AssetKey, partition: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    """One stored partition (only ``columns``), or None when it was never materialized."""
    path = partition_file(key, partition)
    store = lake.store()
    local = store.local_path(path)
    if local is not None:
        return pl.read_parquet(local, columns=columns) if local.is_file() else None
    if not store.exists(path):
        return None
    return pl.read_parquet(io.BytesIO(store.read_bytes(path)), columns=columns)


def fail(description: str, **metadata) -> Failure:
    return Failure(description=description, metadata={k: str(v) for k, v in metadata.items()})


def research_closes(lake: Lake, research: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The 1-second closes of the research set's signals, in the research table's order (CSR)."""
    frames = []
    ids = research["signal_id"].implode()
    for d in sorted(set(research["signal_date"].to_list())):
        b = read_lake_partition(lake, KEYS["delta_bars_1s"], d.isoformat(), ["signal_id", "second_ts", "close_price"])
        if b is None:
            raise fail(f"pump/delta_bars_1s {d} is no longer in the lake; re-materialize it")
        frames.append(b.filter(pl.col("signal_id").is_in(ids)))
    bars = pl.concat(frames) if frames else schemas.empty(schemas.DELTA_BARS_SCHEMA)
    closes, offsets = optimizer.paths_from_frame(bars, research["signal_id"].to_list())
    short = np.flatnonzero(np.diff(offsets) != WINDOW_S)
    if short.size:
        sid = research["signal_id"][int(short[0])]
        raise fail(f"signal {sid} has {int(np.diff(offsets)[short[0]])} bars instead of {WINDOW_S}; re-materialize its day")
    return closes, offsets
