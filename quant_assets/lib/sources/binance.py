"""Binance aggregate trades: data.binance.vision daily zips and the REST ``aggTrades`` endpoint.

Daily zips (the landing zone mirrors this tree; ``https://data.binance.vision`` serves it)::

    data/futures/um/daily/aggTrades/SYM/SYM-aggTrades-YYYY-MM-DD.zip       (+ .zip.CHECKSUM)
    data/spot/daily/aggTrades/SYM/SYM-aggTrades-YYYY-MM-DD.zip

Each zip holds one CSV, ``SYM-aggTrades-YYYY-MM-DD.csv``, with the columns ``agg_trade_id,
price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker`` (spot adds
``is_best_match``). Futures files carry that header line, spot files have none; booleans are
``true``/``false`` (futures) or ``True``/``False`` (spot); ``transact_time`` is Unix
milliseconds, except spot files from 2025-01-01 on, which use microseconds. The unit is decided
per row, by magnitude (below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds), so a
file mixing units reads every row right and drops none.
``is_buyer_maker = true`` means the buyer's order was resting: the aggressor sold.

The ``.CHECKSUM`` file is ``<sha256 hex>  <zip name>``; a zip is only read after its SHA-256
matches.

Bad input (``BinanceDataError.rule`` names it; the message names the file):
  ``missing_file``       no zip for that symbol and day (not published, or not in the landing zone)
  ``missing_checksum``   the zip has no ``.CHECKSUM`` beside it (opt out with ``require_checksum``)
  ``bad_checksum``       the zip's SHA-256 differs from its ``.CHECKSUM`` (a damaged or partial copy)
  ``corrupt_zip``        not a readable zip (truncated) or a member fails its CRC
  ``bad_layout``         the zip does not hold exactly one CSV
  ``bad_columns``        a header that is not the aggTrades header, or the wrong number of fields
  ``unknown_columns``    a column beyond the seven (futures) or the spot file's ``is_best_match``
  ``unparseable_value``  a field that is not a number / boolean where one is required, a price or
                         quantity at or below zero, a REST record without a field (line or record given)
  ``empty_file``         no trade rows
  ``wrong_day``          most rows of a day file belong to another UTC day
  ``truncated_day``      the last trade of a finished day is far before its end (a partial publication)
  ``too_few_rows``       a day with fewer than ``min_rows_ratio`` of the median trades of the same
                         symbol's other days read in the run

Quarantined, counted in :class:`DayReport` and towards the ``quarantine_share`` check (never
silently dropped): rows outside the file's UTC day (``outside_day``) and every copy of a
repeated ``agg_trade_id`` whose fields differ (``conflicting_duplicate``); exact copies keep
one (``duplicates_dropped``).

REST (``/fapi/v1/aggTrades`` for USDT-M futures, ``/api/v3/aggTrades`` for spot): at most 1,000
trades a call and at most one hour between ``startTime`` and ``endTime``. A window is read hour
by hour; an hour with 1,000 trades or more continues by ``fromId``. Every response's
``X-MBX-USED-WEIGHT-1M`` is tracked: before a call that would exceed the per-minute weight
budget the client waits for the next minute. 429 (rate limit) and 418 (IP banned after ignoring
429s) carry ``Retry-After``; a 429, or a 418 whose ban is short, is waited out and retried, a
longer ban stops with an error saying how long it lasts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import polars as pl

from quant_assets.lib.http import HttpError, PoliteClient, retry_after_seconds
from quant_assets.lib.input_errors import InputError

MARKETS = ("futures", "spot")
PREFIX = {"futures": "data/futures/um/daily/aggTrades", "spot": "data/spot/daily/aggTrades"}
VISION_URL = "https://data.binance.vision"
REST_URL = {"futures": "https://fapi.binance.com", "spot": "https://api.binance.com"}
REST_PATH = {"futures": "/fapi/v1/aggTrades", "spot": "/api/v3/aggTrades"}
# Request weight of one aggTrades call and the per-minute IP budget (Binance's published limits).
REST_WEIGHT = {"futures": 20, "spot": 2}
REST_WEIGHT_LIMIT = {"futures": 2400, "spot": 6000}
REST_PAGE = 1000
REST_MAX_SPAN_MS = 3_600_000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

HEADER = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker")
SPOT_EXTRA = "is_best_match"
SCHEMA: dict[str, pl.DataType] = {
    "agg_trade_id": pl.Int64(),
    "price": pl.Float64(),
    "quantity": pl.Float64(),
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
    "transact_time": pl.Datetime("us", "UTC"),
    "is_buyer_maker": pl.Boolean(),
}
# Per-row units: below this a timestamp is milliseconds (year 5138), below NANOS_THRESHOLD
# microseconds, else nanoseconds.
MICROS_THRESHOLD = 10**14
NANOS_THRESHOLD = 10**17
DAY_US = 86_400_000_000
# A finished day whose last trade is this far before its end (and 50 mean trade gaps) is cut short.
MIN_END_GAP_S = 3_600
END_GAP_TRADES = 50
MIN_ROWS_RATIO = 0.05
CSV_BOOLEANS = ("true", "false", "True", "False")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_CHECKSUM = re.compile(r"^\s*([0-9a-fA-F]{64})(?:\s+\*?(\S+))?\s*$")


class BinanceDataError(InputError):
    """A Binance file or response that cannot be used; ``rule`` names the problem."""


class BinanceBanned(HttpError):
    """Binance answered 418: the IP is banned for longer than the client is willing to wait."""


def check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(f"invalid Binance symbol {symbol!r} (expected upper-case letters and digits, e.g. BTCUSDT)")
    return symbol


def check_market(market: str) -> str:
    if market not in MARKETS:
        raise ValueError(f"unknown Binance market {market!r}; choose from {MARKETS}")
    return market


def agg_trades_key(market: str, symbol: str, day: dt.date) -> str:
    """The data.binance.vision key of one symbol-day zip."""
    check_market(market)
    check_symbol(symbol)
    return f"{PREFIX[market]}/{symbol}/{symbol}-aggTrades-{day:%Y-%m-%d}.zip"


def checksum_key(key: str) -> str:
    return key + ".CHECKSUM"


def parse_checksum(text: bytes | str, source: str) -> str:
    """The SHA-256 hex digest from a ``.CHECKSUM`` file."""
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    first = raw.strip().splitlines()[0] if raw.strip() else ""
    m = _CHECKSUM.match(first)
    if not m:
        raise BinanceDataError(source, "bad_checksum", f"the .CHECKSUM file does not hold a SHA-256 digest (starts {raw[:40]!r})")
    return m.group(1).lower()


def verify_checksum(data: bytes, expected: str, source: str) -> str:
    """SHA-256 of ``data``; raises ``bad_checksum`` when it is not ``expected``."""
    got = hashlib.sha256(data).hexdigest()
    if got != expected.lower():
        raise BinanceDataError(
            source,
            "bad_checksum",
            f"SHA-256 {got} does not match its .CHECKSUM {expected.lower()} ({len(data):,} bytes: a damaged or partial copy)",
        )
    return got


def _csv_member(data: bytes, source: str) -> bytes:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BinanceDataError(source, "corrupt_zip", f"not a readable zip archive ({exc}; {len(data):,} bytes: truncated?)") from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        csvs = [n for n in names if n.lower().endswith(".csv")]
        if len(csvs) != 1 or len(names) != 1:
            raise BinanceDataError(source, "bad_layout", f"expected exactly one CSV in the zip, found {names}")
        try:
            return zf.read(csvs[0])
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise BinanceDataError(
                source, "corrupt_zip", f"member {csvs[0]} cannot be decompressed ({type(exc).__name__}: {exc})"
            ) from None


def timestamps_us(ms_us_or_ns: pl.Series) -> pl.Series:
    """UTC timestamps (microseconds) from Unix integers whose unit is decided per row."""
    v = ms_us_or_ns
    us = pl.select(pl.when(v < MICROS_THRESHOLD).then(v * 1000).when(v < NANOS_THRESHOLD).then(v).otherwise(v // 1000)).to_series()
    return us.cast(pl.Datetime("us", "UTC")).alias("transact_time")


def _bool_column(raw: pl.Series, name: str, source: str, line_offset: int) -> pl.Series:
    # The vendor's documented spellings only: true/false (futures), True/False (spot).
    text = raw.str.strip_chars()
    low = text.str.to_lowercase()
    bad = ~text.is_in(list(CSV_BOOLEANS)) | text.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise BinanceDataError(source, "unparseable_value", f"line {i + line_offset}: {name} is {raw[i]!r}, expected true/false", line=i + line_offset)
    return (low == "true").alias(name)


def parse_agg_trades_csv(text: bytes, source: str, market: str | None = None) -> pl.DataFrame:
    """One aggTrades CSV (header or not; 7 columns, or 8 with spot's ``is_best_match``) as the
    typed :data:`SCHEMA` frame. ``market``: when given, a futures file with an eighth column
    fails (``unknown_columns``); any column not the vendor's fails naming it."""
    if not text.strip():
        raise BinanceDataError(source, "empty_file", "the CSV is empty")
    first = text.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    has_header = bool(first) and not first[0].isdigit()
    if has_header:
        cols = [c.strip() for c in first.split(",")]
        if tuple(cols[: len(HEADER)]) != HEADER:
            raise BinanceDataError(source, "bad_columns", f"header {cols} is not the aggTrades header {list(HEADER)}", line=1)
        extra = cols[len(HEADER) :]
        if extra and (extra != [SPOT_EXTRA] or market == "futures"):
            raise BinanceDataError(
                source,
                "unknown_columns",
                f"column(s) {extra} beyond the aggTrades header"
                + ("" if market == "futures" else f" (only spot files add {SPOT_EXTRA!r})"),
                line=1,
            )
        width = len(cols)
    else:
        width = first.count(",") + 1
        if width not in (len(HEADER), len(HEADER) + 1):
            raise BinanceDataError(source, "bad_columns", f"line 1 has {width} fields, expected {len(HEADER)} or {len(HEADER) + 1}", line=1)
        if width == len(HEADER) + 1 and market == "futures":
            raise BinanceDataError(source, "unknown_columns", "line 1 has an eighth field; futures files have the seven aggTrades columns", line=1)
    if has_header and len(text.strip().splitlines()) == 1:
        raise BinanceDataError(source, "empty_file", "the CSV holds no trades (header only)")
    names = list(HEADER) + ([SPOT_EXTRA] if width == len(HEADER) + 1 else [])
    line_offset = 2 if has_header else 1
    try:
        raw = pl.read_csv(
            text,
            has_header=False,
            skip_rows=1 if has_header else 0,
            new_columns=names,
            schema_overrides={n: pl.String for n in names},
            quote_char=None,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise BinanceDataError(
            source, "bad_columns", f"the CSV does not parse as {width} fields a line ({str(exc).splitlines()[0]})"
        ) from None
    if raw.height == 0:
        raise BinanceDataError(source, "empty_file", "the CSV holds no trades")
    out: dict[str, pl.Series] = {}
    for name in ("agg_trade_id", "first_trade_id", "last_trade_id", "transact_time"):
        out[name] = _number(raw[name], pl.Int64, name, source, line_offset)
    for name in ("price", "quantity"):
        out[name] = _number(raw[name], pl.Float64, name, source, line_offset)
    out["is_buyer_maker"] = _bool_column(raw["is_buyer_maker"], "is_buyer_maker", source, line_offset)
    if SPOT_EXTRA in raw.columns:
        _bool_column(raw[SPOT_EXTRA], SPOT_EXTRA, source, line_offset)  # checked, not kept
    out["transact_time"] = timestamps_us(out["transact_time"])
    return pl.DataFrame(out).select(list(SCHEMA))


def _number(raw: pl.Series, dtype, name: str, source: str, line_offset: int) -> pl.Series:
    parsed = raw.str.strip_chars().cast(dtype, strict=False)
    bad = parsed.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise BinanceDataError(source, "unparseable_value", f"line {i + line_offset}: {name} is {raw[i]!r}, expected a number", line=i + line_offset)
    if dtype == pl.Float64:
        bad = ~parsed.is_finite() | (parsed <= 0)
        if bad.any():
            i = int(bad.arg_max())
            raise BinanceDataError(source, "unparseable_value", f"line {i + line_offset}: {name} is {raw[i]!r}, expected a positive number", line=i + line_offset)
    return parsed.alias(name)


def read_agg_trades_zip(data: bytes, source: str, checksum: bytes | str | None, market: str | None = None) -> pl.DataFrame:
    """Verify (when ``checksum`` is given) and read one daily aggTrades zip."""
    if checksum is not None:
        verify_checksum(data, parse_checksum(checksum, source + ".CHECKSUM"), source)
    return parse_agg_trades_csv(_csv_member(data, source), source, market)


@dataclasses.dataclass
class DayReport:
    """What reading one day file (or REST window) kept, dropped and held back."""

    source: str
    day: dt.date | None = None
    rows: int = 0  # rows read
    outside_day: int = 0  # quarantined: not on the file's UTC day
    conflicting_duplicate: int = 0  # quarantined: a repeated agg_trade_id with other values
    duplicates_dropped: int = 0  # exact copies beyond the first
    last_trade: dt.datetime | None = None

    @property
    def quarantined(self) -> int:
        return self.outside_day + self.conflicting_duplicate

    @property
    def share(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0

    def as_metadata(self) -> dict[str, int]:
        return {
            "rows_read": self.rows,
            "quarantined/outside_day": self.outside_day,
            "quarantined/conflicting_duplicate": self.conflicting_duplicate,
            "duplicates_dropped": self.duplicates_dropped,
        }


def deduplicate(df: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """(trades sorted by ``agg_trade_id``, exact copies dropped, conflicting rows held back).

    Exact copies (every field equal) keep one; ids are issued in time order, so id order is
    time order. Every copy of an id that comes with different values is held back: which one is
    true is unknown."""
    if df.is_empty():
        return df, 0, 0
    unique = df.unique(maintain_order=True)
    dropped = df.height - unique.height
    clash = unique["agg_trade_id"].is_duplicated()
    conflicts = int(clash.sum())
    return unique.filter(~clash).sort("agg_trade_id"), dropped, conflicts


def clean_trades(df: pl.DataFrame) -> pl.DataFrame:
    """:func:`deduplicate`'s trades (exact copies dropped, conflicting ids held back), sorted."""
    return deduplicate(df)[0]


def validate_day(df: pl.DataFrame, day: dt.date, source: str, *, today: dt.date | None = None) -> tuple[pl.DataFrame, DayReport]:
    """The trades of a day file that belong to it, and what was held back.

    Rows outside ``day`` (UTC) are quarantined; a file whose rows mostly belong to another day
    fails (``wrong_day``). Repeats: see :func:`deduplicate`. A finished day (before ``today``)
    whose last trade lies more than an hour -- and more than 50 of its mean trade gaps -- before
    midnight fails (``truncated_day``): a partial publication whose checksum matches the part."""
    report = DayReport(source, day, rows=df.height)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    inside = df.filter((pl.col("transact_time") >= start) & (pl.col("transact_time") < end))
    report.outside_day = df.height - inside.height
    if df.height and report.outside_day * 2 > df.height:
        days = df.filter((pl.col("transact_time") < start) | (pl.col("transact_time") >= end))["transact_time"].dt.date()
        other = days.mode().sort()[0]
        raise BinanceDataError(
            source,
            "wrong_day",
            f"{report.outside_day:,} of {df.height:,} rows are not on {day} (most on {other}): the file holds another day's trades",
        )
    kept, report.duplicates_dropped, report.conflicting_duplicate = deduplicate(inside)
    if kept.height:
        report.last_trade = kept["transact_time"].max()
        today = today or dt.datetime.now(dt.UTC).date()
        if day < today:
            gap = (end - report.last_trade).total_seconds()
            allowed = max(MIN_END_GAP_S, END_GAP_TRADES * 86_400 / kept.height)
            if gap > allowed:
                raise BinanceDataError(
                    source,
                    "truncated_day",
                    f"the last trade is at {report.last_trade:%H:%M:%S}Z, {gap / 3600:.1f} h before the "
                    f"day's end ({kept.height:,} trades, so about one every {86_400 / kept.height:,.0f} s): a partial file",
                )
    return kept, report


def check_thin_days(reports: list[DayReport], min_rows_ratio: float = MIN_ROWS_RATIO) -> None:
    """``too_few_rows`` when a day file holds fewer than ``min_rows_ratio`` of the median rows of
    the other day files of the same symbol (``reports`` of one symbol; 0 switches it off)."""
    if min_rows_ratio <= 0 or len(reports) < 2:
        return
    for r in reports:
        others = sorted(o.rows for o in reports if o is not r)
        median = others[len(others) // 2] if len(others) % 2 else (others[len(others) // 2 - 1] + others[len(others) // 2]) / 2
        if r.rows < min_rows_ratio * median:
            raise BinanceDataError(
                r.source,
                "too_few_rows",
                f"{r.rows:,} trades, fewer than min_rows_ratio={min_rows_ratio:g} of the "
                f"median {median:,.0f} of the symbol's other days read in this run (a partial publication?)",
            )


# --------------------------------------------------------------------------- where zips come from


class DayFiles(Protocol):
    """A source of daily zips and their checksums by data.binance.vision key."""

    def describe(self, key: str) -> str: ...

    def get(self, key: str) -> bytes | None: ...


class StoreDayFiles:
    """Zips in a landing zone (local folder or S3) laid out like data.binance.vision."""

    def __init__(self, store: Any, describe: Callable[[str], str] | None = None):
        self.store = store
        self._describe = describe or (lambda k: f"{store.url.rstrip('/')}/{k}")

    def describe(self, key: str) -> str:
        return self._describe(key)

    def get(self, key: str) -> bytes | None:
        if not self.store.exists(key):
            return None
        return self.store.read_bytes(key)


class VisionDayFiles:
    """Zips from data.binance.vision over HTTP; each download can be mirrored into a store
    (the landing zone) so a re-run reads it from there."""

    def __init__(self, client: PoliteClient, mirror: Any | None = None):
        self.client = client
        self.mirror = mirror

    def describe(self, key: str) -> str:
        return self.client.describe(key)

    def get(self, key: str) -> bytes | None:
        if self.mirror is not None and self.mirror.exists(key):
            return self.mirror.read_bytes(key)
        try:
            data = self.client.get(key, context=key.rsplit("/", 1)[-1]).content
        except HttpError as exc:
            if exc.status == 404:
                return None
            raise
        if self.mirror is not None:
            self.mirror.write_bytes(key, data)
        return data


def load_day(files: DayFiles, market: str, symbol: str, day: dt.date, *, require_checksum: bool = True) -> pl.DataFrame:
    """One symbol-day of aggregate trades, checksum verified, its rows inside the day."""
    return load_day_checked(files, market, symbol, day, require_checksum=require_checksum)[0]


def load_day_checked(
    files: DayFiles, market: str, symbol: str, day: dt.date, *, require_checksum: bool = True
) -> tuple[pl.DataFrame, DayReport]:
    """One symbol-day of aggregate trades (checksum verified, :func:`validate_day`) and its report."""
    key = agg_trades_key(market, symbol, day)
    source = files.describe(key)
    data = files.get(key)
    if data is None:
        raise BinanceDataError(
            source,
            "missing_file",
            f"no {market} aggTrades file for {symbol} on {day} (not published yet, or missing from the landing zone)",
        )
    checksum = files.get(checksum_key(key))
    if checksum is None and require_checksum:
        raise BinanceDataError(
            source, "missing_checksum", f"no {files.describe(checksum_key(key))} beside the zip, so it cannot be verified"
        )
    return validate_day(read_agg_trades_zip(data, source, checksum, market), day, source)


# --------------------------------------------------------------------------- REST


class WeightGuard(httpx.BaseTransport):
    """An httpx transport that keeps a client inside Binance's per-minute request weight.

    It reads ``X-MBX-USED-WEIGHT-1M`` from every response; when the next call would pass
    ``limit`` it sleeps until the next minute starts. A 418 whose ``Retry-After`` is at most
    ``max_ban_wait_s`` is handed on as a 429 (so the client waits it out and retries); a longer
    ban raises :class:`BinanceBanned`.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        weight: int,
        limit: int,
        max_ban_wait_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.inner = inner or httpx.HTTPTransport()
        self.weight, self.limit, self.max_ban_wait_s = weight, limit, max_ban_wait_s
        self._sleep, self._clock = sleep, clock
        self._lock = threading.Lock()
        self.used = 0
        self.minute = -1
        self.waited_s = 0.0
        self.bans = 0

    def _reserve(self) -> None:
        with self._lock:
            now = self._clock()
            minute = int(now // 60)
            if minute != self.minute:
                self.minute, self.used = minute, 0
            if self.used + self.weight > self.limit:
                wait = (minute + 1) * 60 - now + 0.05
                self.waited_s += wait
                self._sleep(wait)
                self.minute, self.used = int(self._clock() // 60), 0
            self.used += self.weight

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._reserve()
        response = self.inner.handle_request(request)
        header = response.headers.get(WEIGHT_HEADER)
        if header is not None and header.strip().isdigit():
            with self._lock:
                self.minute = int(self._clock() // 60)
                self.used = max(self.used, int(header))
        if response.status_code == 418:
            response.read()
            self.bans += 1
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None or wait > self.max_ban_wait_s:
                lasting = "an unstated time" if wait is None else f"{wait:,.0f} s"
                raise BinanceBanned(
                    f"GET {request.url.copy_with(query=None)}: Binance banned this IP (HTTP 418) for {lasting} "
                    f"after rate-limit warnings; waiting is capped at {self.max_ban_wait_s:,.0f} s",
                    endpoint=str(request.url.copy_with(query=None)),
                    status=418,
                )
            # The body is already decoded: drop the framing headers along with the old Retry-After.
            skip = {"retry-after", "content-encoding", "content-length", "transfer-encoding"}
            headers = [(k, v) for k, v in response.headers.items() if k.lower() not in skip]
            headers.append(("Retry-After", f"{wait:.3f}"))
            return httpx.Response(429, headers=headers, content=response.content, request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def rest_transport(market: str, inner: httpx.BaseTransport | None = None, **kwargs: Any) -> WeightGuard:
    check_market(market)
    return WeightGuard(inner, weight=REST_WEIGHT[market], limit=REST_WEIGHT_LIMIT[market], **kwargs)


REST_FIELDS = {
    "a": "agg_trade_id",
    "p": "price",
    "q": "quantity",
    "f": "first_trade_id",
    "l": "last_trade_id",
    "T": "transact_time",
    "m": "is_buyer_maker",
}


def _rest_frame(rows: list, source: str) -> pl.DataFrame:
    """Typed trades from REST aggTrades records, under the zip reader's rules: every field
    present, ids and times integers, prices and quantities numbers above zero, ``m`` a JSON
    boolean (a string such as ``"false"`` is refused, never read as true)."""

    def bad(i: int, problem: str) -> BinanceDataError:
        return BinanceDataError(source, "unparseable_value", f"record {i}: {problem}")

    cols: dict[str, list] = {v: [] for v in REST_FIELDS.values()}
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise bad(i, f"a JSON {type(r).__name__}, not an object")
        missing = [k for k in REST_FIELDS if k not in r or r[k] is None]
        if missing:
            raise bad(i, f"field(s) {missing} missing ({', '.join(REST_FIELDS[k] for k in missing)})")
        for k in ("a", "f", "l", "T"):
            v = r[k]
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(i, f"field {k!r} ({REST_FIELDS[k]}) is {v!r}, not an integer")
            cols[REST_FIELDS[k]].append(v)
        for k in ("p", "q"):
            v = r[k]
            try:
                x = float(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else float("nan")
            except ValueError:
                x = float("nan")
            if not x > 0 or x == float("inf"):
                raise bad(i, f"field {k!r} ({REST_FIELDS[k]}) is {v!r}, expected a positive number")
            cols[REST_FIELDS[k]].append(x)
        if not isinstance(r["m"], bool):
            raise bad(i, f"field 'm' (is_buyer_maker) is {r['m']!r}, expected a JSON boolean")
        cols["is_buyer_maker"].append(r["m"])
    if not rows:
        return pl.DataFrame(schema=SCHEMA)
    df = pl.DataFrame(cols, schema={k: (pl.Int64 if k != "is_buyer_maker" and k not in ("price", "quantity") else SCHEMA[k]) for k in cols})
    return df.with_columns(timestamps_us(df["transact_time"])).select(list(SCHEMA))


@dataclasses.dataclass
class RestStats:
    calls: int = 0
    pages_by_id: int = 0
    trades: int = 0
    cache_refetched: int = 0
    duplicates_dropped: int = 0
    conflicting_duplicate: int = 0


class RestAggTrades:
    """Aggregate trades of one symbol over any time window from the REST endpoint."""

    def __init__(self, client: PoliteClient, market: str, cache: Any | None = None, *, now: Callable[[], float] = time.time):
        self.client = client
        self.market = check_market(market)
        self.path = REST_PATH[market]
        self.cache = cache
        self.stats = RestStats()
        self._now = now

    def _get(self, params: dict[str, Any], context: str) -> list[dict]:
        payload = self.client.get_json(self.path, params, context=context)
        self.stats.calls += 1
        if not isinstance(payload, list):
            raise BinanceDataError(
                self.client.describe(self.path, params),
                "unparseable_value",
                f"expected a JSON list of trades, got {json.dumps(payload)[:120]}",
            )
        return payload

    def hour(self, symbol: str, start_ms: int, end_ms: int) -> pl.DataFrame:
        """Trades with ``start_ms <= T < end_ms`` (a span of at most one hour). A finished hour
        is cached only after its records validate; a cached hour that fails validation is
        discarded and fetched again (``stats.cache_refetched``)."""
        if not 0 < end_ms - start_ms <= REST_MAX_SPAN_MS:
            raise ValueError(f"a REST window spans at most one hour, got {start_ms}..{end_ms}")
        complete = end_ms <= self._now() * 1000 - 60_000
        key = ("aggTrades", self.market, symbol, str(start_ms), str(end_ms))
        if complete and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    return _rest_frame(json.loads(hit), f"cache {key}")
                except (BinanceDataError, ValueError):
                    self.cache.delete(key)
                    self.stats.cache_refetched += 1
        context = f"{symbol} {dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC):%Y-%m-%d %H:%M}Z"
        params: dict[str, Any] = {"symbol": symbol, "startTime": start_ms, "endTime": end_ms - 1, "limit": REST_PAGE}
        source = self.client.describe(self.path, params)
        rows = self._get(params, context)
        collected = list(rows)
        frame = _rest_frame(collected, source)
        while len(rows) >= REST_PAGE:
            last = frame["transact_time"][-1]
            if last >= dt.datetime.fromtimestamp(end_ms / 1000, dt.UTC):
                break
            rows = self._get({"symbol": symbol, "fromId": int(frame["agg_trade_id"][-1]) + 1, "limit": REST_PAGE}, context)
            self.stats.pages_by_id += 1
            collected.extend(rows)
            frame = pl.concat([frame, _rest_frame(rows, source)])
        lo, hi = (dt.datetime.fromtimestamp(x / 1000, dt.UTC) for x in (start_ms, end_ms))
        keep = ((frame["transact_time"] >= lo) & (frame["transact_time"] < hi)).to_list()
        collected = [r for r, k in zip(collected, keep) if k]
        frame = frame.filter(pl.Series(keep))
        if complete and self.cache is not None:
            self.cache.put(key, json.dumps(collected).encode())
        self.stats.trades += len(collected)
        return frame

    def window(self, symbol: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        """Trades in ``[start, end)``, read hour by hour, de-duplicated and sorted by id."""
        check_symbol(symbol)
        lo = int(start.timestamp() * 1000)
        hi = int(end.timestamp() * 1000)
        frames = [self.hour(symbol, a, min(a + REST_MAX_SPAN_MS, hi)) for a in range(lo, hi, REST_MAX_SPAN_MS)]
        frames = [f for f in frames if f.height]
        if not frames:
            return pl.DataFrame(schema=SCHEMA)
        kept, dropped, conflicts = deduplicate(pl.concat(frames))
        self.stats.duplicates_dropped += dropped
        self.stats.conflicting_duplicate += conflicts
        return kept


def days_covering(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """UTC calendar days that ``[start, end)`` touches."""
    first = start.astimezone(dt.UTC).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
