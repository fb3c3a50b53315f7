"""What one client-intelligence world is made of: segments and their behaviours, instruments,
and the knobs of a world (:class:`WorldSpec`).

A world is one coherent, deterministic universe for one seed: a daily price history for six
instruments, a book of clients each belonging to one behavioural segment, the trades those
clients make against the prices, and everything derived from them. Changing any knob gives a
different world; the same knobs always give the same world, row for row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping

import numpy as np

from quant_assets.lib.knobs import knob

# --------------------------------------------------------------------------- segments

TREND_FOLLOWER = "Trend Follower"
MEAN_REVERTER = "Mean Reverter"
HEDGER = "Hedger"
TREND_SETTER = "Trend Setter"
# The order fixes the integer codes used inside the numerical kernels.
SEGMENTS: tuple[str, ...] = (TREND_FOLLOWER, MEAN_REVERTER, HEDGER, TREND_SETTER)
SEGMENT_CODE: dict[str, int] = {name: i for i, name in enumerate(SEGMENTS)}


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How a segment trades, and the bands its observed behaviour must fall in.

    ``hold_min``/``hold_max``: calendar days between a lot's opening and closing trade (every
    lot of the segment is generated inside the band, so a client's average is inside it too).
    ``market_share``: share of MARKET orders (the rest are LIMIT), segment mean.
    ``market_share_tol``: how far the segment's observed share may sit from it.
    """

    name: str
    hold_min: int
    hold_max: int
    market_share: float
    market_share_tol: float
    description: str


BEHAVIOURS: dict[str, Behaviour] = {
    TREND_FOLLOWER: Behaviour(
        TREND_FOLLOWER, 2, 5, 0.70, 0.05,
        "Buys when the 5-day trend is up and sells when it is down, holds 2-5 days, ~70% market orders, "
        "trades most days.",
    ),
    MEAN_REVERTER: Behaviour(
        MEAN_REVERTER, 1, 3, 0.0, 0.0,
        "Buys below and sells above the 20-day moving average, holds 1-3 days, limit orders only, "
        "trades almost every day.",
    ),
    HEDGER: Behaviour(
        HEDGER, 30, 90, 0.25, 0.12,
        "5-15 trades per 6 months, holds 30-90 days, ~70% sells (hedges built by selling in tranches), "
        "mostly limit orders.",
    ),
    TREND_SETTER: Behaviour(
        TREND_SETTER, 5, 15, 0.80, 0.05,
        "Enters before the move: buys dips that later recover and sells rallies that later fade, holds "
        "5-15 days, ~80% market orders, positive lead-lag alpha.",
    ),
}  # fmt: skip

# Hedgers: trades per 6 months and the share of SELL trades they aim at.
HEDGER_TRADES_PER_6M = (5, 15)
HEDGER_SELL_SHARE = 0.70
HEDGER_SELL_SHARE_TOL = 0.10

# --------------------------------------------------------------------------- instruments


@dataclasses.dataclass(frozen=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    start_price: float
    annual_vol: float
    tick: float
    lot: int  # quantities are whole multiples of this many base units
    usd_beta: float  # loading on the common US-dollar factor (sign: price rises when USD rises)
    name: str


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("EURUSD", "EUR", "USD", 1.1040, 0.075, 0.00001, 1000, -0.85, "Euro / US dollar"),
    Instrument("GBPUSD", "GBP", "USD", 1.2730, 0.080, 0.00001, 1000, -0.75, "British pound / US dollar"),
    Instrument("USDJPY", "USD", "JPY", 141.00, 0.095, 0.001, 1000, 0.65, "US dollar / Japanese yen"),
    Instrument("AUDUSD", "AUD", "USD", 0.6810, 0.105, 0.00001, 1000, -0.70, "Australian dollar / US dollar"),
    Instrument("USDCHF", "USD", "CHF", 0.8420, 0.080, 0.00001, 1000, 0.80, "US dollar / Swiss franc"),
    Instrument("XAUUSD", "XAU", "USD", 2063.0, 0.140, 0.01, 1, -0.45, "Gold / US dollar (troy ounce)"),
)
SYMBOLS: tuple[str, ...] = tuple(i.symbol for i in INSTRUMENTS)


def instrument_arrays() -> dict[str, np.ndarray]:
    """Per-instrument constants as arrays indexed like ``INSTRUMENTS``."""
    return {
        "start_price": np.array([i.start_price for i in INSTRUMENTS]),
        "daily_vol": np.array([i.annual_vol / math.sqrt(365.0) for i in INSTRUMENTS]),
        "tick": np.array([i.tick for i in INSTRUMENTS]),
        "lot": np.array([i.lot for i in INSTRUMENTS], dtype=np.int64),
        "usd_beta": np.array([i.usd_beta for i in INSTRUMENTS]),
        # Price is quoted in `quote` per `base`: a base-USD pair's P&L is in a foreign currency.
        "base_is_usd": np.array([i.base == "USD" for i in INSTRUMENTS]),
    }


# --------------------------------------------------------------------------- the world's knobs

DEFAULT_N_CLIENTS = 50
DEFAULT_MONTHS_HISTORY = 6
DEFAULT_SEED = 42
DEFAULT_AS_OF = dt.date(2024, 6, 30)
DEFAULT_SEGMENT_MIX: dict[str, float] = {s: 0.25 for s in SEGMENTS}
MAX_CLIENTS = 100_000
MIN_MONTHS_HISTORY = 3
MAX_MONTHS_HISTORY = 60
HEADLINES_PER_6M = 500


class WorldSpecError(ValueError):
    """A knob of the world is out of range; the message names the knob."""


def validate_segment_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """The segment mix as weights summing to 1; unknown segments, negative or all-zero weights fail."""
    if not isinstance(mix, Mapping) or not mix:
        raise WorldSpecError(f"segment_mix must map segment names to weights; choose from {list(SEGMENTS)}")
    unknown = [k for k in mix if k not in SEGMENT_CODE]
    if unknown:
        raise WorldSpecError(f"segment_mix names unknown segment(s) {unknown}; choose from {list(SEGMENTS)}")
    bad = {k: v for k, v in mix.items() if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0}
    if bad:
        raise WorldSpecError(f"segment_mix weights must be finite and >= 0, got {bad}")
    total = float(sum(mix.values()))
    if total <= 0:
        raise WorldSpecError("segment_mix weights sum to 0: give at least one segment a positive weight")
    return {s: float(mix.get(s, 0.0)) / total for s in SEGMENTS}


def as_of_warning(as_of: dt.date, today: dt.date | None = None) -> str | None:
    """Why ``as_of`` deserves a warning (it lies in the future: the world is generated for days
    that have not happened), or None."""
    today = today or dt.datetime.now(dt.UTC).date()
    if as_of > today:
        return f"as_of {as_of} is {(as_of - today).days} day(s) after today ({today}): the history runs into the future"
    return None


def parse_as_of(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise WorldSpecError(f"as_of={value!r} is not a YYYY-MM-DD date") from None


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """The knobs of one world. Validated on construction; errors name the knob."""

    n_clients: int = knob(DEFAULT_N_CLIENTS, f"Number of clients in the book (1-{MAX_CLIENTS:,}).", ge=1, le=MAX_CLIENTS)
    months_history: int = knob(
        DEFAULT_MONTHS_HISTORY,
        f"Calendar months of history ending on as_of ({MIN_MONTHS_HISTORY}-{MAX_MONTHS_HISTORY}; "
        "Hedgers hold 30-90 days, so a shorter history cannot show a closed hedge).",
        ge=MIN_MONTHS_HISTORY,
        le=MAX_MONTHS_HISTORY,
    )
    seed: int = knob(DEFAULT_SEED, "Seed of the world: the same seed gives the same tables.", ge=0)
    segment_mix: Mapping[str, float] = knob(
        DEFAULT_SEGMENT_MIX,
        "Relative weight of each segment in the book (Trend Follower, Mean Reverter, Hedger, Trend "
        "Setter); weights are normalised, an unnamed segment gets none.",
    )
    as_of: dt.date = DEFAULT_AS_OF  # the launchpad's as_of is a YYYY-MM-DD string

    def __post_init__(self) -> None:
        if isinstance(self.n_clients, bool) or not isinstance(self.n_clients, int) or not 1 <= self.n_clients <= MAX_CLIENTS:
            raise WorldSpecError(f"n_clients must be an integer in [1, {MAX_CLIENTS}], got {self.n_clients!r}")
        if (
            isinstance(self.months_history, bool)
            or not isinstance(self.months_history, int)
            or not MIN_MONTHS_HISTORY <= self.months_history <= MAX_MONTHS_HISTORY
        ):
            raise WorldSpecError(
                f"months_history must be an integer in [{MIN_MONTHS_HISTORY}, {MAX_MONTHS_HISTORY}], got "
                f"{self.months_history!r} (Hedgers hold 30-90 days: a shorter history cannot show a closed hedge)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise WorldSpecError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        object.__setattr__(self, "segment_mix", validate_segment_mix(self.segment_mix))
        object.__setattr__(self, "as_of", parse_as_of(self.as_of))

    @property
    def start(self) -> dt.date:
        """First day of history: ``months_history`` calendar months before the day after ``as_of``
        (2024-01-01 for six months to 2024-06-30)."""
        return add_months(self.as_of + dt.timedelta(days=1), -self.months_history)

    @property
    def days(self) -> int:
        return (self.as_of - self.start).days + 1

    def dates(self) -> np.ndarray:
        """Every calendar day of the history, as numpy ``datetime64[D]``."""
        return np.arange(np.datetime64(self.start), np.datetime64(self.as_of) + 1, dtype="datetime64[D]")

    @property
    def n_headlines(self) -> int:
        return int(round(HEADLINES_PER_6M * self.months_history / 6))

    def hedger_trade_band(self) -> tuple[int, int]:
        """Trades a Hedger makes over this history (5-15 per 6 months, pro rata)."""
        lo, hi = HEDGER_TRADES_PER_6M
        return max(1, int(math.floor(lo * self.months_history / 6))), int(math.ceil(hi * self.months_history / 6))


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole calendar months, clamped to the month's last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    next_first = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = (next_first - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))
