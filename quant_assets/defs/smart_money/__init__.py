"""The smart_money group: FMP sources -> features -> dataset CSV -> splits -> LightGBM -> evaluation."""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.smart_money import assets
from quant_assets.defs.smart_money.automation import smart_money_jobs, smart_money_sensors

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    jobs=smart_money_jobs,
    sensors=smart_money_sensors,
)
