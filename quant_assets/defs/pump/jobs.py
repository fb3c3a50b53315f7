"""Jobs and schedules of the pump group."""

import datetime as dt

from dagster import AssetSelection, RunRequest, SkipReason, define_asset_job

from quant_assets.defs.automation import asset_job, stage_assets, stopped_schedule
from quant_assets.defs.partitions import utc_days
from quant_assets.defs.pump import backtests, bars, ingest, research, strategy
from quant_assets.defs.pump.checks import pump_checks

DAILY_ASSETS = stage_assets(ingest, bars)
RESEARCH_ASSETS = stage_assets(research, strategy, backtests)

# One job per backfill policy: the signal-day assets run a week of days per run, the research
# assets once over the research window.
pump_daily_job = asset_job(
    "pump_daily_job",
    DAILY_ASSETS,
    "Signals, Binance aggregate trades, 1-second delta bars and minute candles for the selected signal day(s) (UTC).",
    without_checks=pump_checks,
)
pump_research_job = asset_job(
    "pump_research_job",
    RESEARCH_ASSETS,
    "The research set, the two-phase optimizer (strategy matrix, filter grid), composite_strategy.json, "
    "the detailed backtest (backtest_trades.csv) and the portfolio backtest.",
)
pump_completeness_job = define_asset_job(
    "pump_completeness_job",
    selection=AssetSelection.checks(*pump_checks),
    description="check_missing: signal files in the landing zone without a materialized day, and days whose file vanished.",
)

# data.binance.vision publishes a day's zips early the next UTC day, and a signal's window runs
# 24 h past it: day D is complete once D+1's files are out, so the schedule builds D two days on.
DAILY_CRON = "30 6 * * *"


@stopped_schedule(
    DAILY_CRON,
    pump_daily_job,
    "Every day at 06:30 UTC: the signal day two days back (its 24 h windows end inside yesterday, "
    "whose Binance files are published by then).",
    timezone="UTC",
)
def pump_daily_schedule(context):
    day = (context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
    if day not in utc_days.get_partition_keys():
        return SkipReason(f"{day} is outside the configured history (QUANT_START_DATE..QUANT_END_DATE)")
    return RunRequest(run_key=f"pump-day-{day}", partition_key=day)


@stopped_schedule(
    "30 7 * * *",
    pump_research_job,
    "Every day at 07:30 UTC, after the daily build: re-run the research over the last `days` days.",
    timezone="UTC",
)
def pump_research_schedule(context):
    return RunRequest(run_key=f"pump-research-{context.scheduled_execution_time:%Y-%m-%d}")


pump_jobs = [pump_daily_job, pump_research_job, pump_completeness_job]
pump_schedules = [pump_daily_schedule, pump_research_schedule]
