"""The smart_money group: FMP sources -> features -> dataset CSV -> splits -> LightGBM -> evaluation.

One module per stage: ``sources`` (universe, raw FMP tables), ``dataset`` (features, dataset CSV),
``model`` (splits, model, evaluation); ``keys`` names the assets and checks for other modules.
"""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.smart_money import dataset, model, sources
from quant_assets.defs.smart_money.automation import smart_money_jobs, smart_money_sensors

defs = Definitions(
    assets=load_assets_from_modules([sources, dataset, model]),
    jobs=smart_money_jobs,
    sensors=smart_money_sensors,
)
