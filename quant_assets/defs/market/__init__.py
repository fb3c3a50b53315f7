"""The market group: Polygon flat files -> daily, weekly, filtered and minute-feature tables.

One module per stage -- ``ingest`` (flat files to typed tables), ``tables`` (daily, weekly,
filtered, minute features), ``warehouse`` -- plus ``landing`` (the observable source files),
``checks``, ``automation``; ``keys`` names the assets for other domains.
"""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.market import ingest, tables, warehouse
from quant_assets.defs.market.automation import market_jobs, market_schedules, market_sensors
from quant_assets.defs.market.checks import market_checks, market_freshness_checks
from quant_assets.defs.market.landing import POLYGON_DAY_FILES, POLYGON_MINUTE_FILES

defs = Definitions(
    assets=[POLYGON_DAY_FILES, POLYGON_MINUTE_FILES, *load_assets_from_modules([ingest, tables, warehouse])],
    asset_checks=[*market_checks, *market_freshness_checks],
    jobs=market_jobs,
    schedules=market_schedules,
    sensors=market_sensors,
)
