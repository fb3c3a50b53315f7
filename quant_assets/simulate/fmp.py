"""A deterministic Financial Modeling Prep (stable API) for the smart-money domain.

It answers the requests :mod:`quant_assets.lib.sources.fmp` makes, with the vendor's own JSON
shapes (camelCase fields, newest rows first, pages, per-quarter 13F requests), either in-process
as an ``httpx`` transport (:meth:`SimulatedFmp.transport`) or over a real loopback HTTP server
(:class:`FmpSimServer`, optionally with latency and a server-side rate limit answered by FMP's
"Limit Reach" message, for tests and benchmarks).

Endpoints (relative to ``/stable``): ``insider-trading/search``,
``institutional-ownership/extract-analytics/holder``, ``senate-trades``, ``house-trades``,
``etf/asset-exposure``, ``historical-price-eod/full`` (split-adjusted) and ``splits``.

The planted relation. Every symbol has two hidden mean-reverting states, a fast one (half-life
about ten sessions) and a slow one (about four months). Both push the stock's daily drift, and
both drive what smart money does *before* the drift is over: insiders buy more and sell less when
they are high (and file two business days later), members of Congress buy more (and disclose
weeks later), institutions and the tracked hedge funds add to positions in quarters when the slow
state is high (and file up to 45 days after the quarter). A model that reads the filings known at
a date therefore has an edge on the next two weeks' return; one that reads transaction dates
instead of filing dates sees trades before they were public. ETF exposure is a present-day
snapshot that carries no signal.

Everything is keyed on ``(seed, symbol)``: any symbol gets the same history whichever requests
come first, whichever process asks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping

import httpx
import numpy as np

from quant_assets.lib import calendar as cal
from quant_assets.lib.smart_money.universe import DEFAULT_HEDGE_FUNDS, SYMBOL_RE

SIM_BASE_URL = "http://fmp.simulated/stable"
LIMIT_MESSAGE = (
    "Limit Reach . Please upgrade your plan or visit our documentation for more details at "
    "https://site.financialmodelingprep.com/"
)
INVALID_KEY_MESSAGE = (
    "Invalid API KEY. Feel free to create a Free API Key or visit "
    "https://site.financialmodelingprep.com/faqs?search=why-is-my-api-key-invalid for more information."
)
ENDPOINTS = (
    "insider-trading/search",
    "institutional-ownership/extract-analytics/holder",
    "senate-trades",
    "house-trades",
    "etf/asset-exposure",
    "historical-price-eod/full",
    "splits",
)
MAX_PAGE = 1000

# Hidden states: AR(1) coefficients per session (half-lives ~10 and ~115 sessions).
PHI_FAST, PHI_SLOW = 0.93, 0.994
# Daily drift per unit of each state, on top of a small common drift.
DRIFT_FAST, DRIFT_SLOW, DRIFT_BASE = 0.0050, 0.0030, 0.0011

_INSIDER_ROLES = (
    "officer: Chief Executive Officer",
    "director, officer: Chief Executive Officer",
    "officer: Chief Financial Officer",
    "officer: Chief Operating Officer",
    "officer: President",
    "officer: Chief Technology Officer",
    "officer: EVP, General Counsel",
    "officer: SVP, Chief Accounting Officer",
    "officer: Vice President, Sales",
    "officer: EVP and President, Americas",
    "director",
    "director",
    "director",
    "10 percent owner",
)
_FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
          "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
          "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Steven", "Ashley")
_LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
         "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
         "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson")
_STATES = ("CA", "TX", "NY", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ", "MA", "TN")
_AMOUNTS = (
    ("$1,001 - $15,000", 0.42),
    ("$15,001 - $50,000", 0.27),
    ("$50,001 - $100,000", 0.13),
    ("$100,001 - $250,000", 0.09),
    ("$250,001 - $500,000", 0.05),
    ("$500,001 - $1,000,000", 0.03),
    ("$1,000,001 - $5,000,000", 0.01),
)
_ETFS = ("SPY", "IVV", "VOO", "VTI", "QQQ", "VUG", "IWF", "XLK", "XLY", "XLF", "DIA", "IWB", "SCHX", "RSP",
         "MGK", "VV", "ITOT", "SPLG", "IUSG", "OEF", "VIG", "SCHG", "VGT", "XLV", "XLI")
_INSTITUTIONS = (
    "VANGUARD GROUP INC", "BLACKROCK INC.", "STATE STREET CORP", "FMR LLC", "GEODE CAPITAL MANAGEMENT, LLC",
    "T. ROWE PRICE ASSOCIATES, INC.", "CAPITAL RESEARCH GLOBAL INVESTORS", "NORTHERN TRUST CORP",
    "MORGAN STANLEY", "JPMORGAN CHASE & CO", "BANK OF AMERICA CORP /DE/", "WELLINGTON MANAGEMENT GROUP LLP",
    "GOLDMAN SACHS GROUP INC", "INVESCO LTD.", "CHARLES SCHWAB INVESTMENT MANAGEMENT INC",
    "DIMENSIONAL FUND ADVISORS LP", "UBS GROUP AG", "LEGAL & GENERAL GROUP PLC", "NORGES BANK",
    "AMERIPRISE FINANCIAL INC", "WELLS FARGO & COMPANY/MN", "BANK OF NEW YORK MELLON CORP", "FRANKLIN RESOURCES INC",
    "NUVEEN ASSET MANAGEMENT, LLC", "PRINCIPAL FINANCIAL GROUP INC", "ROYAL BANK OF CANADA", "DEUTSCHE BANK AG",
    "MASSACHUSETTS FINANCIAL SERVICES CO /MA/", "JANUS HENDERSON GROUP PLC", "LORD, ABBETT & CO. LLC",
    "AMUNDI", "MANULIFE FINANCIAL CORP", "BARCLAYS PLC", "PRUDENTIAL FINANCIAL INC", "ALLIANZ ASSET MANAGEMENT GMBH",
    "TIAA-CREF", "FIDUCIARY MANAGEMENT INC", "EATON VANCE MANAGEMENT", "COLUMBIA MANAGEMENT", "ALLIANCEBERNSTEIN L.P.",
)
_INSTITUTION_WORDS = (("ALPINE", "BEACON", "CEDAR", "DELTA", "EVEREST", "FALCON", "GRANITE", "HARBOR", "IRON",
                       "JUNIPER", "KEYSTONE", "LANTERN", "MERIDIAN", "NORTHSTAR", "OAKMONT", "PINNACLE", "QUARRY",
                       "RIDGE", "SUMMIT", "TIMBER"),
                      ("CAPITAL", "ASSET", "INVESTMENT", "WEALTH", "ADVISORS", "PARTNERS"),
                      ("MANAGEMENT LLC", "GROUP INC", "LP", "CORP", "ADVISERS LLC"))


def _generic_institutions() -> list[str]:
    a, b, c = _INSTITUTION_WORDS
    return [f"{a[i % len(a)]} {b[(i // len(a)) % len(b)]} {c[(i * 7) % len(c)]}" for i in range(120)]


def _cik(name: str) -> str:
    return f"{zlib.crc32(name.encode()) % 1_999_999_999 + 1:010d}"


# One pool of 13F filers shared by every symbol: a holder keeps its CIK and size everywhere.
_POOL: tuple[tuple[str, str, bool], ...] = tuple(
    [(_cik(n), n, False) for n in (*_INSTITUTIONS, *_generic_institutions())]
    + [(cik, name.upper(), True) for cik, name in DEFAULT_HEDGE_FUNDS.items()]
)


@dataclasses.dataclass(frozen=True)
class FmpSimSpec:
    """The simulated vendor: its history runs from ``start`` to ``today`` (the last day it knows).

    ``api_key``: when set, every request must carry ``apikey`` equal to it (401 otherwise, as FMP
    answers). ``None`` accepts any key or none.
    """

    seed: int = 7
    start: dt.date = dt.date(2020, 7, 1)
    today: dt.date = dt.date(2025, 3, 31)
    api_key: str | None = None

    def fingerprint(self) -> str:
        """Names this simulated world (its cache namespace): responses differ between worlds."""
        return f"seed{self.seed}-{self.start:%Y%m%d}-{self.today:%Y%m%d}"


@dataclasses.dataclass
class SimResponse:
    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def _json(status: int, payload) -> SimResponse:
    return SimResponse(status, json.dumps(payload, separators=(",", ":")).encode())


@dataclasses.dataclass
class _World:
    symbol: str
    days: list[dt.date]
    close: np.ndarray  # split-adjusted (today's share basis)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    split_date: dt.date | None
    split_ratio: int
    outstanding_today: float
    insider_rows: list[dict]
    senate_rows: list[dict]
    house_rows: list[dict]
    holder_rows: dict[dt.date, list[dict]]
    etf_rows: list[dict]

    def as_traded_factor(self, day: dt.date) -> float:
        """Multiply a split-adjusted price by this to get the price as traded on ``day``."""
        return float(self.split_ratio) if self.split_date is not None and day < self.split_date else 1.0


class SimulatedFmp:
    """The simulated FMP: ``respond(path, params)`` answers one request like the vendor would."""

    def __init__(self, spec: FmpSimSpec | None = None):
        self.spec = spec or FmpSimSpec()
        self._days = cal.trading_days(self.spec.start, self.spec.today)
        self._day_index = {d: i for i, d in enumerate(self._days)}
        self._worlds: dict[str, _World] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.requests_by_endpoint: dict[str, int] = {}

    # ---- the HTTP face -------------------------------------------------------------------

    def respond(self, path: str, params: Mapping[str, str]) -> SimResponse:
        endpoint = path.strip("/")
        endpoint = endpoint.removeprefix("stable/")
        with self._lock:
            self.requests += 1
            self.requests_by_endpoint[endpoint] = self.requests_by_endpoint.get(endpoint, 0) + 1
        if self.spec.api_key is not None and params.get("apikey") != self.spec.api_key:
            return _json(401, {"Error Message": INVALID_KEY_MESSAGE})
        if endpoint not in ENDPOINTS:
            return _json(404, {"Error Message": f"Unknown endpoint: {endpoint}"})
        symbol = (params.get("symbol") or "").upper()
        if not symbol:
            return _json(400, {"Error Message": "Invalid or missing query parameter: symbol"})
        if not SYMBOL_RE.match(symbol):
            return _json(200, [])
        world = self.world(symbol)
        try:
            rows = self._rows(endpoint, world, params)
        except ValueError as exc:
            return _json(400, {"Error Message": str(exc)})
        return _json(200, rows)

    def transport(self) -> httpx.MockTransport:
        """An in-process httpx transport answering like the vendor's server."""

        def handler(request: httpx.Request) -> httpx.Response:
            params = dict(request.url.params)
            reply = self.respond(request.url.path, params)
            return httpx.Response(
                reply.status, content=reply.body, headers={"Content-Type": "application/json", **reply.headers}
            )

        return httpx.MockTransport(handler)

    # ---- requests -> rows ----------------------------------------------------------------

    def _rows(self, endpoint: str, w: _World, params: Mapping[str, str]) -> list[dict]:
        if endpoint == "insider-trading/search":
            return _page(w.insider_rows, params)
        if endpoint == "institutional-ownership/extract-analytics/holder":
            try:
                year, quarter = int(params["year"]), int(params["quarter"])
            except (KeyError, ValueError):
                raise ValueError("year and quarter are required") from None
            if not 1 <= quarter <= 4:
                raise ValueError("quarter must be 1-4")
            qend = dt.date(year, quarter * 3, 30 if quarter in (2, 3) else 31)
            return _page(w.holder_rows.get(qend, []), params)
        if endpoint == "senate-trades":
            return w.senate_rows
        if endpoint == "house-trades":
            return w.house_rows
        if endpoint == "etf/asset-exposure":
            return w.etf_rows
        if endpoint == "splits":
            if w.split_date is None:
                return []
            return [{"symbol": w.symbol, "date": w.split_date.isoformat(), "numerator": w.split_ratio, "denominator": 1}]
        # historical-price-eod/full
        lo = _param_date(params, "from", self.spec.start)
        hi = _param_date(params, "to", self.spec.today)
        out = []
        for i in range(len(w.days) - 1, -1, -1):
            d = w.days[i]
            if d < lo:
                break
            if d > hi:
                continue
            prev = w.close[i - 1] if i else w.open[i]
            out.append(
                {
                    "symbol": w.symbol,
                    "date": d.isoformat(),
                    "open": round(float(w.open[i]), 4),
                    "high": round(float(w.high[i]), 4),
                    "low": round(float(w.low[i]), 4),
                    "close": round(float(w.close[i]), 4),
                    "volume": int(w.volume[i]),
                    "change": round(float(w.close[i] - prev), 4),
                    "changePercent": round(float((w.close[i] / prev - 1) * 100), 5),
                    "vwap": round(float((w.high[i] + w.low[i] + w.close[i]) / 3), 4),
                }
            )
        return out

    # ---- the simulated history of one symbol -----------------------------------------------

    def world(self, symbol: str) -> _World:
        with self._lock:
            w = self._worlds.get(symbol)
        if w is None:
            w = self._build(symbol)
            with self._lock:
                w = self._worlds.setdefault(symbol, w)
        return w

    def hidden_state(self, symbol: str) -> tuple[list[dt.date], np.ndarray, np.ndarray]:
        """(sessions, fast state, slow state): the truth behind the planted relation (tests)."""
        rng = self._rng(symbol)
        fast, slow = self._states(rng)
        return list(self._days), fast, slow

    def _rng(self, symbol: str) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, zlib.crc32(symbol.encode())])

    def _states(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._days)
        out = []
        for phi in (PHI_FAST, PHI_SLOW):
            shocks = rng.standard_normal(n) * np.sqrt(1 - phi * phi)
            z = np.empty(n)
            z[0] = rng.standard_normal()
            for i in range(1, n):
                z[i] = phi * z[i - 1] + shocks[i]
            out.append(z)
        return out[0], out[1]

    def _build(self, symbol: str) -> _World:
        rng = self._rng(symbol)
        days = self._days
        n = len(days)
        fast, slow = self._states(rng)
        sigma = rng.uniform(0.020, 0.034)
        eps = rng.standard_normal(n)
        r = np.empty(n)
        r[0] = 0.0
        # Today's return is driven by yesterday's states: filings made at yesterday's close can
        # see them, nothing from today can.
        r[1:] = DRIFT_BASE + DRIFT_FAST * fast[:-1] + DRIFT_SLOW * slow[:-1] + sigma * eps[1:]
        close = rng.uniform(25, 400) * np.exp(np.cumsum(r))
        gap = np.exp(rng.standard_normal(n) * sigma / 3)
        open_ = np.concatenate([[close[0]], close[:-1]]) * gap
        high = np.maximum(open_, close) * (1 + np.abs(rng.standard_normal(n)) * sigma / 2)
        low = np.minimum(open_, close) * (1 - np.abs(rng.standard_normal(n)) * sigma / 2)
        volume = np.round(np.exp(rng.normal(np.log(8e6), 0.45, n)))

        split_date, split_ratio = None, 1
        if rng.random() < 0.35 and n > 400:
            split_date = days[int(rng.integers(250, n - 60))]
            split_ratio = int(rng.choice([2, 3, 4, 5, 10]))
        outstanding_today = float(10 ** rng.uniform(8.4, 10.3))
        w = _World(
            symbol, days, close, open_, high, low, volume, split_date, split_ratio, outstanding_today, [], [], [], {}, []
        )
        company_cik = _cik(f"company:{symbol}")
        w.insider_rows = self._insiders(rng, w, fast, slow, company_cik)
        w.senate_rows = self._congress(rng, w, fast, slow, "senate")
        w.house_rows = self._congress(rng, w, fast, slow, "house")
        w.holder_rows = self._holders(rng, w, fast, slow)
        w.etf_rows = self._etfs(rng, w)
        return w

    def _business_days_after(self, day: dt.date, k: int) -> dt.date:
        d = day
        while k > 0:
            d += dt.timedelta(days=1)
            if d.weekday() < 5:
                k -= 1
        return d

    def _insiders(self, rng, w: _World, fast, slow, company_cik: str) -> list[dict]:
        n_people = int(rng.integers(8, 15))
        people = []
        for j in range(n_people):
            role = _INSIDER_ROLES[j % len(_INSIDER_ROLES)] if j < len(_INSIDER_ROLES) else "director"
            name = f"{_LAST[int(rng.integers(len(_LAST)))]} {_FIRST[int(rng.integers(len(_FIRST)))]}"
            people.append([_cik(f"{w.symbol}:{name}:{j}"), name, role, float(rng.uniform(2e4, 2e6))])
        # Event intensities per session; exp(a z - a^2/2) keeps each rate's mean at its base.
        buy = 0.035 * np.exp(1.1 * fast + 0.6 * slow - (1.21 + 0.36) / 2)
        sell = 0.08 * np.exp(-0.8 * fast - 0.4 * slow - (0.64 + 0.16) / 2)
        counts = {
            "P-Purchase": rng.poisson(buy),
            "S-Sale": rng.poisson(sell),
            "A-Award": rng.poisson(np.full(len(w.days), 0.012)),
            "M-Exempt": rng.poisson(np.full(len(w.days), 0.006)),
            "G-Gift": rng.poisson(np.full(len(w.days), 0.003)),
        }
        lags = np.array([1, 2, 3, 5, 15, 45])
        lag_p = np.array([0.55, 0.30, 0.08, 0.03, 0.025, 0.015])
        events = []
        for kind, per_day in counts.items():
            for i in np.nonzero(per_day)[0]:
                for _ in range(int(per_day[i])):
                    events.append((i, kind))
        events.sort()
        rows = []
        for i, kind in events:
            d = w.days[i]
            j = int(rng.integers(len(people)))
            cik, name, role, owned = people[j]
            traded = w.close[i] * w.as_traded_factor(d)
            split_shares = 1.0 / w.as_traded_factor(d)
            if kind == "P-Purchase":
                shares = round(float(np.exp(rng.normal(np.log(9000), 0.9))) * split_shares)
                price, ad = round(traded * (1 + rng.normal(0.002, 0.008)), 2), "A"
            elif kind == "S-Sale":
                shares = round(float(np.exp(rng.normal(np.log(22000), 1.0))) * split_shares)
                shares = min(shares, max(1, int(owned * 0.5)))
                price, ad = round(traded * (1 + rng.normal(-0.001, 0.008)), 2), "D"
            elif kind == "A-Award":
                shares, price, ad = round(float(np.exp(rng.normal(np.log(15000), 0.7))) * split_shares), 0.0, "A"
            elif kind == "M-Exempt":
                shares, price, ad = round(float(np.exp(rng.normal(np.log(12000), 0.7))) * split_shares), round(traded * 0.6, 2), "A"
            else:
                shares, price, ad = round(float(np.exp(rng.normal(np.log(3000), 0.8))) * split_shares), 0.0, "D"
            shares = max(1, shares)
            owned = max(0.0, owned + shares if ad == "A" else owned - shares)
            people[j][3] = owned
            filed = self._business_days_after(d, int(rng.choice(lags, p=lag_p)))
            if filed > self.spec.today:
                continue
            rows.append(
                {
                    "symbol": w.symbol,
                    "filingDate": filed.isoformat(),
                    "transactionDate": d.isoformat(),
                    "reportingCik": cik,
                    "companyCik": company_cik,
                    "transactionType": kind,
                    "securitiesOwned": round(owned),
                    "reportingName": name,
                    "typeOfOwner": role,
                    "acquisitionOrDisposition": ad,
                    "directOrIndirect": "D" if rng.random() < 0.9 else "I",
                    "formType": "4",
                    "securitiesTransacted": shares,
                    "price": price,
                    "securityName": "Common Stock",
                    "url": f"https://www.sec.gov/Archives/edgar/data/{int(company_cik)}/{int(cik):010d}-{filed:%y}-{i:06d}.txt",
                }
            )
        # The vendor lists the newest filings first.
        rows.sort(key=lambda r: (r["filingDate"], r["transactionDate"], r["reportingCik"]), reverse=True)
        return rows

    def _congress(self, rng, w: _World, fast, slow, chamber: str) -> list[dict]:
        n_members = 12 if chamber == "senate" else 20
        members = []
        for _ in range(n_members):
            first, last = _FIRST[int(rng.integers(len(_FIRST)))], _LAST[int(rng.integers(len(_LAST)))]
            state = _STATES[int(rng.integers(len(_STATES)))]
            district = state if chamber == "senate" else f"{state}{int(rng.integers(1, 30)):02d}"
            members.append((first, last, district))
        buy = 0.006 * np.exp(0.9 * fast + 0.7 * slow - (0.81 + 0.49) / 2)
        sell = 0.006 * np.exp(-0.7 * fast - 0.5 * slow - (0.49 + 0.25) / 2)
        amounts = [a for a, _ in _AMOUNTS]
        amount_p = np.array([p for _, p in _AMOUNTS])
        amount_p = amount_p / amount_p.sum()
        rows = []
        for kind, rate in (("buy", buy), ("sell", sell), ("exchange", np.full(len(w.days), 0.0006))):
            per_day = rng.poisson(rate)
            for i in np.nonzero(per_day)[0]:
                for _ in range(int(per_day[i])):
                    d = w.days[i]
                    lag = int(rng.integers(3, 46)) if rng.random() < 0.9 else int(rng.integers(46, 120))
                    disclosed = d + dt.timedelta(days=lag)
                    if disclosed > self.spec.today:
                        continue
                    first, last, district = members[int(rng.integers(n_members))]
                    if kind == "buy":
                        ttype = "Purchase"
                    elif kind == "sell":
                        ttype = str(rng.choice(["Sale", "Sale (Full)", "Sale (Partial)"]))
                    else:
                        ttype = "Exchange"
                    rows.append(
                        {
                            "symbol": w.symbol,
                            "disclosureDate": disclosed.isoformat(),
                            "transactionDate": d.isoformat(),
                            "firstName": first,
                            "lastName": last,
                            "office": f"{first} {last}",
                            "district": district,
                            "owner": str(rng.choice(["Self", "Spouse", "Joint", "Child"], p=[0.45, 0.35, 0.15, 0.05])),
                            "assetDescription": f"{w.symbol} Inc",
                            "assetType": "Stock",
                            "type": ttype,
                            "amount": str(rng.choice(amounts, p=amount_p)),
                            "capitalGainsOver200USD": "False",
                            "comment": "--",
                            "link": f"https://efdsearch.senate.gov/search/view/ptr/{zlib.crc32(f'{w.symbol}{d}{last}'.encode()):08x}/"
                            if chamber == "senate"
                            else f"https://disclosures-clerk.house.gov/public_disc/ptr-pdfs/{d.year}/{zlib.crc32(f'{w.symbol}{d}{last}'.encode()) % 10**8}.pdf",
                        }
                    )
        rows.sort(key=lambda r: (r["disclosureDate"], r["transactionDate"], r["lastName"]), reverse=True)
        return rows

    def _quarter_ends(self) -> list[dt.date]:
        out = []
        y, q = self.spec.start.year, (self.spec.start.month - 1) // 3 + 1
        while True:
            qend = dt.date(y, q * 3, 30 if q in (2, 3) else 31)
            if qend > self.spec.today:
                return out
            if qend >= self.spec.start:
                out.append(qend)
            y, q = (y + 1, 1) if q == 4 else (y, q + 1)

    def _session_on_or_before(self, day: dt.date) -> int:
        i = self._day_index.get(day)
        while i is None:
            day -= dt.timedelta(days=1)
            i = self._day_index.get(day)
        return i

    def _holders(self, rng, w: _World, fast, slow) -> dict[dt.date, list[dict]]:
        quarters = self._quarter_ends()
        if not quarters:
            return {}
        pool = list(_POOL)
        generic = [p for p in pool if not p[2]]
        funds = [p for p in pool if p[2]]
        picked = rng.choice(len(generic), size=int(rng.integers(35, 65)), replace=False)
        members = [generic[int(k)] for k in picked] + funds
        size = {cik: float(np.exp(np.random.default_rng(zlib.crc32(cik.encode())).normal(np.log(4e10), 1.5))) for cik, _, _ in members}
        # Ownership as a fraction of shares outstanding; the biggest index houses hold most.
        # Each filer has a long-run position (a fraction of shares outstanding); the largest index
        # houses hold most and never leave. Positions drift with the slow state and revert to that
        # level, so institutional ownership stays where it is for real large caps (about 55-80%).
        total = rng.uniform(0.55, 0.8)
        weights = rng.pareto(2.0, len(members)) + 0.1
        weights = weights / weights.sum() * total
        target = {cik: float(wgt) for (cik, _, _), wgt in zip(members, weights, strict=True)}
        big = {cik for cik, wgt in target.items() if wgt >= np.quantile(weights, 0.9)}
        held0 = rng.random(len(members)) < np.where([m[2] for m in members], 0.45, 0.85)
        own: dict[str, float] = {cik: (target[cik] if h else 0.0) for (cik, _, _), h in zip(members, held0, strict=True)}
        base_lag = {cik: int(np.random.default_rng(zlib.crc32(cik.encode()) + 1).integers(18, 44)) for cik, _, _ in members}
        first_added: dict[str, dt.date] = {cik: quarters[0] for cik, v in own.items() if v > 0}
        out: dict[dt.date, list[dict]] = {}
        prev_price = None
        prev_own = dict(own)
        for qi, qend in enumerate(quarters):
            i_end = self._session_on_or_before(qend)
            i_start = self._session_on_or_before(quarters[qi - 1]) if qi else max(0, i_end - 63)
            signal = float(slow[i_start : i_end + 1].mean() + 0.5 * fast[max(i_start, i_end - 20) : i_end + 1].mean())
            price = float(w.close[i_end] * w.as_traded_factor(qend))
            outstanding = w.outstanding_today / w.as_traded_factor(qend)
            cur = {}
            for cik, _, is_fund in members:
                before = prev_own.get(cik, 0.0)
                sens = 2.0 if is_fund else 1.0
                churn = 0.0 if cik in big else (0.07 if is_fund else 0.03)
                if qi == 0:
                    cur[cik] = before
                elif before > 0:
                    if rng.random() < churn * np.exp(-0.9 * sens * signal):
                        cur[cik] = 0.0
                    else:
                        drift = 0.10 * sens * signal + 0.07 * sens * rng.standard_normal() - 0.3 * np.log(before / target[cik])
                        cur[cik] = before * float(np.exp(drift))
                elif rng.random() < churn * np.exp(0.9 * sens * signal):
                    cur[cik] = target[cik] * float(np.exp(rng.normal(-0.5, 0.3)))
                    first_added[cik] = qend
                else:
                    cur[cik] = 0.0
            rows = []
            for cik, name, is_fund in members:
                now, before = cur[cik], prev_own.get(cik, 0.0) if qi else cur[cik]
                if now <= 0 and before <= 0:
                    continue
                shares = round(now * outstanding)
                last_shares = round(before * (w.outstanding_today / w.as_traded_factor(quarters[qi - 1]) if qi else outstanding))
                last_price = prev_price if prev_price is not None else price
                mv, last_mv = shares * price, last_shares * last_price
                pv = size[cik]
                weight, last_weight = mv / pv * 100, last_mv / pv * 100
                lag = base_lag[cik] + int(rng.integers(-3, 4))
                if rng.random() < 0.05:
                    lag = int(rng.integers(46, 110))
                filed = qend + dt.timedelta(days=lag)
                if filed > self.spec.today:
                    continue
                perf = last_shares * (price - last_price)
                rows.append(
                    {
                        "date": qend.isoformat(),
                        "cik": cik,
                        "filingDate": filed.isoformat(),
                        "investorName": name,
                        "symbol": w.symbol,
                        "securityName": f"{w.symbol} INC",
                        "typeOfSecurity": "COM",
                        "securityCusip": f"{zlib.crc32(w.symbol.encode()) % 10**9:09d}",
                        "sharesType": "SH",
                        "putCallShare": "Share",
                        "investmentDiscretion": "SOLE",
                        "industryTitle": "SERVICES-PREPACKAGED SOFTWARE",
                        "weight": round(weight, 6),
                        "lastWeight": round(last_weight, 6),
                        "changeInWeight": round(weight - last_weight, 6),
                        "changeInWeightPercentage": round((weight / last_weight - 1) * 100, 4) if last_weight else 0,
                        "marketValue": round(mv),
                        "lastMarketValue": round(last_mv),
                        "changeInMarketValue": round(mv - last_mv),
                        "changeInMarketValuePercentage": round((mv / last_mv - 1) * 100, 4) if last_mv else 0,
                        "sharesNumber": shares,
                        "lastSharesNumber": last_shares,
                        "changeInSharesNumber": shares - last_shares,
                        "changeInSharesNumberPercentage": round((shares / last_shares - 1) * 100, 4) if last_shares else 0,
                        "quarterEndPrice": round(price, 4),
                        "avgPricePaid": round(price * float(np.exp(rng.normal(-0.1, 0.2))), 4),
                        "isNew": bool(shares > 0 and last_shares == 0),
                        "isSoldOut": bool(shares == 0 and last_shares > 0),
                        "ownership": round(now * 100, 6),
                        "lastOwnership": round(before * 100, 6),
                        "changeInOwnership": round((now - before) * 100, 6),
                        "changeInOwnershipPercentage": round((now / before - 1) * 100, 4) if before else 0,
                        "holdingPeriod": (qend.year - first_added.get(cik, qend).year) * 4
                        + (qend.month - first_added.get(cik, qend).month) // 3
                        + 1,
                        "firstAdded": first_added.get(cik, qend).isoformat(),
                        "performance": round(perf),
                        "performancePercentage": round((price / last_price - 1) * 100, 4) if last_price else 0,
                        "lastPerformance": 0,
                        "changeInPerformance": round(perf),
                        "isCountedForPerformance": True,
                    }
                )
            rows.sort(key=lambda r: (r["marketValue"], r["lastMarketValue"], r["cik"]), reverse=True)
            out[qend] = rows
            prev_own = cur
            prev_price = price
        return out

    def _etfs(self, rng, w: _World) -> list[dict]:
        k = int(rng.integers(10, len(_ETFS)))
        chosen = [_ETFS[int(i)] for i in rng.choice(len(_ETFS), size=k, replace=False)]
        shares_frac = rng.dirichlet(np.full(k, 0.6)) * rng.uniform(0.14, 0.28)
        last = float(w.close[-1])
        rows = []
        for etf, frac in zip(chosen, shares_frac, strict=True):
            shares = round(float(frac) * w.outstanding_today)
            rows.append(
                {
                    "symbol": etf,
                    "asset": w.symbol,
                    "sharesNumber": shares,
                    "weightPercentage": round(float(rng.uniform(0.05, 8.0)), 4),
                    "marketValue": round(shares * last, 2),
                }
            )
        rows.sort(key=lambda r: r["marketValue"], reverse=True)
        return rows


def _param_date(params: Mapping[str, str], name: str, default: dt.date) -> dt.date:
    raw = params.get(name)
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be YYYY-MM-DD") from None


def _page(rows: list[dict], params: Mapping[str, str]) -> list[dict]:
    try:
        page = int(params.get("page", 0))
        limit = min(int(params.get("limit", 100)), MAX_PAGE)
    except ValueError:
        raise ValueError("page and limit must be integers") from None
    return rows[page * limit : (page + 1) * limit]


class FmpSimServer:
    """The simulated FMP on a real loopback HTTP server.

    ``latency_s`` delays every answer; ``calls_per_minute`` makes the server enforce a limit the
    way FMP does: a request beyond it is refused with HTTP 429 and the "Limit Reach" message
    (with ``Retry-After`` when ``retry_after_s`` is given). ``limit_in_200`` sends the refusal
    with status 200 instead, as FMP sometimes does.
    """

    def __init__(
        self,
        sim: SimulatedFmp | None = None,
        *,
        latency_s: float = 0.0,
        calls_per_minute: float | None = None,
        burst: int = 10,
        retry_after_s: float | None = None,
        limit_in_200: bool = False,
    ):
        self.sim = sim or SimulatedFmp()
        self.latency_s = latency_s
        self.calls_per_minute = calls_per_minute
        self.retry_after_s = retry_after_s
        self.limit_in_200 = limit_in_200
        self.served = 0
        self.refused = 0
        self.request_times: list[float] = []
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._capacity = float(burst)
        self._last = time.monotonic()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll keeps shutdown quick.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/stable"

    def _admit(self) -> bool:
        if self.calls_per_minute is None:
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.calls_per_minute / 60.0)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def _handler(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                parsed = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parsed.query))
                if outer.latency_s:
                    time.sleep(outer.latency_s)
                if outer._admit():
                    with outer._lock:
                        outer.served += 1
                        outer.request_times.append(time.monotonic())
                    reply = outer.sim.respond(parsed.path, params)
                else:
                    with outer._lock:
                        outer.refused += 1
                    reply = _json(200 if outer.limit_in_200 else 429, {"Error Message": LIMIT_MESSAGE})
                    if outer.retry_after_s is not None:
                        reply.headers["Retry-After"] = f"{outer.retry_after_s:g}"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        return Handler

    def start(self) -> FmpSimServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FmpSimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Index membership


MEMBERSHIP_POOL = ("AAPL", "NVDA", "MSFT", "AMZN", "GOOGL", "META", "TSLA", "AVGO")


def index_membership_csv(start: dt.date, end: dt.date, *, seed: int = 7, pool: tuple[str, ...] = MEMBERSHIP_POOL) -> bytes:
    """A dated index membership file (``symbol,start,end,rank``) over ``pool``, ranked in pool
    order: most symbols are members throughout; two of the first five are removed inside
    ``[start, end]`` (one of them re-added later) and one symbol joins inside it at a top rank,
    so that a top-N universe of the file changes members during the sample. Deterministic in
    ``seed``."""
    if len(pool) < 6:
        raise ValueError("the membership pool needs at least six symbols")
    rng = np.random.default_rng([seed, 26])
    span = (end - start).days
    at = lambda lo, hi: start + dt.timedelta(days=int(rng.uniform(lo, hi) * span))  # noqa: E731
    removed = [int(i) for i in rng.choice(5, size=2, replace=False)]
    joiner = len(pool) - 1  # joins late, straight into the top ranks
    since = start - dt.timedelta(days=3650)
    rows = []
    for i, sym in enumerate(pool):
        rank = 3 if i == joiner else i + 1 + (i >= 2)
        if i == joiner:
            rows.append((sym, at(0.35, 0.55), None, rank))
        elif i == removed[0]:
            rows.append((sym, since, at(0.2, 0.4), rank))
        elif i == removed[1]:
            out = at(0.45, 0.6)
            rows.append((sym, since, out, rank))
            rows.append((sym, out + dt.timedelta(days=int(rng.integers(90, 200))), None, rank))
        else:
            rows.append((sym, since, None, rank))
    lines = ["symbol,start,end,rank"] + [f"{s},{a.isoformat()},{b.isoformat() if b else ''},{r}" for s, a, b, r in rows]
    return ("\n".join(lines) + "\n").encode()
