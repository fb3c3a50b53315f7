"""The single Dagster code location of quant-assets.

Each domain folder under ``quant_assets/defs/`` exposes its own ``defs`` (assets, checks, jobs,
schedules, sensors); they are merged here with the shared resources and the executor (Dagster's
multiprocess executor unless QUANT_EXECUTOR or the run config picks another; see
``quant_assets/execution/executors.py``).
"""

from __future__ import annotations

from dagster import Definitions

from quant_assets.defs import client_intel, market, pump, research, smart_money
from quant_assets.execution.executors import quant_executor
from quant_assets.defs.resources import default_resources

DOMAINS = (market, research, client_intel, smart_money, pump)

defs = Definitions.merge(
    *(domain.defs for domain in DOMAINS), Definitions(resources=default_resources(), executor=quant_executor)
)
