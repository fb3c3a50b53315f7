"""A dated liquid universe: the most liquid names as of each rebalance date, from what was known
then.

On each rebalance date D (a session of the daily table: every session, the first of each week,
or the first of each month), the candidates are the tickers with a bar on D and bars on at least
``min_history`` of the ``window`` sessions ending on D; they are ranked by their median daily
dollar volume (close x volume) over those bars, highest first (ties by ticker), and the first
``count`` are the members. Membership takes effect from the next session and holds until the
next rebalance date's membership does.

Only bars dated on or before D decide D's membership: changing anything after D changes no
membership dated on or before D. A name that lists late joins once it has ``min_history`` bars;
a name that later delists stays a member until the first rebalance after its last bar (what a
portfolio does with it then is the portfolio's business: it must exit, never drop it). Nothing
requires a bar on most sessions of the whole history, the survivorship trap of ranking on the
whole sample.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from quant_assets.lib.knobs import check_knobs, knob

REBALANCES = ("daily", "weekly", "monthly")
# A held name that stops trading is sold at its last close x (1 + this): 0 = at the last close.
# Studies of CRSP delistings (Shumway 1997) put performance-related delisting returns near -30 %.
DELISTING_RETURN = 0.0
UNIVERSE_SCHEMA: dict[str, pl.DataType] = {
    "rebalance_date": pl.Date(),
    "ticker": pl.String(),
    "rank": pl.Int32(),
    "median_dollar_volume": pl.Float64(),
    "bars_in_window": pl.Int32(),
}
UNIVERSE_DOCS: dict[str, str] = {
    "rebalance_date": "Session whose close decides the membership (it takes effect from the next session)",
    "ticker": "Member symbol",
    "rank": "1 = the most liquid member on that date",
    "median_dollar_volume": "Median of close x volume over the member's bars in the trailing window, USD",
    "bars_in_window": "The member's bars among the window sessions ending on the rebalance date",
}


@dataclasses.dataclass(frozen=True)
class UniverseSpec:
    count: int = knob(20, "Members on each rebalance date.", ge=1)
    window: int = knob(63, "Trailing sessions (ending on the rebalance date) the ranking uses.", ge=1)  # about a quarter
    rebalance: str = knob("monthly", "'daily', 'weekly' or 'monthly' (first session of each).")
    min_history: int = knob(50, "Bars a candidate needs within the window (and one on the rebalance date).", ge=1)  # 80 % of 63

    def __post_init__(self) -> None:
        if self.rebalance not in REBALANCES:
            raise ValueError(f"rebalance must be one of {REBALANCES}, got {self.rebalance!r}")
        if self.count < 1 or self.window < 1:
            raise ValueError(f"count and window must be at least 1, got {self.count} and {self.window}")
        if not 1 <= self.min_history <= self.window:
            raise ValueError(f"min_history must be between 1 and window ({self.window}), got {self.min_history}")
        check_knobs(self)


def rebalance_dates(sessions: Iterable[dt.date], rebalance: str) -> list[dt.date]:
    """The sessions a universe is re-ranked on: every one, the first of each ISO week, or the
    first of each month."""
    days = sorted(set(sessions))
    if rebalance == "daily":
        return days
    if rebalance not in REBALANCES:
        raise ValueError(f"rebalance must be one of {REBALANCES}, got {rebalance!r}")
    key = (lambda d: d.isocalendar()[:2]) if rebalance == "weekly" else (lambda d: (d.year, d.month))
    out, seen = [], set()
    for d in days:
        if key(d) not in seen:
            seen.add(key(d))
            out.append(d)
    return out


def liquid_universe(daily: pl.DataFrame, spec: UniverseSpec = UniverseSpec(), *, exclude: Iterable[str] = ()) -> pl.DataFrame:
    """Membership per rebalance date (``UNIVERSE_SCHEMA``) of ``daily`` (ticker, date, close,
    volume); ``exclude``: tickers never admitted (a benchmark)."""
    if daily.is_empty():
        return pl.DataFrame(schema=UNIVERSE_SCHEMA)
    frame = daily.select("ticker", "date", (pl.col("close") * pl.col("volume")).alias("dv")).filter(
        ~pl.col("ticker").is_in(list(exclude)) & pl.col("dv").is_not_null()
    )
    sessions = sorted(set(daily["date"].to_list()))
    index = {d: i for i, d in enumerate(sessions)}
    frame = frame.with_columns(pl.col("date").replace_strict(index, return_dtype=pl.Int64).alias("s"))
    out = []
    for day in rebalance_dates(sessions, spec.rebalance):
        end = index[day]
        window = frame.filter((pl.col("s") > end - spec.window) & (pl.col("s") <= end))
        ranked = (
            window.group_by("ticker")
            .agg(
                pl.col("dv").median().alias("median_dollar_volume"),
                pl.len().cast(pl.Int32).alias("bars_in_window"),
                (pl.col("s") == end).any().alias("trades_today"),
            )
            .filter(pl.col("trades_today") & (pl.col("bars_in_window") >= spec.min_history))
            .sort(["median_dollar_volume", "ticker"], descending=[True, False])
            .head(spec.count)
            .with_columns(pl.lit(day).alias("rebalance_date"), pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"))
        )
        out.append(ranked.select(list(UNIVERSE_SCHEMA)))
    return pl.concat(out) if out else pl.DataFrame(schema=UNIVERSE_SCHEMA)


def members_by_session(universe: pl.DataFrame, sessions: Iterable[dt.date]) -> pl.DataFrame:
    """(date, ticker) for every session: the members decided by the latest rebalance strictly
    before it (a session on a rebalance date still holds the previous membership)."""
    days = sorted(set(sessions))
    rebal = sorted(set(universe["rebalance_date"].to_list()))
    if not days or not rebal:
        return pl.DataFrame(schema={"date": pl.Date, "ticker": pl.String})
    pos = np.searchsorted(np.array(rebal, dtype="datetime64[D]"), np.array(days, dtype="datetime64[D]"), side="left") - 1
    frame = pl.DataFrame({"date": days, "rebalance_date": [rebal[p] if p >= 0 else None for p in pos]}, schema={"date": pl.Date, "rebalance_date": pl.Date})
    return frame.drop_nulls().join(universe.select("rebalance_date", "ticker"), on="rebalance_date").select("date", "ticker").sort("date", "ticker")


def top_members(universe: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first ``n`` members (by rank) of every rebalance date."""
    return universe.filter(pl.col("rank") <= n)


def ever_members(universe: pl.DataFrame) -> list[str]:
    """Every ticker that was a member on some rebalance date, best rank first (then earliest
    date, then ticker): the names a report over a dated universe covers."""
    if universe.is_empty():
        return []
    order = universe.group_by("ticker").agg(pl.col("rank").min().alias("best"), pl.col("rebalance_date").min().alias("first"))
    return order.sort("best", "first", "ticker")["ticker"].to_list()


HELD_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date(), "ticker": pl.String(), "ret_1d": pl.Float64(), "exit": pl.Boolean()}


def held_returns(daily: pl.DataFrame, membership: pl.DataFrame, *, delisting_return: float = DELISTING_RETURN) -> pl.DataFrame:
    """The return of every position a member portfolio holds, delistings realised.

    ``daily``: ticker, date, ret_1d (close-to-close of consecutive bars); ``membership``: (date,
    ticker) of the sessions a name may be held over (decided before the session opens, as
    :func:`members_by_session` gives). A position is held over session D when the name is a
    member on D and had a bar (a close to hold it at) on the previous session. Its return on D
    is ``ret_1d`` when it has a bar on D; when it has none it stopped trading (delisted or
    halted), and the position is closed at its last close times ``1 + delisting_return`` on D
    (``exit`` true), never dropped. The next session it has no previous close and is not held;
    a name that trades again is held again once it has a close to enter at.

    Only what is dated on or before D decides D's row: whether a name has a bar on D, not
    whether it trades later.
    """
    if not -1.0 <= delisting_return <= 10.0:
        raise ValueError(f"delisting_return is a fraction of the last close, between -1 and 10; got {delisting_return}")
    sessions = sorted(set(daily["date"].to_list()))
    if not sessions or membership.is_empty():
        return pl.DataFrame(schema=HELD_SCHEMA)
    prev = pl.DataFrame({"date": sessions[1:], "prev": sessions[:-1]}, schema={"date": pl.Date, "prev": pl.Date})
    bars = daily.select("ticker", "date", "ret_1d")
    had_close = bars.select("ticker", pl.col("date").alias("prev"), pl.lit(True).alias("had_close"))
    held = (
        membership.select("date", "ticker")
        .unique()
        .join(prev, on="date")
        .join(had_close, on=["ticker", "prev"])
        .join(bars.with_columns(pl.lit(True).alias("traded")), on=["ticker", "date"], how="left")
    )
    return (
        held.with_columns(pl.col("traded").is_null().alias("exit"))
        .with_columns(pl.when(pl.col("exit")).then(pl.lit(float(delisting_return))).otherwise(pl.col("ret_1d")).alias("ret_1d"))
        .filter(pl.col("ret_1d").is_not_null() & pl.col("ret_1d").is_finite())
        .select(list(HELD_SCHEMA))
        .sort("date", "ticker")
    )


def selection(universe: pl.DataFrame, n: int, sessions: Iterable[dt.date]) -> tuple[list[str], pl.DataFrame]:
    """(names, membership) of the first ``n`` members of each rebalance date: every name that
    was one of them on some date (best rank first), and the (date, ticker) sessions each may be
    held over."""
    top = top_members(universe, n)
    return ever_members(top), members_by_session(top, sessions)


def empty_rebalances(members: pl.DataFrame, sessions: Sequence[dt.date], spec: UniverseSpec) -> tuple[list[dt.date], list[dt.date]]:
    """(rebalance dates due -- those with ``window`` sessions of history --, those of them
    without a member)."""
    sessions = sorted(set(sessions))
    due = [d for d in rebalance_dates(sessions, spec.rebalance) if sessions.index(d) >= spec.window - 1]
    return due, sorted(set(due) - set(members["rebalance_date"].to_list()))


def members_per_date(members: pl.DataFrame) -> pl.DataFrame:
    """(rebalance_date, members) in date order."""
    return members.group_by("rebalance_date").len().sort("rebalance_date").rename({"len": "members"})


def latest_members(members: pl.DataFrame) -> list[str]:
    """The members of the last rebalance date, in rank order."""
    if not members.height:
        return []
    return members.filter(pl.col("rebalance_date") == members["rebalance_date"].max())["ticker"].to_list()


def newest_first(members: pl.DataFrame) -> pl.DataFrame:
    """The table latest rebalance first, by rank within a date."""
    return members.sort("rebalance_date", "rank", descending=[True, False])
