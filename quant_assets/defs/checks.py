"""Asset-check building blocks shared by every domain.

Data-quality rules are declared on the asset itself (``check_specs=[...]``) and their results
are returned with the materialization (``MaterializeResult(value=..., check_results=[...])``),
so a rule is evaluated on exactly the data that was written. A rule whose failure would make
downstream work wrong is ``blocking``: a failed ERROR result stops the rest of the run.

``column_schema_unchanged`` is on every table asset: the columns and types written now must
equal those of the asset's previous materialization, unless the asset's ``code_version``
changed too (a deliberate change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    MetadataValue,
)

from quant_assets.defs import metadata as md

SCHEMA_CHECK = "column_schema_unchanged"
CODE_VERSION_TAG = "dagster/code_version"


def spec(asset_key, name: str, description: str, *, blocking: bool = True) -> AssetCheckSpec:
    """A check declared on an asset (an ERROR result of a blocking check stops downstream steps)."""
    return AssetCheckSpec(name=name, asset=AssetKey.from_coercible(asset_key), description=description, blocking=blocking)


def schema_spec(asset_key) -> AssetCheckSpec:
    return spec(
        asset_key,
        SCHEMA_CHECK,
        "The columns and types written equal those of the previous materialization (a change "
        "passes only together with a new code_version).",
    )


def result(
    asset_key,
    name: str,
    passed: bool,
    description: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=AssetKey.from_coercible(asset_key),
        check_name=name,
        passed=bool(passed),
        description=description,
        metadata=dict(metadata or {}),
        severity=severity,
    )


def _signature(schema: Mapping[str, pl.DataType]) -> list[tuple[str, str]]:
    return [(c, md.dtype_name(t)) for c, t in schema.items()]


def schema_result(context, asset_key, schema: Mapping[str, pl.DataType]) -> AssetCheckResult:
    """Compare ``schema`` (what is being written) with the last materialization's column schema."""
    key = AssetKey.from_coercible(asset_key)
    now = _signature(schema)
    records = context.instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    code_version = context.assets_def.code_versions_by_key.get(key) if context.assets_def else None
    shown = MetadataValue.md("\n".join(f"- `{c}` {t}" for c, t in now))
    if not records:
        return result(key, SCHEMA_CHECK, True, "First materialization: nothing to compare with.", {"columns": shown})
    event = records[0].asset_materialization
    before = md.schema_signature(event.metadata.get(md.COLUMN_SCHEMA)) if event else None
    if before is None:
        return result(key, SCHEMA_CHECK, True, "The previous materialization recorded no column schema.", {"columns": shown})
    if before == now:
        return result(key, SCHEMA_CHECK, True, f"{len(now)} columns, unchanged.", {"columns": shown})
    added = [f"{c} {t}" for c, t in now if (c, t) not in before]
    removed = [f"{c} {t}" for c, t in before if (c, t) not in now]
    previous_version = (event.tags or {}).get(CODE_VERSION_TAG) if event else None
    meta = {
        "added_or_retyped": MetadataValue.json(added),
        "removed_or_retyped": MetadataValue.json(removed),
        "previous_code_version": str(previous_version),
        "code_version": str(code_version),
    }
    if previous_version is not None and code_version is not None and previous_version != code_version:
        return result(
            key, SCHEMA_CHECK, True, f"Schema changed with code_version {previous_version} -> {code_version}.", meta
        )
    return result(
        key,
        SCHEMA_CHECK,
        False,
        f"Column schema changed without a code_version change: added/retyped {added}, removed/retyped {removed}.",
        meta,
    )
