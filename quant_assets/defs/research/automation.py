"""Jobs and schedules of the research group.

One job per backfill policy: the daily-bar assets run a whole range in one run, the minute-fed
assets a few days per run, and the unpartitioned analyses (models, IC, factor models, backtests,
performance) read every materialized day. Schedules are off by default, like the market group's;
they run after the market group's 11:00 New York materialization.
"""

from dagster import AssetSelection, DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, define_asset_job, schedule

from quant_assets.defs.partitions import trading_day_request
from quant_assets.defs.research import backtests, dataset, factors, features, labels, models, universe
from quant_assets.defs.research.keys import MINUTE_DAYS_PER_RUN
from quant_assets.lib import calendar as cal

MINUTE_ASSETS = [features.macd_day_features, features.minute_features_plus_macd, labels.macd_event_labels, dataset.training_dataset]
ANALYSIS_ASSETS = [
    models.lgbm_classifier,
    models.lgbm_regressor,
    models.linear_model,
    models.logistic_model,
    factors.factor_evaluation,
    factors.factor_models,
    backtests.backtests,
    backtests.performance_report,
    universe.liquid_universe,
]

research_technical_job = define_asset_job(
    "research_technical_job",
    selection=AssetSelection.assets(features.technical_features),
    description="research/technical_features for the selected trading day(s); reads the earlier history from the "
    "lake, so one day and a backfill give the same numbers. A range runs as one run.",
)
research_range_labels_job = define_asset_job(
    "research_range_labels_job",
    selection=AssetSelection.assets(labels.range_expansion_labels),
    description="research/range_expansion_labels for the selected day(s); each label needs the next session's bars.",
)
research_minute_job = define_asset_job(
    "research_minute_job",
    selection=AssetSelection.assets(*MINUTE_ASSETS),
    description="MACD day features, their join with the minute features, MACD event labels and the training dataset "
    f"for the selected day(s); a range runs {MINUTE_DAYS_PER_RUN} days per run to bound memory.",
)
research_analysis_job = define_asset_job(
    "research_analysis_job",
    selection=AssetSelection.assets(*ANALYSIS_ASSETS),
    description="Models (LightGBM, linear, logistic), factor IC, CAPM / Fama-French regressions, vectorbt backtests and "
    "the performance report, over every materialized day.",
)


@schedule(
    cron_schedule="30 12 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=research_technical_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="12:30 New York, Tuesday-Saturday: technical features of the previous weekday (after the market group).",
)
def research_technical_schedule(context: ScheduleEvaluationContext):
    return trading_day_request(cal.previous_weekday(context.scheduled_execution_time), context.scheduled_execution_time)


@schedule(
    cron_schedule="30 12 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=research_minute_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="12:30 New York, Tuesday-Saturday: the previous weekday's MACD features, event labels and training rows.",
)
def research_minute_schedule(context: ScheduleEvaluationContext):
    return trading_day_request(cal.previous_weekday(context.scheduled_execution_time), context.scheduled_execution_time)


@schedule(
    cron_schedule="30 12 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=research_range_labels_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="12:30 New York, Tuesday-Saturday: range-expansion labels of the session before the previous weekday, "
    "whose next session has just been materialized.",
)
def research_range_labels_schedule(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    return trading_day_request(cal.previous_trading_day(cal.previous_weekday(tick)), tick)


@schedule(
    cron_schedule="0 14 * * 6",
    execution_timezone=cal.NY_TZ_NAME,
    job=research_analysis_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Saturday 14:00 New York: retrain the models and refresh IC, factor models, backtests and performance.",
)
def research_analysis_schedule(context: ScheduleEvaluationContext):
    return RunRequest(run_key=context.scheduled_execution_time.isoformat())


research_jobs = [research_technical_job, research_range_labels_job, research_minute_job, research_analysis_job]
research_schedules = [
    research_technical_schedule,
    research_minute_schedule,
    research_range_labels_schedule,
    research_analysis_schedule,
]
