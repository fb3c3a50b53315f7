"""Names of the research group: asset keys, check names, partition windows and the benchmark --
importable by other modules and by tests without the asset code."""


from dagster import AllPartitionMapping, AssetKey

DOMAIN = "research"
# Minute days are ~2M rows each: range backfills of the minute-fed assets run a few days per run.
MINUTE_DAYS_PER_RUN = 5
# Weekday partitions scanned backwards for "the previous session" (covers holiday runs).
PREVIOUS_WINDOW = 5
# Weekday partitions scanned forwards for "the next session".
NEXT_WINDOW = 5
BENCHMARK = "SPY"
HOLIDAY = "NYSE holiday: no session"

KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in (
        "technical_features",
        "macd_day_features",
        "minute_features_plus_macd",
        "macd_event_labels",
        "range_expansion_labels",
        "training_dataset",
        "lgbm_classifier",
        "lgbm_regressor",
        "linear_model",
        "logistic_model",
        "factor_evaluation",
        "factor_models",
        "backtests",
        "performance_report",
        "liquid_universe",
    )
}

RANGE_CHECK = "values_in_range"
BALANCE_CHECK = "label_balance"
PIT_CHECK = "point_in_time"
PURGE_CHECK = "purge_gap_respected"
COVERAGE_CHECK = "feature_coverage"
FACTOR_COVERAGE_CHECK = "factor_coverage"
MODE_CHECK = "one_row_per_mode"
JOIN_CHECK = "macd_join_coverage"
TRADES_CHECK = "strategies_traded"

# Label shares outside this band make a classifier trivial; the check warns.
BALANCE_BAND = (0.01, 0.99)

ALL_DAYS = AllPartitionMapping()
UNIVERSE_CHECK = "universe_not_empty"
