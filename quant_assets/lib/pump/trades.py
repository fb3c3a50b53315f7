"""Aggregate trades around each signal: which files a window needs, and gathering them.

A signal's window starts at its first whole second ``window_start = ceil(signal_ts)`` and lasts
``window_s`` seconds (24 h). Trades are gathered from ``pre_window_s`` before the window start
(the last of them gives the price of the first seconds when those have no trade) to the window's
end. The UTC days the span touches are read whole, once per symbol and day in a run.

What happens to a signal whose trades cannot be gathered (``status`` per signal):
  ``ok``               trades cover the window
  ``missing_day_file`` a day file is missing: an error naming the file unless skipping is
                       allowed, then the signal is skipped and counted
  ``no_trades``        the day files exist but hold no trade inside the window: skipped, counted
A checksum mismatch or a damaged zip is always an error (a bad copy must be replaced, not
silently worked around).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from quant_assets.lib.pump.schemas import AGG_TRADES_SCHEMA
from quant_assets.lib.sources import binance

WINDOW_S = 86_400
PRE_WINDOW_S = 3_600
STATUSES = ("ok", "missing_day_file", "no_trades")


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def window_start(signal_ts: dt.datetime) -> int:
    """The signal's first whole second (UTC Unix seconds; a naive datetime is UTC)."""
    if signal_ts.tzinfo is None:
        signal_ts = signal_ts.replace(tzinfo=dt.UTC)
    us = (signal_ts - EPOCH) // dt.timedelta(microseconds=1)
    return -((-us) // 1_000_000)


def window_start_expr(col: str = "signal_ts") -> pl.Expr:
    ms = pl.col(col).dt.epoch("ms")
    return (-((-ms) // 1000)).alias("window_start")


def fetch_span(start_s: int, window_s: int, pre_window_s: int) -> tuple[dt.datetime, dt.datetime]:
    """``[from, to)`` of the trades a window needs."""
    lo = dt.datetime.fromtimestamp(start_s - pre_window_s, dt.UTC)
    hi = dt.datetime.fromtimestamp(start_s + window_s, dt.UTC)
    return lo, hi


@dataclasses.dataclass
class Gathered:
    trades: pl.DataFrame  # AGG_TRADES_SCHEMA, sorted by signal then agg_trade_id
    status: dict[int, str]
    problems: dict[int, str]  # signal_id -> message for skipped signals
    files_read: list[str]
    # What each day file (or the REST source) kept, dropped and held back.
    reports: list[binance.DayReport] = dataclasses.field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)


def _spans(signals: pl.DataFrame, window_s: int, pre_window_s: int):
    """(signal_id, symbol, signal_ts, window start, fetch from, fetch to) per signal, in time order."""
    for sid, sym, ts in signals.select("signal_id", "symbol", "signal_ts").sort("signal_ts", "signal_id").iter_rows():
        start = window_start(ts)
        yield (sid, sym, ts, start, *fetch_span(start, window_s, pre_window_s))


@dataclasses.dataclass
class _Windows:
    """Each signal's trades as they are taken, or why the signal was skipped."""

    frames: list[pl.DataFrame] = dataclasses.field(default_factory=list)
    status: dict[int, str] = dataclasses.field(default_factory=dict)
    problems: dict[int, str] = dataclasses.field(default_factory=dict)

    def skip(self, sid: int, status: str, problem: str) -> None:
        self.status[sid] = status
        self.problems[sid] = problem

    def take(self, sid: int, sym: str, window: pl.DataFrame, start: int, no_trade: str) -> None:
        """The window's trades, unless none is at or after the window's first second."""
        if window.filter(pl.col("transact_time") >= dt.datetime.fromtimestamp(start, dt.UTC)).height == 0:
            self.skip(sid, "no_trades", no_trade)
            return
        self.status[sid] = "ok"
        self.frames.append(window.with_columns(pl.lit(sid, pl.Int64).alias("signal_id"), pl.lit(sym).alias("symbol")))

    def gathered(self, files: list[str], reports: list[binance.DayReport]) -> Gathered:
        out = pl.concat(self.frames).select(list(AGG_TRADES_SCHEMA)) if self.frames else pl.DataFrame(schema=AGG_TRADES_SCHEMA)
        return Gathered(out, self.status, self.problems, files, reports)


def gather(
    signals: pl.DataFrame,
    load_day: Callable[[str, dt.date], pl.DataFrame],
    *,
    window_s: int = WINDOW_S,
    pre_window_s: int = PRE_WINDOW_S,
    skip_missing_days: bool = False,
    describe_day: Callable[[str, dt.date], str] | None = None,
    workers: int = 4,
    min_rows_ratio: float = binance.MIN_ROWS_RATIO,
) -> Gathered:
    """Trades of every signal's span from whole day files (``load_day(symbol, day)`` gives the
    day's trades, or (trades, :class:`binance.DayReport`); it raises
    :class:`binance.BinanceDataError` for a missing or bad file). Each symbol-day is read once,
    ``workers`` at a time; a day much thinner than the symbol's other days read in the run fails
    (:func:`binance.check_thin_days`)."""
    plan = [(*span, binance.days_covering(*span[4:])) for span in _spans(signals, window_s, pre_window_s)]
    needed = {(sym, day): None for _, sym, *_, days in plan for day in days}

    def load(key: tuple[str, dt.date]) -> tuple[pl.DataFrame, binance.DayReport | None] | binance.BinanceDataError:
        try:
            got = load_day(*key)
            if isinstance(got, tuple):
                return got
            return binance.clean_trades(got), None
        except binance.BinanceDataError as exc:
            if exc.rule != "missing_file":
                raise
            return exc

    keys = list(needed)
    if workers > 1 and len(keys) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            loaded = dict(zip(keys, pool.map(load, keys)))
    else:
        loaded = {k: load(k) for k in keys}
    files = [describe_day(*k) if describe_day else f"{k[0]} {k[1]}" for k in keys if not isinstance(loaded[k], binance.BinanceDataError)]
    reports = [v[1] for v in loaded.values() if not isinstance(v, binance.BinanceDataError) and v[1] is not None]
    for sym in {k[0] for k in keys}:
        binance.check_thin_days(
            [v[1] for k, v in loaded.items() if k[0] == sym and not isinstance(v, binance.BinanceDataError) and v[1] is not None],
            min_rows_ratio,
        )
    loaded = {k: (v if isinstance(v, binance.BinanceDataError) else v[0]) for k, v in loaded.items()}
    taken = _Windows()
    for sid, sym, ts, start, lo, hi, days in plan:
        missing = next((loaded[(sym, d)] for d in days if isinstance(loaded[(sym, d)], binance.BinanceDataError)), None)
        if missing is not None:
            if not skip_missing_days:
                raise binance.BinanceDataError(
                    missing.source,
                    missing.rule,
                    f"signal {sid} ({sym} at {ts:%Y-%m-%d %H:%M:%S}Z) needs this file: {missing.detail}",
                    line=missing.line,
                )
            taken.skip(sid, "missing_day_file", str(missing))
            continue
        first = dt.datetime.fromtimestamp(start, dt.UTC)
        no_trade = f"no {sym} trade between {first:%Y-%m-%d %H:%M:%S}Z and {hi:%Y-%m-%d %H:%M:%S}Z"
        taken.take(sid, sym, _slice([loaded[(sym, d)] for d in days], lo, hi), start, no_trade)
    return taken.gathered(files, reports)


def _slice(parts: list[pl.DataFrame], lo: dt.datetime, hi: dt.datetime) -> pl.DataFrame:
    """The trades of ``[lo, hi)`` from cleaned day files (a trade id repeated across two days'
    files is kept once)."""
    df = binance.clean_trades(pl.concat(parts)) if len(parts) > 1 else parts[0]
    return df.filter((pl.col("transact_time") >= lo) & (pl.col("transact_time") < hi))


def gather_rest(
    signals: pl.DataFrame,
    rest: binance.RestAggTrades,
    *,
    window_s: int = WINDOW_S,
    pre_window_s: int = PRE_WINDOW_S,
) -> Gathered:
    """Trades of every signal's span from the REST endpoint (hour by hour, cached)."""
    taken = _Windows()
    for sid, sym, _, start, lo, hi in _spans(signals, window_s, pre_window_s):
        no_trade = f"the REST endpoint returned no {sym} trade in the window starting {lo:%Y-%m-%d %H:%M}Z"
        taken.take(sid, sym, rest.window(sym, lo, hi), start, no_trade)
    source = f"{rest.client.base_url}{rest.path}"
    report = binance.DayReport(
        source,
        rows=rest.stats.trades,
        conflicting_duplicate=rest.stats.conflicting_duplicate,
        duplicates_dropped=rest.stats.duplicates_dropped,
    )
    return taken.gathered([source], [report])


def by_signal_day(frame: pl.DataFrame, signals: pl.DataFrame, days) -> dict[str, pl.DataFrame]:
    """``{ISO day: rows of ``frame`` whose signal (``signals``: signal_id, signal_ts) fired that
    UTC day}`` for every one of ``days``."""
    day_of = signals.select("signal_id", pl.col("signal_ts").dt.date().alias("_day"))
    joined = frame.join(day_of, on="signal_id", how="left")
    return {d.isoformat(): joined.filter(pl.col("_day") == d).drop("_day") for d in days}


def day_figures(got: Gathered, signals: pl.DataFrame, by_day: dict[str, pl.DataFrame], days) -> dict:
    """Each day's figures: its signals, those with trades, the skipped ones by status (and
    why, ``skipped_signals``, when any), the trades kept and what its day files read, dropped
    and held back."""
    day_of = dict(zip(signals["signal_id"].to_list(), signals["signal_ts"].dt.date().to_list()))
    out = {}
    for d in days:
        ids = [s for s, sd in day_of.items() if sd == d]
        statuses = [got.status.get(s, "ok") for s in ids]
        out[d] = {
            "signals": len(ids),
            "signals_with_trades": statuses.count("ok"),
            **{f"skipped/{s}": statuses.count(s) for s in STATUSES if s != "ok"},
            "trades": by_day[d.isoformat()].height,
        }
        skipped = {str(s): got.problems[s] for s in ids if s in got.problems}
        if skipped:
            out[d]["skipped_signals"] = skipped
        files_of_day = [r for r in got.reports if r.day == d]
        for name in ("rows_read", "quarantined/outside_day", "quarantined/conflicting_duplicate", "duplicates_dropped"):
            out[d][name] = sum(r.as_metadata()[name] for r in files_of_day)
    return out
