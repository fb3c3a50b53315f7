"""Pump signals: reading, validating and selecting the research set.

Landing-zone files: ``pump/signals/YYYY/MM/YYYY-MM-DD.csv``, one per UTC day, with the header
``signal_id,symbol,timestamp,total_score,rsi,volume_zscore,oi_change_pct``. ``timestamp`` is
ISO-8601 (``2025-01-05T13:45:12.345Z``; no offset means UTC) or Unix epoch seconds,
milliseconds or microseconds (told apart by magnitude). The filter attributes may be empty.

A warehouse table with the same columns (``timestamp`` a TIMESTAMP in UTC) serves the same rows.

Rows that break a rule are quarantined (left out and counted by rule), never silently dropped:
  ``null_value``          signal_id, symbol, timestamp or total_score is empty or unparseable
  ``invalid_symbol``      not upper-case letters and digits (2-30 characters)
  ``score_out_of_range``  total_score outside 100-900
  ``bad_attribute``       rsi outside 0-100, or a non-finite attribute
  ``wrong_date``          the timestamp is not on the file's UTC day
  ``duplicate_signal``    a signal_id seen earlier (the first row is kept)
A file whose header lacks a required column fails with ``bad_columns``; one whose rows mostly
lie on another UTC day fails with ``wrong_day``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from quant_assets.lib.input_errors import InputError
from quant_assets.lib.pump.schemas import SIGNALS_SCHEMA, UTC_MS

PREFIX = "pump/signals"
FILE_COLUMNS = ("signal_id", "symbol", "timestamp", "total_score", "rsi", "volume_zscore", "oi_change_pct")
REQUIRED = ("signal_id", "symbol", "timestamp", "total_score")
SCORE_MIN, SCORE_MAX = 100, 900
RULES = ("null_value", "invalid_symbol", "score_out_of_range", "bad_attribute", "wrong_date", "duplicate_signal")
SYMBOL_PATTERN = r"^[A-Z0-9]{2,30}$"


class SignalFileError(InputError):
    """A signal file that cannot be used; ``rule`` names the problem."""


def signals_key(day: dt.date) -> str:
    return f"{PREFIX}/{day:%Y}/{day:%m}/{day:%Y-%m-%d}.csv"


@dataclasses.dataclass
class ParsedSignals:
    rows: pl.DataFrame  # SIGNALS_SCHEMA
    rejected: pl.DataFrame  # the raw fields + rule
    rule_counts: dict[str, int]


def _timestamp(raw: pl.Series) -> pl.Series:
    """UTC milliseconds from ISO-8601 text or epoch numbers; null where it parses as neither."""
    text = raw.cast(pl.String).str.strip_chars()
    digits = text.str.contains(r"^\d+(\.\d+)?$")
    num = pl.when(digits).then(text).otherwise(None).cast(pl.Float64, strict=False)
    as_ms = pl.when(num >= 1e14).then(num / 1000.0).when(num >= 1e11).then(num).otherwise(num * 1000.0).round(0).cast(pl.Int64).cast(UTC_MS)
    iso = text.str.replace(r"Z$", "+00:00").str.to_datetime(time_unit="ms", time_zone="UTC", strict=False)
    return pl.select(pl.when(digits).then(as_ms.alias("x")).otherwise(iso)).to_series().alias("signal_ts")


def normalise(raw: pl.DataFrame, source: str, day: dt.date | None) -> ParsedSignals:
    """Type and validate signal rows (``timestamp`` may be text, numbers or a datetime)."""
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise SignalFileError(source, "bad_columns", f"missing column(s) {missing}; expected {list(FILE_COLUMNS)}")
    df = raw.with_row_index("_row")
    for c in ("rsi", "volume_zscore", "oi_change_pct"):
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    ts = df["timestamp"]
    if isinstance(ts.dtype, pl.Datetime):
        ts = (ts.dt.replace_time_zone("UTC") if ts.dtype.time_zone is None else ts).dt.cast_time_unit("ms")
        ts = ts.cast(UTC_MS).alias("signal_ts")
    else:
        ts = _timestamp(ts)
    typed = df.select(
        "_row",
        pl.col("signal_id").cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False).alias("signal_id"),
        pl.col("symbol").cast(pl.String).str.strip_chars().alias("symbol"),
        ts,
        pl.col("total_score").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("_score"),
        *[
            pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c)
            for c in ("rsi", "volume_zscore", "oi_change_pct")
        ],
        *[pl.col(c).cast(pl.String).alias(f"_raw_{c}") for c in ("rsi", "volume_zscore", "oi_change_pct")],
    )
    attr_bad = pl.lit(False)
    for c in ("rsi", "volume_zscore", "oi_change_pct"):
        # A non-empty field that did not parse, or parsed to nan/inf, is bad; an empty one is null.
        given = pl.col(f"_raw_{c}").is_not_null() & (pl.col(f"_raw_{c}").str.strip_chars() != "")
        attr_bad = attr_bad | (given & (pl.col(c).is_null() | ~pl.col(c).is_finite()))
    attr_bad = attr_bad | (pl.col("rsi") < 0) | (pl.col("rsi") > 100)
    rule = (
        pl.when(pl.any_horizontal(pl.col("signal_id", "symbol", "signal_ts", "_score").is_null()))
        .then(pl.lit("null_value"))
        .when(~pl.col("symbol").str.contains(SYMBOL_PATTERN))
        .then(pl.lit("invalid_symbol"))
        .when((pl.col("_score") < SCORE_MIN) | (pl.col("_score") > SCORE_MAX) | (pl.col("_score") != pl.col("_score").round(0)))
        .then(pl.lit("score_out_of_range"))
        .when(attr_bad.fill_null(False))
        .then(pl.lit("bad_attribute"))
    )
    if day is not None:
        rule = rule.when(pl.col("signal_ts").dt.date() != day).then(pl.lit("wrong_date"))
    typed = typed.with_columns(rule.otherwise(None).alias("_rule"))
    # Duplicates among otherwise valid rows: the first one wins.
    dup = typed["_rule"].is_null() & typed["signal_id"].is_duplicated() & ~typed.select(pl.col("signal_id").is_first_distinct()).to_series()
    typed = typed.with_columns(pl.when(dup).then(pl.lit("duplicate_signal")).otherwise(pl.col("_rule")).alias("_rule"))
    good = typed.filter(pl.col("_rule").is_null())
    rows = good.select(
        "signal_id",
        "symbol",
        "signal_ts",
        pl.col("_score").cast(pl.Int32).alias("total_score"),
        "rsi",
        "volume_zscore",
        "oi_change_pct",
    ).sort("signal_ts", "signal_id")
    bad_rows = typed.filter(pl.col("_rule").is_not_null())
    rejected = df.join(bad_rows.select("_row", "_rule"), on="_row").rename({"_rule": "rule"})
    rejected = rejected.select((pl.col("_row") + 2).alias("line"), *[pl.col(c).cast(pl.String) for c in raw.columns], "rule")
    counts = {r: 0 for r in RULES}
    for r, n in bad_rows.group_by("_rule").len().iter_rows():
        counts[r] = int(n)
    if day is not None and typed.height and counts["wrong_date"] * 2 > typed.height:
        other = typed.filter(pl.col("_rule") == "wrong_date")["signal_ts"].dt.date().mode().sort()[0]
        raise SignalFileError(
            source,
            "wrong_day",
            f"{counts['wrong_date']} of {typed.height} signals are not on {day} (most on {other}): the file holds another day's signals",
        )
    return ParsedSignals(rows.select(list(SIGNALS_SCHEMA)), rejected, counts)


def read_signals_csv(data: bytes, source: str, day: dt.date) -> ParsedSignals:
    """One day's signal file from the landing zone."""
    if not data.strip():
        raise SignalFileError(source, "empty_file", "the file is empty (no header)")
    try:
        raw = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as exc:
        raise SignalFileError(source, "bad_columns", f"not a CSV with the signal header ({str(exc).splitlines()[0]})") from None
    raw = raw.rename({c: c.strip() for c in raw.columns})
    return normalise(raw, source, day)


def score_band(score: int, width: int = 100) -> str:
    """``'300-400'`` for 300..399; 900 belongs to ``'800-900'``."""
    lo = min((int(score) - SCORE_MIN) // width * width + SCORE_MIN, SCORE_MAX - width)
    return f"{lo}-{lo + width}"


def score_band_expr(col: str = "total_score", width: int = 100) -> pl.Expr:
    lo = (((pl.col(col) - SCORE_MIN) // width) * width + SCORE_MIN).clip(upper_bound=SCORE_MAX - width)
    return pl.format("{}-{}", lo, lo + width)


@dataclasses.dataclass
class Selection:
    signals: pl.DataFrame
    outside_score: int
    duplicates: int


def select_research_set(signals: pl.DataFrame, *, min_score: int, max_score: int, dedup: bool, dedup_hours: float) -> Selection:
    """Signals with ``min_score <= total_score <= max_score``; with ``dedup``, a signal is
    dropped when an earlier kept signal of the same symbol fired less than ``dedup_hours``
    before it (its 24 h window would mostly repeat the earlier one)."""
    ordered = signals.sort("signal_ts", "signal_id")
    in_score = ordered.filter(pl.col("total_score").is_between(min_score, max_score))
    outside = ordered.height - in_score.height
    if not dedup or in_score.height == 0:
        return Selection(in_score, outside, 0)
    gap_ms = int(dedup_hours * 3_600_000)
    keep = []
    last_kept: dict[str, int] = {}
    for sym, ts in zip(in_score["symbol"].to_list(), in_score["signal_ts"].dt.epoch("ms").to_list()):
        prev = last_kept.get(sym)
        if prev is None or ts - prev >= gap_ms:
            last_kept[sym] = ts
            keep.append(True)
        else:
            keep.append(False)
    kept = in_score.filter(pl.Series(keep))
    return Selection(kept, outside, in_score.height - kept.height)


def signal_day_figures(parsed: ParsedSignals) -> dict:
    """A signal day's figures: rows read, kept, distinct symbols, quarantined (per rule), and
    ``rejected_share`` (quarantined / read)."""
    read = parsed.rows.height + parsed.rejected.height
    return {
        "rows_read": read,
        "signals": parsed.rows.height,
        "symbols": parsed.rows["symbol"].n_unique(),
        "rows_quarantined": parsed.rejected.height,
        **{f"quarantined/{rule}": n for rule, n in parsed.rule_counts.items()},
        "rejected_share": parsed.rejected.height / read if read else 0.0,
    }
