"""Binance aggregate trades: data.binance.vision daily zips and the REST ``aggTrades`` endpoint.

Daily zips (the landing zone mirrors this tree; ``https://data.binance.vision`` serves it)::

    data/futures/um/daily/aggTrades/SYM/SYM-aggTrades-YYYY-MM-DD.zip       (+ .zip.CHECKSUM)
    data/spot/daily/aggTrades/SYM/SYM-aggTrades-YYYY-MM-DD.zip

Each zip holds one CSV, ``SYM-aggTrades-YYYY-MM-DD.csv``, with the columns ``agg_trade_id,
price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker`` (spot adds
``is_best_match``). Futures files carry that header line, spot files have none; booleans are
``true``/``false`` (futures) or ``True``/``False`` (spot); ``transact_time`` is Unix
milliseconds, except spot files from 2025-01-01 on, which use microseconds. The unit is told
apart by magnitude, so either kind of file reads right whatever its date.
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
  ``unparseable_value``  a field that is not a number / boolean where one is required (line given)
  ``empty_file``         no trade rows

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
# Timestamps above this are microseconds (year 2286 in milliseconds).
MICROS_THRESHOLD = 10**14
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_CHECKSUM = re.compile(r"^\s*([0-9a-fA-F]{64})(?:\s+\*?(\S+))?\s*$")


class BinanceDataError(RuntimeError):
    """A Binance file or response that cannot be used; ``rule`` names the problem."""

    def __init__(self, message: str, *, rule: str, source: str, line: int | None = None):
        super().__init__(message)
        self.rule, self.source, self.line = rule, source, line


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
        raise BinanceDataError(
            f"{source}: [bad_checksum] the .CHECKSUM file does not hold a SHA-256 digest (starts {raw[:40]!r})",
            rule="bad_checksum",
            source=source,
        )
    return m.group(1).lower()


def verify_checksum(data: bytes, expected: str, source: str) -> str:
    """SHA-256 of ``data``; raises ``bad_checksum`` when it is not ``expected``."""
    got = hashlib.sha256(data).hexdigest()
    if got != expected.lower():
        raise BinanceDataError(
            f"{source}: [bad_checksum] SHA-256 {got} does not match its .CHECKSUM {expected.lower()} "
            f"({len(data):,} bytes: a damaged or partial copy)",
            rule="bad_checksum",
            source=source,
        )
    return got


def _csv_member(data: bytes, source: str) -> bytes:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BinanceDataError(
            f"{source}: [corrupt_zip] not a readable zip archive ({exc}; {len(data):,} bytes: truncated?)",
            rule="corrupt_zip",
            source=source,
        ) from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        csvs = [n for n in names if n.lower().endswith(".csv")]
        if len(csvs) != 1 or len(names) != 1:
            raise BinanceDataError(
                f"{source}: [bad_layout] expected exactly one CSV in the zip, found {names}",
                rule="bad_layout",
                source=source,
            )
        try:
            return zf.read(csvs[0])
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise BinanceDataError(
                f"{source}: [corrupt_zip] member {csvs[0]} cannot be decompressed ({type(exc).__name__}: {exc})",
                rule="corrupt_zip",
                source=source,
            ) from None


def _bool_column(raw: pl.Series, name: str, source: str, line_offset: int) -> pl.Series:
    low = raw.str.strip_chars().str.to_lowercase()
    bad = ~low.is_in(["true", "false"]) | low.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise BinanceDataError(
            f"{source}: [unparseable_value] line {i + line_offset}: {name} is {raw[i]!r}, expected true/false",
            rule="unparseable_value",
            source=source,
            line=i + line_offset,
        )
    return (low == "true").alias(name)


def parse_agg_trades_csv(text: bytes, source: str) -> pl.DataFrame:
    """One aggTrades CSV (header or not, 7 or 8 columns) as the typed :data:`SCHEMA` frame."""
    if not text.strip():
        raise BinanceDataError(f"{source}: [empty_file] the CSV is empty", rule="empty_file", source=source)
    first = text.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    has_header = bool(first) and not first[0].isdigit()
    if has_header:
        cols = [c.strip() for c in first.split(",")]
        if tuple(cols[: len(HEADER)]) != HEADER or len(cols) not in (len(HEADER), len(HEADER) + 1):
            raise BinanceDataError(
                f"{source}: [bad_columns] header {cols} is not the aggTrades header {list(HEADER)}",
                rule="bad_columns",
                source=source,
                line=1,
            )
        width = len(cols)
    else:
        width = first.count(",") + 1
        if width not in (len(HEADER), len(HEADER) + 1):
            raise BinanceDataError(
                f"{source}: [bad_columns] line 1 has {width} fields, expected {len(HEADER)} or {len(HEADER) + 1}",
                rule="bad_columns",
                source=source,
                line=1,
            )
    if has_header and len(text.strip().splitlines()) == 1:
        raise BinanceDataError(f"{source}: [empty_file] the CSV holds no trades (header only)", rule="empty_file", source=source)
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
            f"{source}: [bad_columns] the CSV does not parse as {width} fields a line ({str(exc).splitlines()[0]})",
            rule="bad_columns",
            source=source,
        ) from None
    if raw.height == 0:
        raise BinanceDataError(f"{source}: [empty_file] the CSV holds no trades", rule="empty_file", source=source)
    out: dict[str, pl.Series] = {}
    for name in ("agg_trade_id", "first_trade_id", "last_trade_id", "transact_time"):
        out[name] = _number(raw[name], pl.Int64, name, source, line_offset)
    for name in ("price", "quantity"):
        out[name] = _number(raw[name], pl.Float64, name, source, line_offset)
    out["is_buyer_maker"] = _bool_column(raw["is_buyer_maker"], "is_buyer_maker", source, line_offset)
    ts = out["transact_time"]
    micros = ts if int(ts.max()) >= MICROS_THRESHOLD else ts * 1000
    out["transact_time"] = micros.cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame(out).select(list(SCHEMA))


def _number(raw: pl.Series, dtype, name: str, source: str, line_offset: int) -> pl.Series:
    parsed = raw.str.strip_chars().cast(dtype, strict=False)
    bad = parsed.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise BinanceDataError(
            f"{source}: [unparseable_value] line {i + line_offset}: {name} is {raw[i]!r}, expected a number",
            rule="unparseable_value",
            source=source,
            line=i + line_offset,
        )
    if dtype == pl.Float64:
        bad = ~parsed.is_finite() | (parsed <= 0)
        if bad.any():
            i = int(bad.arg_max())
            raise BinanceDataError(
                f"{source}: [unparseable_value] line {i + line_offset}: {name} is {raw[i]!r}, expected a positive number",
                rule="unparseable_value",
                source=source,
                line=i + line_offset,
            )
    return parsed.alias(name)


def read_agg_trades_zip(data: bytes, source: str, checksum: bytes | str | None) -> pl.DataFrame:
    """Verify (when ``checksum`` is given) and read one daily aggTrades zip."""
    if checksum is not None:
        verify_checksum(data, parse_checksum(checksum, source + ".CHECKSUM"), source)
    return parse_agg_trades_csv(_csv_member(data, source), source)


def clean_trades(df: pl.DataFrame) -> pl.DataFrame:
    """De-duplicated by ``agg_trade_id`` (the first copy kept) and sorted by it; ids are
    issued in time order, so this is time order too."""
    return df.unique(subset="agg_trade_id", keep="first", maintain_order=True).sort("agg_trade_id")


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
    """One symbol-day of aggregate trades, checksum verified."""
    key = agg_trades_key(market, symbol, day)
    source = files.describe(key)
    data = files.get(key)
    if data is None:
        raise BinanceDataError(
            f"{source}: [missing_file] no {market} aggTrades file for {symbol} on {day} (not published yet, or "
            "missing from the landing zone)",
            rule="missing_file",
            source=source,
        )
    checksum = files.get(checksum_key(key))
    if checksum is None and require_checksum:
        raise BinanceDataError(
            f"{files.describe(checksum_key(key))}: [missing_checksum] the zip has no .CHECKSUM beside it, so it "
            "cannot be verified",
            rule="missing_checksum",
            source=source,
        )
    return read_agg_trades_zip(data, source, checksum)


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


def _rest_frame(rows: list[dict], source: str) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=SCHEMA)
    try:
        df = pl.DataFrame(
            {
                "agg_trade_id": [int(r["a"]) for r in rows],
                "price": [float(r["p"]) for r in rows],
                "quantity": [float(r["q"]) for r in rows],
                "first_trade_id": [int(r["f"]) for r in rows],
                "last_trade_id": [int(r["l"]) for r in rows],
                "transact_time": [int(r["T"]) for r in rows],
                "is_buyer_maker": [bool(r["m"]) for r in rows],
            }
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BinanceDataError(
            f"{source}: [unparseable_value] an aggTrades record lacks or garbles a field ({type(exc).__name__}: {exc})",
            rule="unparseable_value",
            source=source,
        ) from None
    ts = df["transact_time"]
    micros = ts if int(ts.max()) >= MICROS_THRESHOLD else ts * 1000
    return df.with_columns(micros.cast(pl.Datetime("us", "UTC")).alias("transact_time")).select(list(SCHEMA))


@dataclasses.dataclass
class RestStats:
    calls: int = 0
    pages_by_id: int = 0
    trades: int = 0


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
                f"{self.client.describe(self.path, params)}: [unparseable_value] expected a JSON list of trades, got "
                f"{json.dumps(payload)[:120]}",
                rule="unparseable_value",
                source=self.client.describe(self.path, params),
            )
        return payload

    def hour(self, symbol: str, start_ms: int, end_ms: int) -> pl.DataFrame:
        """Trades with ``start_ms <= T < end_ms`` (a span of at most one hour)."""
        if not 0 < end_ms - start_ms <= REST_MAX_SPAN_MS:
            raise ValueError(f"a REST window spans at most one hour, got {start_ms}..{end_ms}")
        complete = end_ms <= self._now() * 1000 - 60_000
        key = ("aggTrades", self.market, symbol, str(start_ms), str(end_ms))
        if complete and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return _rest_frame(json.loads(hit), f"cache {key}")
        context = f"{symbol} {dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC):%Y-%m-%d %H:%M}Z"
        params: dict[str, Any] = {"symbol": symbol, "startTime": start_ms, "endTime": end_ms - 1, "limit": REST_PAGE}
        rows = self._get(params, context)
        collected = list(rows)
        while len(rows) >= REST_PAGE:
            last = rows[-1]
            if int(last["T"]) >= end_ms:
                break
            rows = self._get({"symbol": symbol, "fromId": int(last["a"]) + 1, "limit": REST_PAGE}, context)
            self.stats.pages_by_id += 1
            collected.extend(rows)
        collected = [r for r in collected if start_ms <= int(r["T"]) < end_ms]
        if complete and self.cache is not None:
            self.cache.put(key, json.dumps(collected).encode())
        self.stats.trades += len(collected)
        return _rest_frame(collected, self.client.describe(self.path, params))

    def window(self, symbol: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        """Trades in ``[start, end)``, read hour by hour, de-duplicated and sorted by id."""
        check_symbol(symbol)
        lo = int(start.timestamp() * 1000)
        hi = int(end.timestamp() * 1000)
        frames = [self.hour(symbol, a, min(a + REST_MAX_SPAN_MS, hi)) for a in range(lo, hi, REST_MAX_SPAN_MS)]
        frames = [f for f in frames if f.height]
        if not frames:
            return pl.DataFrame(schema=SCHEMA)
        return clean_trades(pl.concat(frames))


def days_covering(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """UTC calendar days that ``[start, end)`` touches."""
    first = start.astimezone(dt.UTC).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
