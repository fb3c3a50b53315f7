"""Jobs, the landing-zone sensor and the schedules of the market group."""

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    sensor,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from quant_assets.defs.automation import asset_job, previous_weekday_request, stopped_schedule, tick_schedule
from quant_assets.defs.market import ingest, tables, warehouse
from quant_assets.defs.market.checks import market_checks, market_freshness_checks
from quant_assets.defs.market.keys import MINUTE_DAYS_PER_RUN
from quant_assets.defs.market.landing import ROOT_OF, lookup, never_a_partition, observation, partition_exists_fn
from quant_assets.defs.resources import LandingZone
from quant_assets.lib import settings
from quant_assets.lib.landing import LandingPlan, parse_listing, plan
from quant_assets.lib.sources import polygon

DAY_FILE_ASSETS = [ingest.day_aggs, tables.daily_bars, tables.daily_filtered, warehouse.warehouse_daily_bars]
MINUTE_FILE_ASSETS = [ingest.minute_aggs, tables.minute_features]

# One job per backfill policy: the day-file assets run a whole range in one run, the minute
# assets a few days per run.
CHECK_JOB_ONLY = [*market_checks, *market_freshness_checks]
market_trading_day_job = asset_job(
    "market_trading_day_job",
    DAY_FILE_ASSETS,
    "The assets fed by the Polygon day file (day_aggs, daily_bars, daily_filtered, the warehouse "
    "load) for the selected trading day(s); a range runs as one run.",
    without_checks=CHECK_JOB_ONLY,
)
market_minute_job = asset_job(
    "market_minute_job",
    MINUTE_FILE_ASSETS,
    "The assets fed by the Polygon minute file (minute_aggs, minute_features) for the selected "
    f"trading day(s); a range runs {MINUTE_DAYS_PER_RUN} days per run to bound memory.",
    without_checks=CHECK_JOB_ONLY,
)
market_weekly_job = asset_job(
    "market_weekly_job",
    [tables.weekly_bars],
    "Weekly bars for the selected week(s) (key: the Monday), from market/daily_bars.",
    without_checks=market_freshness_checks,
)
market_completeness_job = define_asset_job(
    "market_completeness_job",
    selection=AssetSelection.checks(*CHECK_JOB_ONLY),
    description="check_missing (landing files not built, built from bytes since re-published, or vanished) "
    "and partition_freshness (the partition due by the publication deadline has arrived).",
)

FILE_ASSETS = {"day": DAY_FILE_ASSETS, "minute": MINUTE_FILE_ASSETS}
FED_BY = {kind: [k for ad in assets for k in ad.keys] for kind, assets in FILE_ASSETS.items()}
TRIGGER_TAG = "quant_assets/trigger"


def downstream_partitions(asset_graph, roots, materialized) -> set[AssetKeyPartitionKey]:
    """Every partition that reads one of ``roots``, directly or through other assets, following
    each asset's own partition mapping; only partitions that were materialized before (a missing
    partition is missing, not stale). ``materialized(asset_key)`` gives an asset's materialized
    partition keys."""
    seen: set[AssetKeyPartitionKey] = set(roots)
    frontier = list(roots)
    cache: dict[AssetKey, set[str]] = {}
    while frontier:
        node = frontier.pop()
        for child in asset_graph.get_children_partitions(node.asset_key, node.partition_key):
            if child in seen:
                continue
            if child.asset_key not in cache:
                cache[child.asset_key] = set(materialized(child.asset_key))
            if child.partition_key not in cache[child.asset_key]:
                continue
            seen.add(child)
            frontier.append(child)
    return seen


def landing_requests(plan: LandingPlan, asset_graph, materialized) -> list[RunRequest]:
    """One run per new file's day and kind (its run key makes Dagster launch it once); the
    re-published files go, with every partition that reads them, into one backfill, which Dagster
    runs upstream first."""
    requests = []
    if plan.rebuild:
        roots = {AssetKeyPartitionKey(ROOT_OF[f.kind], f.partition) for f in plan.rebuild}
        subset = AssetGraphSubset.from_asset_partition_set(
            downstream_partitions(asset_graph, roots, materialized), asset_graph
        )
        tags = {
            TRIGGER_TAG: "landing_zone_republish",
            "quant_assets/republished": ",".join(sorted({f.partition for f in plan.republished}))[:200],
        }
        requests.append(RunRequest.for_asset_graph_subset(subset, tags=tags))
    return requests + [
        RunRequest(
            run_key=f"{f.kind}:{f.partition}:{f.etag}",
            partition_key=f.partition,
            asset_selection=FED_BY[f.kind],
            # The checks declared on those assets; the cross-partition ones run on their schedule.
            asset_check_keys=[k for ad in FILE_ASSETS[f.kind] for k in ad.check_keys],
            tags={TRIGGER_TAG: "landing_zone", "quant_assets/files": f.kind, "quant_assets/file": f.key[-80:]},
        )
        for f in sorted(plan.new, key=lambda f: (f.partition, f.kind))
    ]


@sensor(
    # Everything a re-published file can reach, in every domain: a backfill request must stay
    # inside the sensor's selection.
    asset_selection=AssetSelection.assets(ingest.day_aggs, ingest.minute_aggs).downstream(),
    minimum_interval_seconds=settings.landing_sensor_interval_s(),
    default_status=DefaultSensorStatus.STOPPED,
    description="Watches the landing zone and runs every distinct publication of a Polygon flat file once, "
    "whatever its timestamp: a new file runs its day; a re-published file reruns its day and every "
    "partition that reads it (one backfill). Files whose partition does not exist yet wait for it.",
)
def polygon_landing_sensor(context: SensorEvaluationContext, landing: LandingZone):
    store = landing.store()
    files = parse_listing(
        list(store.list(polygon.DAY_PREFIX + "/")) + list(store.list(polygon.MINUTE_PREFIX + "/"))
    )
    result = plan(
        files,
        context.cursor,
        partition_exists=partition_exists_fn(context.instance),
        never_a_partition=never_a_partition,
        lookup=lookup(context.instance),
    )
    if result.waiting:
        context.log.info(
            f"{len(result.waiting)} file(s) wait for their partition to exist: "
            + ", ".join(f.key for f in result.waiting[:5])
        )
    for f, reason in result.ignored[:5]:
        context.log.info(f"ignored {f.key}: {reason}")
    events = [observation(f, landing.describe(f.key)) for f in result.observe]
    requests = landing_requests(result, context.repository_def.asset_graph, context.instance.get_materialized_partitions)
    if not requests:
        return SensorResult(
            skip_reason=SkipReason(
                f"no new or re-published flat files ({len(files)} listed, {result.examined} examined)"
            ),
            cursor=result.cursor,
            asset_events=events,
        )
    return SensorResult(run_requests=requests, cursor=result.cursor, asset_events=events)


# The vendor publishes a weekday's files by 11:00 New York the next weekday.
AFTER_PUBLISH = "0 11 * * 2-6"


@stopped_schedule(
    AFTER_PUBLISH,
    market_trading_day_job,
    "11:00 New York, Tuesday-Saturday: materialize the previous weekday once the vendor has published it.",
)
def market_after_publish_schedule(context):
    return previous_weekday_request(context)


@stopped_schedule(
    AFTER_PUBLISH,
    market_minute_job,
    "11:00 New York, Tuesday-Saturday: the previous weekday's minute assets once published.",
)
def market_minute_after_publish_schedule(context):
    return previous_weekday_request(context)


market_weekly_schedule = build_schedule_from_partitioned_job(
    market_weekly_job,
    hour_of_day=12,
    minute_of_hour=0,
    day_of_week=1,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Monday 12:00 New York: weekly bars of the week that just ended.",
)


market_completeness_schedule = tick_schedule(
    "market_completeness_schedule",
    "0 12 * * 2-6",
    market_completeness_job,
    "12:00 New York, Tuesday-Saturday (the publication deadline): check_missing and partition_freshness.",
)


market_jobs = [market_trading_day_job, market_minute_job, market_weekly_job, market_completeness_job]
market_schedules = [market_after_publish_schedule, market_minute_after_publish_schedule, market_weekly_schedule, market_completeness_schedule]
market_sensors = [polygon_landing_sensor]
