"""``check_missing``: the landing zone against what was built from it."""

import datetime as dt

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from quant_assets.defs.market import ingest, tables, warehouse
from quant_assets.defs.market.keys import PUBLICATION_DEADLINE_CRON, WEEKLY_DEADLINE_CRON
from quant_assets.defs.market.landing import ROOT_OF, materialized_etags, observation, observed_etags
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.resources import LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib.landing import parse_listing
from quant_assets.lib.sources import polygon

SHOWN = 100


def completeness(
    files: dict[str, str], materialized: dict[str, str], partition_keys: list[str]
) -> dict[str, list[str]]:
    """Compare the landing zone (``{partition: ETag}``) with what was materialized
    (``{partition: ETag it was built from}``, "" when unknown).

    ``unmaterialized``: a file exists for a partition that was never materialized.
    ``stale``: the partition was built from other bytes than the file now holds (a re-publish).
    ``file_disappeared``: a session's partition is materialized but its file is gone (a holiday
    partition materialized as "no data" is fine).
    """
    keys = set(partition_keys)
    unmaterialized = sorted(d for d in files if d in keys and d not in materialized)
    stale = sorted(d for d, etag in files.items() if d in materialized and materialized[d] != etag)
    disappeared = sorted(d for d in materialized if d in keys and d not in files and cal.is_trading_day(d))
    return {"unmaterialized": unmaterialized, "stale": stale, "file_disappeared": disappeared}


def _check_missing(context: AssetCheckExecutionContext, landing: LandingZone, kind: str, prefix: str) -> AssetCheckResult:
    listed = [f for f in parse_listing(landing.store().list(prefix + "/")) if f.kind == kind]
    files = {f.partition: f.etag for f in listed}
    instance = context.instance
    materialized = materialized_etags(instance, kind, instance.get_materialized_partitions(ROOT_OF[kind]))
    # Record the data version of every file whose bytes the instance has not seen yet, so the
    # partitions built from older bytes show as stale in the UI even while the sensor is off.
    observed = observed_etags(instance, kind, sorted(files))
    for f in listed:
        if observed.get(f.partition) != f.etag and f.partition in materialized:
            context.op_execution_context.log_event(observation(f, landing.describe(f.key)))
    found = completeness(files, materialized, trading_days.get_partition_keys(dynamic_partitions_store=instance))
    errors = found["stale"] or found["file_disappeared"]
    problems = [f"{len(v)} {k.replace('_', ' ')}" for k, v in found.items() if v]
    return AssetCheckResult(
        passed=not any(found.values()),
        # Built from bytes the vendor no longer publishes: an error. Not built yet: a warning.
        severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
        description=("; ".join(problems) + ".") if problems else f"All {len(files)} files built from their current bytes.",
        metadata={
            "files": len(files),
            "materialized_partitions": len(materialized),
            **{f"{k}_count": len(v) for k, v in found.items()},
            **{k: MetadataValue.json(v[:SHOWN]) for k, v in found.items()},
        },
    )


def check_missing(asset, kind: str, prefix: str, description: str):
    """``asset``'s ``check_missing``: the ``kind`` files under ``prefix`` against its partitions."""

    @asset_check(asset=asset, name="check_missing", description=description)
    def _check(context: AssetCheckExecutionContext, landing: LandingZone) -> AssetCheckResult:
        return _check_missing(context, landing, kind, prefix)

    return _check


day_aggs_check_missing = check_missing(
    ingest.day_aggs,
    "day",
    polygon.DAY_PREFIX,
    "Day files without a built partition, partitions built from bytes the vendor has since re-published (stale), "
    "and partitions whose file vanished.",
)
minute_aggs_check_missing = check_missing(
    ingest.minute_aggs,
    "minute",
    polygon.MINUTE_PREFIX,
    "Minute files without a built partition, stale partitions (file re-published since) and partitions whose file vanished.",
)
market_checks = [day_aggs_check_missing, minute_aggs_check_missing]

def _latest_tick(cron: str, now: dt.datetime) -> dt.datetime:
    from dagster._utils.schedules import get_latest_completed_cron_tick

    return get_latest_completed_cron_tick(cron, now, cal.NY_TZ_NAME)


def expected_partition(partitions_def, deadline: dt.datetime, weekly: bool) -> str | None:
    """The partition due at ``deadline``: the last one whose period ended before it (capped at
    the last partition that exists)."""
    day = deadline.astimezone(cal.NEW_YORK).date()
    if weekly:
        due = cal.week_start(day) - dt.timedelta(days=7)
    else:
        due = day - dt.timedelta(days=1)
        while due.weekday() >= 5:
            due -= dt.timedelta(days=1)
    keys = partitions_def.get_partition_keys(current_time=deadline)
    if not keys:
        return None
    return min(due.isoformat(), keys[-1])


def _freshness_check(assets_def, cron: str, weekly: bool):
    @asset_check(
        asset=assets_def,
        name="partition_freshness",
        description=f"The partition due by the publication deadline ({cron}, New York) has arrived; "
        "when it has not, the check fails and names the overdue partition.",
    )
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        now = dt.datetime.now(tz=cal.NEW_YORK)
        deadline = _latest_tick(cron, now)
        due = expected_partition(assets_def.partitions_def, deadline, weekly)
        if due is None:
            return AssetCheckResult(passed=True, description="No partition is due yet.")
        done = due in context.instance.get_materialized_partitions(assets_def.key)
        meta = {"expected_partition": due, "deadline": deadline.isoformat()}
        if done:
            return AssetCheckResult(passed=True, description=f"Partition {due} arrived.", metadata=meta)
        overdue = int((now - deadline).total_seconds())
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"Partition {due} is overdue: due by {deadline:%Y-%m-%d %H:%M %Z}, not materialized.",
            metadata={**meta, "overdue_seconds": overdue},
        )

    return _check


# The previous session's partition of every daily asset is due by the publication deadline.
market_freshness_checks = [
    _freshness_check(ad, PUBLICATION_DEADLINE_CRON, weekly=False)
    for ad in (ingest.day_aggs, ingest.minute_aggs, tables.daily_bars, tables.daily_filtered, tables.minute_features, warehouse.warehouse_daily_bars)
] + [_freshness_check(tables.weekly_bars, WEEKLY_DEADLINE_CRON, weekly=True)]
