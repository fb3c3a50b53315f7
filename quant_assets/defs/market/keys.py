"""Names of the market group: asset keys, lookbacks, backfill sizes, freshness policies and
check names -- importable by other domains (research reads the market tables) and by tests
without the asset code."""

import datetime as dt

from dagster import AssetKey, FreshnessPolicy

from quant_assets.lib import calendar as cal
from quant_assets.lib.market import FILTER_LOOKBACK, SPIKE_LOOKBACK  # noqa: F401 (named here for the stage modules)

DOMAIN = "market"
# Weekday partitions an asset looks back over. FILTER_LOOKBACK and SPIKE_LOOKBACK bound knobs of
# lib.market and are declared there, beside them.
DAY_AGGS_LOOKBACK = 5
# Minute days are ~2M rows each: range backfills run a few days per run to bound memory.
MINUTE_DAYS_PER_RUN = 5
# A backfill of the day-file assets runs at most this many sessions (about a year) per run, and
# the weekly bars this many weeks: a run's memory is bounded by a year of the universe (about
# 2.5 M rows at 10,000 tickers), whatever the length of the history.
DAYS_PER_RUN = 250
WEEKS_PER_RUN = 52
# Sessions whose row counts are the yardstick for "implausibly few rows".
ROW_COUNT_REFERENCE_SESSIONS = 5

KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in (
        "day_aggs",
        "minute_aggs",
        "daily_bars",
        "weekly_bars",
        "daily_filtered",
        "minute_features",
        "warehouse_daily_bars",
    )
}

# Polygon publishes the previous session's flat files by about 11:00 New York time; with an
# hour's margin, the previous session's partition is due by 12:00, Tuesday to Saturday.
PUBLICATION_DEADLINE_CRON = "0 12 * * 2-6"
PUBLICATION_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron=PUBLICATION_DEADLINE_CRON, lower_bound_delta=dt.timedelta(hours=12), timezone=cal.NY_TZ_NAME
)
# Weekly bars are built on Monday at 12:00 for the week before; due by 14:00.
WEEKLY_DEADLINE_CRON = "0 14 * * 1"
WEEKLY_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron=WEEKLY_DEADLINE_CRON, lower_bound_delta=dt.timedelta(hours=14), timezone=cal.NY_TZ_NAME
)

HOLIDAY = "NYSE holiday: no session, so the vendor publishes no file"

QUARANTINE_CHECK = "quarantine_share"
UNIVERSE_CHECK = "universe_not_empty"
RETURNS_CHECK = "returns_complete"
WAREHOUSE_CHECK = "rows_match_lake"

