"""Deterministic market simulators: the vendors' own file formats written into a landing zone
(Polygon), or the vendors' own JSON served over HTTP (Financial Modeling Prep)."""

from quant_assets.simulate.fmp import FmpSimServer, FmpSimSpec, SimulatedFmp
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
from quant_assets.simulate.kenfrench import KenFrenchSimReport, kenfrench_zips, simulate_kenfrench

__all__ = [
    "FmpSimServer",
    "FmpSimSpec",
    "SimulatedFmp",
    "KenFrenchSimReport",
    "kenfrench_zips",
    "simulate_kenfrench",
    "HEADER",
    "KINDS",
    "TRADABLE_KINDS",
    "PolygonSimSpec",
    "SimReport",
    "day_aggs_key",
    "encode_polygon_csv_gz",
    "minute_aggs_key",
    "polygon_universe",
    "simulate_minute_day",
    "simulate_polygon",
]
