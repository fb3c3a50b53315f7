"""Quarantined rows in the lake: each partition's rejected rows beside it, and the
``quarantine_share`` check every vendor file is held to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from dagster import MetadataValue

from quant_assets.defs import checks as qc
from quant_assets.defs.resources import Lake
from quant_assets.lib import quarantine


def keep_rejected(lake: Lake, key: str, rejected: pl.DataFrame) -> dict[str, Any]:
    """Store a partition's rejected rows at ``key`` (``quarantine_file`` metadata), or remove an
    old quarantine file when the partition is clean now (a re-published file clears it)."""
    if rejected.height:
        lake.write_frame(key, rejected)
        return {"quarantine_file": MetadataValue.path(lake.describe(key))}
    if lake.exists(key):
        lake.delete(key)
    return {}


def share_outcome(reports: Sequence[Any], limit: float, metadata: Mapping[str, Any], over_row) -> qc.Outcome:
    """The ``quarantine_share`` outcome: passes when no file quarantined more than ``limit`` of
    its rows. ``metadata`` comes first, then ``files_over_limit`` (``over_row(report)`` each,
    at most 50)."""
    over, _, verdict = quarantine.over_limit(reports, limit)
    return qc.Outcome(not over, verdict, {**metadata, "files_over_limit": MetadataValue.json([over_row(r) for r in over[:50]])})
