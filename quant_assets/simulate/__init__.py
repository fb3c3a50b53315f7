"""Deterministic market simulators that write the vendors' own file formats into a landing zone."""

from quant_assets.simulate.binance import encode_agg_trades_zip, simulate_day_trades, write_day
from quant_assets.simulate.polygon import (
    HEADER,
    KINDS,
    TRADABLE_KINDS,
    PolygonSimSpec,
    SimReport,
    day_aggs_key,
    encode_polygon_csv_gz,
    minute_aggs_key,
    polygon_universe,
    simulate_minute_day,
    simulate_polygon,
)
from quant_assets.simulate.pump import PumpSimReport, PumpSimSpec, pump_paths, simulate_pump, simulate_signals

__all__ = [
    "HEADER",
    "KINDS",
    "TRADABLE_KINDS",
    "PolygonSimSpec",
    "PumpSimReport",
    "PumpSimSpec",
    "SimReport",
    "day_aggs_key",
    "encode_agg_trades_zip",
    "encode_polygon_csv_gz",
    "minute_aggs_key",
    "polygon_universe",
    "pump_paths",
    "simulate_minute_day",
    "simulate_day_trades",
    "simulate_polygon",
    "simulate_pump",
    "simulate_signals",
    "write_day",
]
