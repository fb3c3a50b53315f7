"""US equity trading calendar (NYSE sessions) and New York time helpers.

Partitions are one per weekday; whether a weekday is a session (the exchange was
open, so the vendor publishes a file) comes from the NYSE calendar kept by
``exchange_calendars``, which includes ad-hoc closures (e.g. 2025-01-09).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
NY_TZ_NAME = "America/New_York"
NS_PER_SECOND = 1_000_000_000
# NYSE sessions in a year: what daily figures are annualised with (x 252, x sqrt(252)).
TRADING_DAYS_PER_YEAR = 252

# Minutes after New York midnight that bound the sessions of a US equity day.
PRE_OPEN_MINUTE = 4 * 60  # 04:00 pre-market opens
RTH_OPEN_MINUTE = 9 * 60 + 30  # 09:30 regular trading hours open
RTH_CLOSE_MINUTE = 16 * 60  # 16:00 regular trading hours close
POST_CLOSE_MINUTE = 20 * 60  # 20:00 post-market closes

_CAL_FIRST = "1990-01-02"


@lru_cache(maxsize=1)
def _xnys():
    import exchange_calendars as xcals

    last = dt.date.today() + dt.timedelta(days=3 * 365)
    return xcals.get_calendar("XNYS", start=_CAL_FIRST, end=last.isoformat())


def as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


@lru_cache(maxsize=64)
def _sessions(start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
    if end < start:
        return ()
    idx = _xnys().sessions_in_range(start.isoformat(), end.isoformat())
    return tuple(ts.date() for ts in idx)


def trading_days(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """NYSE sessions in ``[start, end]`` (both inclusive)."""
    return list(_sessions(as_date(start), as_date(end)))


def is_trading_day(day: dt.date | str) -> bool:
    d = as_date(day)
    if d.weekday() >= 5:
        return False
    return bool(_sessions(d, d))


def previous_trading_day(day: dt.date | str) -> dt.date:
    """The last NYSE session strictly before ``day``."""
    d = as_date(day)
    probe = d - dt.timedelta(days=1)
    while True:
        window = _sessions(probe - dt.timedelta(days=14), probe)
        if window:
            return window[-1]
        probe -= dt.timedelta(days=15)


def previous_weekday(tick: dt.datetime) -> dt.date:
    """The last Monday-Friday strictly before ``tick``'s New York date (a scheduled tick's
    trading-day partition)."""
    day = tick.astimezone(NEW_YORK).date() - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def weekdays(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Every Monday-Friday in ``[start, end]``: the trading-day partition keys."""
    s, e = as_date(start), as_date(end)
    out = []
    d = s
    while d <= e:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def ny_midnight_ns(day: dt.date | str) -> int:
    """Unix nanoseconds of 00:00 New York time on ``day`` (Polygon's day-bar stamp)."""
    d = as_date(day)
    local = dt.datetime(d.year, d.month, d.day, tzinfo=NEW_YORK)
    return int(local.timestamp()) * NS_PER_SECOND


def ny_utc_offset_seconds(day: dt.date | str) -> int:
    """New York's UTC offset at noon on ``day``; constant over 04:00-20:00 on any trading day
    because US clocks change at 02:00 on Sundays."""
    d = as_date(day)
    noon = dt.datetime(d.year, d.month, d.day, 12, tzinfo=NEW_YORK)
    off = noon.utcoffset()
    assert off is not None
    return int(off.total_seconds())


def week_start(day: dt.date | str) -> dt.date:
    """Monday of the week containing ``day``."""
    d = as_date(day)
    return d - dt.timedelta(days=d.weekday())


def latest_complete_weekday(now: dt.datetime | None = None) -> dt.date:
    """The last weekday whose New York calendar day has ended."""
    now = now or dt.datetime.now(tz=NEW_YORK)
    d = now.astimezone(NEW_YORK).date() - dt.timedelta(days=1)
    while d.weekday() >= 5:
        d -= dt.timedelta(days=1)
    return d


def regular_session_minutes(day: dt.date | str) -> tuple[int, int]:
    """(open, close) of the regular session as minutes after New York midnight; early-close days
    (e.g. the day after Thanksgiving) close at 13:00."""
    d = as_date(day)
    xnys = _xnys()
    midnight = ny_midnight_ns(d)
    minute_ns = 60 * NS_PER_SECOND
    open_minute = int((xnys.session_open(d.isoformat()).value - midnight) // minute_ns)
    close_minute = int((xnys.session_close(d.isoformat()).value - midnight) // minute_ns)
    return open_minute, close_minute
