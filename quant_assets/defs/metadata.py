"""What every asset of every domain shows in the Dagster UI, built in one place.

Conventions (the market group sets them; every domain follows):

* ``asset_kwargs(domain, layer=..., kinds=..., code_version=...)`` gives an asset its group,
  owners, kinds, tags and code version. Bump ``code_version`` whenever the asset's logic changes
  what it writes, so Dagster can tell stale partitions from current ones.
* Column descriptions (units included) live beside the maths in ``lib`` as a ``COLUMN_DOCS``
  mapping; ``table_definition_metadata`` turns them into the standard ``dagster/column_schema``
  of the asset definition, and the lake IO manager repeats it, with the real column types, on
  every materialization.
* Every materialized partition carries its own figures: ``dagster/row_count``,
  ``dagster/column_schema``, ``dagster/uri`` (the file), ``bytes`` and a Markdown ``preview``.
  A range run records each partition's own figures (``per_partition``); totals of a run go to
  the run's log, never onto every partition.
* A partition that holds nothing on purpose (a market holiday) says so: row count 0 and
  ``no_data`` = True with a ``no_data_reason``.

Only keys without a standard Dagster equivalent are custom.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
URI = "dagster/uri"
TABLE_NAME = "dagster/table_name"
PARTITION_COLUMN = "partition_column"

# Owners shown in the catalog; a team handle is what a user can act on.
OWNERS: dict[str, list[str]] = {
    "market": ["team:market-data"],
    "research": ["team:quant-research"],
    "client_intel": ["team:client-intelligence"],
    "smart_money": ["team:smart-money"],
    "pump": ["team:crypto-research"],
}
# Where an asset sits in its domain's flow: vendor data as delivered, cleaned tables, derived
# research tables, models and their evaluations, or a load into the SQL warehouse.
LAYERS = ("raw", "curated", "features", "labels", "dataset", "model", "analysis", "warehouse")


def asset_kwargs(
    domain: str,
    *,
    layer: str,
    kinds: set[str],
    code_version: str,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments shared by every ``@asset`` of ``domain``."""
    if domain not in OWNERS:
        raise ValueError(f"unknown domain {domain!r}; known: {sorted(OWNERS)}")
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; known: {LAYERS}")
    return {
        "group_name": domain,
        "owners": list(OWNERS[domain]),
        "kinds": set(kinds),
        "code_version": code_version,
        "tags": {"domain": domain, "layer": layer, **(tags or {})},
    }


def dtype_name(dtype: pl.DataType) -> str:
    """A short, stable type name for the UI (``Datetime(ns, America/New_York)``, ``Enum``...)."""
    if isinstance(dtype, pl.Datetime):
        return f"datetime[{dtype.time_unit}{', ' + dtype.time_zone if dtype.time_zone else ''}]"
    if isinstance(dtype, pl.Enum):
        return "enum(" + ", ".join(dtype.categories.to_list()) + ")"
    if isinstance(dtype, pl.List):
        return f"list[{dtype_name(dtype.inner)}]"
    return str(dtype).lower()


def column_schema(schema: Mapping[str, pl.DataType], docs: Mapping[str, str]) -> TableSchema:
    """A ``TableSchema`` with a description for every column; an undocumented column is an error."""
    missing = [c for c in schema if c not in docs]
    if missing:
        raise KeyError(f"columns without a description: {missing}")
    return TableSchema(
        columns=[TableColumn(name=c, type=dtype_name(t), description=docs[c]) for c, t in schema.items()]
    )


def table_definition_metadata(
    schema: Mapping[str, pl.DataType],
    docs: Mapping[str, str],
    *,
    partition_column: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Definition metadata of a table asset: its documented column schema (shown on the asset's
    page before anything is materialized) and, for range-capable assets, the column that splits
    a range output into partitions."""
    meta: dict[str, Any] = {COLUMN_SCHEMA: MetadataValue.table_schema(column_schema(schema, docs))}
    if partition_column is not None:
        meta[PARTITION_COLUMN] = partition_column
    meta.update(extra)
    return meta


def docs_from_definition(definition_metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Column descriptions declared on an asset definition (empty when it declares none)."""
    value = (definition_metadata or {}).get(COLUMN_SCHEMA)
    schema = getattr(value, "schema", value)
    if not isinstance(schema, TableSchema):
        return {}
    return {c.name: c.description or "" for c in schema.columns}


def markdown_preview(df: pl.DataFrame, n: int = 5) -> str:
    """The first ``n`` rows as a Markdown table."""
    if not df.width:
        return "(no columns)"
    if not df.height:
        return "(no rows)"
    head = df.head(n)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * head.width]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else _cell(v) for v in row) + " |")
    if df.height > n:
        lines.append(f"\n{df.height - n:,} more row(s)")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("|", "\\|")


def frame_metadata(
    df: pl.DataFrame,
    docs: Mapping[str, str],
    *,
    uri: str | None = None,
    bytes_written: int | None = None,
    preview_rows: int = 5,
) -> dict[str, Any]:
    """The standard figures of one stored table (one partition, or an unpartitioned asset)."""
    meta: dict[str, Any] = {
        ROW_COUNT: int(df.height),
        COLUMN_SCHEMA: MetadataValue.table_schema(
            TableSchema(
                columns=[
                    TableColumn(name=c, type=dtype_name(t), description=docs.get(c) or None)
                    for c, t in df.schema.items()
                ]
            )
        ),
        "preview": MetadataValue.md(markdown_preview(df, preview_rows)),
    }
    if uri is not None:
        meta[URI] = MetadataValue.path(uri)
    if bytes_written is not None:
        meta["bytes"] = int(bytes_written)
    return meta


def no_data(reason: str) -> dict[str, Any]:
    """Marks a partition that holds nothing on purpose (e.g. a market holiday)."""
    return {"no_data": True, "no_data_reason": reason}


def schema_signature(value: Any) -> list[tuple[str, str]] | None:
    """``[(column, type), ...]`` of a ``dagster/column_schema`` metadata value, for comparisons."""
    schema = getattr(value, "schema", value)
    if not isinstance(schema, TableSchema):
        return None
    return [(c.name, c.type) for c in schema.columns]


def per_partition(context, metadata_by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Attach each partition's own metadata to its materialization (works for one partition and
    for a range run alike)."""
    for key, meta in metadata_by_partition.items():
        if meta:
            context.add_asset_metadata(dict(meta), partition_key=key)


def per_day(
    context,
    figures: Mapping[dt.date, Mapping[str, Any]],
    *,
    closed: Callable[[dt.date], str | None] | None = None,
    each: Callable[[dt.date], Mapping[str, Any]] | None = None,
    **common: Any,
) -> None:
    """Each day's ``figures``, then ``each(day)``'s and the ``common`` ones, onto that day's
    partition; a day for which ``closed`` gives a reason is marked ``no_data`` with it."""
    out = {}
    for day, values in figures.items():
        reason = closed(day) if closed else None
        out[day.isoformat()] = {**values, **(each(day) if each else {}), **common, **(no_data(reason) if reason else {})}
    per_partition(context, out)
