"""Locations and dates from the environment, with the embedded defaults of a fresh checkout.

| variable              | default                                        |
| QUANT_DATA_DIR        | ./data                                         |
| QUANT_LANDING_URL     | $QUANT_DATA_DIR/landing   (or s3://bucket/prefix) |
| QUANT_LAKE_URL        | $QUANT_DATA_DIR/lake      (or s3://bucket/lake)   |
| QUANT_WAREHOUSE_URL   | duckdb:///$QUANT_DATA_DIR/warehouse.duckdb (or postgresql://...) |
| QUANT_HTTP_CACHE_URL  | $QUANT_DATA_DIR/http_cache (or s3://bucket/http_cache): vendor API responses |
| QUANT_START_DATE      | 2025-01-02, the demo's first trading day       |
| QUANT_END_DATE        | unset: open-ended, up to the latest complete day |
| QUANT_LANDING_SENSOR_INTERVAL_S | 60: seconds between landing-sensor ticks |
| QUANT_EXECUTOR        | multiprocess (or in_process, dask, k8s): the runs' default executor |
| QUANT_DASK_SCHEDULER  | unset: a LocalCluster on loopback; or tcp://host:8786 |
| QUANT_DASK_WORKERS    | 2: worker processes of that LocalCluster        |
| QUANT_PREFLIGHT_TIMEOUT_S | 10: seconds a shared service has to answer the distributed preflight |

The dates, the sensor interval and the executor choice are read when the code location loads (they shape the
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


EXECUTORS = ("multiprocess", "in_process", "dask", "k8s")


def executor_kind() -> str:
    """The executor a run uses unless its run config names another (``QUANT_EXECUTOR``)."""
    raw = os.environ.get("QUANT_EXECUTOR", "").strip().lower().replace("-", "_")
    if not raw:
        return "multiprocess"
    if raw not in EXECUTORS:
        raise ValueError(f"QUANT_EXECUTOR={raw!r} is not one of {', '.join(EXECUTORS)}")
    return raw


def dask_scheduler() -> str | None:
    """The address of an existing Dask scheduler (``QUANT_DASK_SCHEDULER``), or None for a
    LocalCluster started by the run."""
    raw = os.environ.get("QUANT_DASK_SCHEDULER", "").strip()
    if not raw:
        return None
    if "://" not in raw:
        raise ValueError(f"QUANT_DASK_SCHEDULER={raw!r} is not an address such as tcp://host:8786")
    return raw


def _positive_number(name: str, default: float, cast=float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def dask_local_workers() -> int:
    """Worker processes of the LocalCluster a run starts when no scheduler is configured."""
    return int(_positive_number("QUANT_DASK_WORKERS", 2, int))


def preflight_timeout_s() -> float:
    """Seconds each shared service (scheduler, S3, PostgreSQL) has to answer the preflight."""
    return float(_positive_number("QUANT_PREFLIGHT_TIMEOUT_S", 10.0))
