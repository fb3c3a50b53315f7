"""Locations and dates from the environment, with the embedded defaults of a fresh checkout.

| variable              | default                                        |
| QUANT_DATA_DIR        | ./data                                         |
| QUANT_LANDING_URL     | $QUANT_DATA_DIR/landing   (or s3://bucket/prefix) |
| QUANT_LAKE_URL        | $QUANT_DATA_DIR/lake      (or s3://bucket/lake)   |
| QUANT_WAREHOUSE_URL   | duckdb:///$QUANT_DATA_DIR/warehouse.duckdb (or postgresql://...) |
| QUANT_START_DATE      | 2025-01-02, the demo's first trading day       |
| QUANT_END_DATE        | unset: open-ended, up to the latest complete day |
| QUANT_LANDING_SENSOR_INTERVAL_S | 60: seconds between landing-sensor ticks |

The dates and the sensor interval are read when the code location loads (they shape the
partitions and the sensor definition): change them, then reload the code location.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

DEFAULT_START_DATE = dt.date(2025, 1, 2)


def data_dir() -> Path:
    return Path(os.environ.get("QUANT_DATA_DIR") or "data").expanduser().resolve()


def landing_url() -> str:
    return os.environ.get("QUANT_LANDING_URL") or str(data_dir() / "landing")


def lake_url() -> str:
    return os.environ.get("QUANT_LAKE_URL") or str(data_dir() / "lake")


def warehouse_url() -> str:
    return os.environ.get("QUANT_WAREHOUSE_URL") or f"duckdb:///{data_dir() / 'warehouse.duckdb'}"


def _date_env(name: str) -> dt.date | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a YYYY-MM-DD date") from None


def start_date() -> dt.date:
    return _date_env("QUANT_START_DATE") or DEFAULT_START_DATE


def end_date() -> dt.date | None:
    """Last trading-day partition (inclusive), or None for open-ended."""
    end = _date_env("QUANT_END_DATE")
    if end is not None and end < start_date():
        raise ValueError(f"QUANT_END_DATE {end} is before QUANT_START_DATE {start_date()}")
    return end


def landing_sensor_interval_s() -> int:
    raw = os.environ.get("QUANT_LANDING_SENSOR_INTERVAL_S", "").strip()
    if not raw:
        return 60
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"QUANT_LANDING_SENSOR_INTERVAL_S={raw!r} is not a whole number of seconds") from None
    if value < 1:
        raise ValueError(f"QUANT_LANDING_SENSOR_INTERVAL_S must be at least 1, got {value}")
    return value
