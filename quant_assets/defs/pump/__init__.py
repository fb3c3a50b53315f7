"""The pump group: signals -> Binance trades -> 1-second delta bars -> optimizer -> composite
strategy -> detailed and portfolio backtests."""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.pump import assets
from quant_assets.defs.pump.checks import pump_checks
from quant_assets.defs.pump.jobs import pump_jobs, pump_schedules

defs = Definitions(
    assets=load_assets_from_modules([assets]), asset_checks=pump_checks, jobs=pump_jobs, schedules=pump_schedules
)
