"""Reading upstream partitions straight from the lake, for assets whose inputs reach further
back than a fixed partition window (indicators over the whole history, analyses over every
materialized day), and writing side artifacts (charts, models, curves) beside an asset."""

import base64
import concurrent.futures
import datetime as dt
import io
import json

import polars as pl
from dagster import AssetKey, MetadataValue

from quant_assets.defs.resources import Lake, partition_file
from quant_assets.lib import calendar as cal
from quant_assets.lib.research import charts
from quant_assets.lib.storage import LocalStore


def read_partitions(lake: Lake, key: AssetKey, partition_keys, columns=None) -> tuple[pl.DataFrame, list[str]]:
    """The concatenation of the given partitions that exist, and the keys that do not."""
    store = lake.store()
    frames: dict[str, pl.DataFrame] = {}
    missing: list[str] = []

    def load(pk: str):
        path = partition_file(key, pk)
        if isinstance(store, LocalStore):
            local = store.local_path(path)
            if not local.is_file():
                return pk, None
            return pk, pl.read_parquet(local, columns=columns)
        try:
            data = store.read_bytes(path)
        except FileNotFoundError:
            return pk, None
        return pk, pl.read_parquet(io.BytesIO(data), columns=columns)

    keys = sorted(partition_keys)
    workers = 1 if isinstance(store, LocalStore) else 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for pk, frame in pool.map(load, keys):
            if frame is None:
                missing.append(pk)
            elif frame.width:
                frames[pk] = frame
    if not frames:
        return pl.DataFrame(), missing
    return pl.concat([frames[k] for k in sorted(frames)], how="vertical_relaxed"), missing


def weekday_keys(first: dt.date, last: dt.date) -> list[str]:
    return [d.isoformat() for d in cal.weekdays(first, last)]


def missing_sessions(missing_keys: list[str]) -> list[str]:
    """The missing partition keys that are NYSE sessions (a holiday's absence is fine)."""
    return [k for k in missing_keys if cal.is_trading_day(k)]


def write_chart(lake: Lake, key: str, png: bytes, title: str) -> dict:
    """Store a PNG in the lake and return metadata that shows it on the asset page (the UI
    opens Markdown this long behind "[Show Markdown]"; the text chart beside it is inline)."""
    lake.store().write_bytes(key, png)
    encoded = base64.b64encode(png).decode()
    return {
        title: MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})"),
        f"{title} (file)": MetadataValue.path(lake.describe(key)),
    }


def write_json(lake: Lake, key: str, payload: dict) -> str:
    lake.store().write_bytes(key, json.dumps(payload, indent=2, default=str, allow_nan=False).encode())
    return lake.describe(key)


def chart(lake: Lake, key: str, series: dict, title: str, ylabel: str, *, zero_line: bool = False, fmt: str = "{:+.3f}") -> dict:
    """A line chart of ``series`` (label -> (x, y)) on the asset page: a text sparkline per line
    inline (``chart (inline)``) and the PNG stored at ``key`` (``chart``, ``chart (file)``)."""
    inline = MetadataValue.md(title + "\n\n" + charts.text_lines({k: v for k, (_, v) in series.items()}, fmt=fmt))
    png = charts.line_chart(series, title=title, ylabel=ylabel, zero_line=zero_line)
    return {"chart (inline)": inline, **write_chart(lake, key, png, "chart")}
