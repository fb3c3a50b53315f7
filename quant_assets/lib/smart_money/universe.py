"""What the smart-money study covers: the stock universe, the monthly sample dates, and the
history windows the sources must be fetched over for them.

* Universes: ``test`` (TSLA, NVDA, AAPL), ``custom`` (a list given by the user), or ``top50`` /
  ``top100`` / ``top500``: the first N symbols of a universe file (a CSV with a ``symbol``
  column, ordered by rank). The embedded file lists S&P 500 members ranked by market
  capitalisation at the end of 2024 (approximate ranks; the old generator's "top 500 S&P 500
  stocks with high institutional coverage").
* Dated membership: a universe file with ``start`` and ``end`` columns is a membership table
  (one row per symbol and membership span, ``end`` empty while still a member, an optional
  ``rank`` per span). ``topN`` then samples, on each date, the first N of the symbols that are
  members on that date (by rank, then symbol): a symbol removed from the index is sampled until
  its removal, one added later from its addition. Without dates the list is static: every
  symbol on every date, whatever happened to it before or after (``survivorship:
  static_universe`` -- the list was drawn up at its end, so the sample holds only its survivors).
* Sample dates: the ``sample_day`` (15th) of every month from ``start_month`` to ``end_month``;
  when that day is not an NYSE session, the next session.
* Fetch windows: what the features and labels of those dates need -- 90 days of filings before
  the first date, and prices to well past the last date's 14-day label.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import re
from pathlib import Path

import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.knobs import check_knobs, knob

UNIVERSES = ("test", "custom", "top50", "top100", "top500")
TEST_SYMBOLS = ("TSLA", "NVDA", "AAPL")
UNIVERSE_FILE = Path(__file__).with_name("sp500_universe.csv")
# Name of the dataset CSV per universe (the old generator's file names).
DATASET_FILE_NAMES = {
    "test": "smart-money-flow-test.csv",
    "custom": "smart-money-flow-custom.csv",
    "top50": "smart-money-flow-top50.csv",
    "top100": "smart-money-flow-top100.csv",
    "top500": "smart-money-flow-full.csv",
}
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.-][A-Z]{1,2})?$")

# The longest look-back of any feature (days of filings before a sample date).
FILING_LOOKBACK_DAYS = 90
# Prices are fetched this long after the last sample date: the 14-day label plus room for a
# run of holidays before the next session.
PRICE_TAIL_DAYS = 30
# Quarters of 13F history before the first sample's latest filed quarter (momentum looks back
# three quarters).
THIRTEEN_F_QUARTERS_BACK = 2
# A 13F report is due 45 days after the quarter ends.
THIRTEEN_F_DEADLINE_DAYS = 45

# Default hedge funds tracked by the hedge-fund features: SEC CIKs of twenty large 13F filers
# run as hedge funds (the old "top 20 hedge funds").
DEFAULT_HEDGE_FUNDS: dict[str, str] = {
    "0001350694": "Bridgewater Associates",
    "0001037389": "Renaissance Technologies",
    "0001423053": "Citadel Advisors",
    "0001179392": "Two Sigma Investments",
    "0001009207": "D. E. Shaw & Co.",
    "0001273087": "Millennium Management",
    "0001167557": "AQR Capital Management",
    "0001603466": "Point72 Asset Management",
    "0001791786": "Elliott Investment Management",
    "0001336528": "Pershing Square Capital Management",
    "0001040273": "Third Point",
    "0001167483": "Tiger Global Management",
    "0001135730": "Coatue Management",
    "0001103804": "Viking Global Investors",
    "0001061165": "Lone Pine Capital",
    "0001061768": "Baupost Group",
    "0001656456": "Appaloosa",
    "0001029160": "Soros Fund Management",
    "0001079114": "Greenlight Capital",
    "0000934639": "Maverick Capital",
}


SURVIVORSHIP_STATIC = "static_universe"
SURVIVORSHIP_DATED = "dated_membership"
MEMBERSHIP_COLUMNS = ("symbol", "start", "end")


class UniverseError(ValueError):
    """A universe request that cannot be honoured (unknown name, bad symbol, unreadable file)."""


def normalise_symbol(raw: str) -> str:
    """Upper-case ticker with share classes written with a dot (``BRK-B`` -> ``BRK.B``)."""
    sym = raw.strip().upper().replace("/", ".")
    if "-" in sym and SYMBOL_RE.match(sym):
        sym = sym.replace("-", ".")
    return sym


def read_universe_file(path: str | Path) -> list[str]:
    """Symbols of a universe file in rank order: a CSV with a ``symbol`` column (and optionally
    ``rank``, which then decides the order)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows or "symbol" not in rows[0]:
        raise UniverseError(f"{path}: a universe file needs a header with a 'symbol' column")
    if "rank" in rows[0]:
        try:
            rows.sort(key=lambda r: int(r["rank"]))
        except ValueError:
            raise UniverseError(f"{path}: the 'rank' column must hold integers") from None
    symbols = []
    for line, row in enumerate(rows, start=2):
        sym = normalise_symbol(row["symbol"] or "")
        if not SYMBOL_RE.match(sym):
            raise UniverseError(f"{path}:{line}: {row['symbol']!r} is not a stock ticker")
        if sym not in symbols:
            symbols.append(sym)
    return symbols


def _read_rows(path: Path) -> list[dict]:
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise UniverseError(f"{path}: cannot read the universe file ({exc.strerror or exc})") from None


def is_membership_file(path: str | Path) -> bool:
    """Whether a universe file is a dated membership table (``start`` and ``end`` columns)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
    except OSError as exc:
        raise UniverseError(f"{path}: cannot read the universe file ({exc.strerror or exc})") from None
    return {"start", "end"} <= {h.strip() for h in header}


@dataclasses.dataclass(frozen=True)
class Span:
    symbol: str
    start: dt.date
    end: dt.date | None  # last day as a member; None while still one
    rank: int | None

    def covers(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


def read_membership_file(path: str | Path) -> list[Span]:
    """The spans of a membership file: a CSV with ``symbol``, ``start`` (first day as a member),
    ``end`` (last day; empty while still one), both YYYY-MM-DD, and optionally ``rank`` (an
    integer per span, 1 = first; a symbol whose rank changed gets one span per rank). Fails
    naming the file and line of a bad symbol, date or rank, an end before its start, and two
    spans of one symbol that overlap."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows or not set(MEMBERSHIP_COLUMNS) <= set(rows[0]):
        raise UniverseError(f"{path}: a membership file needs a header with the columns {', '.join(MEMBERSHIP_COLUMNS)}")
    spans: list[tuple[int, Span]] = []
    for line, row in enumerate(rows, start=2):
        raw = row["symbol"] or ""
        sym = normalise_symbol(raw)
        if not SYMBOL_RE.match(sym):
            raise UniverseError(f"{path}:{line}: {raw!r} is not a stock ticker")
        try:
            start = dt.date.fromisoformat((row["start"] or "").strip())
        except ValueError:
            raise UniverseError(f"{path}:{line}: start {row['start']!r} is not a YYYY-MM-DD date") from None
        end_text = (row["end"] or "").strip()
        try:
            end = dt.date.fromisoformat(end_text) if end_text else None
        except ValueError:
            raise UniverseError(f"{path}:{line}: end {row['end']!r} is not a YYYY-MM-DD date (empty = still a member)") from None
        if end is not None and end < start:
            raise UniverseError(f"{path}:{line}: {sym} ends ({end}) before it starts ({start})")
        rank = None
        if (row.get("rank") or "").strip():
            try:
                rank = int(row["rank"])
            except ValueError:
                raise UniverseError(f"{path}:{line}: rank {row['rank']!r} is not an integer") from None
        spans.append((line, Span(sym, start, end, rank)))
    by_symbol: dict[str, list[tuple[int, Span]]] = {}
    for line, span in spans:
        by_symbol.setdefault(span.symbol, []).append((line, span))
    for sym, items in by_symbol.items():
        items.sort(key=lambda x: x[1].start)
        for (l1, a), (l2, b) in zip(items, items[1:]):
            if a.end is None or a.end >= b.start:
                raise UniverseError(f"{path}: lines {l1} and {l2}: two membership spans of {sym} overlap")
    return [span for _, span in spans]


def members_on(spans: list[Span], day: dt.date, size: int | None = None) -> list[str]:
    """The symbols that are members on ``day``, by rank (unranked last), then symbol; the first
    ``size`` of them when given."""
    active = sorted((s for s in spans if s.covers(day)), key=lambda s: (s.rank is None, s.rank or 0, s.symbol))
    out = [s.symbol for s in active]
    return out[:size] if size is not None else out


@dataclasses.dataclass(frozen=True)
class UniverseSelection:
    """What a universe samples: ``symbols`` (every symbol sampled on some date, in order of
    first appearance, then rank), ``sampled`` (date -> symbols sampled on it) and
    ``survivorship`` (``static_universe`` or ``dated_membership``)."""

    symbols: list[str]
    sampled: dict[dt.date, list[str]]
    survivorship: str

    def sample_dates_of(self, symbol: str) -> list[dt.date]:
        return [d for d, syms in sorted(self.sampled.items()) if symbol in syms]

    @property
    def examples(self) -> int:
        return sum(len(v) for v in self.sampled.values())

    def membership_changes(self) -> int:
        """Sample dates whose sampled symbols differ from the previous sample date's."""
        dates = sorted(self.sampled)
        return sum(1 for prev, d in zip(dates, dates[1:]) if self.sampled[prev] != self.sampled[d])

    def table(self, universe: str, schedule, schema) -> pl.DataFrame:
        """One row per symbol, in rank order: the universe's name, its schedule, the dates the
        symbol is sampled on and the survivorship of the selection."""
        n = len(self.symbols)
        return pl.DataFrame(
            {
                "symbol": self.symbols,
                "rank": list(range(1, n + 1)),
                "universe": [universe] * n,
                "start_month": [schedule.start_month] * n,
                "end_month": [schedule.end_month] * n,
                "sample_day": [schedule.sample_day] * n,
                "sample_dates": [self.sample_dates_of(sym) for sym in self.symbols],
                "survivorship": [self.survivorship] * n,
            },
            schema=schema,
        )


def resolve_universe(
    name: str, dates: list[dt.date], symbols: list[str] | None = None, universe_file: str | Path | None = None
) -> UniverseSelection:
    """The symbols universe ``name`` samples on each of ``dates``: from a dated membership file
    (``topN`` with a file that has ``start`` and ``end``), or a static list on every date."""
    if name.startswith("top") and name in UNIVERSES and universe_file and is_membership_file(universe_file):
        size = int(name.removeprefix("top"))
        spans = read_membership_file(universe_file)
        sampled = {d: members_on(spans, d, size) for d in dates}
        empty = [str(d) for d, v in sampled.items() if not v]
        if empty:
            raise UniverseError(f"{universe_file}: no member on sample date(s) {', '.join(empty[:5])}")
        order: list[str] = []
        for d in sorted(sampled):
            order += [s for s in sampled[d] if s not in order]
        return UniverseSelection(order, sampled, SURVIVORSHIP_DATED)
    static = select_universe(name, symbols, universe_file)
    return UniverseSelection(static, {d: list(static) for d in dates}, SURVIVORSHIP_STATIC)


def select_universe(name: str, symbols: list[str] | None = None, universe_file: str | Path | None = None) -> list[str]:
    """The symbols of universe ``name`` in rank order."""
    if name not in UNIVERSES:
        raise UniverseError(f"unknown universe {name!r}; choose from {', '.join(UNIVERSES)}")
    if name == "test":
        return list(TEST_SYMBOLS)
    if name == "custom":
        out: list[str] = []
        for raw in symbols or []:
            sym = normalise_symbol(raw)
            if not SYMBOL_RE.match(sym):
                raise UniverseError(f"custom universe: {raw!r} is not a stock ticker")
            if sym not in out:
                out.append(sym)
        if not out:
            raise UniverseError("custom universe: give at least one symbol (Config `symbols`)")
        return out
    size = int(name.removeprefix("top"))
    ranked = read_universe_file(universe_file or UNIVERSE_FILE)
    if len(ranked) < size:
        raise UniverseError(f"{universe_file or UNIVERSE_FILE}: {name} needs {size} symbols, the file lists {len(ranked)}")
    return ranked[:size]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Monthly sample dates: ``sample_day`` of each month ``start_month``..``end_month``."""

    start_month: str = knob("2022-01", "First sample month (YYYY-MM).")
    end_month: str = knob("2024-12", "Last sample month (YYYY-MM).")
    sample_day: int = knob(15, "Day of the month sampled; the next NYSE session when not one.", ge=1, le=28)

    def __post_init__(self) -> None:
        first, last = _month(self.start_month), _month(self.end_month)
        if last < first:
            raise UniverseError(f"end_month {self.end_month} is before start_month {self.start_month}")
        if not 1 <= self.sample_day <= 28:
            raise UniverseError(f"sample_day must be within 1..28 (every month has it), got {self.sample_day}")
        check_knobs(self)

    def nominal_dates(self) -> list[dt.date]:
        y, m = _month(self.start_month)
        last = _month(self.end_month)
        out = []
        while (y, m) <= last:
            out.append(dt.date(y, m, self.sample_day))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    def sample_dates(self) -> list[dt.date]:
        """Each nominal date, or the next NYSE session when it is not one."""
        return [next_session(d) for d in self.nominal_dates()]


def _month(text: str) -> tuple[int, int]:
    try:
        d = dt.date.fromisoformat(f"{text}-01")
    except ValueError:
        raise UniverseError(f"{text!r} is not a YYYY-MM month") from None
    return d.year, d.month


def next_session(day: dt.date) -> dt.date:
    """``day`` when it is an NYSE session, else the first session after it."""
    sessions = cal.trading_days(day, day + dt.timedelta(days=14))
    if not sessions:
        raise UniverseError(f"no NYSE session within two weeks of {day}")
    return sessions[0]


def quarter_end(day: dt.date) -> dt.date:
    q_month = ((day.month - 1) // 3 + 1) * 3
    nxt = dt.date(day.year + (q_month == 12), 1 if q_month == 12 else q_month + 1, 1)
    return nxt - dt.timedelta(days=1)


def previous_quarter_end(qend: dt.date) -> dt.date:
    return dt.date(qend.year, qend.month - 2, 1) - dt.timedelta(days=1)


def latest_filed_quarter(day: dt.date) -> dt.date:
    """The last quarter end whose 13F deadline (45 days later) is on or before ``day``."""
    q = quarter_end(day)
    while q + dt.timedelta(days=THIRTEEN_F_DEADLINE_DAYS) > day:
        q = previous_quarter_end(q)
    return q


@dataclasses.dataclass(frozen=True)
class FetchWindow:
    """What to fetch for a schedule: dated sources over [start, end]; 13F over ``quarters``."""

    start: dt.date
    end: dt.date
    quarters: tuple[dt.date, ...]

    @classmethod
    def for_schedule(cls, schedule: Schedule) -> FetchWindow:
        dates = schedule.sample_dates()
        first, last = dates[0], dates[-1]
        q_first = latest_filed_quarter(first)
        for _ in range(THIRTEEN_F_QUARTERS_BACK):
            q_first = previous_quarter_end(q_first)
        q_last = latest_filed_quarter(last)
        quarters = []
        q = q_last
        while q >= q_first:
            quarters.append(q)
            q = previous_quarter_end(q)
        return cls(
            start=first - dt.timedelta(days=FILING_LOOKBACK_DAYS + 10),
            end=last + dt.timedelta(days=PRICE_TAIL_DAYS),
            quarters=tuple(sorted(quarters)),
        )
