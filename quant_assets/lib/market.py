"""Market-data transforms: vendor rows -> research tables (daily, weekly, filtered, minute features).

Units: prices in USD (unadjusted, as the vendor publishes them), volume in shares, returns as
fractions (0.01 = 1 %), timestamps in New York time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.knobs import check_knobs, knob

# ---------------------------------------------------------------------------------------------
# Typed vendor tables
# ---------------------------------------------------------------------------------------------

# A bar's prices and volume, in the order every bar table carries them.
OHLCV: dict[str, pl.DataType] = {
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
}
DAY_AGGS_SCHEMA: dict[str, pl.DataType] = {"ticker": pl.String(), "date": pl.Date(), **OHLCV, "transactions": pl.Int64()}

MINUTE_TS_DTYPE = pl.Datetime("ns", cal.NY_TZ_NAME)
SESSION_DTYPE = pl.Enum(["pre", "rth", "post"])
MINUTE_AGGS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "window_start": MINUTE_TS_DTYPE,
    "session": SESSION_DTYPE,
    **OHLCV,
    "transactions": pl.Int64(),
}


# What every market column means, units included; shown as the column schema in the UI.
COLUMN_DOCS: dict[str, str] = {
    "ticker": "Symbol as the vendor spells it (NYSE class suffix with a dot, e.g. BRK.A)",
    "date": "Trading day, New York calendar date",
    "window_start": "Start of the one-minute bar, New York time (ns)",
    "session": "pre = 04:00-09:30, rth = 09:30-16:00, post = 16:00-20:00 New York time",
    "open": "First trade price in the bar, USD, unadjusted",
    "high": "Highest trade price in the bar, USD, unadjusted",
    "low": "Lowest trade price in the bar, USD, unadjusted",
    "close": "Last trade price in the bar, USD, unadjusted",
    "volume": "Shares traded in the bar",
    "transactions": "Number of trades in the bar",
    "prev_close": "Close of the same ticker in the previous NYSE session, USD; null if it did not trade then",
    "ret_1d": "Simple 1-session return close / prev_close - 1, fraction (0.01 = 1 %)",
    "log_ret_1d": "Log 1-session return ln(close / prev_close)",
    "week_start": "Monday of the week (the partition key)",
    "week_ending": "Friday of the week, even when Friday is a holiday",
    "first_date": "First session of the week the ticker traded",
    "last_date": "Last session of the week the ticker traded",
    "trading_days": "Sessions the ticker traded in the week",
    "avg_volume": "Mean daily share volume over the trailing min_days sessions ending on the day",
    "days_observed": "Sessions with a bar in that trailing window (equals min_days for members)",
    "bars": "Minute bars with trades, all sessions",
    "bars_rth": "Minute bars with trades, regular hours",
    "open_rth": "First regular-hours open, USD",
    "high_rth": "Highest regular-hours high, USD",
    "low_rth": "Lowest regular-hours low, USD",
    "close_rth": "Last regular-hours close, USD",
    "range_pct": "(max high - min low) / first open over all sessions, fraction of price",
    "range_pct_rth": "(max high - min low) / first open over regular hours, fraction of price",
    "realized_vol_rth": "sqrt(sum of squared log returns between consecutive regular-hours bars), per day, not annualised",
    "realized_vol": "sqrt(sum of squared log returns between consecutive bars, all sessions), per day, not annualised",
    "volume_pre": "Shares traded 04:00-09:30",
    "volume_rth": "Shares traded 09:30-16:00",
    "volume_post": "Shares traded 16:00-20:00",
    "volume_total": "Shares traded in all sessions",
    "vwap": "Volume-weighted typical price (h+l+c)/3 over all sessions, USD",
    "vwap_rth": "Volume-weighted typical price over regular hours, USD",
    "baseline_volume": "Mean daily share volume over the vol_spike_lookback sessions strictly before the day",
    "volume_spike_ratio": "volume_total / baseline_volume; null unless the ticker traded in every baseline session",
}


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def to_day_aggs(rows: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Validated day-aggregate rows of one file -> ``DAY_AGGS_SCHEMA``, sorted by ticker."""
    return rows.select(
        "ticker",
        pl.lit(day, dtype=pl.Date).alias("date"),
        *OHLCV,
        "transactions",
    )


def to_minute_aggs(rows: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Validated minute rows of one file -> ``MINUTE_AGGS_SCHEMA`` with the trading session.

    ``session`` is ``pre`` before 09:30, ``rth`` from 09:30 up to 16:00 and ``post`` from 16:00,
    New York time. The UTC offset is constant during a trading day (clocks change at 02:00 on a
    Sunday), so the minute of the day is integer arithmetic on the vendor's nanoseconds.
    """
    offset_ns = cal.ny_utc_offset_seconds(day) * cal.NS_PER_SECOND
    minute_of_day = ((pl.col("window_start") + offset_ns) % (86_400 * cal.NS_PER_SECOND)) // (
        60 * cal.NS_PER_SECOND
    )
    # Enum literals: no per-row string cast.
    session = (
        pl.when(minute_of_day < cal.RTH_OPEN_MINUTE)
        .then(pl.lit("pre", dtype=SESSION_DTYPE))
        .when(minute_of_day < cal.RTH_CLOSE_MINUTE)
        .then(pl.lit("rth", dtype=SESSION_DTYPE))
        .otherwise(pl.lit("post", dtype=SESSION_DTYPE))
    )
    return rows.select(
        "ticker",
        pl.lit(day, dtype=pl.Date).alias("date"),
        pl.col("window_start").cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(cal.NY_TZ_NAME),
        session.alias("session"),
        *OHLCV,
        "transactions",
    )


# ---------------------------------------------------------------------------------------------
# Tradable universe
# ---------------------------------------------------------------------------------------------

# Exchange test issues that show up in consolidated feeds.
TEST_SYMBOLS = frozenset(
    {"ZVZZT", "ZWZZT", "ZXZZT", "ZAZZT", "ZBZZT", "ZCZZT", "ZJZZT", "ZVV", "ZXIET", "NTEST", "CBO", "CBX", "IGZ"}
)
NON_TRADABLE_RULES = ("test_symbol", "preferred", "warrant", "unit", "right", "special_characters")


def classify_tickers(tickers: Iterable[str]) -> pl.DataFrame:
    """``ticker, reason`` for each distinct ticker; ``reason`` is null for a tradable common/ETF.

    Rules, first match wins (Polygon spells NYSE suffixes with a dot and preferreds with ``p``):
      test_symbol         an exchange test issue (ZVZZT, NTEST, ...)
      preferred           ``ABCpA`` (root, lowercase p, series) or ``ABC.PR...``
      warrant             ``ABC.WS``/``ABC.WS.A``/``ABC.W``; a 5-letter NASDAQ symbol ending W; or
                          root + W where the root itself trades that day (``ABCW`` beside ``ABC``)
      unit                the same with U (``ABC.U``, ``ABCDU``, ``ABCU`` beside ``ABC``)
      right               the same with R (``ABC.RT``, ``ABC.R``, ``ABCDR``, ``ABCR`` beside ``ABC``)
      special_characters  anything else that is not 1-5 capitals with an optional class letter
                          (``BRK.A`` and ``BF.B`` are kept)
    Symbols such as SNOW or PLTR are kept: their root (SNO, PLT) does not trade.
    """
    uniq = pl.Series("ticker", list(tickers), dtype=pl.String).unique()
    listed = set(uniq.to_list())
    t = pl.col("ticker")
    root = t.str.slice(0, t.str.len_chars() - 1)
    last = t.str.slice(-1)
    root_listed = root.is_in(pl.Series(sorted(listed), dtype=pl.String).implode())
    plain = t.str.contains(r"^[A-Z]{1,5}$")

    def suffix_rule(letter: str, dotted: str) -> pl.Expr:
        return t.str.contains(dotted) | (
            plain & (last == letter) & ((t.str.len_chars() == 5) | (root_listed & (t.str.len_chars() >= 2)))
        )

    reason = (
        pl.when(t.is_in(sorted(TEST_SYMBOLS)) | t.str.contains(r"TEST"))
        .then(pl.lit("test_symbol"))
        .when(t.str.contains(r"^[A-Z]+p[A-Z]?$") | t.str.contains(r"\.PR"))
        .then(pl.lit("preferred"))
        .when(suffix_rule("W", r"\.WS(\.[A-Z])?$|\.W$"))
        .then(pl.lit("warrant"))
        .when(suffix_rule("U", r"\.U$"))
        .then(pl.lit("unit"))
        .when(suffix_rule("R", r"\.RT$|\.R$"))
        .then(pl.lit("right"))
        .when(~t.str.contains(r"^[A-Z]{1,5}(\.[A-Z])?$"))
        .then(pl.lit("special_characters"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return uniq.to_frame().with_columns(reason.alias("reason")).sort("ticker")


def tag_non_tradable(day_rows: pl.DataFrame) -> pl.DataFrame:
    """``day_rows`` plus ``reason`` (null when tradable), judging each date against the tickers
    that traded that date."""
    if day_rows.is_empty():
        return day_rows.with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
    parts = []
    for _, group in day_rows.group_by(["date"], maintain_order=True):
        parts.append(group.join(classify_tickers(group["ticker"]), on="ticker", how="left"))
    return pl.concat(parts)


def count_reasons(tagged: pl.DataFrame) -> dict[str, int]:
    counts = {r: 0 for r in NON_TRADABLE_RULES}
    for reason, n in tagged.filter(pl.col("reason").is_not_null()).group_by("reason").len().iter_rows():
        counts[reason] = int(n)
    return counts


def remove_non_tradable(day_rows: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Drop non-tradable tickers; return the kept rows and the number of removed rows per rule."""
    tagged = tag_non_tradable(day_rows)
    return tagged.filter(pl.col("reason").is_null()).drop("reason"), count_reasons(tagged)


# ---------------------------------------------------------------------------------------------
# Daily research table
# ---------------------------------------------------------------------------------------------

DAILY_BARS_SCHEMA: dict[str, pl.DataType] = {
    **DAY_AGGS_SCHEMA,
    "prev_close": pl.Float64(),
    "ret_1d": pl.Float64(),
    "log_ret_1d": pl.Float64(),
}


class MissingHistoryError(RuntimeError):
    pass


def missing_sessions(
    loaded_dates: Iterable[dt.date], start: dt.date, end: dt.date, history_start: dt.date
) -> list[dt.date]:
    """NYSE sessions in ``[max(start, history_start), end]`` absent from ``loaded_dates``."""
    have = set(loaded_dates)
    lo = max(start, history_start)
    return [d for d in cal.trading_days(lo, end) if d not in have]


def build_daily_bars(
    day_aggs: pl.DataFrame, targets: list[dt.date], history_start: dt.date
) -> tuple[pl.DataFrame, dict[dt.date, dict[str, int]]]:
    """Cleaned daily bars for ``targets`` with 1-day returns against the previous session's close.

    ``day_aggs`` holds the target dates plus earlier partitions; the previous NYSE session of
    every target must be among them unless it precedes ``history_start`` (then the return is
    null). ``ret_1d = close / prev_close - 1``; ``log_ret_1d = ln(close / prev_close)``; both null
    when the ticker did not trade in the previous session (no stale multi-day returns).
    Also returns, per target date, the number of removed non-tradable rows per rule.
    """
    if not targets:
        return empty_frame(DAILY_BARS_SCHEMA), {}
    first = min(targets)
    prev_needed = cal.previous_trading_day(first)
    gaps = missing_sessions(day_aggs["date"].unique().to_list(), prev_needed, max(targets), history_start)
    if gaps:
        raise MissingHistoryError(
            "market/day_aggs has no rows for session(s) "
            + ", ".join(str(d) for d in gaps[:10])
            + (" ..." if len(gaps) > 10 else "")
            + "; materialize those partitions first (a session's file must exist before returns can use it)"
        )
    tagged = tag_non_tradable(day_aggs.filter(pl.col("date") >= prev_needed))
    clean = tagged.filter(pl.col("reason").is_null()).drop("reason")
    sessions = pl.DataFrame(
        {"date": cal.trading_days(prev_needed, max(targets))}, schema={"date": pl.Date}
    ).with_columns(pl.col("date").shift(1).alias("prev_date"))
    prev = clean.select("ticker", pl.col("date").alias("prev_date"), pl.col("close").alias("prev_close"))
    out = (
        clean.filter(pl.col("date").is_in(targets))
        .join(sessions, on="date", how="left")
        .join(prev, on=["ticker", "prev_date"], how="left")
        .with_columns(
            (pl.col("close") / pl.col("prev_close") - 1.0).alias("ret_1d"),
            (pl.col("close") / pl.col("prev_close")).log().alias("log_ret_1d"),
        )
        .select(list(DAILY_BARS_SCHEMA))
        .sort(["date", "ticker"])
    )
    removed = {
        d: count_reasons(tagged.filter(pl.col("date") == d)) for d in targets
    }
    return out, removed


def daily_bar_stats(daily: pl.DataFrame, targets: list[dt.date]) -> dict[dt.date, dict[str, int]]:
    """Per date: tickers and null returns of a daily-bars frame."""
    if daily.is_empty():
        return {}
    rows = daily.group_by("date").agg(pl.len().alias("tickers"), pl.col("ret_1d").null_count().alias("returns_null"))
    return {d: {"tickers": int(n), "returns_null": int(z)} for d, n, z in rows.iter_rows() if d in set(targets)}


def returns_missing(daily: pl.DataFrame) -> pl.DataFrame:
    """``ticker, date`` of bars whose ticker has a close in the previous session but no return:
    a return that should exist and does not (``prev_close`` set, ``ret_1d`` or ``log_ret_1d`` null
    or not finite)."""
    if daily.is_empty():
        return pl.DataFrame(schema={"ticker": pl.String, "date": pl.Date})
    bad = pl.col("prev_close").is_not_null() & (
        pl.col("ret_1d").is_null()
        | pl.col("log_ret_1d").is_null()
        | ~pl.col("ret_1d").is_finite()
        | ~pl.col("log_ret_1d").is_finite()
    )
    return daily.filter(bad).select("ticker", "date")


def first_full_window(history_start: dt.date, min_days: int) -> dt.date | None:
    """The first session whose trailing ``min_days``-session window lies inside the history."""
    sessions = cal.trading_days(history_start, history_start + dt.timedelta(days=int(min_days * 7 / 5) + 30))
    return sessions[min_days - 1] if len(sessions) >= min_days else None


# ---------------------------------------------------------------------------------------------
# Weekly bars
# ---------------------------------------------------------------------------------------------

WEEKLY_BARS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "week_start": pl.Date(),
    "week_ending": pl.Date(),
    "first_date": pl.Date(),
    "last_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "transactions": pl.Int64(),
    "trading_days": pl.UInt32(),
}


def _week_start() -> pl.Expr:
    return (pl.col("date") - pl.duration(days=pl.col("date").dt.weekday() - 1)).alias("week_start")


def sessions_per_week(daily: pl.DataFrame) -> dict[dt.date, int]:
    """``{Monday: sessions with any bar}`` of a daily-bars frame."""
    if daily.is_empty():
        return {}
    return {w: int(n) for w, n in daily.group_by(_week_start()).agg(pl.col("date").n_unique()).iter_rows()}


def build_weekly_bars(daily: pl.DataFrame) -> pl.DataFrame:
    """Weeks ending Friday: first open, max high, min low, last close, summed volume and trades.

    ``week_start`` is the Monday, ``week_ending`` the Friday of the calendar week (even when
    Friday is a holiday); ``trading_days`` counts the sessions the ticker traded that week.
    """
    if daily.is_empty():
        return empty_frame(WEEKLY_BARS_SCHEMA)
    return (
        daily.sort(["ticker", "date"])
        .with_columns(_week_start())
        .group_by(["ticker", "week_start"], maintain_order=True)
        .agg(
            pl.col("date").first().alias("first_date"),
            pl.col("date").last().alias("last_date"),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            *checked_sums("volume", "transactions"),
            pl.len().cast(pl.UInt32).alias("trading_days"),
        )
        .pipe(require_no_overflow, "volume", "transactions")
        .with_columns((pl.col("week_start") + pl.duration(days=4)).alias("week_ending"))
        .select(list(WEEKLY_BARS_SCHEMA))
        .sort(["week_start", "ticker"])
    )


INT64_MAX = 2**63 - 1


def checked_sums(*columns: str) -> list[pl.Expr]:
    """Integer sums plus exact 128-bit twins, so a sum that wrapped around Int64 is caught by
    :func:`require_no_overflow` instead of turning into a negative volume."""
    out: list[pl.Expr] = []
    for c in columns:
        out += [pl.col(c).sum(), pl.col(c).cast(pl.Int128).sum().alias(f"_{c}_i128")]
    return out


def require_no_overflow(df: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Raise ``OverflowError`` when an Int64 sum from :func:`checked_sums` overflowed; drop the twins."""
    for c in columns:
        twin = f"_{c}_i128"
        bad = df.filter(pl.col(twin) > INT64_MAX)
        if bad.height:
            raise OverflowError(
                f"sum of {c!r} exceeds Int64 for {bad.height} group(s), e.g. {bad.row(0, named=True)}; "
                "a plausibility bound upstream should have quarantined such values"
            )
    return df.drop([f"_{c}_i128" for c in columns])


# ---------------------------------------------------------------------------------------------
# Swing-trading universe
# ---------------------------------------------------------------------------------------------

DAILY_FILTERED_EXTRA: dict[str, pl.DataType] = {"avg_volume": pl.Float64(), "days_observed": pl.UInt32()}
# Weekdays of daily bars market/daily_filtered reads before each day; a window of sessions at
# most 10 shorter fits in it whatever the holidays.
FILTER_LOOKBACK = 100


@dataclasses.dataclass(frozen=True)
class UniverseRule:
    """Who is in the swing-trading universe on a day (:func:`build_daily_filtered`)."""

    price_min: float = knob(1.0, "Lowest close on the day, USD (inclusive).")
    price_max: float = knob(9.99, "Highest close on the day, USD (inclusive).")
    min_avg_volume: float = knob(750_000, "Minimum mean daily share volume over the trailing `min_days` sessions ending on the day.")
    min_days: int = knob(
        60, "Window length in NYSE sessions; the ticker must have a bar in every one of them.", ge=1, le=FILTER_LOOKBACK - 10
    )

    def __post_init__(self) -> None:
        check_knobs(self)


def build_daily_filtered(
    daily: pl.DataFrame,
    targets: list[dt.date],
    *,
    price_min: float = UniverseRule.price_min,
    price_max: float = UniverseRule.price_max,
    min_avg_volume: float = UniverseRule.min_avg_volume,
    min_days: int = UniverseRule.min_days,
) -> pl.DataFrame:
    """Bars of the tickers in the swing-trading universe on each target date.

    A ticker is in the universe on date D when, over the window of the last ``min_days`` NYSE
    sessions ending on D (inclusive, no later data):
      * it has a bar in every one of those sessions (``days_observed == min_days``), so the
        window also needs ``min_days`` sessions of history before anyone qualifies;
      * ``avg_volume`` -- the arithmetic mean of its daily share volume over those sessions -- is
        at least ``min_avg_volume``;
      * its close on D is within ``[price_min, price_max]``.

    The defaults and bounds are :class:`UniverseRule`'s.
    """
    UniverseRule(price_min=price_min, price_max=price_max, min_avg_volume=min_avg_volume, min_days=min_days)
    schema = {**DAILY_BARS_SCHEMA, **DAILY_FILTERED_EXTRA}
    if not targets or daily.is_empty():
        return empty_frame(schema)
    # Number the sessions from the first loaded day; a ticker has at most one bar per session, so
    # a rolling window of ``min_days`` session numbers counts its bars and averages its volume.
    first_loaded = daily["date"].min()
    sessions = pl.DataFrame(
        {"date": cal.trading_days(first_loaded, max(targets))}, schema={"date": pl.Date}
    ).with_row_index("sidx")
    stats = (
        daily.select("ticker", "date", "volume")
        .join(sessions, on="date", how="inner")
        .sort(["ticker", "sidx"])
        .rolling(index_column="sidx", period=f"{min_days}i", group_by="ticker")
        .agg(pl.col("volume").mean().alias("avg_volume"), pl.len().cast(pl.UInt32).alias("days_observed"))
        .join(sessions, on="sidx")
    )
    return (
        daily.filter(pl.col("date").is_in(list(targets)))
        .join(stats.drop("sidx"), on=["ticker", "date"], how="inner")
        .filter(
            (pl.col("days_observed") >= min_days)
            & (pl.col("avg_volume") >= min_avg_volume)
            & pl.col("close").is_between(price_min, price_max)
        )
        .select(list(schema))
        .sort(["date", "ticker"])
    )


def nth_session_back(day: dt.date, n: int) -> dt.date:
    """The session ``n - 1`` sessions before ``day`` (so ``[result, day]`` spans ``n`` sessions)."""
    lo = day - dt.timedelta(days=int(n * 7 / 5) + 20)
    sessions = cal.trading_days(lo, day)
    return sessions[-n] if len(sessions) >= n else sessions[0]


# ---------------------------------------------------------------------------------------------
# Minute features
# ---------------------------------------------------------------------------------------------

MINUTE_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "bars": pl.UInt32(),
    "bars_rth": pl.UInt32(),
    "open_rth": pl.Float64(),
    "high_rth": pl.Float64(),
    "low_rth": pl.Float64(),
    "close_rth": pl.Float64(),
    "range_pct": pl.Float64(),
    "range_pct_rth": pl.Float64(),
    "realized_vol_rth": pl.Float64(),
    "realized_vol": pl.Float64(),
    "volume_pre": pl.Int64(),
    "volume_rth": pl.Int64(),
    "volume_post": pl.Int64(),
    "volume_total": pl.Int64(),
    "vwap": pl.Float64(),
    "vwap_rth": pl.Float64(),
    "baseline_volume": pl.Float64(),
    "volume_spike_ratio": pl.Float64(),
}


SPIKE_COLUMNS = ("baseline_volume", "volume_spike_ratio")
# What one day's minute bars give on their own; the spike columns need the daily history.
MINUTE_DAY_SCHEMA = {k: v for k, v in MINUTE_FEATURES_SCHEMA.items() if k not in SPIKE_COLUMNS}


def minute_day_features(minute: pl.DataFrame) -> pl.DataFrame:
    """Per (ticker, date) features from minute bars (``MINUTE_AGGS_SCHEMA`` rows).

    * ``range_pct`` = (max high - min low) / first open, all sessions; ``range_pct_rth`` the same
      over 09:30-16:00 relative to the first regular-hours open.
    * ``realized_vol_rth`` = sqrt(sum of squared log returns between consecutive regular-hours
      bars), a daily (not annualised) figure; ``realized_vol`` the same over all sessions.
    * ``volume_pre/rth/post/total`` shares per session.
    * ``vwap`` volume-weighted typical price (h+l+c)/3 per bar -- flat files carry no per-bar VWAP,
      so this is the standard approximation; ``vwap_rth`` over regular hours only.
    Rows must be sorted by (ticker, window_start), as ``minute_aggs`` stores them.
    """
    if minute.is_empty():
        return empty_frame(MINUTE_DAY_SCHEMA)
    # Only plain sum/min/max/first/last/len inside the group-by (polars' fast path); every ratio
    # is computed on the per-group results afterwards.
    same_ticker = pl.col("ticker") == pl.col("ticker").shift(1)
    log_close = pl.col("close").log()
    base = minute.lazy().select(
        "ticker",
        "date",
        "session",
        "open",
        "high",
        "low",
        "volume",
        pl.col("close"),
        pl.when(same_ticker).then(log_close - log_close.shift(1)).pow(2).alias("lr2_all"),
        ((pl.col("high") + pl.col("low") + pl.col("close")) / 3.0 * pl.col("volume")).alias("pv"),
        pl.when(pl.col("session") == "pre").then(pl.col("volume")).otherwise(0).alias("v_pre"),
        pl.when(pl.col("session") == "post").then(pl.col("volume")).otherwise(0).alias("v_post"),
    )
    all_feats = (
        base.group_by(["ticker", "date"])
        .agg(
            pl.len().cast(pl.UInt32).alias("bars"),
            pl.col("high").max().alias("_hi"),
            pl.col("low").min().alias("_lo"),
            pl.col("open").first().alias("_open"),
            pl.col("lr2_all").sum().alias("_lr2"),
            pl.col("v_pre").sum().alias("volume_pre"),
            pl.col("v_post").sum().alias("volume_post"),
            pl.col("volume").sum().alias("volume_total"),
            pl.col("pv").sum().alias("_pv"),
        )
        .with_columns(
            ((pl.col("_hi") - pl.col("_lo")) / pl.col("_open")).alias("range_pct"),
            pl.col("_lr2").sqrt().alias("realized_vol"),
            (pl.col("_pv") / pl.col("volume_total")).alias("vwap"),
        )
    )
    # Regular-hours returns link consecutive RTH bars only (the pre->rth jump is not intraday vol).
    rth_feats = (
        base.filter(pl.col("session") == "rth")
        .with_columns(pl.when(same_ticker).then(log_close - log_close.shift(1)).pow(2).alias("lr2_rth"))
        .group_by(["ticker", "date"])
        .agg(
            pl.len().cast(pl.UInt32).alias("bars_rth"),
            pl.col("open").first().alias("open_rth"),
            pl.col("high").max().alias("high_rth"),
            pl.col("low").min().alias("low_rth"),
            pl.col("close").last().alias("close_rth"),
            pl.col("lr2_rth").sum().sqrt().alias("realized_vol_rth"),
            pl.col("volume").sum().alias("volume_rth"),
            pl.col("pv").sum().alias("_pv_rth"),
        )
        .with_columns((pl.col("_pv_rth") / pl.col("volume_rth")).alias("vwap_rth"))
    )
    out = all_feats.join(rth_feats, on=["ticker", "date"], how="left").with_columns(
        ((pl.col("high_rth") - pl.col("low_rth")) / pl.col("open_rth")).alias("range_pct_rth"),
        pl.col("bars_rth").fill_null(0),
        pl.col("volume_rth").fill_null(0),
    )
    return out.select(list(MINUTE_DAY_SCHEMA)).sort(["date", "ticker"]).collect()


# Weekdays of daily bars before a day market/minute_features reads for the spike baseline; a
# baseline of sessions at most 15 shorter fits in it whatever the holidays.
SPIKE_LOOKBACK = 60


@dataclasses.dataclass(frozen=True)
class SpikeBaseline:
    """The baseline of ``volume_spike_ratio`` (:func:`add_volume_spike`)."""

    vol_spike_lookback: int = knob(
        20, "Sessions before the day whose mean daily volume is the spike ratio's baseline.", ge=1, le=SPIKE_LOOKBACK - 15
    )

    def __post_init__(self) -> None:
        check_knobs(self)


def add_volume_spike(features: pl.DataFrame, daily: pl.DataFrame, lookback: int = SpikeBaseline.vol_spike_lookback) -> pl.DataFrame:
    """Add ``baseline_volume`` and ``volume_spike_ratio = volume_total / baseline_volume``.

    ``baseline_volume`` is the mean daily share volume (from ``market/daily_bars``) over the
    ``lookback`` NYSE sessions strictly before the feature's date; null unless the ticker traded
    in all of them, so new listings do not get ratios against a few days.
    """
    SpikeBaseline(vol_spike_lookback=lookback)
    if features.is_empty():
        return features.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("baseline_volume"),
            pl.lit(None, dtype=pl.Float64).alias("volume_spike_ratio"),
        ).select(list(MINUTE_FEATURES_SCHEMA))
    baselines = []
    for d in sorted(set(features["date"].to_list())):
        prev_end = cal.previous_trading_day(d)
        start = nth_session_back(prev_end, lookback)
        window = daily.filter((pl.col("date") >= start) & (pl.col("date") <= prev_end))
        baselines.append(
            window.group_by("ticker")
            .agg(pl.col("volume").mean().alias("baseline_volume"), pl.len().alias("_n"))
            .filter(pl.col("_n") >= lookback)
            .select("ticker", pl.lit(d, dtype=pl.Date).alias("date"), "baseline_volume")
        )
    base = pl.concat(baselines) if baselines else pl.DataFrame(schema={"ticker": pl.String, "date": pl.Date, "baseline_volume": pl.Float64})
    return (
        features.join(base, on=["ticker", "date"], how="left")
        .with_columns((pl.col("volume_total") / pl.col("baseline_volume")).alias("volume_spike_ratio"))
        .select(list(MINUTE_FEATURES_SCHEMA))
    )


def empty_sessions(table: pl.DataFrame, days: Iterable[dt.date], expected_from: dt.date | None) -> tuple[list[dt.date], list[str]]:
    """(NYSE sessions of ``days`` at or after ``expected_from`` -- none when it is None --,
    those of them without a row of ``table``, ISO)."""
    have = set(table["date"].unique().to_list()) if table.height else set()
    due = [d for d in days if cal.is_trading_day(d) and expected_from is not None and d >= expected_from]
    return due, [d.isoformat() for d in due if d not in have]


def tradable_only(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of tradable tickers (the rules of :func:`classify_tickers`)."""
    if not frame.height:
        return frame
    reasons = classify_tickers(frame["ticker"].unique())
    keep = reasons.filter(pl.col("reason").is_null())["ticker"]
    return frame.filter(pl.col("ticker").is_in(keep.implode()))


def weekly_figures(weekly: pl.DataFrame, daily: pl.DataFrame, weeks: Iterable[dt.date]) -> dict[dt.date, dict[str, int]]:
    """Per week: tickers with a weekly bar and NYSE sessions with daily bars."""
    tickers = dict(weekly.group_by("week_start").agg(pl.col("ticker").n_unique()).iter_rows()) if weekly.height else {}
    sessions = sessions_per_week(daily)
    return {w: {"tickers": int(tickers.get(w, 0)), "sessions": int(sessions.get(w, 0))} for w in weeks}
