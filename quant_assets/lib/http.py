"""Polite HTTP for vendor APIs: rate-limited, bounded, retried, cached, and quiet about secrets.

* :class:`RateLimiter` spaces calls to at most ``calls_per_minute`` (a token bucket with a small
  burst), shared by every thread of a client.
* :class:`PoliteClient` wraps an ``httpx.Client``: one total deadline per request (``timeout_s``
  covers connecting and every read: a server that trickles its body a byte at a time cannot hold
  a request longer), at most ``max_concurrency`` requests in flight, retries with exponential
  backoff on connection errors, timeouts, HTTP 429 and 5xx -- honouring ``Retry-After`` (seconds
  or an HTTP date) when the server sends one -- and an optional ``budget_s`` for everything a
  client does (requests, retries and their waits). A vendor that signals its limit inside a 200
  response (FMP's "Limit Reach" message) is handled by a ``throttled`` predicate the caller
  passes: such a response is retried like a 429.
* :class:`ResponseCache` is a permanent cache (a local folder or an S3 location) of response bodies keyed by whatever
  identifies a request for the caller (e.g. ``("insider_trades", "AAPL", "2022-01-01",
  "2024-12-31")``). Entries are written atomically; a second run of the same requests makes no
  HTTP call.
* Errors (:class:`HttpError`) name the endpoint and the request's context (a symbol, a date
  range) and never contain a secret: query parameters named in ``secret_params`` are masked in
  every message, in every spelling a server may echo them (raw, percent-encoded with either hex
  case, plus-encoded), and httpx's own request logging is silenced below WARNING.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

# httpx logs every request URL (query string included) at INFO: an API key would end up in logs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

MASK = "***"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# How far past its deadline a request may be declared dead (thread hand-over, not network time).
DEADLINE_SLACK_S = 0.25


class HttpError(RuntimeError):
    """A request that failed for good. ``status`` is the last HTTP status (None: no response)."""

    def __init__(self, message: str, *, endpoint: str, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.endpoint, self.status, self.attempts = endpoint, status, attempts


class RateLimited(HttpError):
    """The vendor kept refusing for rate reasons after every retry."""


class BadPayload(HttpError):
    """The response arrived but is not what the endpoint promises (not JSON, wrong shape)."""


class BudgetSpent(HttpError):
    """The client's whole budget (``budget_s``) was used up before the work was done."""


class _DeadlineExceeded(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_s: float = 0.5  # first wait; doubles each retry
    max_backoff_s: float = 60.0
    # Never wait longer than this for one Retry-After, whatever the server asks.
    max_retry_after_s: float = 300.0


class RateLimiter:
    """At most ``calls_per_minute`` acquisitions per rolling minute, with a burst of ``burst``."""

    def __init__(
        self,
        calls_per_minute: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls_per_minute <= 0:
            raise ValueError(f"calls_per_minute must be positive, got {calls_per_minute}")
        self.rate = calls_per_minute / 60.0
        # A small burst keeps throughput near the limit without a thundering start.
        self.capacity = float(burst if burst is not None else max(1, min(10, int(calls_per_minute // 60) or 1)))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                # The tolerance absorbs float rounding: after sleeping exactly the computed wait the
                # bucket can hold 0.9999999999; without it a clock too coarse to register the next
                # tiny wait would spin forever.
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                wait = (1.0 - self._tokens) / self.rate
            self.waited_s += wait
            self._sleep(wait)

    def penalise(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (a server said Retry-After)."""
        with self._lock:
            self._tokens = min(self._tokens, 0.0) - seconds * self.rate


def mask_params(params: Mapping[str, Any] | None, secret_params: Iterable[str]) -> dict[str, Any]:
    secrets = {s.lower() for s in secret_params}
    return {k: (MASK if k.lower() in secrets else v) for k, v in (params or {}).items()}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


@dataclasses.dataclass
class ClientStats:
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    seconds_waiting: float = 0.0


# A vendor client's limits unless told otherwise (HttpClientResource offers them to a run).
CALLS_PER_MINUTE = 300
MAX_CONCURRENCY = 8
TIMEOUT_S = 30.0  # one deadline per request: connecting and every read together


class PoliteClient:
    """GET requests against one vendor base URL, within its limits."""

    def __init__(
        self,
        base_url: str,
        *,
        calls_per_minute: float = CALLS_PER_MINUTE,
        max_concurrency: int = MAX_CONCURRENCY,
        timeout_s: float = TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),
        secret_params: Iterable[str] = (),
        throttled: Callable[[httpx.Response], bool] | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        budget_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"budget_s must be positive, got {budget_s}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.budget_s = budget_s
        self._started: float | None = None
        self.secret_params = tuple(secret_params)
        self.retry = retry
        self.throttled = throttled
        self.limiter = RateLimiter(calls_per_minute, clock=clock, sleep=sleep)
        self._slots = threading.BoundedSemaphore(max(1, int(max_concurrency)))
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers=dict(headers or {}),
            follow_redirects=True,
        )
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The request as it may appear in a message: secrets masked."""
        shown = mask_params(params, self.secret_params)
        query = "&".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.base_url}/{path.lstrip('/')}" + (f"?{query}" if query else "")

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for name, value in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, context: str = "") -> httpx.Response:
        """A successful (2xx, not throttled) response, after retries; :class:`HttpError` otherwise."""
        return self._get(path, params, context=context)[0]

    def _read_before(self, path: str, params: Mapping[str, Any] | None, deadline: float) -> httpx.Response:
        """One GET, its body read whole, or :class:`_DeadlineExceeded` once ``deadline`` passes
        between two chunks."""
        with self._http.stream("GET", path, params=dict(params or {})) as streamed:
            if streamed.is_stream_consumed:
                return streamed  # a transport that built the response whole (its body is read)
            chunks = []
            for chunk in streamed.iter_raw():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded
            return httpx.Response(
                streamed.status_code,
                headers=streamed.headers,
                stream=httpx.ByteStream(b"".join(chunks)),
                request=streamed.request,
                extensions=streamed.extensions,
            )

    def _within_deadline(self, path: str, params: Mapping[str, Any] | None) -> httpx.Response:
        """One GET that takes at most ``timeout_s`` (plus a hand-over slack) from connect to the
        last byte, whatever the server's pace. The request runs in a worker thread: the caller
        stops waiting at the deadline; the worker stops at its next chunk or read timeout."""
        deadline = time.monotonic() + self.timeout_s
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["response"] = self._read_before(path, params, deadline)
                box["response"].read()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="http-get", daemon=True).start()
        if not done.wait(self.timeout_s + DEADLINE_SLACK_S) or isinstance(box.get("error"), _DeadlineExceeded):
            raise httpx.TimeoutException(f"no complete response within {self.timeout_s}s")
        if "error" in box:
            raise box["error"]
        return box["response"]

    def _check_budget(self, endpoint: str, where: str, upcoming_s: float = 0.0) -> None:
        if self.budget_s is None:
            return
        now = time.monotonic()
        if self._started is None:
            self._started = now
        spent = now - self._started
        if spent + upcoming_s > self.budget_s:
            raise BudgetSpent(
                f"{where}GET {endpoint}: the fetch's budget of {self.budget_s:g}s is spent "
                f"({spent:.1f}s used{f', next wait {upcoming_s:.1f}s' if upcoming_s else ''}); "
                "what was fetched so far is kept",
                endpoint=endpoint,
            )

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, context: str = "") -> tuple[httpx.Response, int]:
        endpoint = self.describe(path, params)
        where = f"{context}: " if context else ""
        last_status: int | None = None
        last_problem = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            self._check_budget(endpoint, where)
            self.limiter.acquire()
            wait: float | None = None
            with self._slots:
                self._count(calls=1)
                try:
                    response = self._within_deadline(path, params)
                except httpx.TimeoutException:
                    last_problem, last_status = f"timed out after {self.timeout_s:g}s (deadline per request: connect and every read)", None
                    response = None
                except httpx.TransportError as exc:
                    last_problem, last_status = f"connection failed ({type(exc).__name__})", None
                    response = None
            if response is not None:
                last_status = response.status_code
                throttled = response.status_code == 429 or (
                    response.status_code == 200 and self.throttled is not None and self.throttled(response)
                )
                if throttled:
                    self._count(throttled=1)
                    last_problem = "rate limit reached"
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                elif response.status_code in RETRY_STATUSES:
                    last_problem = f"HTTP {response.status_code}"
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                elif response.is_success:
                    return response, attempt
                else:
                    raise HttpError(
                        f"{where}GET {endpoint} failed with HTTP {response.status_code}: "
                        f"{self._scrub(response.text[:200], params)}",
                        endpoint=endpoint,
                        status=response.status_code,
                        attempts=attempt,
                    )
            if attempt == self.retry.max_attempts:
                break
            if wait is None:
                wait = min(self.retry.max_backoff_s, self.retry.backoff_s * 2 ** (attempt - 1))
                wait *= 1.0 + 0.25 * random.random()  # spread retries of concurrent workers
            else:
                wait = min(wait, self.retry.max_retry_after_s)
                self.limiter.penalise(wait)
            self._check_budget(endpoint, where, wait)
            self._count(retries=1, seconds_waiting=wait)
            self._sleep(wait)
        cls = RateLimited if last_problem == "rate limit reached" else HttpError
        raise cls(
            f"{where}GET {endpoint} failed after {self.retry.max_attempts} attempts: {last_problem}",
            endpoint=endpoint,
            status=last_status,
            attempts=self.retry.max_attempts,
        )

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, context: str = "") -> Any:
        return self.get_json_counted(path, params, context=context)[0]

    def get_json_counted(self, path: str, params: Mapping[str, Any] | None = None, *, context: str = "") -> tuple[Any, int]:
        """(decoded JSON body, HTTP requests it took including retries)."""
        response, attempts = self._get(path, params, context=context)
        try:
            return response.json(), attempts
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f"{context}: " if context else ""
            raise BadPayload(
                f"{where}GET {self.describe(path, params)} returned a body that is not JSON ({getattr(exc, 'msg', type(exc).__name__)}); "
                f"starts with {self._scrub(response.text[:80], params)!r}",
                endpoint=self.describe(path, params),
                status=response.status_code,
                attempts=attempts,
            ) from None

    def _scrub(self, text: str, params: Mapping[str, Any] | None) -> str:
        # A vendor may echo the request (key included) in an error body.
        names = {n.lower() for n in self.secret_params}
        return scrub(text, [str(v) for k, v in (params or {}).items() if k.lower() in names])


def secret_spellings(secret: str) -> list[str]:
    """Every way a server may echo ``secret``: as is, percent-encoded (every reserved character,
    or all but ``/``; upper- and lower-case hex), plus-encoded, and with ``+`` read as a space.
    Longest first, so a longer spelling is masked before a shorter one inside it."""
    if not secret:
        return []
    forms = {secret, urllib.parse.quote_plus(secret), secret.replace("+", " ")}
    for safe in ("", "/"):
        forms.add(urllib.parse.quote(secret, safe=safe))
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in list(forms)}
    return sorted((f for f in forms if f), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***``, in every spelling
    (:func:`secret_spellings`)."""
    for secret in secrets:
        for form in secret_spellings(secret):
            text = text.replace(form, MASK)
    return text


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    discarded: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class ResponseCache:
    """Response bodies kept for good, one object per request key, under ``root/<namespace>/``.

    ``root`` is a local folder (files written to a temporary name, then renamed) or, with
    ``store``, any :class:`~quant_assets.lib.storage.Store` -- an ``s3://`` location shared by
    every machine that runs steps, so a rerun anywhere reads the same responses."""

    def __init__(self, root: str | os.PathLike[str], namespace: str, store: Any | None = None):
        self.namespace = namespace.strip("/")
        self._store = store
        if store is None:
            self.root: Path | str = Path(root).expanduser().resolve() / self.namespace
        else:
            self.root = f"{str(root).rstrip('/')}/{self.namespace}"
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def _relative(self, key: tuple[str, ...]) -> str:
        parts = [str(p) for p in key]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
        # The first element (the data type) stays readable as a folder.
        return f"{_safe(parts[0])}/{digest}.json"

    def path(self, key: tuple[str, ...]) -> Path | str:
        """Where ``key``'s body lives: a local path, or the object's URL in the store."""
        if self._store is None:
            return self.root / self._relative(key)
        return f"{self.root}/{self._relative(key)}"

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    def get(self, key: tuple[str, ...]) -> bytes | None:
        try:
            if self._store is None:
                data = self.path(key).read_bytes()
            else:
                data = self._store.read_bytes(f"{self.namespace}/{self._relative(key)}")
        except FileNotFoundError:
            self._count("misses")
            return None
        self._count("hits")
        return data

    def put(self, key: tuple[str, ...], data: bytes) -> None:
        if self._store is not None:
            self._store.write_bytes(f"{self.namespace}/{self._relative(key)}", data)
            self._count("writes")
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._count("writes")

    def delete(self, key: tuple[str, ...]) -> None:
        """Forget ``key``'s entry (one that failed validation when read)."""
        if self._store is not None:
            try:
                self._store.delete(f"{self.namespace}/{self._relative(key)}")
            except FileNotFoundError:
                pass
        else:
            Path(self.path(key)).unlink(missing_ok=True)
        self._count("discarded")

    def entries(self) -> tuple[int, int]:
        """(number of entries, total bytes) held."""
        n = size = 0
        if self._store is not None:
            for info in self._store.list(f"{self.namespace}/"):
                if info.key.endswith(".json"):
                    n += 1
                    size += info.size
        elif self.root.exists():
            for p in self.root.rglob("*.json"):
                n += 1
                size += p.stat().st_size
        return n, size

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        n = 0
        if self._store is not None:
            for info in list(self._store.list(f"{self.namespace}/")):
                self._store.delete(info.key)
                n += 1
        elif self.root.exists():
            n = sum(1 for _ in self.root.rglob("*.json"))
            shutil.rmtree(self.root)
        return n


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
