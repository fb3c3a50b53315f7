"""Asset checks of the pump group that look at the landing zone rather than at one run's output."""

import datetime as dt

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from quant_assets.defs.partitions import utc_days
from quant_assets.defs.pump import ingest
from quant_assets.defs.resources import LandingZone
from quant_assets.lib.pump.signals import PREFIX


def signal_file_days(keys) -> set[str]:
    """UTC days that have a signal file, from a listing of landing-zone keys."""
    days = set()
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if key.startswith(PREFIX + "/") and name.endswith(".csv"):
            try:
                days.add(dt.date.fromisoformat(name[:-4]).isoformat())
            except ValueError:
                continue
    return days


@asset_check(
    asset=ingest.signals,
    name="check_missing",
    description="Signal files without a materialized day, or materialized days whose signal file vanished.",
)
def signals_check_missing(context: AssetCheckExecutionContext, landing: LandingZone) -> AssetCheckResult:
    files = signal_file_days(obj.key for obj in landing.store().list(PREFIX + "/"))
    keys = set(utc_days.get_partition_keys())
    materialized = set(context.instance.get_materialized_partitions(ingest.signals.key))
    unmaterialized = sorted(d for d in files if d in keys and d not in materialized)
    vanished = sorted(d for d in materialized if d in keys and d not in files)
    return AssetCheckResult(
        passed=not unmaterialized and not vanished,
        # A vanished file means the lake holds signals the source no longer backs: an error.
        severity=AssetCheckSeverity.ERROR if vanished else AssetCheckSeverity.WARN,
        metadata={
            "files": len(files),
            "materialized_days": len(materialized),
            "unmaterialized_count": len(unmaterialized),
            "file_disappeared_count": len(vanished),
            "unmaterialized": MetadataValue.json(unmaterialized[:100]),
            "file_disappeared": MetadataValue.json(vanished[:100]),
        },
    )


pump_checks = [signals_check_missing]
