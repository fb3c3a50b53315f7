"""Asset-check building blocks shared by every domain.

Data-quality rules are declared on the asset itself (``check_specs=[...]``) and their results
are returned with the materialization (``MaterializeResult(value=..., check_results=[...])``),
so a rule is evaluated on exactly the data that was written. A rule whose failure would make
downstream work wrong is ``blocking``: a failed ERROR result stops the rest of the run.

``column_schema_unchanged`` is on every table asset: the columns and types written now must
equal those of the asset's previous materialization, unless the asset's ``code_version``
changed too (a deliberate change).

``AssetChecks`` is the one way an asset declares its checks and returns their results: its
``specs`` go into ``@asset(check_specs=...)`` and ``materialize`` / ``results`` refuse outcomes
that do not match the declared checks name for name, so an asset cannot declare a check it never
evaluates (or evaluate one it never declared). A non-blocking check warns (``WARN`` severity)
unless its outcome says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, AssetRecordsFilter, MaterializeResult, MetadataValue

from quant_assets.defs import metadata as md

SCHEMA_CHECK = "column_schema_unchanged"
NO_VALUE = object()  # materialize() without an output value (the asset writes its own files)
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


@dataclass(frozen=True)
class Check:
    """One data-quality rule of an asset: its name, what it asserts, whether a failure stops
    downstream steps."""

    name: str
    description: str
    blocking: bool = True


@dataclass(frozen=True)
class Outcome:
    """What one evaluation of a ``Check`` found. ``severity`` None: ERROR for a blocking check,
    WARN otherwise."""

    passed: bool
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    severity: AssetCheckSeverity | None = None


class AssetChecks:
    """The checks of one asset, declared once: ``specs`` for the decorator, ``results`` and
    ``materialize`` for the return value. ``schema`` adds ``column_schema_unchanged``."""

    def __init__(self, asset_key, *checks: Check, schema: bool = True):
        self.key = AssetKey.from_coercible(asset_key)
        self.checks = tuple(checks)
        self.schema = schema
        names = [c.name for c in self.checks] + ([SCHEMA_CHECK] if schema else [])
        if len(set(names)) != len(names):
            raise ValueError(f"{self.key.to_user_string()}: a check name is declared twice: {names}")

    @property
    def specs(self) -> list[AssetCheckSpec]:
        out = [spec(self.key, c.name, c.description, blocking=c.blocking) for c in self.checks]
        return out + ([schema_spec(self.key)] if self.schema else [])

    def results(
        self, context, outcomes: Mapping[str, Outcome] | None = None, *, schema: Mapping[str, pl.DataType] | None = None
    ) -> list[AssetCheckResult]:
        """One result per declared check the run selected (a run of a subset of a multi-asset's
        checks gets only those); ``outcomes`` must name exactly the declared checks (the schema
        check is computed here from ``schema``)."""
        outcomes = dict(outcomes or {})
        declared = {c.name for c in self.checks}
        where = self.key.to_user_string()
        if set(outcomes) != declared:
            missing, extra = sorted(declared - set(outcomes)), sorted(set(outcomes) - declared)
            raise ValueError(f"{where}: check outcomes do not match the declared checks (missing {missing}, undeclared {extra})")
        selected = self._selected(context)
        out = []
        for c in self.checks:
            if c.name not in selected:
                continue
            o = outcomes[c.name]
            severity = o.severity or (AssetCheckSeverity.ERROR if c.blocking else AssetCheckSeverity.WARN)
            out.append(result(self.key, c.name, o.passed, o.description, o.metadata, severity=severity))
        if self.schema and SCHEMA_CHECK in selected:
            if schema is None:
                raise ValueError(f"{where}: declares {SCHEMA_CHECK} but no schema was given")
            out.append(schema_result(context, self.key, schema))
        return out

    def _selected(self, context) -> set[str]:
        names = {c.name for c in self.checks} | ({SCHEMA_CHECK} if self.schema else set())
        chosen = getattr(context, "selected_asset_check_keys", None) if context is not None else None
        if chosen is None:
            return names
        return {k.name for k in chosen if k.asset_key == self.key} & names

    def materialize(
        self,
        context,
        value: Any = NO_VALUE,
        metadata: Mapping[str, Any] | None = None,
        outcomes: Mapping[str, Outcome] | None = None,
        *,
        schema: Mapping[str, pl.DataType] | None = None,
        asset_key: bool = False,
        data_version=None,
    ) -> MaterializeResult:
        """The asset's return value: ``value``, ``metadata`` and every declared check's result.
        The schema check compares ``schema`` (default: the schema of ``value``).
        ``asset_key`` names the asset in the result (for multi-assets); ``data_version`` sets
        the materialization's data version."""
        if schema is None and isinstance(value, pl.DataFrame):
            schema = value.schema
        kwargs = {} if value is NO_VALUE else {"value": value}
        return MaterializeResult(
            asset_key=self.key if asset_key else None,
            metadata=dict(metadata) if metadata else None,
            check_results=self.results(context, outcomes, schema=schema),
            data_version=data_version,
            **kwargs,
        )
