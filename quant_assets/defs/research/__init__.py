"""The research group: features, labels, the training dataset, models and analyses built on the
market group's tables.

One module per stage -- ``features``, ``labels``, ``dataset``, ``models``, ``factors``,
``universe``, ``backtests`` -- each importing the ``lib/research`` module that holds its maths;
``keys`` names the assets and checks, ``common`` holds the helpers they share.
"""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.research import backtests, dataset, factors, features, labels, models, universe
from quant_assets.defs.research.automation import research_jobs, research_schedules

STAGES = (features, labels, dataset, models, factors, universe, backtests)

defs = Definitions(
    assets=load_assets_from_modules(list(STAGES)),
    jobs=research_jobs,
    schedules=research_schedules,
)
