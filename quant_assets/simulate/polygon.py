"""A deterministic US equity market that writes Polygon's flat files into a landing zone.

The files are byte-for-byte in the vendor's format (see ARCHITECTURE.md, "The landing zone
speaks the vendors' formats") so that the readers that serve real drops serve these too:

- ``us_stocks_sip/day_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz``: one row per traded symbol per session;
- ``us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz``: one row per traded minute between
  04:00 and 20:00 New York time (a minute without trades has no row), written for the last
  ``minute_days`` sessions of the requested range.

The market is a cross-section of common stocks (cents to hundreds of dollars, fat-tailed
returns, heavy-tailed volume, listings and delistings inside the range), a handful of ETFs
led by ``SPY``, and the non-tradable symbols a cleaning step must drop (warrants, units,
rights, preferreds, test symbols) next to tradable names that merely look like them.

Randomness is keyed, never sequential across the whole run: the universe comes from
``(seed, tickers)``, each session's returns and volumes from ``(seed, date)`` and each
session's minutes from ``(seed, date)`` again on a separate stream. A session's draws are
therefore the same whichever range asks for it; prices are those draws compounded from
``start``, and listing / delisting days are placed inside ``[start, end]``. A spec therefore
always reproduces the same bytes, and specs that differ only in ``end`` or ``minute_days``
give the same day bar to a name trading on a session they share (minute days excepted:
their day bars are rebuilt from the minutes); which names trade can differ near the ends.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import gzip
import io
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import polars as pl

from quant_assets.lib import calendar
from quant_assets.lib.sources.polygon import day_aggs_key, minute_aggs_key
from quant_assets.lib.storage import Store

HEADER: tuple[str, ...] = (
    "ticker",
    "volume",
    "open",
    "close",
    "high",
    "low",
    "window_start",
    "transactions",
)
KINDS: tuple[str, ...] = ("common", "etf", "warrant", "unit", "right", "preferred", "test")
TRADABLE_KINDS: frozenset[str] = frozenset({"common", "etf"})

_NS_PER_MINUTE = 60 * calendar.NS_PER_SECOND
_EXT_MINUTES = calendar.POST_CLOSE_MINUTE - calendar.PRE_OPEN_MINUTE  # 960 columns, 04:00-20:00
_POST_HOURS_MINUTES = calendar.POST_CLOSE_MINUTE - calendar.RTH_CLOSE_MINUTE

# (symbol, price at start, beta to the market, idiosyncratic daily vol, shares per day)
_ETFS: tuple[tuple[str, float, float, float, float], ...] = (
    ("SPY", 470.0, 1.00, 0.0004, 80e6),
    ("QQQ", 405.0, 1.20, 0.0030, 45e6),
    ("IWM", 200.0, 1.15, 0.0040, 30e6),
    ("DIA", 375.0, 0.95, 0.0020, 3e6),
    ("XLF", 37.5, 1.10, 0.0040, 40e6),
    ("XLE", 85.0, 0.80, 0.0090, 18e6),
    ("XLK", 195.0, 1.25, 0.0040, 7e6),
    ("TLT", 98.0, -0.20, 0.0070, 35e6),
    ("GLD", 190.0, 0.05, 0.0070, 8e6),
    ("EEM", 40.0, 0.90, 0.0060, 35e6),
)
_TEST_SYMBOLS = ("NTEST", "ZVZZT", "ZWZZT", "ZXZZT")
# Tradable names whose spelling resembles a derivative's: 4 letters ending in W/U/R with an
# unlisted 3-letter root, and class shares with a dot but an unlisted root.
_LOOKALIKES = ("SNOW", "PLTR")
_CLASS_SHARES = ("BRK.A", "BRK.B", "BF.B")
_RESERVED_ROOTS = ("SNO", "PLT", "BRK", "BF")

_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
# Ordinary symbols never end in a derivative suffix letter, so that a W/U/R ending always
# means either a derivative of a listed root or a deliberate look-alike.
_TAIL_ALPHABET = np.array([c for c in _ALPHABET if c not in "WUR"])
_LENGTH_SHARE = {1: 0.01, 2: 0.06, 3: 0.36, 4: 0.50, 5: 0.07}
_MAX_ONE_LETTER = 10

# Random streams: separate keys so adding draws to one never shifts another.
_STREAM_UNIVERSE = 1
_STREAM_DAY = 2
_STREAM_MINUTE = 3

_MARKET_DRIFT = 0.0003
_MARKET_VOL_OVERNIGHT = 0.0035
_MARKET_VOL_INTRADAY = 0.0065
_OVERNIGHT_SHARE = 0.25  # share of idiosyncratic variance realised between close and open
_GAP_PROBABILITY = 0.001  # per name and session
_MIN_PRICE, _MAX_PRICE = 0.005, 20_000.0
_PRICE_TICK_FLOOR = 0.0001


@dataclasses.dataclass(frozen=True)
class PolygonSimSpec:
    """What to simulate: the sessions of ``[start, end]`` for ``tickers`` ordinary listed names.

    ETFs (``SPY`` and a few others) and non-tradable symbols come on top of ``tickers``.
    Minute files are written for the last ``minute_days`` sessions of the range. Dates may be
    given as ``datetime.date`` or ISO strings.
    """

    start: dt.date
    end: dt.date
    tickers: int = 500
    minute_days: int = 5
    seed: int = 7

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", calendar.as_date(self.start))
        object.__setattr__(self, "end", calendar.as_date(self.end))
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.tickers < 20:
            raise ValueError("tickers must be at least 20 to hold every kind of symbol")
        if self.minute_days < 0:
            raise ValueError("minute_days must be >= 0")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")

    @property
    def sessions(self) -> list[dt.date]:
        """NYSE sessions of ``[start, end]``: the days that get a day file."""
        return calendar.trading_days(self.start, self.end)

    @property
    def minute_sessions(self) -> list[dt.date]:
        """The sessions that also get a minute file (the last ``minute_days`` of the range)."""
        days = self.sessions
        return days[len(days) - min(self.minute_days, len(days)) :]


@dataclasses.dataclass
class SimReport:
    """What ``simulate_polygon`` wrote."""

    day_files: int = 0
    minute_files: int = 0
    day_rows: int = 0
    minute_rows: int = 0
    keys: list[str] = dataclasses.field(default_factory=list)


def encode_polygon_csv_gz(df: pl.DataFrame) -> bytes:
    """Encode rows exactly as Polygon publishes them: gzip CSV, ``\\n`` line ends, no index.

    A frame holding exactly the vendor columns is written in the vendor's column order; any
    other set of columns is written as given, so tests can craft malformed files. Floats are
    written in their shortest round-trip form without a trailing ``.0`` (``143``, ``142.99``,
    ``0.0512``). Rows are written in the order given. The gzip header carries no timestamp,
    so equal frames give equal bytes.
    """
    if set(df.columns) == set(HEADER) and len(df.columns) == len(HEADER):
        df = df.select(HEADER)
    floats = [name for name, dtype in df.schema.items() if dtype.is_float()]
    if floats:
        df = df.with_columns(pl.col(floats).cast(pl.String).str.strip_suffix(".0"))
    buf = io.BytesIO()
    df.write_csv(buf, line_terminator="\n")
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


# --------------------------------------------------------------------------------------------
# The universe


@dataclasses.dataclass(frozen=True)
class _Universe:
    """Per-name constants, in ticker order (the order rows are written in)."""

    frame: pl.DataFrame
    tickers: pl.Series
    first: np.ndarray  # index into spec.sessions of the first traded session
    last: np.ndarray  # index of the last traded session
    log_ref: np.ndarray  # log price at start, and the level prices revert to
    reversion: np.ndarray  # daily pull of the log price towards log_ref
    beta: np.ndarray
    vol: np.ndarray  # idiosyncratic daily log-return vol
    log_volume: np.ndarray  # log of typical shares per day
    trade_size: np.ndarray  # typical shares per trade
    ext_hours: np.ndarray  # relative appetite for pre/post-market trading


def _length_quota(count: int) -> dict[int, int]:
    """How many ordinary symbols of each length; a length never fills more than half of its
    symbol space (so drawing stays quick), the overflow moving to the next length."""
    quota = {n: int(np.floor(count * share)) for n, share in _LENGTH_SHARE.items()}
    quota[1] = min(quota[1], _MAX_ONE_LETTER)
    quota[4] += count - sum(quota.values())
    for length in sorted(quota):
        room = 26 ** (length - 1) * len(_TAIL_ALPHABET) // 2
        if quota[length] > room:
            if length == max(quota):
                raise ValueError(f"cannot draw {count} distinct symbols")
            quota[length + 1] += quota[length] - room
            quota[length] = room
    return quota


def _ordinary_symbols(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    symbols: list[str] = []
    for length, want in _length_quota(count).items():
        got = 0
        while got < want:
            batch = max(2 * (want - got), 16)
            body = _ALPHABET[rng.integers(0, 26, size=(batch, length - 1))]
            tail = _TAIL_ALPHABET[rng.integers(0, len(_TAIL_ALPHABET), size=batch)]
            for row, last in zip(body, tail):
                sym = "".join(row) + last
                if sym not in taken:
                    taken.add(sym)
                    symbols.append(sym)
                    got += 1
                    if got == want:
                        break
    return symbols


def _unlisted_roots(rng: np.random.Generator, count: int, length: int, taken: set[str]) -> list[str]:
    """``count`` fresh roots of ``length`` letters; they are reserved so nothing lists them."""
    roots: list[str] = []
    while len(roots) < count:
        root = "".join(_ALPHABET[rng.integers(0, 26, size=length)])
        if root not in taken:
            taken.add(root)
            roots.append(root)
    return roots


@lru_cache(maxsize=8)
def _universe(spec: PolygonSimSpec) -> _Universe:
    """Symbols, kinds, lifecycles and per-name market parameters of ``spec``."""
    rng = np.random.default_rng([spec.seed, _STREAM_UNIVERSE, spec.tickers])
    k = max(1, spec.tickers // 200)

    taken: set[str] = {e[0] for e in _ETFS}
    taken.update(_TEST_SYMBOLS, _LOOKALIKES, _CLASS_SHARES, _RESERVED_ROOTS)

    # Look-alike and class-share names count towards `tickers`; the rest are ordinary.
    n_lookalike = 2 * k
    n_class_pairs = k - 1
    n_ordinary = spec.tickers - len(_LOOKALIKES) - len(_CLASS_SHARES) - n_lookalike - 2 * n_class_pairs
    ordinary = _ordinary_symbols(rng, n_ordinary, taken)
    order = rng.permutation(len(ordinary))
    ordinary = [ordinary[i] for i in order]

    lookalikes = list(_LOOKALIKES)
    for root in _unlisted_roots(rng, n_lookalike, 3, taken):
        sym = root + "WUR"[int(rng.integers(0, 3))]
        taken.add(sym)
        lookalikes.append(sym)
    class_shares = list(_CLASS_SHARES)
    for root in _unlisted_roots(rng, n_class_pairs, 3, taken):
        class_shares += [f"{root}.A", f"{root}.B"]

    # Derivatives hang off ordinary names listed for the whole range, so a cleaning rule that
    # checks "is the root listed today" always finds it.
    by_length: dict[int, list[str]] = {}
    for sym in ordinary:
        by_length.setdefault(len(sym), []).append(sym)
    four = by_length.get(4, [])
    three = by_length.get(3, [])
    short = by_length.get(1, []) + by_length.get(2, []) + three
    spac_roots = four[: 2 * k + 1]  # SPAC-style families: ABCD, ABCDU, ABCDW, ABCDR
    nyse_roots = three[: k + 1]  # NYSE-style suffixes: ABC.WS, ABC.U, ABC.RT
    short_warrant_roots = three[k + 1 : 2 * k + 1]  # ABCW
    pref_roots = short[::-1][: k + 1]  # ABCpA, ABCpB
    roots = set(spac_roots) | set(nyse_roots) | set(short_warrant_roots) | set(pref_roots)

    derived: list[tuple[str, str, str]] = []  # (symbol, kind, root)
    for i, root in enumerate(spac_roots):
        derived.append((root + "W", "warrant", root))
        if i <= k:
            derived.append((root + "U", "unit", root))
        if i < k:
            derived.append((root + "R", "right", root))
    for i, root in enumerate(nyse_roots):
        derived.append((root + ".WS", "warrant", root))
        if i < k:
            derived.append((root + ".U", "unit", root))
            derived.append((root + ".RT", "right", root))
    for root in short_warrant_roots:
        derived.append((root + "W", "warrant", root))
    for i, root in enumerate(pref_roots):
        derived.append((root + "pA", "preferred", root))
        if i < k:
            derived.append((root + "pB", "preferred", root))

    names: list[tuple[str, str, str | None]] = [(e[0], "etf", None) for e in _ETFS]
    names += [(s, "common", None) for s in ordinary + lookalikes + class_shares]
    names += [(s, kind, root) for s, kind, root in derived]
    names += [(s, "test", None) for s in _TEST_SYMBOLS]
    symbols = [n[0] for n in names]
    assert len(set(symbols)) == len(symbols), "symbol collision in the simulated universe"
    kind = np.array([n[1] for n in names])
    n = len(names)

    # Per-kind price level (log10 dollars), idiosyncratic vol, beta, volume (log10 shares/day).
    log10_price = np.empty(n)
    vol = np.empty(n)
    beta = np.empty(n)
    log10_volume = np.empty(n)
    reversion = np.full(n, 0.01)
    is_common = kind == "common"
    nc = int(is_common.sum())
    lp = np.clip(rng.normal(1.05, 0.65, nc), -1.7, 2.95)
    log10_price[is_common] = lp
    # Cheap names move more: from ~1.1%/day at $30+ to ~5%/day in pennies.
    vol[is_common] = (0.011 + 0.012 * np.clip(1.5 - lp, 0.0, 3.2)) * rng.lognormal(0.0, 0.25, nc)
    beta[is_common] = np.clip(rng.normal(1.0, 0.35, nc), 0.0, 2.5)
    log10_volume[is_common] = np.clip(5.2 + 0.3 * (1.0 - lp) + rng.normal(0.0, 0.85, nc), 2.3, 8.3)
    reversion[is_common] = 0.003

    is_etf = kind == "etf"
    log10_price[is_etf] = np.log10([e[1] for e in _ETFS])
    beta[is_etf] = [e[2] for e in _ETFS]
    vol[is_etf] = [e[3] for e in _ETFS]
    log10_volume[is_etf] = np.log10([e[4] for e in _ETFS])
    reversion[is_etf] = 0.0

    # (log10 price low, high, vol, beta, log10 volume mean, sd)
    others = {
        "warrant": (-1.5, 0.3, 0.06, 1.5, 4.3, 0.8),
        "unit": (np.log10(9.8), np.log10(11.5), 0.005, 0.05, 3.3, 0.6),
        "right": (-1.7, -0.5, 0.07, 1.0, 4.0, 0.8),
        "preferred": (np.log10(17.0), np.log10(26.0), 0.007, 0.2, 4.2, 0.5),
        "test": (1.0, np.log10(40.0), 0.01, 0.0, 2.3, 0.3),
    }
    for name, (lo, hi, v, b, mv, sv) in others.items():
        mask = kind == name
        m = int(mask.sum())
        log10_price[mask] = rng.uniform(lo, hi, m)
        vol[mask] = v
        beta[mask] = b
        log10_volume[mask] = rng.normal(mv, sv, m)

    log10_price_c = np.clip(log10_price, -1.7, 4.0)
    trade_size = 10.0 ** (2.0 + 0.2 * (1.0 - log10_price_c) + rng.normal(0.0, 0.15, n))
    ext_hours = rng.lognormal(0.0, 0.8, n) * np.where(log10_price_c < 1.0, 1.5, 1.0)

    # Lifecycles. Draws are fixed-size fractions so they do not depend on how many sessions
    # the range has; they are mapped onto the range's sessions afterwards.
    sessions = spec.sessions
    n_days = len(sessions)
    ordinary_set = set(ordinary)
    eligible = [i for i, s in enumerate(symbols) if s in ordinary_set and s not in roots]
    n_events = max(1, round(0.06 * len(ordinary)))
    picks = rng.permutation(len(eligible))[: 2 * n_events]
    late = [eligible[i] for i in picks[:n_events]]
    gone = [eligible[i] for i in picks[n_events : 2 * n_events]]
    late_u = rng.random(len(late))
    gone_u = rng.random(len(gone))
    years_listed = rng.uniform(0.1, 25.0, n)

    first = np.zeros(n, dtype=np.int64)
    last = np.full(n, max(n_days - 1, 0), dtype=np.int64)
    if n_days >= 2:
        first[late] = 1 + np.floor(late_u * (n_days - 1)).astype(np.int64)
        last[gone] = np.floor(gone_u * (n_days - 1)).astype(np.int64)
        # Delistings above strike small names; one of the most traded names goes too, late in
        # the range, so a liquid universe holds a name that stops trading (its own stream, so
        # every other draw stays as it was).
        spared = sorted(set(eligible) - set(late) - set(gone), key=lambda i: -(log10_price[i] + log10_volume[i]))
        if spared:
            liquid_rng = np.random.default_rng([spec.seed, _STREAM_UNIVERSE, spec.tickers, 1])
            star = spared[int(liquid_rng.integers(0, min(3, len(spared))))]
            last[star] = int(np.floor(liquid_rng.uniform(0.6, 0.85) * (n_days - 1)))

    prior = calendar.trading_days("1990-01-02", spec.start - dt.timedelta(days=1))
    list_dates: list[dt.date] = []
    delist_dates: list[dt.date | None] = []
    for i in range(n):
        if n_days and first[i] > 0:
            list_dates.append(sessions[first[i]])
        elif prior:
            back = spec.start - dt.timedelta(days=int(years_listed[i] * 365.25))
            list_dates.append(prior[_bisect_dates(prior, back)])
        else:
            list_dates.append(sessions[0] if sessions else spec.start)
        delist_dates.append(sessions[last[i]] if n_days and last[i] < n_days - 1 else None)
    # A derivative cannot have listed before the name it hangs off.
    index_of = {s: i for i, s in enumerate(symbols)}
    for i, (_, _, root) in enumerate(names):
        if root is not None:
            list_dates[i] = max(list_dates[i], list_dates[index_of[root]])

    log_ref = log10_price * np.log(10.0)
    frame = pl.DataFrame(
        {
            "ticker": symbols,
            "kind": kind.tolist(),
            "root": [root for _, _, root in names],
            "tradable": [kind_ in TRADABLE_KINDS for kind_ in kind.tolist()],
            "list_date": list_dates,
            "delist_date": delist_dates,
            "ref_price": _round_price(np.exp(log_ref)),
            "daily_vol": np.sqrt(vol**2 + (beta * _MARKET_VOL_INTRADAY) ** 2),
            "typical_volume": np.round(10.0**log10_volume).astype(np.int64),
        },
        schema_overrides={"root": pl.String, "list_date": pl.Date, "delist_date": pl.Date},
    )
    sort = np.argsort(np.array(symbols, dtype=object), kind="stable")
    frame = frame[sort.tolist()]
    return _Universe(
        frame=frame,
        tickers=frame["ticker"],
        first=first[sort],
        last=last[sort],
        log_ref=log_ref[sort],
        reversion=reversion[sort],
        beta=beta[sort],
        vol=vol[sort],
        log_volume=(log10_volume * np.log(10.0))[sort],
        trade_size=trade_size[sort],
        ext_hours=ext_hours[sort],
    )


def _bisect_dates(days: Sequence[dt.date], target: dt.date) -> int:
    """Index of the last element of sorted ``days`` that is <= ``target`` (0 if none)."""
    return max(0, bisect.bisect_right(days, target) - 1)


def polygon_universe(spec: PolygonSimSpec) -> pl.DataFrame:
    """Ground truth of the simulated universe, one row per symbol, sorted by ticker.

    Columns: ``ticker``; ``kind`` (one of ``KINDS``); ``root`` (the listed name a warrant, unit,
    right or preferred hangs off; null otherwise); ``tradable`` (common stock or ETF);
    ``list_date`` (first session the symbol trades; before ``start`` for names already listed);
    ``delist_date`` (last session it trades, null when it trades through ``end``);
    ``ref_price`` (price level at ``start``); ``daily_vol`` (typical daily log-return vol);
    ``typical_volume`` (median shares per day before day-to-day noise).
    """
    return _universe(spec).frame.clone()


# --------------------------------------------------------------------------------------------
# Daily paths


@dataclasses.dataclass(frozen=True)
class _DayBars:
    """One session for every name in the universe (inactive names included, masked later)."""

    log_open: np.ndarray
    log_close: np.ndarray
    volume: np.ndarray
    transactions: np.ndarray
    log_high: np.ndarray
    log_low: np.ndarray


def _day_rng(spec: PolygonSimSpec, day: dt.date, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, stream, day.toordinal()])


def _unit_t(rng: np.random.Generator, df: float, size) -> np.ndarray:
    """Student-t draws scaled to unit variance, with the absurd tail clipped."""
    return np.clip(rng.standard_t(df, size) / np.sqrt(df / (df - 2.0)), -15.0, 15.0)


def _advance(u: _Universe, rng: np.random.Generator, prev_close: np.ndarray):
    """Log open and close of one session from the previous close; the session's own draws."""
    n = len(u.vol)
    market = _unit_t(rng, 5.0, 2)
    idio = _unit_t(rng, 3.0, (2, n))
    gap_hit = rng.random(n) < _GAP_PROBABILITY
    gap_size = rng.uniform(0.12, 0.6, n) * np.where(rng.random(n) < 0.55, 1.0, -1.0)
    gap = np.where(gap_hit, gap_size, 0.0)

    overnight = (
        -u.reversion * (prev_close - u.log_ref)
        + u.beta * (_MARKET_DRIFT / 3 + _MARKET_VOL_OVERNIGHT * market[0])
        + u.vol * np.sqrt(_OVERNIGHT_SHARE) * idio[0]
        + gap
    )
    intraday = (
        u.beta * (2 * _MARKET_DRIFT / 3 + _MARKET_VOL_INTRADAY * market[1])
        + u.vol * np.sqrt(1.0 - _OVERNIGHT_SHARE) * idio[1]
    )
    lo, hi = np.log(_MIN_PRICE), np.log(_MAX_PRICE)
    log_open = np.clip(prev_close + overnight, lo, hi)
    log_close = np.clip(log_open + intraday, lo, hi)
    return log_open, log_close, np.abs(idio).max(axis=0), np.abs(gap)


def _finish_day(u: _Universe, rng: np.random.Generator, log_open, log_close, surprise, gap) -> _DayBars:
    """Volume, transactions and range of a session; drawn after the returns on the same stream."""
    n = len(u.vol)
    noise_volume = rng.standard_normal(n)
    noise_trades = rng.standard_normal(n)
    wick = np.abs(rng.standard_normal((2, n)))
    # Volume swells on surprising days and on gaps.
    log_v = u.log_volume + 0.35 * noise_volume + 0.12 * np.minimum(surprise, 10.0) + 2.0 * gap
    volume = np.maximum(1, np.round(np.exp(log_v))).astype(np.int64)
    trades = np.round(volume / u.trade_size * np.exp(0.15 * noise_trades)).astype(np.int64)
    trades = np.clip(trades, 1, volume)
    day_vol = np.sqrt(u.vol**2 + (u.beta * _MARKET_VOL_INTRADAY) ** 2)
    log_high = np.maximum(log_open, log_close) + 0.45 * day_vol * wick[0]
    log_low = np.minimum(log_open, log_close) - 0.45 * day_vol * wick[1]
    return _DayBars(log_open, log_close, volume, trades, log_high, log_low)


def _iter_days(spec: PolygonSimSpec, stop: int | None = None):
    """Yield ``(index, day, bars_or_None)`` for the sessions up to ``stop`` (inclusive).

    Bars are complete only where they are needed: for every day when ``stop`` is None,
    otherwise just for ``stop``, because earlier days only have to carry the close forward.
    """
    u = _universe(spec)
    sessions = spec.sessions
    close = u.log_ref.copy()
    for t, day in enumerate(sessions):
        if stop is not None and t > stop:
            return
        rng = _day_rng(spec, day, _STREAM_DAY)
        log_open, log_close, surprise, gap = _advance(u, rng, close)
        close = log_close
        if stop is None or t == stop:
            yield t, day, _finish_day(u, rng, log_open, log_close, surprise, gap)
        else:
            yield t, day, None


def _round_price(x: np.ndarray) -> np.ndarray:
    """Round like the vendor: cents at or above $1, four decimals below."""
    return np.where(x >= 1.0, np.round(x, 2), np.round(x, 4))


def _consistent_ohlc(o, c, h, l):
    o, c = _round_price(o), _round_price(c)
    h = np.maximum(_round_price(h), np.maximum(o, c))
    l = np.minimum(_round_price(np.maximum(l, _PRICE_TICK_FLOOR)), np.minimum(o, c))
    l = np.maximum(l, _PRICE_TICK_FLOOR)
    return o, c, h, l


# --------------------------------------------------------------------------------------------
# Minutes


def _session_minutes(day: dt.date) -> tuple[int, int, int]:
    """(regular open, regular close, post-market close) as minutes after New York midnight.

    Early-close sessions (e.g. the day after Thanksgiving) close at 13:00 and their post-market
    runs four hours after that, as on the SIP.
    """
    open_minute, close_minute = calendar.regular_session_minutes(day)
    post_close = min(close_minute + _POST_HOURS_MINUTES, calendar.POST_CLOSE_MINUTE)
    return open_minute, close_minute, post_close


def _intensity_profile(day: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Share of a day's trades per minute column (04:00 + j): regular hours, extended hours.

    Regular hours are U-shaped; pre-market builds towards the open, post-market fades after the
    close. Regular hours carry ~95% of trades for a name with average extended-hours appetite.
    """
    minute = calendar.PRE_OPEN_MINUTE + np.arange(_EXT_MINUTES, dtype=np.float64)
    rth_open, rth_close, post_close = _session_minutes(day)
    rth = (minute >= rth_open) & (minute < rth_close)
    pre = minute < rth_open
    post = (minute >= rth_close) & (minute < post_close)

    u_shape = 1.0 + 2.0 * np.exp(-(minute - rth_open) / 15.0) + 1.2 * np.exp(-(rth_close - 1 - minute) / 20.0)
    f_rth = np.where(rth, u_shape, 0.0)
    f_rth *= 0.955 / f_rth.sum()
    f_pre = np.where(pre, np.exp((minute - rth_open) / 70.0) + 0.05, 0.0)
    f_pre *= 0.025 / f_pre.sum()
    f_post = np.where(post, np.exp(-(minute - rth_close) / 40.0) + 0.05, 0.0)
    f_post *= 0.02 / f_post.sum()
    return f_rth, f_pre + f_post


@dataclasses.dataclass(frozen=True)
class _MinuteBars:
    name: np.ndarray  # universe index of each row
    minute: np.ndarray  # minutes after New York midnight
    volume: np.ndarray
    open: np.ndarray
    close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    transactions: np.ndarray
    starts: np.ndarray  # first row of each traded name
    ends: np.ndarray  # last row of each traded name


def _minute_bars(
    spec: PolygonSimSpec, u: _Universe, day: dt.date, active: np.ndarray, bars: _DayBars
) -> _MinuteBars:
    """Minute bars of the active names that open at the session's open and close at its close.

    Each name's traded minutes are drawn from its transaction intensity; its price walks across
    those minutes as a Brownian bridge pinned to the day's open and close.
    """
    rng = _day_rng(spec, day, _STREAM_MINUTE)
    act = np.flatnonzero(active)
    n_act = len(act)
    f_rth, f_ext = _intensity_profile(day)
    expected_trades = bars.transactions[act].astype(np.float64)
    lam = expected_trades[:, None] * (f_rth[None, :] + u.ext_hours[act][:, None] * f_ext[None, :])
    traded = rng.random(lam.shape) < -np.expm1(-lam)
    silent = np.flatnonzero(~traded.any(axis=1))
    traded[silent, np.argmax(lam[silent], axis=1)] = True
    row_name, col = np.nonzero(traded)  # row-major: by name, then by minute
    lam_k = lam[row_name, col]
    del lam, traded
    k = len(row_name)

    counts = np.bincount(row_name, minlength=n_act)
    ends_incl = np.cumsum(counts) - 1
    starts = ends_incl - counts + 1
    pos = np.arange(k) - starts[row_name] + 1  # 1-based position within the name's rows
    n_rows = counts[row_name]

    trades = np.maximum(1, rng.poisson(lam_k))
    # A lone row must both open at the day's open and close at its close: it needs two trades.
    trades[n_rows == 1] = np.maximum(trades[n_rows == 1], 2)
    size = u.trade_size[act][row_name] * np.exp(0.5 * rng.standard_normal(k) - 0.125)
    volume = np.maximum(trades, np.round(trades * size)).astype(np.int64)

    day_vol = np.sqrt(u.vol[act] ** 2 + (u.beta[act] * _MARKET_VOL_INTRADAY) ** 2)
    step = (0.87 * day_vol / np.sqrt(counts))[row_name]
    eps = rng.standard_normal(k) * step
    csum = np.cumsum(eps)
    before = csum[starts] - eps[starts]
    walk = csum - before[row_name]
    walk_end = (csum[ends_incl] - before)[row_name]
    log_o = bars.log_open[act][row_name]
    log_ret = (bars.log_close[act] - bars.log_open[act])[row_name]
    frac = pos / n_rows
    log_c = log_o + walk - frac * (walk_end - log_ret)

    prev_c = np.empty(k)
    prev_c[1:] = log_c[:-1]
    first = pos == 1
    log_open_k = np.where(first, log_o, prev_c + 0.3 * step * rng.standard_normal(k))
    # A minute with a single trade has one price; the first row keeps the day's open and the
    # last row the day's close.
    lone = trades == 1
    log_c = np.where(lone & first, log_open_k, log_c)
    log_open_k = np.where(lone & ~first, log_c, log_open_k)
    wick = np.abs(rng.standard_normal((2, k))) * 0.5 * step
    wick[:, lone] = 0.0
    log_h = np.maximum(log_open_k, log_c) + wick[0]
    log_l = np.minimum(log_open_k, log_c) - wick[1]

    o, c, h, l = _consistent_ohlc(np.exp(log_open_k), np.exp(log_c), np.exp(log_h), np.exp(log_l))
    return _MinuteBars(
        name=act[row_name],
        minute=calendar.PRE_OPEN_MINUTE + col,
        volume=volume,
        open=o,
        close=c,
        high=h,
        low=l,
        transactions=trades.astype(np.int64),
        starts=starts,
        ends=ends_incl,
    )


def _minute_frame(u: _Universe, day: dt.date, m: _MinuteBars) -> pl.DataFrame:
    midnight = calendar.ny_midnight_ns(day)
    return pl.DataFrame(
        {
            "ticker": u.tickers.gather(m.name),
            "volume": m.volume,
            "open": m.open,
            "close": m.close,
            "high": m.high,
            "low": m.low,
            "window_start": midnight + m.minute.astype(np.int64) * _NS_PER_MINUTE,
            "transactions": m.transactions,
        }
    )


def _day_frame_from_minutes(u: _Universe, day: dt.date, m: _MinuteBars) -> pl.DataFrame:
    s = m.starts
    return _frame(
        u,
        day,
        m.name[s],
        volume=np.add.reduceat(m.volume, s),
        open_=m.open[s],
        close=m.close[m.ends],
        high=np.maximum.reduceat(m.high, s),
        low=np.minimum.reduceat(m.low, s),
        transactions=np.add.reduceat(m.transactions, s),
    )


def _day_frame_from_bars(u: _Universe, day: dt.date, active: np.ndarray, bars: _DayBars) -> pl.DataFrame:
    idx = np.flatnonzero(active)
    o, c, h, l = _consistent_ohlc(
        np.exp(bars.log_open[idx]),
        np.exp(bars.log_close[idx]),
        np.exp(bars.log_high[idx]),
        np.exp(bars.log_low[idx]),
    )
    return _frame(u, day, idx, bars.volume[idx], o, c, h, l, bars.transactions[idx])


def _frame(u, day, idx, volume, open_, close, high, low, transactions) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ticker": u.tickers.gather(idx),
            "volume": volume.astype(np.int64),
            "open": open_,
            "close": close,
            "high": high,
            "low": low,
            "window_start": np.full(len(idx), calendar.ny_midnight_ns(day), dtype=np.int64),
            "transactions": transactions.astype(np.int64),
        }
    )


def _session_index(spec: PolygonSimSpec, day: dt.date | str) -> tuple[int, dt.date]:
    d = calendar.as_date(day)
    sessions = spec.sessions
    i = _bisect_dates(sessions, d)
    if not sessions or sessions[i] != d:
        raise ValueError(f"{d} is not an NYSE session in [{spec.start}, {spec.end}]")
    return i, d


def simulate_minute_day(spec: PolygonSimSpec, day: dt.date | str) -> pl.DataFrame:
    """The minute rows of one session of ``spec``, sorted by ticker then ``window_start``.

    ``day`` must be a session in ``[spec.start, spec.end]``; any such session works, not only
    the ones ``simulate_polygon`` writes minute files for. Columns and dtypes match the vendor
    file: ``ticker`` str, ``volume`` i64, ``open``/``close``/``high``/``low`` f64,
    ``window_start`` i64 (Unix ns of the minute's start), ``transactions`` i64.
    """
    t, d = _session_index(spec, day)
    u = _universe(spec)
    for _, _, bars in _iter_days(spec, stop=t):
        pass
    active = (u.first <= t) & (u.last >= t)
    return _minute_frame(u, d, _minute_bars(spec, u, d, active, bars))


ProgressFn = Callable[[int, int, str], None]


def simulate_polygon(store: Store, spec: PolygonSimSpec, *, progress: ProgressFn | None = None) -> SimReport:
    """Write the day files of every session of ``spec`` and the minute files of its last
    ``minute_days`` sessions into ``store``; return what was written.

    On minute days the day bar of each symbol is the aggregate of its minute bars. Writes are
    atomic per file and re-running a spec rewrites identical bytes. ``progress``, when given,
    is called as ``progress(files_done, files_total, key)`` after each file.
    """
    u = _universe(spec)
    minute_days = set(spec.minute_sessions)
    total = len(spec.sessions) + len(minute_days)
    report = SimReport()

    def put(key: str, frame: pl.DataFrame) -> None:
        store.write_bytes(key, encode_polygon_csv_gz(frame))
        report.keys.append(key)
        if progress is not None:
            progress(len(report.keys), total, key)

    for t, day, bars in _iter_days(spec):
        active = (u.first <= t) & (u.last >= t)
        if day in minute_days:
            minutes = _minute_bars(spec, u, day, active, bars)
            minute_frame = _minute_frame(u, day, minutes)
            put(minute_aggs_key(day), minute_frame)
            report.minute_files += 1
            report.minute_rows += minute_frame.height
            day_frame = _day_frame_from_minutes(u, day, minutes)
        else:
            day_frame = _day_frame_from_bars(u, day, active, bars)
        put(day_aggs_key(day), day_frame)
        report.day_files += 1
        report.day_rows += day_frame.height
    return report
