"""Jobs, the landing-zone sensor and the schedules of the market group."""


import datetime as dt
import hashlib
import json
from collections import defaultdict

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
    sensor,
)

from quant_assets.defs.market import assets as a
from quant_assets.defs.market.checks import market_checks
from quant_assets.defs.partitions import trading_days, trading_weeks
from quant_assets.defs.resources import LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon

DAY_FILE_ASSETS = [a.day_aggs, a.daily_bars, a.daily_filtered, a.warehouse_daily_bars]
MINUTE_FILE_ASSETS = [a.minute_aggs, a.minute_features]

# One job per backfill policy: the day-file assets run a whole range in one run, the minute
# assets a few days per run.
market_trading_day_job = define_asset_job(
    "market_trading_day_job",
    selection=AssetSelection.assets(*DAY_FILE_ASSETS) - AssetSelection.checks(*market_checks),
    description="The assets fed by the Polygon day file (day_aggs, daily_bars, daily_filtered, the warehouse "
    "load) for the selected trading day(s); a range runs as one run.",
)
market_minute_job = define_asset_job(
    "market_minute_job",
    selection=AssetSelection.assets(*MINUTE_FILE_ASSETS) - AssetSelection.checks(*market_checks),
    description="The assets fed by the Polygon minute file (minute_aggs, minute_features) for the selected "
    f"trading day(s); a range runs {a.MINUTE_DAYS_PER_RUN} days per run to bound memory.",
)
market_weekly_job = define_asset_job(
    "market_weekly_job",
    selection=AssetSelection.assets(a.weekly_bars),
    description="Weekly bars for the selected week(s) (key: the Monday), from market/daily_bars.",
)
market_completeness_job = define_asset_job(
    "market_completeness_job",
    selection=AssetSelection.checks(*market_checks),
    description="check_missing: landing files without partitions, and partitions whose file disappeared.",
)

# Seconds of LastModified history re-listed on every tick. S3 stamps objects to the second, so
# files written in the same second as the previous high-water mark are seen again and
# de-duplicated by (key, ETag) instead of being missed.
CURSOR_OVERLAP_S = 30.0


def _asset_keys(assets_defs) -> list[AssetKey]:
    return [k for ad in assets_defs for k in ad.keys]


def plan_landing_runs(
    objects, cursor: str | None, valid_keys: set[str], materialized: dict[str, set[str]] | None = None
) -> tuple[list[RunRequest], str, list[str]]:
    """Turn a listing of the landing zone into run requests and the next cursor.

    ``cursor`` is JSON ``{"hw": high-water LastModified, "seen": {key: etag}}`` where ``seen``
    holds the objects inside the overlap window. New keys and re-published keys (new ETag) both
    trigger; one request per trading day, for the assets fed by the files that changed. With no
    cursor yet (first tick), files whose partition is already materialized are taken as done.
    Returns (requests, cursor, skipped-notes).
    """
    state = json.loads(cursor) if cursor else None
    hw = float(state["hw"]) if state else None
    seen: dict[str, str] = dict(state["seen"]) if state else {}
    changed: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    skipped: list[str] = []
    new_hw = hw or 0.0
    listing = []
    for obj in objects:
        parsed = polygon.parse_key(obj.key)
        if parsed is None:
            continue
        listing.append(obj)
        new_hw = max(new_hw, obj.last_modified)
        if hw is not None and obj.last_modified < hw - CURSOR_OVERLAP_S:
            continue
        if seen.get(obj.key) == obj.etag:
            continue
        kind, day = parsed
        pk = day.isoformat()
        if pk not in valid_keys:
            skipped.append(f"{obj.key}: {pk} is not a trading-day partition")
            continue
        if hw is None and materialized is not None and pk in materialized.get(kind, set()):
            continue
        changed[pk][kind] = (obj.key, obj.etag)

    next_seen = {o.key: o.etag for o in listing if o.last_modified >= new_hw - CURSOR_OVERLAP_S}
    requests = []
    for pk in sorted(changed):
        for kind in sorted(changed[pk]):
            fingerprint = hashlib.sha1(json.dumps(changed[pk][kind]).encode(), usedforsecurity=False).hexdigest()[:16]
            job = market_trading_day_job if kind == "day" else market_minute_job
            requests.append(
                RunRequest(
                    run_key=f"{kind}:{pk}:{fingerprint}",
                    job_name=job.name,
                    partition_key=pk,
                    tags={"quant_assets/trigger": "landing_zone", "quant_assets/files": kind},
                )
            )
    return requests, json.dumps({"hw": new_hw, "seen": next_seen}, sort_keys=True), skipped


@sensor(
    jobs=[market_trading_day_job, market_minute_job],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Launches market runs for exactly the trading days whose Polygon flat files are new or re-published.",
)
def polygon_landing_sensor(context: SensorEvaluationContext, landing: LandingZone):
    store = landing.store()
    objects = list(store.list(polygon.DAY_PREFIX + "/")) + list(store.list(polygon.MINUTE_PREFIX + "/"))
    valid = set(trading_days.get_partition_keys(dynamic_partitions_store=context.instance))
    materialized = None
    if not context.cursor:
        materialized = {
            "day": set(context.instance.get_materialized_partitions(a.day_aggs.key)),
            "minute": set(context.instance.get_materialized_partitions(a.minute_aggs.key)),
        }
    requests, cursor, skipped = plan_landing_runs(objects, context.cursor, valid, materialized)
    for note in skipped[:20]:
        context.log.info(f"skipped {note}")
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new or re-published flat files"), cursor=cursor)
    return SensorResult(run_requests=requests, cursor=cursor)


@schedule(
    cron_schedule="0 11 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=market_trading_day_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="11:00 New York, Tuesday-Saturday: materialize the previous weekday once the vendor has published it.",
)
def market_after_publish_schedule(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time.astimezone(cal.NEW_YORK)
    day = tick.date() - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    pk = day.isoformat()
    if pk not in trading_days.get_partition_keys(current_time=tick):
        return SkipReason(f"{pk} is outside the trading-day partitions")
    return RunRequest(run_key=pk, partition_key=pk)


@schedule(
    cron_schedule="0 11 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=market_minute_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="11:00 New York, Tuesday-Saturday: the previous weekday's minute assets once published.",
)
def market_minute_after_publish_schedule(context: ScheduleEvaluationContext):
    return market_after_publish_schedule(context)


market_weekly_schedule = build_schedule_from_partitioned_job(
    market_weekly_job,
    hour_of_day=12,
    minute_of_hour=0,
    day_of_week=1,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Monday 12:00 New York: weekly bars of the week that just ended.",
)


@schedule(
    cron_schedule="0 12 * * 2-6",
    execution_timezone=cal.NY_TZ_NAME,
    job=market_completeness_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="12:00 New York, Tuesday-Saturday: run check_missing on the day and minute files.",
)
def market_completeness_schedule(context: ScheduleEvaluationContext):
    return RunRequest(run_key=context.scheduled_execution_time.isoformat())


market_jobs = [market_trading_day_job, market_minute_job, market_weekly_job, market_completeness_job]
market_schedules = [market_after_publish_schedule, market_minute_after_publish_schedule, market_weekly_schedule, market_completeness_schedule]
market_sensors = [polygon_landing_sensor]
