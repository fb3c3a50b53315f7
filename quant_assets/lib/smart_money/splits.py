"""Train / validation / test splits ordered by date.

Whole sample dates go to one split (every symbol of a date together), in date order: the
earliest dates until the training share is reached, then validation, then test -- so no
validation or test example is earlier than any training example. A date is cut where the
cumulative share of examples is nearest the target (70% / 85% by default).

Labels look 14 days ahead, so a training example whose label window reaches the first
validation date would have seen part of the validation period: such examples are purged
(likewise validation examples against the first test date). With monthly samples nothing is
purged; with denser schedules something is, and the count is reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from quant_assets.lib.knobs import knob
from quant_assets.lib.smart_money.dataset import HORIZON_DAYS, label_dates

SPLITS = ("train", "val", "test")


class SplitError(ValueError):
    """The dataset cannot be split as asked (too few dates, bad fractions)."""


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    """How :func:`time_split` shares the examples out, earliest dates first."""

    train_fraction: float = knob(0.70, "Share of examples (earliest dates) for training.", gt=0, lt=1)
    val_fraction: float = knob(0.15, "Share of examples (next dates) for validation.", gt=0, lt=1)
    test_fraction: float = knob(0.15, "Share of examples (latest dates) for testing.", gt=0, lt=1)


@dataclasses.dataclass
class SplitReport:
    rows: dict[str, int]
    dates: dict[str, tuple[dt.date, dt.date]]
    purged: dict[str, int]


def _cut(cum: list[int], target: float, lo: int) -> int:
    """Index of the last date of a split: cumulative rows nearest ``target``, at least ``lo``."""
    best, best_gap = lo, float("inf")
    for i in range(lo, len(cum)):
        gap = abs(cum[i] - target)
        if gap < best_gap:
            best, best_gap = i, gap
    return best


def time_split(
    dataset: pl.DataFrame,
    train_fraction: float = SplitFractions.train_fraction,
    val_fraction: float = SplitFractions.val_fraction,
    test_fraction: float = SplitFractions.test_fraction,
    horizon_days: int = HORIZON_DAYS,
) -> tuple[pl.DataFrame, SplitReport]:
    """``dataset`` with a ``split`` column (train / val / test), purged rows removed."""
    total = train_fraction + val_fraction + test_fraction
    if min(train_fraction, val_fraction, test_fraction) <= 0 or abs(total - 1.0) > 1e-6:
        raise SplitError(
            f"fractions must be positive and sum to 1, got {train_fraction}/{val_fraction}/{test_fraction}"
        )
    per_date = dataset.group_by("date").len().sort("date")
    dates = per_date["date"].to_list()
    if len(dates) < 3:
        raise SplitError(f"the dataset has {len(dates)} sample date(s); a time-ordered split needs at least 3")
    counts = per_date["len"].to_list()
    cum, running = [], 0
    for c in counts:
        running += c
        cum.append(running)
    n = cum[-1]
    # Leave at least one date for each later split.
    last_train = min(_cut(cum, train_fraction * n, 0), len(dates) - 3)
    last_val = min(_cut(cum, (train_fraction + val_fraction) * n, last_train + 1), len(dates) - 2)
    train_end, val_end = dates[last_train], dates[last_val]
    first_val, first_test = dates[last_train + 1], dates[last_val + 1]
    split = (
        pl.when(pl.col("date") <= train_end)
        .then(pl.lit("train"))
        .when(pl.col("date") <= val_end)
        .then(pl.lit("val"))
        .otherwise(pl.lit("test"))
    )
    out = dataset.with_columns(split.alias("split"))
    unique_dates = out["date"].unique().sort().to_list()
    ends = dict(zip(unique_dates, label_dates(unique_dates, horizon_days), strict=True))
    label_end = out["date"].replace_strict(ends, return_dtype=pl.Date)
    leaks = ((out["split"] == "train") & (label_end >= first_val)) | ((out["split"] == "val") & (label_end >= first_test))
    purged = {s: int((leaks & (out["split"] == s)).sum()) for s in SPLITS}
    out = out.filter(~leaks)
    rows = {s: int((out["split"] == s).sum()) for s in SPLITS}
    span = {}
    for s in SPLITS:
        part = out.filter(pl.col("split") == s)["date"]
        if part.len() == 0:
            raise SplitError(f"the {s} split is empty after purging overlapping label windows")
        span[s] = (part.min(), part.max())
    return out, SplitReport(rows=rows, dates=span, purged=purged)


def by_split(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``{split: its rows}`` for train, val and test (in that order)."""
    return {s: frame.filter(pl.col("split") == s) for s in SPLITS}


def bullish_shares(frame: pl.DataFrame) -> dict[str, float]:
    """Share of label = 1 in each split (4 decimals)."""
    return {s: round(float(part["label"].mean()), 4) for s, part in by_split(frame).items()}
