"""Financial Modeling Prep (stable API) for the smart-money domain: the client and the payload
normalisers.

Seven data types, each one vendor endpoint (paths relative to ``https://financialmodelingprep.com/stable``):

=========================  ================================================  =====================================
data type                  endpoint                                          requests per cache entry
=========================  ================================================  =====================================
``insider_trades``         ``insider-trading/search?symbol&page&limit``      pages of ``limit`` rows, newest first,
                                                                             until a short page or one that is
                                                                             older than the window
``institutional_ownership``  ``institutional-ownership/extract-analytics/    one entry per quarter; pages until a
                           holder?symbol&year&quarter&page&limit``            short one (13F holder analytics)
``senate_trades``          ``senate-trades?symbol``                          one
``house_trades``           ``house-trades?symbol``                           one
``etf_exposure``           ``etf/asset-exposure?symbol``                     one (a present-day snapshot)
``prices``                 ``historical-price-eod/full?symbol&from&to``      one (split-adjusted daily bars)
``splits``                 ``splits?symbol``                                 one
=========================  ================================================  =====================================

Caching (the old generator's principle): every response is kept for good in a
:class:`~quant_assets.lib.http.ResponseCache` keyed by ``(data type, symbol, first day, last
day)`` -- the study window, or the calendar quarter for 13F data. Nothing is fetched per sample
date, so the first run costs one request per key (and page) and a rerun costs none. An entry is
NDJSON: a header line (what, when fetched, how many requests) and one vendor row per line, written
only after every page of it arrived and passed validation -- a bad payload is never cached.

Bad input: a payload that is not JSON, not an array of records, an error message, or records
missing a required field or carrying an unparseable value raises :class:`~quant_assets.lib.http.BadPayload`
naming the symbol, the data type and the endpoint (API key masked). A rejected key raises
:class:`FmpAuthError`; so does a missing key when the real vendor is configured.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import polars as pl

from quant_assets.lib.http import BadPayload, HttpError, PoliteClient, ResponseCache, scrub

FMP_BASE_URL = "https://financialmodelingprep.com/stable"
SECRET_PARAMS = ("apikey",)
LIMIT_MARKER = "Limit Reach"
CACHE_FORMAT = 1
# After this hour (New York time) a filing is public only after the close: it counts the next day.
AFTER_CLOSE_HOUR = 16
# A pager that never ends (a server ignoring ``page``) is stopped here.
MAX_PAGES = 500


class FmpAuthError(HttpError):
    """The vendor refused the API key, or none was configured for the real vendor."""


def is_limit_message(response: httpx.Response) -> bool:
    """FMP's "Limit Reach" refusal, which it can send with HTTP 200."""
    if response.status_code != 200:
        return False
    head = response.content[:300]
    return LIMIT_MARKER.encode() in head and b"Error Message" in head


@dataclasses.dataclass(frozen=True)
class Endpoint:
    data_type: str
    path: str
    # "pages": paged history; "quarterly": one entry per quarter, paged; "once": one request.
    plan: str
    required: tuple[str, ...]
    # Vendor fields kept in the cache's typed read, with their types.
    fields: Mapping[str, pl.DataType]
    # Field that places a row in the window (rows outside it are not kept), or None.
    window_field: str | None = None
    page_size: int = 0
    # Fields that must be strings / booleans however the vendor encodes them.
    strings: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    # Old spellings the vendor has used for a field.
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)


S, F, B = pl.String, pl.Float64, pl.Boolean

def _congress_trades(data_type: str, path: str) -> Endpoint:
    """The Senate and House trade endpoints: the same periodic-transaction-report fields,
    counted from their disclosure day."""
    return Endpoint(
        data_type,
        path,
        "once",
        required=("disclosureDate", "transactionDate", "type"),
        fields={
            "symbol": S, "disclosureDate": S, "transactionDate": S, "firstName": S, "lastName": S,
            "office": S, "district": S, "owner": S, "assetDescription": S, "assetType": S, "type": S,
            "amount": S, "link": S,
        },
        window_field="disclosureDate",
        strings=("firstName", "lastName", "office", "district", "owner", "type", "amount"),
        dates=("disclosureDate", "transactionDate"),
        aliases={"dateRecieved": "disclosureDate"},
    )


ENDPOINTS: dict[str, Endpoint] = {
    e.data_type: e
    for e in (
        Endpoint(
            "insider_trades",
            "insider-trading/search",
            "pages",
            required=("filingDate", "transactionDate", "transactionType", "securitiesTransacted", "acquisitionOrDisposition", "reportingCik"),
            fields={
                "symbol": S, "filingDate": S, "transactionDate": S, "reportingCik": S, "companyCik": S,
                "transactionType": S, "securitiesOwned": F, "reportingName": S, "typeOfOwner": S,
                "acquisitionOrDisposition": S, "directOrIndirect": S, "formType": S, "securitiesTransacted": F,
                "price": F, "securityName": S, "url": S,
            },
            window_field="filingDate",
            page_size=1000,
            strings=("reportingCik", "companyCik", "formType", "transactionType", "typeOfOwner", "reportingName"),
            dates=("filingDate", "transactionDate"),
            aliases={"acquistionOrDisposition": "acquisitionOrDisposition", "link": "url"},
        ),
        Endpoint(
            "institutional_ownership",
            "institutional-ownership/extract-analytics/holder",
            "quarterly",
            required=("date", "cik", "filingDate", "sharesNumber", "ownership"),
            fields={
                "date": S, "cik": S, "filingDate": S, "investorName": S, "symbol": S, "sharesNumber": F,
                "lastSharesNumber": F, "ownership": F, "lastOwnership": F, "marketValue": F,
                "lastMarketValue": F, "weight": F, "lastWeight": F, "isNew": B, "isSoldOut": B,
            },
            page_size=100,
            strings=("cik", "investorName"),
            booleans=("isNew", "isSoldOut"),
            dates=("date", "filingDate"),
        ),
        _congress_trades("senate_trades", "senate-trades"),
        _congress_trades("house_trades", "house-trades"),
        Endpoint(
            "etf_exposure",
            "etf/asset-exposure",
            "once",
            required=("symbol", "sharesNumber"),
            fields={"symbol": S, "asset": S, "sharesNumber": F, "weightPercentage": F, "marketValue": F},
            strings=("symbol", "asset"),
            aliases={"etfSymbol": "symbol"},
        ),
        Endpoint(
            "prices",
            "historical-price-eod/full",
            "once",
            required=("date", "close"),
            fields={"symbol": S, "date": S, "open": F, "high": F, "low": F, "close": F, "volume": F, "vwap": F},
            dates=("date",),
        ),
        Endpoint(
            "splits",
            "splits",
            "once",
            required=("date", "numerator", "denominator"),
            fields={"symbol": S, "date": S, "numerator": F, "denominator": F},
            dates=("date",),
        ),
    )
}
DATA_TYPES: tuple[str, ...] = tuple(ENDPOINTS)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclasses.dataclass
class FetchReport:
    """What fetching one (symbol, data type) cost: cache hits and misses (entries), HTTP calls."""

    data_type: str
    symbol: str
    entries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    http_calls: int = 0
    rows: int = 0
    # Cache entries that failed validation when read: discarded and fetched again.
    cache_refetched: int = 0
    # Rows equal in every field to one already kept: dropped.
    duplicates_dropped: int = 0
    # Rows sharing their key (a day, a filer and quarter, an ETF) but not their values: every
    # copy is held back -- which one is right is unknown -- and counted for the blocking check.
    conflicts_quarantined: int = 0


@dataclasses.dataclass
class Fetched:
    """Vendor rows of one data type for one or more symbols -- typed, with the vendor's field
    names, plus ``_symbol`` (the symbol asked for) and ``_fetched_on`` (UTC day its cache entry
    was fetched: a snapshot's "as of") -- and what fetching cost, per symbol."""

    frame: pl.DataFrame
    reports: dict[str, FetchReport]

    @property
    def report(self) -> FetchReport:
        """The report of a single-symbol fetch."""
        if len(self.reports) != 1:
            raise ValueError(f"{len(self.reports)} symbols fetched; read `reports`")
        return next(iter(self.reports.values()))


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One cache entry: its key and the requests that fill it."""

    data_type: str
    symbol: str
    start: dt.date
    end: dt.date
    quarter: tuple[int, int] | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.data_type, self.symbol, self.start.isoformat(), self.end.isoformat())

    @property
    def context(self) -> str:
        return f"{self.symbol} {self.data_type}" + (f" {self.quarter[0]}Q{self.quarter[1]}" if self.quarter else "")


def quarter_bounds(qend: dt.date) -> tuple[dt.date, dt.date]:
    return dt.date(qend.year, qend.month - 2, 1), qend


class FmpClient:
    """Fetches FMP data through a :class:`PoliteClient` and a permanent :class:`ResponseCache`.

    ``api_key`` is sent as the ``apikey`` query parameter and masked in every message.
    ``require_key``: refuse to call without a key (the real vendor needs one).
    """

    def __init__(
        self,
        http: PoliteClient | None,
        cache: ResponseCache,
        *,
        api_key: str | None = None,
        require_key: bool = False,
        max_workers: int = 4,
        page_sizes: Mapping[str, int] | None = None,
    ):
        self.http = http
        self.cache = cache
        self.api_key = api_key or None
        self.require_key = require_key
        self.max_workers = max(1, int(max_workers))
        self.page_sizes = {k: e.page_size for k, e in ENDPOINTS.items()}
        self.page_sizes.update(page_sizes or {})
        self._lock = threading.Lock()

    # ---- planning --------------------------------------------------------------------

    def entries(self, data_type: str, symbol: str, start: dt.date, end: dt.date, quarters: Sequence[dt.date]) -> list[_Entry]:
        """The cache entries that hold ``data_type`` of ``symbol`` for a window."""
        endpoint = _endpoint(data_type)
        if endpoint.plan == "quarterly":
            out = []
            for q in quarters:
                lo, hi = quarter_bounds(q)
                out.append(_Entry(data_type, symbol, lo, hi, (q.year, (q.month - 1) // 3 + 1)))
            return out
        return [_Entry(data_type, symbol, start, end)]

    # ---- fetching --------------------------------------------------------------------

    def fetch(
        self, data_type: str, symbol: str, start: dt.date, end: dt.date, quarters: Sequence[dt.date] = ()
    ) -> Fetched:
        """Rows of ``data_type`` for ``symbol`` over the window, from the cache or the vendor."""
        return self.fetch_many([symbol], start, end, quarters, (data_type,))[data_type]

    def fetch_symbol(
        self,
        symbol: str,
        start: dt.date,
        end: dt.date,
        quarters: Sequence[dt.date] = (),
        data_types: Iterable[str] = DATA_TYPES,
    ) -> dict[str, Fetched]:
        """Every requested data type of one symbol."""
        return self.fetch_many([symbol], start, end, quarters, data_types)

    def fetch_many(
        self,
        symbols: Sequence[str],
        start: dt.date,
        end: dt.date,
        quarters: Sequence[dt.date] = (),
        data_types: Iterable[str] = DATA_TYPES,
    ) -> dict[str, Fetched]:
        """Every requested data type of every symbol. The cache entries are filled concurrently
        (within the client's rate limit and concurrency bound); a request that fails for good
        raises once the others have finished, so everything that did arrive is cached."""
        data_types = list(data_types)
        plan = {(t, s): self.entries(t, s, start, end, quarters) for t in data_types for s in symbols}
        results = self._run([e for entries in plan.values() for e in entries])
        out = {}
        for t in data_types:
            bodies: list[bytes] = []
            counts: list[int] = []
            fetched_on: list[dt.date] = []
            reports = {}
            for s in symbols:
                entries = plan[(t, s)]
                report = FetchReport(t, s, entries=len(entries))
                for e in entries:
                    body, hit, calls, when, refetched = results[e]
                    report.cache_hits += hit
                    report.cache_misses += not hit
                    report.cache_refetched += refetched
                    report.http_calls += calls
                    bodies.append(body)
                    n = body.count(b"\n")
                    counts.append(n)
                    fetched_on.append(when)
                    report.rows += n
                reports[s] = report
            # One parse per data type for all entries and symbols: the per-query overhead is paid once.
            frame = read_rows(t, b"".join(bodies), context=f"{t} of {', '.join(symbols[:3])}{' ...' if len(symbols) > 3 else ''}")
            owners = [s for s in symbols for _ in plan[(t, s)]]
            index = pl.Series(_repeat_index(counts))
            frame = frame.with_columns(
                pl.Series("_symbol", owners, dtype=pl.String).gather(index),
                pl.Series("_fetched_on", fetched_on, dtype=pl.Date).gather(index),
            )
            frame, dropped, held = deduplicate(t, frame)
            for s in symbols:
                reports[s].duplicates_dropped = dropped.get(s, 0)
                reports[s].conflicts_quarantined = held.get(s, 0)
            out[t] = Fetched(frame, reports)
        return out

    def _run(self, entries: list[_Entry]) -> dict[_Entry, tuple[bytes, bool, int, dt.date, bool]]:
        if len(entries) <= 1 or self.max_workers == 1:
            return {e: self._entry(e) for e in entries}
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(entries)), thread_name_prefix="fmp") as pool:
            futures = {e: pool.submit(self._entry, e) for e in entries}
            out, first_error = {}, None
            for e, fut in futures.items():
                try:
                    out[e] = fut.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others finished
                    first_error = first_error or exc
            if first_error is not None:
                raise first_error
            return out

    def _entry(self, entry: _Entry) -> tuple[bytes, bool, int, dt.date, bool]:
        """(NDJSON rows, cache hit?, HTTP calls, day fetched, refetched?) of one cache entry.

        A cached entry is validated as a fresh response is; one that fails (written by an older
        version, edited, or cached before a rule existed) is discarded and fetched again."""
        data = self.cache.get(entry.key)
        refetched = False
        if data is not None:
            try:
                header, body = split_entry(data, context=entry.context)
                fetched_on = _fetched_date(header)
                validate_entry(entry, body, fetched_on, context=entry.context, endpoint=f"the response cache ({self.cache.path(entry.key)})")
                return body, True, 0, fetched_on, False
            except BadPayload:
                self.cache.delete(entry.key)
                refetched = True
        rows, calls = self._download(entry)
        fetched_at = dt.datetime.now(dt.UTC)
        data = encode_entry(entry, rows, calls, fetched_at)
        header, body = split_entry(data, context=entry.context)
        # Reading the bytes about to be cached the way a later run will, with every plausibility
        # rule: a payload that would not survive it is refused now, and never cached.
        validate_entry(entry, body, fetched_at.date(), context=entry.context, endpoint=self._describe(entry))
        self.cache.put(entry.key, data)
        return body, False, calls, fetched_at.date(), refetched

    def _describe(self, entry: _Entry, params: Mapping[str, object] | None = None) -> str:
        path = _endpoint(entry.data_type).path
        if self.http is None:
            return path
        return self.http.describe(path, params if params is not None else self._params(entry, 0))

    def _params(self, entry: _Entry, page: int) -> dict[str, object]:
        endpoint = _endpoint(entry.data_type)
        params: dict[str, object] = {"symbol": entry.symbol}
        if entry.data_type == "prices":
            params.update({"from": entry.start.isoformat(), "to": entry.end.isoformat()})
        if entry.quarter is not None:
            params.update({"year": entry.quarter[0], "quarter": entry.quarter[1]})
        if endpoint.plan in ("pages", "quarterly"):
            params.update({"page": page, "limit": self.page_sizes[entry.data_type]})
        if self.api_key:
            params["apikey"] = self.api_key
        return params

    def _download(self, entry: _Entry) -> tuple[list[dict], int]:
        endpoint = _endpoint(entry.data_type)
        if self.http is None:
            raise HttpError(
                f"{entry.context}: not in the response cache ({self.cache.root}) and this client makes no HTTP calls",
                endpoint=endpoint.path,
            )
        if self.require_key and not self.api_key:
            raise FmpAuthError(
                f"{entry.context}: FMP_API_KEY is not set; the real FMP API ({self.http.base_url}) needs a key "
                "(unset the FMP base URL to use the simulated FMP instead)",
                endpoint=self.http.describe(endpoint.path, {"symbol": entry.symbol}),
            )
        rows: list[dict] = []
        calls = 0
        page = 0
        previous_first: dict | None = None
        while True:
            params = self._params(entry, page)
            described = self.http.describe(endpoint.path, params)
            try:
                payload, attempts = self.http.get_json_counted(endpoint.path, params, context=entry.context)
            except BadPayload:
                raise
            except HttpError as exc:
                if exc.status in (401, 403):
                    raise FmpAuthError(
                        f"{exc} -- the vendor refused the API key; check FMP_API_KEY",
                        endpoint=exc.endpoint,
                        status=exc.status,
                        attempts=exc.attempts,
                    ) from None
                raise
            calls += attempts
            page_rows = validate_rows(
                endpoint, payload, context=entry.context, endpoint_desc=described, secrets=[self.api_key or ""]
            )
            if endpoint.plan == "once":
                rows = page_rows
                break
            if page_rows and previous_first is not None and page_rows[0] == previous_first:
                raise BadPayload(
                    f"{entry.context}: GET {described} returned the same rows as the previous page "
                    "(the server ignores `page`); refusing to cache a truncated history",
                    endpoint=described,
                )
            previous_first = page_rows[0] if page_rows else None
            rows.extend(page_rows)
            limit = self.page_sizes[entry.data_type]
            if len(page_rows) < limit:
                break
            if endpoint.window_field and page_rows:
                oldest = min(r[endpoint.window_field][:10] for r in page_rows)
                if oldest < entry.start.isoformat():
                    break
            page += 1
            if page >= MAX_PAGES:
                raise BadPayload(f"{entry.context}: GET {described}: more than {MAX_PAGES} pages", endpoint=described)
        if endpoint.window_field:
            # Pages run past the window on its old side by design; a record dated after today is
            # a lie about its time, not a row to filter away.
            today = dt.datetime.now(dt.UTC).date().isoformat()
            future = [r for r in rows if r[endpoint.window_field][:10] > today]
            if future:
                raise BadPayload(
                    f"{entry.context}: GET {self._describe(entry)}: field {endpoint.window_field!r}: {len(future)} record(s) "
                    f"dated after the day they were fetched ({today}) (first: {future[0][endpoint.window_field][:10]}); "
                    "nothing was cached",
                    endpoint=self._describe(entry),
                )
            lo, hi = entry.start.isoformat(), entry.end.isoformat()
            rows = [r for r in rows if lo <= r[endpoint.window_field][:10] <= hi]
        return rows, calls


def _repeat_index(counts: Sequence[int]) -> np.ndarray:
    """[0]*counts[0] + [1]*counts[1] + ...: the entry each parsed row came from."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), np.asarray(counts, dtype=np.int64))


def _endpoint(data_type: str) -> Endpoint:
    try:
        return ENDPOINTS[data_type]
    except KeyError:
        raise ValueError(f"unknown FMP data type {data_type!r}; known: {', '.join(DATA_TYPES)}") from None


def validate_rows(
    endpoint: Endpoint, payload, *, context: str, endpoint_desc: str, secrets: Iterable[str] = ()
) -> list[dict]:
    """The records of one response, checked against what the endpoint promises; the vendor's
    own field names are kept, old spellings renamed and loosely typed fields made exact."""

    def bad(problem: str) -> BadPayload:
        return BadPayload(f"{context}: GET {endpoint_desc} returned {problem}; nothing was cached", endpoint=endpoint_desc)

    if isinstance(payload, dict):
        message = payload.get("Error Message") or payload.get("error") or payload.get("message")
        if message:
            # A vendor may echo the request, key included, in its message.
            text = scrub(str(message)[:200], secrets)
            if "api key" in text.lower():
                raise FmpAuthError(
                    f"{context}: GET {endpoint_desc} was refused: {text} -- check FMP_API_KEY", endpoint=endpoint_desc
                )
            raise bad(f"an error message instead of data: {text!r}")
        raise bad(f"a JSON object (keys {sorted(payload)[:8]}) where an array of records was expected")
    if not isinstance(payload, list):
        raise bad(f"a JSON {type(payload).__name__} where an array of records was expected")
    out = []
    for i, row in enumerate(payload):
        if not isinstance(row, dict):
            raise bad(f"record {i} as a JSON {type(row).__name__}, not an object")
        for old, new in endpoint.aliases.items():
            if old in row and new not in row:
                row[new] = row.pop(old)
        missing = [f for f in endpoint.required if row.get(f) is None or row.get(f) == ""]
        if missing:
            raise bad(f"record {i} without required field(s) {missing}")
        for f in endpoint.dates:
            v = row.get(f)
            if v is not None and (not isinstance(v, str) or not _DATE_RE.match(v)):
                raise bad(f"record {i} with {f}={v!r}, not a YYYY-MM-DD date")
        for f in endpoint.strings:
            v = row.get(f)
            if v is not None and not isinstance(v, str):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    row[f] = str(v)
                else:
                    raise bad(f"record {i} with {f}={v!r}, not text")
        for f in endpoint.booleans:
            v = row.get(f)
            if isinstance(v, str):
                if v.lower() not in ("true", "false"):
                    raise bad(f"record {i} with {f}={v!r}, not a boolean")
                row[f] = v.lower() == "true"
        for f, dtype in endpoint.fields.items():
            v = row.get(f)
            if dtype == pl.Float64 and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                if isinstance(v, str):
                    try:
                        row[f] = float(v)
                        continue
                    except ValueError:
                        pass
                raise bad(f"record {i} with {f}={v!r}, not a number")
        out.append(row)
    return out


def encode_entry(entry: _Entry, rows: list[dict], requests: int, fetched_at: dt.datetime) -> bytes:
    header = {
        "format": CACHE_FORMAT,
        "data_type": entry.data_type,
        "symbol": entry.symbol,
        "start": entry.start.isoformat(),
        "end": entry.end.isoformat(),
        "fetched_at": fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "requests": requests,
        "rows": len(rows),
    }
    lines = [json.dumps(header, separators=(",", ":"))]
    lines.extend(json.dumps(r, separators=(",", ":")) for r in rows)
    return ("\n".join(lines) + "\n").encode()


def split_entry(data: bytes, *, context: str) -> tuple[dict, bytes]:
    """(header, NDJSON rows) of one cache entry."""
    cut = data.find(b"\n")
    try:
        header = json.loads(data[:cut] if cut >= 0 else data)
    except ValueError:
        raise BadPayload(f"{context}: the response cache entry is corrupt (no header line)", endpoint="cache") from None
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise BadPayload(f"{context}: the response cache entry has an unknown format", endpoint="cache")
    return header, data[cut + 1 :] if cut >= 0 else b""


def read_rows(data_type: str, body: bytes, *, context: str, endpoint: str | None = None, check: bool = False) -> pl.DataFrame:
    """Typed vendor rows from NDJSON (``check``: also verify every date parses)."""
    endpoint_def = _endpoint(data_type)
    try:
        if body.strip():
            frame = pl.read_ndjson(body, schema=dict(endpoint_def.fields))
        else:
            frame = pl.DataFrame(schema=dict(endpoint_def.fields))
        if check:
            _check_dates(frame, endpoint_def)
    except (ValueError, pl.exceptions.PolarsError) as exc:
        problem = str(exc).splitlines()[0][:200]
        if endpoint:
            raise BadPayload(
                f"{context}: GET {endpoint} returned records that do not parse ({problem}); nothing was cached",
                endpoint=endpoint,
            ) from None
        raise BadPayload(f"{context}: the response cache holds unreadable records ({problem})", endpoint="cache") from None
    return frame


def decode_entry(data_type: str, data: bytes, *, context: str) -> tuple[dict, pl.DataFrame]:
    """(header, typed vendor rows) of one cache entry."""
    header, body = split_entry(data, context=context)
    return header, read_rows(data_type, body, context=context)


# Fields that must be above zero / at least zero where present, per data type.
POSITIVE: dict[str, tuple[str, ...]] = {
    "prices": ("open", "high", "low", "close"),
    "splits": ("numerator", "denominator"),
}
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "prices": ("volume",),
    "insider_trades": ("securitiesTransacted", "securitiesOwned", "price"),
    "institutional_ownership": ("sharesNumber", "lastSharesNumber", "ownership", "lastOwnership", "marketValue"),
    "etf_exposure": ("sharesNumber", "weightPercentage", "marketValue"),
}
# The day a record became known: it cannot lie after the day it was fetched.
KNOWN_DATE: dict[str, str] = {
    "insider_trades": "filingDate",
    "institutional_ownership": "filingDate",
    "senate_trades": "disclosureDate",
    "house_trades": "disclosureDate",
    "prices": "date",
    "splits": "date",
}
# What identifies a record: two rows with the same key and different values conflict.
# (Insider and congressional records carry no identifier: only exact copies are recognised.)
RECORD_KEY: dict[str, tuple[str, ...]] = {
    "prices": ("date",),
    "splits": ("date",),
    "institutional_ownership": ("date", "cik"),
    "etf_exposure": ("symbol",),
}


def validate_entry(entry: _Entry, body: bytes, fetched_on: dt.date, *, context: str, endpoint: str) -> pl.DataFrame:
    """The typed rows of one cache entry, or :class:`BadPayload` naming the endpoint (or cache
    entry), the field and the problem: a date that does not parse, a price or ratio at or below
    zero, a negative quantity, a record known after the day it was fetched, a price bar outside
    the requested window, or no price bar at all."""
    frame = read_rows(entry.data_type, body, context=context, endpoint=endpoint, check=True)

    def bad(field: str, problem: str, rows: pl.DataFrame) -> BadPayload:
        first = rows.row(0, named=True) if rows.height else {}
        where = f" (first: {first.get('date') or first.get(KNOWN_DATE.get(entry.data_type, ''), '')!s})" if first else ""
        return BadPayload(
            f"{context}: {endpoint}: field {field!r}: {rows.height} record(s) {problem}{where}; nothing was cached",
            endpoint=endpoint,
        )

    for f in POSITIVE.get(entry.data_type, ()):
        hit = frame.filter(pl.col(f).is_not_null() & ~(pl.col(f) > 0))
        if hit.height:
            raise bad(f, "at or below zero (or not a number)", hit)
    for f in NON_NEGATIVE.get(entry.data_type, ()):
        hit = frame.filter(pl.col(f).is_not_null() & ~(pl.col(f) >= 0))
        if hit.height:
            raise bad(f, "below zero (or not a number)", hit)
    known = KNOWN_DATE.get(entry.data_type)
    if known and frame.height:
        day = pl.col(known).str.slice(0, 10).str.to_date("%Y-%m-%d")
        hit = frame.filter(day > fetched_on)
        if hit.height:
            raise bad(known, f"dated after the day they were fetched ({fetched_on})", hit)
    if entry.data_type == "prices":
        if frame.height == 0:
            raise BadPayload(
                f"{context}: {endpoint}: no price bar between {entry.start} and {entry.end} (an empty history); nothing was cached",
                endpoint=endpoint,
            )
        day = pl.col("date").str.slice(0, 10).str.to_date("%Y-%m-%d")
        hit = frame.filter((day < entry.start) | (day > entry.end))
        if hit.height:
            raise bad("date", f"outside the requested window {entry.start}..{entry.end}", hit)
    return frame


def deduplicate(data_type: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], dict[str, int]]:
    """(rows kept, exact copies dropped per symbol, conflicting rows quarantined per symbol).

    Exact copies (every vendor field equal; pages that overlap, a record served twice) keep
    one. Rows that share their :data:`RECORD_KEY` but differ are all held back: a day with two
    closes has no close that can be trusted."""
    vendor = [c for c in frame.columns if not c.startswith("_")]
    per = ["_symbol", *vendor]
    if frame.is_empty():
        return frame, {}, {}
    unique = frame.unique(subset=per, keep="first", maintain_order=True)
    dropped = _count_by_symbol(frame) - _count_by_symbol(unique)
    held: dict[str, int] = {}
    key = RECORD_KEY.get(data_type)
    if key:
        k = ["_symbol", *key]
        clash = pl.len().over(k) > 1
        conflicting = unique.filter(clash)
        if conflicting.height:
            held = dict(conflicting.group_by("_symbol").len().iter_rows())
            unique = unique.filter(~clash)
    return unique, {s: n for s, n in dropped.items() if n}, held


class _Counts(dict):
    def __sub__(self, other: dict) -> dict:
        return {k: v - other.get(k, 0) for k, v in self.items()}


def _count_by_symbol(frame: pl.DataFrame) -> _Counts:
    return _Counts(frame.group_by("_symbol").len().iter_rows())


def _check_dates(frame: pl.DataFrame, endpoint: Endpoint) -> None:
    for f in endpoint.dates:
        if frame.height and f in frame.columns:
            frame.select(pl.col(f).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=True))


def _fetched_date(header: Mapping) -> dt.date:
    raw = str(header.get("fetched_at", ""))[:10]
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return dt.date.today()


# ---------------------------------------------------------------------------------------
# Normalisers: vendor rows -> the raw tables of the smart_money group (snake_case, typed,
# fractions instead of percents, and the day each record became public).
# ---------------------------------------------------------------------------------------

INSIDER_TRADES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "filing_date": pl.Date,
    "known_from": pl.Date,
    "transaction_date": pl.Date,
    "reporting_cik": pl.String,
    "reporting_name": pl.String,
    "type_of_owner": pl.String,
    "transaction_type": pl.String,
    "acquisition_or_disposition": pl.String,
    "direct_or_indirect": pl.String,
    "form_type": pl.String,
    "securities_transacted": pl.Float64,
    "securities_owned": pl.Float64,
    "price": pl.Float64,
    "security_name": pl.String,
    "url": pl.String,
}
HOLDINGS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "period": pl.Date,
    "filing_date": pl.Date,
    "known_from": pl.Date,
    "cik": pl.String,
    "investor_name": pl.String,
    "shares": pl.Float64,
    "last_shares": pl.Float64,
    "ownership": pl.Float64,
    "last_ownership": pl.Float64,
    "market_value": pl.Float64,
    "last_market_value": pl.Float64,
    "weight": pl.Float64,
    "last_weight": pl.Float64,
    "is_new": pl.Boolean,
    "is_sold_out": pl.Boolean,
}
CONGRESS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "chamber": pl.String,
    "disclosure_date": pl.Date,
    "known_from": pl.Date,
    "transaction_date": pl.Date,
    "member": pl.String,
    "district": pl.String,
    "owner": pl.String,
    "asset_type": pl.String,
    "transaction": pl.String,
    "transaction_label": pl.String,
    "amount": pl.String,
    "amount_low": pl.Float64,
    "amount_high": pl.Float64,
    "link": pl.String,
}
ETF_EXPOSURE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "etf_symbol": pl.String,
    "shares": pl.Float64,
    "weight": pl.Float64,
    "market_value": pl.Float64,
    "as_of": pl.Date,
}
PRICES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
    "vwap": pl.Float64,
    "split_factor": pl.Float64,
    "close_as_traded": pl.Float64,
    "split_ratio": pl.Float64,
}

COLUMN_DOCS: dict[str, str] = {
    "symbol": "Stock ticker (the partition key).",
    "filing_date": "Day the filing reached the SEC (FMP filingDate).",
    "known_from": "First day the record can inform a sample: the filing / disclosure day, or the next day "
    "when the vendor stamps it after the 16:00 New York close. Never the transaction day.",
    "transaction_date": "Day of the transaction itself (not when it became public).",
    "reporting_cik": "SEC CIK of the reporting insider.",
    "reporting_name": "Name of the reporting insider.",
    "type_of_owner": "Insider's relation to the company as filed, e.g. 'officer: Chief Financial Officer', 'director'.",
    "transaction_type": "Form 4 transaction code, e.g. P-Purchase, S-Sale, A-Award, M-Exempt, G-Gift.",
    "acquisition_or_disposition": "A (acquired) or D (disposed).",
    "direct_or_indirect": "D (direct) or I (indirect) ownership.",
    "form_type": "SEC form (3, 4, 5).",
    "securities_transacted": "Shares in the transaction, as filed (the share basis of that day).",
    "securities_owned": "Shares the insider owns after the transaction, as filed.",
    "price": "Price per share, USD as traded that day (0 for awards and gifts).",
    "security_name": "Security, e.g. 'Common Stock'.",
    "url": "Link to the filing on sec.gov.",
    "period": "Quarter end the 13F report describes.",
    "cik": "SEC CIK of the 13F filer (ten digits).",
    "investor_name": "Name of the 13F filer.",
    "shares": "Shares held at the period end, as reported (0 for a position sold out during the quarter).",
    "last_shares": "Shares held at the previous quarter end, as reported.",
    "ownership": "Position as a fraction of shares outstanding (FMP `ownership` / 100).",
    "last_ownership": "Previous quarter's position as a fraction of shares outstanding.",
    "market_value": "Position value at the period end, USD.",
    "last_market_value": "Previous quarter's position value, USD.",
    "weight": "Position as a fraction of the filer's 13F portfolio (FMP `weight` / 100).",
    "last_weight": "Previous quarter's position as a fraction of the filer's portfolio.",
    "is_new": "The filer did not hold the stock the previous quarter.",
    "is_sold_out": "The filer held the stock the previous quarter and holds none now.",
    "chamber": "senate or house.",
    "disclosure_date": "Day the trade was disclosed (periodic transaction report filed).",
    "member": "Member of Congress (first and last name).",
    "district": "State (senate) or state and district (house).",
    "owner": "Whose account: Self, Spouse, Joint, Child.",
    "asset_type": "Asset traded, e.g. Stock, Stock Option.",
    "transaction": "purchase, sale, exchange or other (from the vendor's label).",
    "transaction_label": "The vendor's label, e.g. 'Purchase', 'Sale (Partial)'.",
    "amount": "Disclosed value range as filed, e.g. '$15,001 - $50,000'.",
    "amount_low": "Lower bound of the disclosed range, USD.",
    "amount_high": "Upper bound of the disclosed range, USD (the lower bound for 'Over $X').",
    "link": "Link to the disclosure.",
    "etf_symbol": "ETF holding the stock.",
    "as_of": "Day the snapshot was fetched: FMP's ETF exposure carries no date of its own.",
    "date": "Trading day (New York).",
    "open": "Open, USD, split-adjusted to today's share basis.",
    "high": "High, USD, split-adjusted.",
    "low": "Low, USD, split-adjusted.",
    "close": "Close, USD, split-adjusted (the basis of returns and labels).",
    "volume": "Shares traded, split-adjusted.",
    "vwap": "Volume-weighted average price as the vendor gives it, USD split-adjusted.",
    "split_factor": "Splits after the day: price as traded = split-adjusted price x split_factor.",
    "split_ratio": "Ratio of the splits taking effect with this bar (after the previous bar, on or before this one, by "
    "the vendor's split date): 2.0 for a 2-for-1, 1.0 on every other day. FMP gives no announcement date, so a split is "
    "known from its effective date.",
    "close_as_traded": "Close in USD as traded that day (before later splits).",
}


def _known_from(col: str) -> pl.Expr:
    day = pl.col(col).str.slice(0, 10).str.to_date("%Y-%m-%d")
    hour = pl.col(col).str.slice(11, 2).cast(pl.Int32, strict=False)
    return pl.when(hour.fill_null(0) >= AFTER_CLOSE_HOUR).then(day + pl.duration(days=1)).otherwise(day)


def _day(col: str) -> pl.Expr:
    return pl.col(col).str.slice(0, 10).str.to_date("%Y-%m-%d")


def _symbol(frame: pl.DataFrame, symbol: str | None) -> pl.Expr:
    """The stock each row belongs to: the ``_symbol`` a fetch added, else the one given."""
    if "_symbol" in frame.columns:
        return pl.col("_symbol").alias("symbol")
    if symbol is None:
        raise ValueError("rows without a `_symbol` column need the symbol")
    return pl.lit(symbol).alias("symbol")


def normalize_insider_trades(frame: pl.DataFrame, symbol: str | None = None) -> pl.DataFrame:
    """Insider transactions (Forms 3/4/5), one row per reported transaction."""
    if frame.height == 0:
        return pl.DataFrame(schema=INSIDER_TRADES_SCHEMA)
    out = frame.lazy().select(
        _symbol(frame, symbol),
        _day("filingDate").alias("filing_date"),
        _known_from("filingDate").alias("known_from"),
        _day("transactionDate").alias("transaction_date"),
        pl.col("reportingCik").str.zfill(10).alias("reporting_cik"),
        pl.col("reportingName").fill_null("").alias("reporting_name"),
        pl.col("typeOfOwner").fill_null("").alias("type_of_owner"),
        pl.col("transactionType").fill_null("").alias("transaction_type"),
        pl.col("acquisitionOrDisposition").str.to_uppercase().alias("acquisition_or_disposition"),
        pl.col("directOrIndirect").alias("direct_or_indirect"),
        pl.col("formType").alias("form_type"),
        pl.col("securitiesTransacted").abs().alias("securities_transacted"),
        pl.col("securitiesOwned").alias("securities_owned"),
        pl.col("price").fill_null(0.0).alias("price"),
        pl.col("securityName").alias("security_name"),
        pl.col("url"),
    )
    return out.sort("symbol", "known_from", "transaction_date", "reporting_cik").collect()


def normalize_holdings(frame: pl.DataFrame, symbol: str | None = None, ciks: Iterable[str] | None = None) -> pl.DataFrame:
    """13F holder analytics, one row per filer and quarter; ``ciks`` keeps only those filers."""
    if frame.height == 0:
        return pl.DataFrame(schema=HOLDINGS_SCHEMA)
    out = frame.lazy().select(
        _symbol(frame, symbol),
        _day("date").alias("period"),
        _day("filingDate").alias("filing_date"),
        _known_from("filingDate").alias("known_from"),
        pl.col("cik").str.zfill(10).alias("cik"),
        pl.col("investorName").fill_null("").alias("investor_name"),
        pl.col("sharesNumber").alias("shares"),
        pl.col("lastSharesNumber").fill_null(0.0).alias("last_shares"),
        (pl.col("ownership") / 100).alias("ownership"),
        (pl.col("lastOwnership").fill_null(0.0) / 100).alias("last_ownership"),
        pl.col("marketValue").alias("market_value"),
        pl.col("lastMarketValue").fill_null(0.0).alias("last_market_value"),
        (pl.col("weight") / 100).alias("weight"),
        (pl.col("lastWeight").fill_null(0.0) / 100).alias("last_weight"),
        pl.col("isNew").fill_null(False).alias("is_new"),
        pl.col("isSoldOut").fill_null(False).alias("is_sold_out"),
    )
    if ciks is not None:
        wanted = pl.Series([str(c).zfill(10) for c in ciks], dtype=pl.String)
        out = out.filter(pl.col("cik").is_in(wanted.implode()))
    # A filer amending its report appears twice for one quarter: the latest filing wins.
    out = out.sort("symbol", "period", "cik", "filing_date").unique(["symbol", "period", "cik"], keep="last", maintain_order=True)
    return out.collect()


_AMOUNT_NUMBER = r"\$?([\d,]+(?:\.\d+)?)"


def normalize_congress(frame: pl.DataFrame, symbol: str | None = None, chamber: str = "senate") -> pl.DataFrame:
    """Periodic transaction reports of members of Congress, one row per trade."""
    if frame.height == 0:
        return pl.DataFrame(schema=CONGRESS_SCHEMA)
    label = pl.col("type").fill_null("").str.strip_chars()
    lower = label.str.to_lowercase()
    low = pl.col("amount").str.extract(_AMOUNT_NUMBER, 1).str.replace_all(",", "").cast(pl.Float64, strict=False)
    high = pl.col("amount").str.extract(r"-\s*" + _AMOUNT_NUMBER, 1).str.replace_all(",", "").cast(pl.Float64, strict=False)
    out = frame.lazy().select(
        _symbol(frame, symbol),
        pl.lit(chamber).alias("chamber"),
        _day("disclosureDate").alias("disclosure_date"),
        _known_from("disclosureDate").alias("known_from"),
        _day("transactionDate").alias("transaction_date"),
        pl.concat_str([pl.col("firstName").fill_null(""), pl.col("lastName").fill_null("")], separator=" ")
        .str.strip_chars()
        .alias("member"),
        pl.col("district"),
        pl.col("owner"),
        pl.col("assetType").alias("asset_type"),
        pl.when(lower.str.starts_with("purchase"))
        .then(pl.lit("purchase"))
        .when(lower.str.starts_with("sale"))
        .then(pl.lit("sale"))
        .when(lower.str.starts_with("exchange"))
        .then(pl.lit("exchange"))
        .otherwise(pl.lit("other"))
        .alias("transaction"),
        label.alias("transaction_label"),
        pl.col("amount"),
        low.alias("amount_low"),
        pl.coalesce(high, low).alias("amount_high"),
        pl.col("link"),
    )
    return out.sort("symbol", "known_from", "transaction_date", "member").collect()


def normalize_etf_exposure(frame: pl.DataFrame, symbol: str | None = None, as_of: dt.date | None = None) -> pl.DataFrame:
    """ETFs holding the stock now: one row per ETF, stamped with the day it was fetched."""
    if frame.height == 0:
        return pl.DataFrame(schema=ETF_EXPOSURE_SCHEMA)
    stamp = pl.col("_fetched_on") if as_of is None and "_fetched_on" in frame.columns else pl.lit(as_of or dt.date.today())
    return (
        frame.lazy()
        .select(
            _symbol(frame, symbol),
            pl.col("symbol").alias("etf_symbol"),
            pl.col("sharesNumber").alias("shares"),
            (pl.col("weightPercentage") / 100).alias("weight"),
            pl.col("marketValue").alias("market_value"),
            stamp.cast(pl.Date).alias("as_of"),
        )
        .sort(["symbol", "shares"], descending=[False, True])
        .collect()
    )


def normalize_prices(prices: pl.DataFrame, splits: pl.DataFrame, symbol: str | None = None) -> pl.DataFrame:
    """Split-adjusted daily bars, by symbol and date, with the factor back to as-traded prices:
    the product of the ratios of the symbol's splits after the day."""
    if prices.height == 0:
        return pl.DataFrame(schema=PRICES_SCHEMA)
    bars = (
        prices.lazy()
        .select(_symbol(prices, symbol), _day("date").alias("date"), "open", "high", "low", "close", "volume", "vwap")
        .unique(["symbol", "date"], keep="last")
    )
    events = (
        splits.lazy()
        .select(
            _symbol(splits, symbol),
            _day("date").alias("split_date"),
            (pl.col("numerator") / pl.col("denominator")).alias("ratio"),
        )
        .filter(pl.col("ratio").is_finite() & (pl.col("ratio") > 0) & (pl.col("ratio") != 1.0))
    )
    # A stock has a handful of splits at most: pair every bar with them and multiply the later ones.
    factor = (
        bars.select("symbol", "date")
        .join(events, on="symbol", how="inner")
        .filter(pl.col("date") < pl.col("split_date"))
        .group_by("symbol", "date")
        .agg(pl.col("ratio").product().alias("split_factor"))
    )
    # Each split takes effect with the first bar on or after its date.
    effective = (
        events.sort("split_date")
        .join_asof(
            bars.select("symbol", pl.col("date").alias("bar_date")).sort("bar_date"),
            left_on="split_date",
            right_on="bar_date",
            by="symbol",
            strategy="forward",
            check_sortedness=False,  # both sides sorted just above
        )
        .filter(pl.col("bar_date").is_not_null())
        .group_by("symbol", "bar_date")
        .agg(pl.col("ratio").product().alias("split_ratio"))
        .rename({"bar_date": "date"})
    )
    return (
        bars.join(factor, on=["symbol", "date"], how="left")
        .join(effective, on=["symbol", "date"], how="left")
        .with_columns(pl.col("split_factor").fill_null(1.0), pl.col("split_ratio").fill_null(1.0))
        .with_columns((pl.col("close") * pl.col("split_factor")).alias("close_as_traded"))
        .select(list(PRICES_SCHEMA))
        .sort("symbol", "date")
        .collect()
    )
