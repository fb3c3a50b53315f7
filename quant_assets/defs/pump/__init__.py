"""The pump group: signals -> Binance trades -> 1-second delta bars -> optimizer -> composite
strategy -> detailed and portfolio backtests.

One module per stage -- ``ingest`` (signals, aggregate trades), ``bars``, ``research`` (research
set, phase 1), ``strategy`` (phase 2, composite), ``backtests`` -- each importing the
``lib/pump`` modules that hold its maths; ``keys`` names the assets and checks, ``common`` holds
the helpers they share.
"""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.pump import backtests, bars, ingest, research, strategy
from quant_assets.defs.pump.checks import pump_checks
from quant_assets.defs.pump.jobs import pump_jobs, pump_schedules

STAGES = (ingest, bars, research, strategy, backtests)

defs = Definitions(
    assets=load_assets_from_modules(list(STAGES)), asset_checks=pump_checks, jobs=pump_jobs, schedules=pump_schedules
)
