"""Jobs and schedules of the research group.

One job per backfill policy: the daily-bar assets run a whole range in one run, the minute-fed
assets a few days per run, and the unpartitioned analyses (models, IC, factor models, backtests,
performance) read every materialized day. Schedules are off by default, like the market group's;
they run after the market group's 11:00 New York materialization.
"""

from quant_assets.defs.automation import asset_job, previous_weekday_request, stage_assets, stopped_schedule, tick_schedule
from quant_assets.defs.research import backtests, dataset, factors, features, labels, models, universe
from quant_assets.defs.research.keys import MINUTE_DAYS_PER_RUN

MINUTE_ASSETS = [features.macd_day_features, features.minute_features_plus_macd, labels.macd_event_labels, dataset.training_dataset]
ANALYSIS_ASSETS = stage_assets(models, factors, backtests, universe)

research_technical_job = asset_job(
    "research_technical_job",
    [features.technical_features],
    "research/technical_features for the selected trading day(s); reads the earlier history from the "
    "lake, so one day and a backfill give the same numbers. A range runs as one run.",
)
research_range_labels_job = asset_job(
    "research_range_labels_job",
    [labels.range_expansion_labels],
    "research/range_expansion_labels for the selected day(s); each label needs the next session's bars.",
)
research_minute_job = asset_job(
    "research_minute_job",
    MINUTE_ASSETS,
    "MACD day features, their join with the minute features, MACD event labels and the training dataset "
    f"for the selected day(s); a range runs {MINUTE_DAYS_PER_RUN} days per run to bound memory.",
)
research_analysis_job = asset_job(
    "research_analysis_job",
    ANALYSIS_ASSETS,
    "Models (LightGBM, linear, logistic), factor IC, CAPM / Fama-French regressions, vectorbt backtests and "
    "the performance report, over every materialized day.",
)

# After the market group's 11:00 New York materialization.
AFTER_MARKET = "30 12 * * 2-6"


@stopped_schedule(
    AFTER_MARKET,
    research_technical_job,
    "12:30 New York, Tuesday-Saturday: technical features of the previous weekday (after the market group).",
)
def research_technical_schedule(context):
    return previous_weekday_request(context)


@stopped_schedule(
    AFTER_MARKET,
    research_minute_job,
    "12:30 New York, Tuesday-Saturday: the previous weekday's MACD features, event labels and training rows.",
)
def research_minute_schedule(context):
    return previous_weekday_request(context)


@stopped_schedule(
    AFTER_MARKET,
    research_range_labels_job,
    "12:30 New York, Tuesday-Saturday: range-expansion labels of the session before the previous weekday, "
    "whose next session has just been materialized.",
)
def research_range_labels_schedule(context):
    return previous_weekday_request(context, sessions_before=1)


research_analysis_schedule = tick_schedule(
    "research_analysis_schedule",
    "0 14 * * 6",
    research_analysis_job,
    "Saturday 14:00 New York: retrain the models and refresh IC, factor models, backtests and performance.",
)


research_jobs = [research_technical_job, research_range_labels_job, research_minute_job, research_analysis_job]
research_schedules = [research_technical_schedule, research_minute_schedule, research_range_labels_schedule, research_analysis_schedule]
