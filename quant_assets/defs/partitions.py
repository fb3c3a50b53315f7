"""Every PartitionsDefinition of the code location, defined once.

Trading days are one partition per weekday (New York dates) from ``QUANT_START_DATE`` to
``QUANT_END_DATE`` (inclusive) or, when that is unset, to the latest complete weekday. A weekday
that is a US market holiday is still a partition: it materializes as "no data", never a failure.
"""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition, RunRequest, SkipReason, WeeklyPartitionsDefinition

from quant_assets.lib import calendar as cal
from quant_assets.lib import settings

NY = cal.NY_TZ_NAME
WEEKENDS = "0 0 * * 6,0"


def _end_exclusive(last: dt.date | None) -> str | None:
    return None if last is None else (last + dt.timedelta(days=1)).isoformat()


_start = settings.start_date()
_end = settings.end_date()

trading_days = DailyPartitionsDefinition(
    start_date=_start.isoformat(),
    end_date=_end_exclusive(_end),
    timezone=NY,
    exclusions=[WEEKENDS],
)

# Weeks run Monday to Friday; a week's key is its Monday. Keys exist once the week is over.
trading_weeks = WeeklyPartitionsDefinition(
    start_date=cal.week_start(_start).isoformat(),
    end_date=_end_exclusive(cal.week_start(_end) + dt.timedelta(days=6)) if _end else None,
    timezone=NY,
    day_offset=1,
)

# Filled by the asset or sensor that discovers a universe. Each domain has its own set, so
# stock tickers never mix with crypto pairs.
symbols = DynamicPartitionsDefinition(name="symbols")
smart_money_symbols = DynamicPartitionsDefinition(name="smart_money_symbols")
pump_symbols = DynamicPartitionsDefinition(name="pump_symbols")

# Crypto trades every day: one partition per UTC calendar day, all seven days a week, over the
# same QUANT_START_DATE..QUANT_END_DATE window.
utc_days = DailyPartitionsDefinition(
    start_date=_start.isoformat(),
    end_date=_end_exclusive(_end),
    timezone="UTC",
)


def trading_day_request(day: dt.date, tick: dt.datetime) -> RunRequest | SkipReason:
    """A scheduled run of ``day``'s trading-day partition, or a skip when that partition does not
    exist at ``tick`` (before QUANT_START_DATE or after QUANT_END_DATE)."""
    pk = day.isoformat()
    if pk not in trading_days.get_partition_keys(current_time=tick):
        return SkipReason(f"{pk} is outside the trading-day partitions")
    return RunRequest(run_key=pk, partition_key=pk)


def history_start() -> dt.date:
    """The first trading-day partition: data before it is never expected to exist."""
    return _start


def partition_dates(keys) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(k) for k in keys)
