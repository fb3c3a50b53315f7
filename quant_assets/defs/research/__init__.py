"""The research group: features, labels, the training dataset, models and analyses built on the
market group's tables."""

from dagster import Definitions, load_assets_from_modules

from quant_assets.defs.research import assets
from quant_assets.defs.research.automation import research_jobs, research_schedules

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    jobs=research_jobs,
    schedules=research_schedules,
)
