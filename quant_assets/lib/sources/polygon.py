"""Polygon (Massive) flat files: ``us_stocks_sip/{day,minute}_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz``.

Each file is a gzip CSV with the header ``ticker,volume,open,close,high,low,window_start,transactions``
and ``window_start`` in Unix nanoseconds. Prices are unadjusted.

Bad input policy (one rule name per problem; the asset metadata reports a count per rule):

fail the run, naming the file (and line / column where there is one); the partition keeps
whatever it held before:
  ``corrupt_gzip``        truncated stream or checksum mismatch
  ``missing_header``      empty file
  ``missing_columns``     a required column is absent or renamed
  ``extra_columns``       an unknown column appeared (a vendor schema change; opt in with
                          ``allow_extra_columns`` to load while ignoring it)
  ``unparseable_value``   a value that is not a number where one is required
  ``empty_file``          a trading session's file with a header and no usable rows
  ``too_few_rows``        fewer usable rows than ``min_rows_ratio`` x the median of the previous
                          sessions (a truncated or partial publication that still parses)

quarantine the row (kept in a quarantine table with its line number, never silently dropped):
  ``malformed_row``          the line has more than the header's 8 fields (an unquoted comma,
                             a quoted field spanning lines); its raw text is kept
  ``null_value``             a required field is empty (a line with too few fields reads so)
  ``invalid_ticker``         a ticker with a quote, a space or a control character, or longer
                             than 16 characters
  ``non_finite_price``       NaN or infinite open/high/low/close
  ``non_positive_price``     a price <= 0
  ``implausible_value``      a value that parses but cannot be real: a price above
                             ``Bounds.max_price`` USD, a volume above ``Bounds.max_volume`` shares
                             or more than ``Bounds.max_transactions`` trades in one bar
  ``high_below_low``         high < low
  ``open_close_outside_range`` open or close outside [low, high]
  ``negative_volume``        volume or transactions < 0
  ``wrong_date``             ``window_start`` is not on the file's trading date (New York time)
  ``duplicate_row``          an exact copy of an earlier row (the first copy is kept)
  ``conflicting_duplicate``  several different rows for one (ticker, window_start); all are
                             quarantined because none can be trusted over the others

Line numbers are physical lines of the decompressed file (the header is line 1). Polygon never
quotes fields, so the file is read without quote processing: a quote character is data (and
makes its ticker invalid), and a record can never span lines.

The asset check ``quarantine_share`` (not this module) judges whether a file's quarantined share
is acceptable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import zlib

import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.knobs import check_knobs, knob

COLUMNS: tuple[str, ...] = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "volume": pl.Int64(),
    "open": pl.Float64(),
    "close": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "window_start": pl.Int64(),
    "transactions": pl.Int64(),
}
PRICE_COLUMNS = ("open", "high", "low", "close")
LINE = "line"  # 1-based line number in the source file (the header is line 1)

DAY_PREFIX = "us_stocks_sip/day_aggs_v1"
MINUTE_PREFIX = "us_stocks_sip/minute_aggs_v1"

QUARANTINE_RULES = (
    "malformed_row",
    "null_value",
    "invalid_ticker",
    "non_finite_price",
    "non_positive_price",
    "implausible_value",
    "high_below_low",
    "open_close_outside_range",
    "negative_volume",
    "wrong_date",
    "duplicate_row",
    "conflicting_duplicate",
)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Largest values a bar can plausibly carry; anything above is ``implausible_value``.

    The defaults sit far above anything a US equity has printed (Berkshire A trades near
    $750,000; the busiest names trade a few billion shares a day) and far below where sums over
    weeks and minutes could overflow Int64.
    """

    max_price: float = knob(10_000_000.0, "Quarantine bars with a price above this many USD (rule implausible_value).", gt=0)
    max_volume: int = knob(100_000_000_000, "Quarantine bars with more shares than this (rule implausible_value).", gt=0)
    max_transactions: int = knob(1_000_000_000, "Quarantine bars with more trades than this (rule implausible_value).", gt=0)

    def __post_init__(self) -> None:
        check_knobs(self)


DEFAULT_BOUNDS = Bounds()
TICKER_PATTERN = r'^[^\s",\x00-\x1f\x7f]{1,16}$'
FIELD_COUNT = len(COLUMNS)


def day_aggs_key(day: dt.date | str) -> str:
    d = cal.as_date(day)
    return f"{DAY_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


def minute_aggs_key(day: dt.date | str) -> str:
    d = cal.as_date(day)
    return f"{MINUTE_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


def parse_key(key: str) -> tuple[str, dt.date] | None:
    """``("day" | "minute", date)`` for a flat-file key, ``None`` for anything else."""
    for kind, prefix in (("day", DAY_PREFIX), ("minute", MINUTE_PREFIX)):
        if key.startswith(prefix + "/") and key.endswith(".csv.gz"):
            name = key.rsplit("/", 1)[-1][: -len(".csv.gz")]
            try:
                day = dt.date.fromisoformat(name)
            except ValueError:
                return None
            # The folder must agree with the file name, or it is not a vendor file.
            if key != (day_aggs_key(day) if kind == "day" else minute_aggs_key(day)):
                return None
            return kind, day
    return None


# A session's file with fewer usable rows than this share of the previous sessions' median fails.
MIN_ROWS_RATIO = 0.5


class PolygonFileError(ValueError):
    """A flat file that cannot be loaded. The message names the file, the rule and where."""

    def __init__(self, source: str, rule: str, detail: str, line: int | None = None):
        self.source, self.rule, self.detail, self.line = source, rule, detail, line
        where = f" line {line}" if line is not None else ""
        super().__init__(f"{source}{where}: [{rule}] {detail}")


@dataclasses.dataclass
class ValidatedAggs:
    """Rows that passed every rule, the rows that did not, and a count per rule."""

    rows: pl.DataFrame
    rejected: pl.DataFrame
    rule_counts: dict[str, int]
    rows_read: int
    ignored_columns: list[str]


RAW = "raw"  # the raw text of a malformed line in the quarantine table


def read_aggs_csv(data: bytes, source: str, *, allow_extra_columns: bool = False) -> tuple[pl.DataFrame, list[str], pl.DataFrame]:
    """Decode one flat file into typed columns plus ``line``; raise :class:`PolygonFileError`.

    Returns (rows, ignored extra columns, malformed lines as ``line, raw``).
    """
    if not data:
        raise PolygonFileError(source, "missing_header", "the file is empty")
    try:
        header_df = pl.read_csv(data, n_rows=0, quote_char=None)
    except Exception as exc:  # noqa: BLE001 - polars raises OSError/ComputeError/NoDataError
        raise _decode_error(source, exc) from None
    found = list(header_df.columns)
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        raise PolygonFileError(
            source,
            "missing_columns",
            f"missing column(s) {missing}; found {found}; expected {list(COLUMNS)}",
            line=1,
        )
    extra = [c for c in found if c not in COLUMNS]
    if extra and not allow_extra_columns:
        raise PolygonFileError(
            source,
            "extra_columns",
            f"unexpected column(s) {extra} (vendor schema change?); expected {list(COLUMNS)}. "
            "Set allow_extra_columns to load while ignoring them.",
            line=1,
        )
    try:
        df = pl.read_csv(
            data,
            columns=list(COLUMNS),
            schema_overrides=SCHEMA,
            row_index_name=LINE,
            row_index_offset=2,
            quote_char=None,
        )
        return df.with_columns(pl.col(LINE).cast(pl.Int64)), extra, _empty_malformed()
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, OSError):
            raise _decode_error(source, exc) from None
    # Slow path, only for files polars cannot read as they are: split into physical lines, set
    # aside lines with the wrong number of fields, parse the rest keeping their line numbers.
    return _read_line_by_line(data, source, found)


def _read_line_by_line(data: bytes, source: str, header: list[str]) -> tuple[pl.DataFrame, list[str], pl.DataFrame]:
    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise _decode_error(source, exc) from None
    lines = text.split(b"\n")
    width = len(header)
    good_lines: list[bytes] = [lines[0].rstrip(b"\r")]
    good_numbers: list[int] = []
    bad_numbers: list[int] = []
    bad_raw: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip(b"\r")
        if not line:
            continue
        if line.count(b",") + 1 == width:
            good_lines.append(line)
            good_numbers.append(number)
        else:
            bad_numbers.append(number)
            bad_raw.append(line.decode("utf-8", errors="replace"))
    body = b"\n".join(good_lines) + b"\n"
    numbers = pl.Series(LINE, good_numbers, dtype=pl.Int64)
    try:
        df = pl.read_csv(body, columns=list(COLUMNS), schema_overrides=SCHEMA, quote_char=None)
    except Exception as exc:  # noqa: BLE001
        raise _locate_parse_error(body, numbers, source, exc) from None
    malformed = pl.DataFrame({LINE: bad_numbers, RAW: bad_raw}, schema={LINE: pl.Int64, RAW: pl.String})
    return df.with_columns(numbers), [c for c in header if c not in COLUMNS], malformed


def _decode_error(source: str, exc: Exception) -> PolygonFileError:
    text = str(exc)
    if "gzip" in text or "end of file" in text or "checksum" in text or isinstance(exc, (OSError, EOFError, zlib.error)):
        return PolygonFileError(source, "corrupt_gzip", f"cannot decompress: {text}")
    if "empty" in text.lower():
        return PolygonFileError(source, "missing_header", "the file has no header")
    return PolygonFileError(source, "corrupt_gzip", f"cannot decode: {text}")


def _locate_parse_error(body: bytes, numbers: pl.Series, source: str, exc: Exception) -> PolygonFileError:
    """Re-read as text to name the first line and column that does not parse (slow path, errors only)."""
    raw = pl.read_csv(body, columns=list(COLUMNS), infer_schema=False, quote_char=None).with_columns(numbers)
    for col, dtype in SCHEMA.items():
        if dtype == pl.String():
            continue
        bad = raw.filter(pl.col(col).is_not_null() & pl.col(col).cast(dtype, strict=False).is_null())
        if bad.height:
            return PolygonFileError(
                source,
                "unparseable_value",
                f"column {col!r} value {bad[col][0]!r} is not a valid {dtype} ({bad.height} such row(s))",
                line=int(bad[LINE][0]),
            )
    return PolygonFileError(source, "unparseable_value", str(exc).splitlines()[0])


def validate_aggs(
    df: pl.DataFrame,
    source: str,
    day: dt.date,
    *,
    bounds: Bounds = DEFAULT_BOUNDS,
    ignored_columns: list[str] | None = None,
    malformed: pl.DataFrame | None = None,
) -> ValidatedAggs:
    """Apply the quarantine rules; return clean rows sorted by (ticker, window_start)."""
    malformed = _empty_malformed() if malformed is None else malformed
    rows_read = df.height + malformed.height
    lo = cal.ny_midnight_ns(day)
    hi = cal.ny_midnight_ns(day + dt.timedelta(days=1))

    # Sorting is skipped when the vendor already sorted the file (the usual case).
    key_order_ok = (pl.col("ticker") > pl.col("ticker").shift(1)) | (
        (pl.col("ticker") == pl.col("ticker").shift(1)) & (pl.col("window_start") >= pl.col("window_start").shift(1))
    )
    if df.height > 1 and not bool(df.select(key_order_ok.slice(1).all()).item()):
        df = df.sort(["ticker", "window_start", LINE])

    prices = [pl.col(c) for c in PRICE_COLUMNS]
    rule_exprs: list[tuple[str, pl.Expr]] = [
        ("null_value", pl.any_horizontal([pl.col(c).is_null() for c in COLUMNS])),
        ("invalid_ticker", _invalid_ticker(df)),
        ("non_finite_price", pl.any_horizontal([~p.is_finite() for p in prices])),
        ("non_positive_price", pl.any_horizontal([p <= 0 for p in prices])),
        (
            "implausible_value",
            pl.any_horizontal([p > bounds.max_price for p in prices])
            | (pl.col("volume") > bounds.max_volume)
            | (pl.col("transactions") > bounds.max_transactions),
        ),
        ("high_below_low", pl.col("high") < pl.col("low")),
        (
            "open_close_outside_range",
            pl.any_horizontal(
                [pl.col(c) < pl.col("low") for c in ("open", "close")]
                + [pl.col(c) > pl.col("high") for c in ("open", "close")]
            ),
        ),
        ("negative_volume", (pl.col("volume") < 0) | (pl.col("transactions") < 0)),
        ("wrong_date", (pl.col("window_start") < lo) | (pl.col("window_start") >= hi)),
    ]
    same_key_as_prev = (pl.col("ticker") == pl.col("ticker").shift(1)) & (
        pl.col("window_start") == pl.col("window_start").shift(1)
    )
    counts = {r: 0 for r in QUARANTINE_RULES}
    counts["malformed_row"] = malformed.height
    # Clean files (the usual case) are confirmed with one pass before any per-rule column is built.
    any_rule = pl.any_horizontal([expr.fill_null(True) for _, expr in rule_exprs] + [same_key_as_prev.fill_null(False)])
    if not bool(df.select(any_rule.any()).item()):
        return ValidatedAggs(df, _with_malformed(_empty_rejected(), malformed), counts, rows_read, list(ignored_columns or []))
    flagged = df.with_columns(
        [expr.fill_null(True).alias(f"_r_{name}") for name, expr in rule_exprs]
        + [same_key_as_prev.fill_null(False).alias("_dup_key")]
    )

    if bool(flagged["_dup_key"].any()):
        flagged = _flag_duplicates(flagged)
    else:
        flagged = flagged.with_columns(
            pl.lit(False).alias("_r_duplicate_row"), pl.lit(False).alias("_r_conflicting_duplicate")
        )

    row_rules = [r for r in QUARANTINE_RULES if r != "malformed_row"]
    rule_cols = [f"_r_{r}" for r in row_rules]
    # First failing rule names the row's reason; the order of QUARANTINE_RULES is the priority.
    reason = pl.when(pl.col(rule_cols[0])).then(pl.lit(row_rules[0]))
    for rule, col in zip(row_rules[1:], rule_cols[1:]):
        reason = reason.when(pl.col(col)).then(pl.lit(rule))
    any_bad = pl.any_horizontal([pl.col(c) for c in rule_cols])

    bad_mask = flagged.select(any_bad).to_series()
    # Reached only when some rule fired; with_columns/over keep row order, so the mask lines up with ``df``.
    rejected = flagged.filter(bad_mask).with_columns(reason.alias("rule")).select([LINE, *COLUMNS, "rule"])
    clean = df.filter(~bad_mask)
    for rule, n in rejected.group_by("rule").len().iter_rows():
        counts[rule] = int(n)
    return ValidatedAggs(clean, _with_malformed(rejected, malformed), counts, rows_read, list(ignored_columns or []))


def _invalid_ticker(df: pl.DataFrame) -> pl.Expr:
    # Judged once per distinct ticker (a few thousand), not per row (millions of minute bars).
    tickers = df.get_column("ticker").unique().drop_nulls()
    invalid = tickers.filter(~tickers.str.contains(TICKER_PATTERN))
    return pl.col("ticker").is_in(invalid.implode()) if invalid.len() else pl.lit(False)


def require_rows(parsed: ValidatedAggs, source: str, reference_rows: int | None, min_ratio: float) -> None:
    """Refuse a file that parses but carries nothing, or implausibly little.

    ``reference_rows`` is the median row count of the previous sessions (None when there are
    none yet); the file needs at least ``min_ratio`` of it. A file with no usable rows always
    fails.
    """
    n = parsed.rows.height
    if n == 0:
        detail = (
            "the file has a header and no rows"
            if parsed.rows_read == 0
            else f"all {parsed.rows_read} rows were quarantined"
        )
        raise PolygonFileError(source, "empty_file", f"{detail}; a trading session's file must carry bars")
    if reference_rows and min_ratio > 0 and n < min_ratio * reference_rows:
        raise PolygonFileError(
            source,
            "too_few_rows",
            f"{n:,} usable rows, fewer than min_rows_ratio={min_ratio:g} x {reference_rows:,} (the median of "
            "the previous sessions); a partial publication? Raise the threshold in the launchpad if this is real",
        )


def _flag_duplicates(flagged: pl.DataFrame) -> pl.DataFrame:
    # Rows of one (ticker, window_start) are adjacent after sorting; a group is "conflicting"
    # when any two neighbours in it differ in a value column.
    values = [c for c in COLUMNS if c not in ("ticker", "window_start")]
    same_values_as_prev = pl.all_horizontal([pl.col(c).eq_missing(pl.col(c).shift(1)) for c in values])
    return (
        flagged.with_columns((~pl.col("_dup_key")).cum_sum().alias("_grp"))
        .with_columns(
            (pl.col("_dup_key") & ~same_values_as_prev.fill_null(False)).alias("_conflict_step"),
            pl.len().over("_grp").alias("_grp_n"),
        )
        .with_columns(pl.col("_conflict_step").any().over("_grp").alias("_grp_conflict"))
        .with_columns(
            (pl.col("_dup_key") & ~pl.col("_grp_conflict")).alias("_r_duplicate_row"),
            (pl.col("_grp_conflict") & (pl.col("_grp_n") > 1)).alias("_r_conflicting_duplicate"),
        )
        .drop("_grp", "_conflict_step", "_grp_n", "_grp_conflict")
    )


def _empty_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema={LINE: pl.Int64, **SCHEMA, "rule": pl.String, RAW: pl.String})


def _empty_malformed() -> pl.DataFrame:
    return pl.DataFrame(schema={LINE: pl.Int64, RAW: pl.String})


def _with_malformed(rejected: pl.DataFrame, malformed: pl.DataFrame) -> pl.DataFrame:
    """The quarantine table: typed rejected rows plus malformed lines (raw text only)."""
    if RAW not in rejected.columns:
        rejected = rejected.with_columns(pl.lit(None, dtype=pl.String).alias(RAW))
    if not malformed.height:
        return rejected
    extra = malformed.with_columns(pl.lit("malformed_row").alias("rule"))
    return pl.concat([rejected, extra], how="diagonal_relaxed").sort(LINE)


def load_aggs(
    data: bytes,
    source: str,
    day: dt.date,
    *,
    allow_extra_columns: bool = False,
    bounds: Bounds = DEFAULT_BOUNDS,
) -> ValidatedAggs:
    """Read and validate one flat file (day or minute)."""
    df, extra, malformed = read_aggs_csv(data, source, allow_extra_columns=allow_extra_columns)
    return validate_aggs(df, source, day, bounds=bounds, ignored_columns=extra, malformed=malformed)


@dataclasses.dataclass
class FileReport:
    """What one landing file gave: the figures of its partition."""

    day: dt.date
    source: str
    etag: str
    rows_read: int
    rows: int
    quarantined: dict[str, int]
    ignored_columns: list[str] = dataclasses.field(default_factory=list)
    tickers: int = 0

    @property
    def share(self) -> float:
        """Quarantined rows as a fraction of the rows read."""
        return sum(self.quarantined.values()) / self.rows_read if self.rows_read else 0.0

    def figures(self) -> dict:
        """The partition's own figures (only the quarantine rules that fired)."""
        return {
            "rows_read": self.rows_read,
            "rows_quarantined": sum(self.quarantined.values()),
            "quarantine_share": round(self.share, 6),
            **{f"quarantined/{rule}": n for rule, n in self.quarantined.items() if n},
            "ignored_columns": list(self.ignored_columns),
            "tickers": self.tickers,
        }


@dataclasses.dataclass
class IngestRun:
    """The flat files of a run, read and validated: the typed rows of every file, a report
    per file, the quarantined rows per day, and the holidays without a file."""

    table: pl.DataFrame
    reports: list[FileReport]
    rejected: dict[dt.date, pl.DataFrame]
    holidays: list[dt.date]


def ingest_days(
    files: dict,
    read,
    describe,
    *,
    key_of,
    to_table,
    empty: pl.DataFrame,
    reference_rows,
    allow_extra_columns: bool = False,
    bounds: Bounds = DEFAULT_BOUNDS,
    min_rows_ratio: float = MIN_ROWS_RATIO,
) -> IngestRun:
    """Read, validate and type the flat file of every day of ``files`` ({day: the file's stat
    with an ``etag``, or None when absent}); ``read(key)`` gives a file's bytes, ``describe(key)``
    its name in messages, ``to_table(rows, day)`` the typed table.

    A session without a file, an unreadable file or one with too few rows (against
    ``reference_rows(day, rows_so_far)``, see :func:`require_rows`) raises
    :class:`PolygonFileError` before anything is returned, so a caller writes all of a run or
    none of it. A holiday without a file is listed in ``holidays``; an empty holiday file is
    not held to the row-count rule.
    """
    frames, reports, rejected, holidays, rows_by_day = [], [], {}, [], {}
    for day, info in files.items():
        key = key_of(day)
        source = describe(key)
        if info is None:
            if not cal.is_trading_day(day):
                holidays.append(day)
                continue
            raise PolygonFileError(source, "missing_file", f"no file for trading session {day} (not published yet, or missing from the landing zone)")
        parsed = load_aggs(read(key), source, day, allow_extra_columns=allow_extra_columns, bounds=bounds)
        if cal.is_trading_day(day) or parsed.rows.height:
            require_rows(parsed, source, reference_rows(day, rows_by_day), min_rows_ratio)
        rows_by_day[day] = parsed.rows.height
        tickers = int(parsed.rows["ticker"].n_unique()) if parsed.rows.height else 0
        reports.append(FileReport(day, source, info.etag, parsed.rows_read, parsed.rows.height, parsed.rule_counts, list(parsed.ignored_columns), tickers))
        rejected[day] = parsed.rejected
        frames.append(to_table(parsed.rows, day))
    table = pl.concat(frames) if frames else empty
    return IngestRun(table, reports, rejected, holidays)
