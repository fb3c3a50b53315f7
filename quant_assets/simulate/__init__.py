"""Deterministic simulators of every vendor the project reads: the vendors' own file formats
written into a landing zone (Polygon flat files, Ken French factor zips, Binance aggregate-trade
zips and pump signals), or the vendors' own JSON served over HTTP (Financial Modeling Prep)."""

from quant_assets.simulate.binance import encode_agg_trades_zip, simulate_day_trades, write_day
from quant_assets.simulate.fmp import FmpSimServer, FmpSimSpec, SimulatedFmp
from quant_assets.simulate.kenfrench import KenFrenchSimReport, kenfrench_zips, simulate_kenfrench
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
    "FmpSimServer",
    "FmpSimSpec",
    "HEADER",
    "KINDS",
    "KenFrenchSimReport",
    "PolygonSimSpec",
    "PumpSimReport",
    "PumpSimSpec",
    "SimReport",
    "SimulatedFmp",
    "TRADABLE_KINDS",
    "day_aggs_key",
    "encode_agg_trades_zip",
    "encode_polygon_csv_gz",
    "kenfrench_zips",
    "minute_aggs_key",
    "polygon_universe",
    "pump_paths",
    "simulate_day_trades",
    "simulate_kenfrench",
    "simulate_minute_day",
    "simulate_polygon",
    "simulate_pump",
    "simulate_signals",
    "write_day",
]
