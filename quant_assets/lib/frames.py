"""Frame plumbing every domain shares: per-day figures of a partitioned table, stitching a
history read from the lake onto the rows of a run, splitting a table by day, counting values.

Plain polars, no Dagster: the asset layer turns what these return into metadata.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import polars as pl


def per_day_counts(
    frame: pl.DataFrame,
    days: Iterable[dt.date],
    figures: Mapping[str, pl.Expr] | None = None,
    *,
    date_col: str = "date",
    rows: str | None = "rows",
    by: str | None = None,
    by_values: Sequence[str] = (),
) -> dict[dt.date, dict[str, int]]:
    """Integer figures of each of ``days``: ``rows`` (the row count, under that name; None to
    leave it out) and one aggregate per ``figures`` entry (an expression reducing a day's rows to
    a number, e.g. ``pl.col("rsi_14").is_not_null().sum()``). A day without rows gets zeros.

    ``by`` splits every figure by that column's value: names become ``"<figure>/<value>"`` for
    each of ``by_values``.
    """
    figures = dict(figures or {})
    aggs = ([pl.len().alias(rows)] if rows else []) + [e.alias(n) for n, e in figures.items()]
    names = ([rows] if rows else []) + list(figures)
    keys = [date_col] + ([by] if by else [])
    found: dict = {}
    if frame.height and aggs:
        for row in frame.group_by(keys).agg(aggs).iter_rows(named=True):
            found[tuple(row[k] for k in keys)] = row
    out: dict[dt.date, dict[str, int]] = {}
    for day in days:
        if by is None:
            row = found.get((day,), {})
            out[day] = {n: int(row.get(n) or 0) for n in names}
        else:
            out[day] = {f"{n}/{v}": int(found.get((day, v), {}).get(n) or 0) for n in names for v in by_values}
    return out


def stitch(*frames: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Rows of ``frames`` one after another (e.g. the history read from the lake, then the run's
    own partitions), types relaxed to a common supertype; empty frames are skipped. With no rows
    at all, the last frame (its schema) is returned. ``columns`` selects first."""
    chosen = [f.select(columns) if columns is not None else f for f in frames]
    filled = [f for f in chosen if f.height]
    if not filled:
        return chosen[-1]
    return filled[0] if len(filled) == 1 else pl.concat(filled, how="vertical_relaxed")


def split_by_day(frame: pl.DataFrame, days: Iterable[dt.date], day: pl.Expr | str = "date") -> dict[str, pl.DataFrame]:
    """``{ISO day: its rows}`` for every one of ``days`` (an empty frame for a day without rows);
    ``day`` is the column or expression giving a row's day (it is not added to the rows)."""
    expr = pl.col(day) if isinstance(day, str) else day
    keyed = frame.with_columns(expr.alias("__day"))
    return {d.isoformat(): keyed.filter(pl.col("__day") == d).drop("__day") for d in days}


def value_counts(frame: pl.DataFrame, column: str) -> dict:
    """``{value: rows}`` of ``column``, in value order (empty for an empty frame)."""
    if not frame.height:
        return {}
    return dict(frame.group_by(column).len().sort(column).iter_rows())



def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """An upstream frame as it is, or an empty frame of ``schema`` when it has no columns at
    all (no upstream partition held rows)."""
    return pl.DataFrame(schema=dict(schema)) if frame.width == 0 else frame
