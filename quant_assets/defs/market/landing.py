"""The vendor's files as Dagster sees them: two external assets whose per-partition data version
is the landing file's ETag, and the instance lookups the sensor and ``check_missing`` share."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey, AssetObservation, AssetRecordsFilter, AssetSpec, DagsterInstance

from quant_assets.defs import metadata as md
from quant_assets.defs.partitions import history_start, trading_days
from quant_assets.lib import calendar as cal
from quant_assets.lib.landing import LandingFile

DATA_VERSION_TAG = "dagster/data_version"
SOURCE_ETAG = "source_etag"

_SPEC_KW = {
    "group_name": "market",
    "owners": md.OWNERS["market"],
    "kinds": {"s3", "csv"},
    "tags": {"domain": "market", "layer": "raw", "vendor": "polygon"},
    "partitions_def": trading_days,
}
POLYGON_DAY_FILES = AssetSpec(
    key=AssetKey(["market", "polygon_day_files"]),
    description="Polygon day-aggregate flat files in the landing zone, one per NYSE session "
    "(us_stocks_sip/day_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz). Not materialized by Dagster: each "
    "partition's data version is the file's ETag, observed by polygon_landing_sensor and "
    "check_missing, so a re-published file marks what was built from it stale.",
    **_SPEC_KW,
)
POLYGON_MINUTE_FILES = AssetSpec(
    key=AssetKey(["market", "polygon_minute_files"]),
    description="Polygon minute-aggregate flat files in the landing zone, one per NYSE session "
    "(us_stocks_sip/minute_aggs_v1/...). Data version per partition = the file's ETag.",
    **_SPEC_KW,
)
SOURCE_OF = {"day": POLYGON_DAY_FILES.key, "minute": POLYGON_MINUTE_FILES.key}
ROOT_OF = {"day": AssetKey(["market", "day_aggs"]), "minute": AssetKey(["market", "minute_aggs"])}


def _latest_by_partition(instance: DagsterInstance, asset_key: AssetKey, partitions: list[str], observations: bool):
    """The newest event record per partition (materializations or observations)."""
    wanted = set(partitions)
    found = {}
    cursor = None
    fetch = instance.fetch_observations if observations else instance.fetch_materializations
    while wanted - set(found):
        page = fetch(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(wanted - set(found))),
            limit=1000,
            cursor=cursor,
        )
        for rec in page.records:  # newest first
            pk = rec.partition_key
            if pk in wanted and pk not in found:
                found[pk] = rec
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def materialized_etags(instance: DagsterInstance, kind: str, partitions: Iterable[str]) -> dict[str, str]:
    """``{partition: ETag it was last materialized from}`` ("" when the materialization did not
    record one) for the materialized ones among ``partitions``."""
    done = set(instance.get_materialized_partitions(ROOT_OF[kind]))
    keys = [p for p in partitions if p in done]
    if not keys:
        return {}
    out = {}
    for pk, rec in _latest_by_partition(instance, ROOT_OF[kind], keys, observations=False).items():
        value = rec.asset_materialization.metadata.get(SOURCE_ETAG) if rec.asset_materialization else None
        out[pk] = str(value.value) if value is not None else ""
    return out


def observed_etags(instance: DagsterInstance, kind: str, partitions: Iterable[str]) -> dict[str, str]:
    """``{partition: last observed ETag}`` of the landing files of ``kind``."""
    keys = list(partitions)
    if not keys:
        return {}
    out = {}
    for pk, rec in _latest_by_partition(instance, SOURCE_OF[kind], keys, observations=True).items():
        obs = rec.asset_observation
        if obs is not None and obs.tags and DATA_VERSION_TAG in obs.tags:
            out[pk] = obs.tags[DATA_VERSION_TAG]
    return out


def lookup(instance: DagsterInstance):
    """The ``lookup`` that :func:`quant_assets.lib.landing.plan` needs, reading the instance."""

    def _lookup(files: list[LandingFile]):
        materialized, observed = {}, {}
        for kind in ("day", "minute"):
            keys = sorted({f.partition for f in files if f.kind == kind})
            for pk, etag in materialized_etags(instance, kind, keys).items():
                materialized[(kind, pk)] = etag
            for pk, etag in observed_etags(instance, kind, keys).items():
                observed[(kind, pk)] = etag
        return materialized, observed

    return _lookup


def observation(f: LandingFile, source: str) -> AssetObservation:
    return AssetObservation(
        asset_key=SOURCE_OF[f.kind],
        partition=f.partition,
        tags={DATA_VERSION_TAG: f.etag},
        metadata={"file": source, "etag": f.etag},
    )


def never_a_partition(day) -> str | None:
    if day.weekday() >= 5:
        return "a weekend date is never a trading-day partition"
    if day < history_start():
        return f"before QUANT_START_DATE ({history_start()})"
    return None


def partition_exists_fn(instance: DagsterInstance):
    keys = set(trading_days.get_partition_keys(dynamic_partitions_store=instance))
    return lambda day: cal.as_date(day).isoformat() in keys
