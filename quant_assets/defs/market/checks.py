"""Asset checks of the market group."""


from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from quant_assets.defs.market import assets as a
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.resources import LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon


def completeness(file_days: set[str], materialized: set[str], partition_keys: list[str]) -> dict[str, list[str]]:
    """Compare the landing zone with the materialized partitions.

    ``unmaterialized``: a file exists for a partition that was never materialized.
    ``file_disappeared``: a session's partition is materialized but its file is gone (a holiday
    partition materialized as "no data" is fine).
    """
    keys = set(partition_keys)
    unmaterialized = sorted(d for d in file_days if d in keys and d not in materialized)
    disappeared = sorted(d for d in materialized if d in keys and d not in file_days and cal.is_trading_day(d))
    return {"unmaterialized": unmaterialized, "file_disappeared": disappeared}


def _check_missing(context: AssetCheckExecutionContext, landing: LandingZone, asset_key, prefix: str, kind: str):
    store = landing.store()
    file_days = set()
    for obj in store.list(prefix + "/"):
        parsed = polygon.parse_key(obj.key)
        if parsed and parsed[0] == kind:
            file_days.add(parsed[1].isoformat())
    materialized = set(context.instance.get_materialized_partitions(asset_key))
    found = completeness(file_days, materialized, trading_days.get_partition_keys())
    passed = not found["unmaterialized"] and not found["file_disappeared"]
    return AssetCheckResult(
        passed=passed,
        # A vanished file means the lake holds data the vendor no longer backs: an error.
        severity=AssetCheckSeverity.ERROR if found["file_disappeared"] else AssetCheckSeverity.WARN,
        metadata={
            "files": len(file_days),
            "materialized_partitions": len(materialized),
            "unmaterialized_count": len(found["unmaterialized"]),
            "file_disappeared_count": len(found["file_disappeared"]),
            "unmaterialized": MetadataValue.json(found["unmaterialized"][:100]),
            "file_disappeared": MetadataValue.json(found["file_disappeared"][:100]),
        },
    )


@asset_check(asset=a.day_aggs, name="check_missing", description="Day files without a partition, or partitions whose file vanished.")
def day_aggs_check_missing(context: AssetCheckExecutionContext, landing: LandingZone) -> AssetCheckResult:
    return _check_missing(context, landing, a.day_aggs.key, polygon.DAY_PREFIX, "day")


@asset_check(asset=a.minute_aggs, name="check_missing", description="Minute files without a partition, or partitions whose file vanished.")
def minute_aggs_check_missing(context: AssetCheckExecutionContext, landing: LandingZone) -> AssetCheckResult:
    return _check_missing(context, landing, a.minute_aggs.key, polygon.MINUTE_PREFIX, "minute")


market_checks = [day_aggs_check_missing, minute_aggs_check_missing]
