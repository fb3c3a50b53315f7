"""Client intelligence: a deterministic world of FX clients, their behaviour-faithful trades and
everything an agent derives from them (positions, PnL and risk, features, regimes, switch
probabilities). No Dagster import here; ``quant_assets.defs.client_intel`` wraps it in assets."""

from quant_assets.lib.client_intel.spec import SEGMENTS, WorldSpec, WorldSpecError
from quant_assets.lib.client_intel.world import COLUMN_DOCS, SCHEMAS, TABLES, World, build_world, verify

__all__ = ["COLUMN_DOCS", "SCHEMAS", "SEGMENTS", "TABLES", "World", "WorldSpec", "WorldSpecError", "build_world", "verify"]
