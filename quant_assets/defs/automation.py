"""What every domain's jobs and schedules share.

A schedule is off until a deployment turns it on, and runs in New York time unless it says
otherwise; a job selects whole stages (the asset modules of a domain package), optionally without
the checks that have a job of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    load_assets_from_modules,
    schedule,
)

from quant_assets.defs.partitions import trading_day_request
from quant_assets.lib import calendar as cal


def stage_assets(*stages: ModuleType) -> list[AssetsDefinition]:
    """Every asset the given stage modules define, in module order."""
    return [
        a
        for a in load_assets_from_modules(list(stages))
        if isinstance(a, AssetsDefinition) and not isinstance(a, AssetChecksDefinition)
    ]


def asset_job(
    name: str,
    assets: Sequence[AssetsDefinition],
    description: str,
    *,
    without_checks: Iterable[AssetChecksDefinition] = (),
    config: dict | None = None,
):
    """A job over ``assets`` (with the checks they declare), less ``without_checks``."""
    selection = AssetSelection.assets(*assets)
    excluded = list(without_checks)
    if excluded:
        selection = selection - AssetSelection.checks(*excluded)
    return define_asset_job(name, selection=selection, description=description, config=config)


def stopped_schedule(cron: str, job, description: str, *, timezone: str = cal.NY_TZ_NAME, name: str | None = None):
    """The decorator of a house schedule: ``cron`` in ``timezone``, off by default (named after
    the function unless ``name`` is given)."""
    return schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description=description,
    )


def previous_weekday_request(context: ScheduleEvaluationContext, sessions_before: int = 0) -> RunRequest | SkipReason:
    """The run of the weekday before the tick (New York), or of the trading session
    ``sessions_before`` sessions earlier; a skip when that partition does not exist."""
    tick = context.scheduled_execution_time
    day = cal.previous_weekday(tick)
    for _ in range(sessions_before):
        day = cal.previous_trading_day(day)
    return trading_day_request(day, tick)


def tick_request(context: ScheduleEvaluationContext) -> RunRequest:
    """One run per tick of an unpartitioned job."""
    return RunRequest(run_key=context.scheduled_execution_time.isoformat())


def tick_schedule(name: str, cron: str, job, description: str, *, timezone: str = cal.NY_TZ_NAME):
    """A house schedule (see :func:`stopped_schedule`) of an unpartitioned job: one run per tick,
    keyed by the tick's time so a tick never runs twice."""
    return stopped_schedule(cron, job, description, timezone=timezone, name=name)(tick_request)
