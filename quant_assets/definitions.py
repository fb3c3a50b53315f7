"""The single Dagster code location of quant-assets."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.market import assets as market_assets
from quant_assets.defs.market.automation import market_jobs, market_schedules, market_sensors
from quant_assets.defs.market.checks import market_checks
from quant_assets.defs.resources import default_resources

defs = Definitions(
    assets=load_assets_from_modules([market_assets]),
    asset_checks=market_checks,
    jobs=market_jobs,
    schedules=market_schedules,
    sensors=market_sensors,
    resources=default_resources(),
)
