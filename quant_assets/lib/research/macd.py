"""MACD(12, 26, 9) on one ticker-day's minute bars: day summaries and zero-cross events.

For every (ticker, date) and every ``mode``:

* ``all``: the day's bars from every session (04:00-20:00 New York time);
* ``rth``: only the regular-hours bars (09:30-16:00).

MACD runs on that ticker-day's bars alone (nothing carried over from the previous day), with
TA-Lib's exact definition (:func:`quant_assets.lib.research.indicators.macd`), on

* ``1m``: the close of every minute bar, and
* ``5m``: the last close of each 5-minute window (``window_start`` floored to 5 minutes; a
  window without any bar is skipped, not filled).

A histogram *zero cross up* is a bar whose histogram is > 0 while the last non-zero histogram
before it was < 0; *down* is the mirror image. A histogram of exactly 0 neither starts nor ends
a cross (flat prices give exactly 0: see the indicators module), so -1, 0, +1 is one cross up
and +1, 0, +1 none. Counts and events use this one rule.

MACD needs 34 bars before its first histogram value: a ticker-day with fewer bars in a mode /
timeframe gets null summaries there (``bars__1m`` / ``bars__5m`` say how many it had).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from numba import njit, prange

from quant_assets.lib import market
from quant_assets.lib.knobs import knob
from quant_assets.lib.research.indicators import _macd_into

FAST, SLOW, SIGNAL = 12, 26, 9
MACD_MIN_BARS = SLOW + SIGNAL - 1  # 34: the first histogram value is at bar 33
MODES = ("all", "rth")
MODE_DTYPE = pl.Enum(list(MODES))
_NS_PER_5M = 5 * 60 * 1_000_000_000

_SUMMARY = ("hist_last", "hist_min", "hist_max", "hist_zero_cross_up_count", "hist_zero_cross_down_count")
TIMEFRAMES = ("1m", "5m")

MACD_DAY_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "mode": MODE_DTYPE,
    "bars__1m": pl.UInt32(),
    "bars__5m": pl.UInt32(),
}
for _tf in TIMEFRAMES:
    for _name in _SUMMARY:
        MACD_DAY_SCHEMA[f"{_name}__{_tf}"] = pl.UInt32() if _name.endswith("_count") else pl.Float64()
MACD_FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in MACD_DAY_SCHEMA if c not in ("ticker", "date", "mode"))

COLUMN_DOCS: dict[str, str] = {
    "ticker": "Symbol as the vendor spells it",
    "date": "Trading day (New York)",
    "mode": "all = bars of every session (04:00-20:00); rth = regular-hours bars only (09:30-16:00)",
    "bars__1m": "Minute bars of the ticker-day in this mode",
    "bars__5m": "5-minute bars (windows with at least one minute bar) of the ticker-day in this mode",
}
for _tf, _what in (("1m", "1-minute closes"), ("5m", "5-minute closes (last close of each 5-minute window)")):
    COLUMN_DOCS[f"hist_last__{_tf}"] = f"MACD(12,26,9) histogram at the day's last bar, on {_what}, USD; null with fewer than 34 bars"
    COLUMN_DOCS[f"hist_min__{_tf}"] = f"Lowest MACD histogram of the day on {_what}, USD; null with fewer than 34 bars"
    COLUMN_DOCS[f"hist_max__{_tf}"] = f"Highest MACD histogram of the day on {_what}, USD; null with fewer than 34 bars"
    COLUMN_DOCS[f"hist_zero_cross_up_count__{_tf}"] = (
        f"Histogram crosses from below to above zero on {_what} (zeros skipped); null with fewer than 34 bars"
    )
    COLUMN_DOCS[f"hist_zero_cross_down_count__{_tf}"] = (
        f"Histogram crosses from above to below zero on {_what} (zeros skipped); null with fewer than 34 bars"
    )


def empty_macd_day() -> pl.DataFrame:
    return pl.DataFrame(schema=MACD_DAY_SCHEMA)


@njit(cache=True)
def _summarise(hist, n, out, col):
    """Write last / min / max / cross counts of ``hist[:n]`` into ``out[col:col+5]`` (NaN when
    the series is too short for a histogram)."""
    start = MACD_MIN_BARS - 1
    if n <= start:
        for k in range(5):
            out[col + k] = np.nan
        return
    lo = hist[start]
    hi = hist[start]
    up = 0
    down = 0
    last_sign = 0
    for i in range(start, n):
        h = hist[i]
        if h < lo:
            lo = h
        if h > hi:
            hi = h
        s = 1 if h > 0.0 else (-1 if h < 0.0 else 0)
        if s != 0:
            if last_sign == -1 and s == 1:
                up += 1
            elif last_sign == 1 and s == -1:
                down += 1
            last_sign = s
    out[col] = hist[n - 1]
    out[col + 1] = lo
    out[col + 2] = hi
    out[col + 3] = up
    out[col + 4] = down


@njit(cache=True)
def _series_summary(closes, buckets, n, m_buf, s_buf, h_buf, c5, out, col):
    """1m and 5m summaries of one series of ``n`` closes; returns the number of 5m bars."""
    for i in range(n):
        h_buf[i] = np.nan
    _macd_into(closes[:n], FAST, SLOW, SIGNAL, m_buf[:n], s_buf[:n], h_buf[:n])
    _summarise(h_buf, n, out, col)
    n5 = 0
    for i in range(n):
        if i == n - 1 or buckets[i + 1] != buckets[i]:
            c5[n5] = closes[i]
            n5 += 1
    for i in range(n5):
        h_buf[i] = np.nan
    _macd_into(c5[:n5], FAST, SLOW, SIGNAL, m_buf[:n5], s_buf[:n5], h_buf[:n5])
    _summarise(h_buf, n5, out, col + 5)
    return n5


@njit(parallel=True, cache=True)
def _day_kernel(starts, ends, close, bucket, rth, out, counts):
    """For each ticker-day group: ``out[g, mode, 0:10]`` summaries, ``counts[g, mode, 0:2]`` bars."""
    for g in prange(starts.shape[0]):
        s = starts[g]
        e = ends[g]
        n = e - s
        closes = np.empty(n)
        buckets = np.empty(n, np.int64)
        m_buf = np.empty(n)
        s_buf = np.empty(n)
        h_buf = np.empty(n)
        c5 = np.empty(n)
        for mode in range(2):
            k = 0
            for i in range(s, e):
                if mode == 0 or rth[i]:
                    closes[k] = close[i]
                    buckets[k] = bucket[i]
                    k += 1
            counts[g, mode, 0] = k
            counts[g, mode, 1] = _series_summary(closes, buckets, k, m_buf, s_buf, h_buf, c5, out[g, mode], 0)


def _day_groups(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, bool]:
    """Bounds of the runs of equal (date, ticker) and whether the frame is in (date, ticker,
    window_start) order with no repeated ticker-day run and no repeated minute."""
    t = frame["ticker"]
    d = frame["date"]
    change = (t.ne_missing(t.shift(1)) | d.ne_missing(d.shift(1))).fill_null(True).to_numpy()
    starts = np.flatnonzero(change).astype(np.int64)
    ends = np.append(starts[1:], frame.height).astype(np.int64)
    keys = frame.select("ticker", "date").gather(starts)
    kd = keys["date"]
    kt = keys["ticker"]
    keys_ordered = keys.select(
        ((kd > kd.shift(1)) | ((kd == kd.shift(1)) & (kt > kt.shift(1)))).fill_null(True).all()
    ).item()
    ts = frame["window_start"].to_physical().to_numpy()
    inside = ~change[1:]
    times_ordered = not np.any(inside & (ts[1:] <= ts[:-1]))
    return starts, ends, bool(keys_ordered and times_ordered)


def _prepare(minute: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """``minute`` in (date, ticker, window_start) order and its ticker-day group bounds.

    ``market/minute_aggs`` partitions are stored sorted by (ticker, window_start) and a range
    loads them in date order, so the sort is skipped when the rows already are in order.
    """
    frame = minute.select("ticker", "date", "window_start", "session", "high", "low", "close")
    starts, ends, ordered = _day_groups(frame)
    if not ordered:
        frame = frame.sort(["date", "ticker", "window_start"])
        starts, ends, ordered = _day_groups(frame)
        if not ordered:
            dup = frame.filter(pl.struct("ticker", "window_start").is_duplicated()).row(0, named=True)
            raise ValueError(f"minute bars hold two rows for {dup['ticker']} at {dup['window_start']}")
    return frame, starts, ends


def macd_day_features(minute: pl.DataFrame) -> pl.DataFrame:
    """Per (ticker, date, mode) MACD histogram summaries on 1- and 5-minute closes.

    ``minute`` has the columns of ``market/minute_aggs`` (ticker, date, window_start, session,
    close, ...). Every ticker-day gets one row per mode (``rth`` with ``bars__1m = 0`` when it
    only traded outside regular hours). Sorted by (date, ticker, mode).
    """
    if minute.is_empty():
        return empty_macd_day()
    frame, starts, ends = _prepare(minute)
    close = np.ascontiguousarray(frame["close"].to_numpy(), dtype=np.float64)
    bucket = frame["window_start"].to_physical().to_numpy() // _NS_PER_5M
    rth = (frame["session"] == "rth").to_numpy()
    g = len(starts)
    out = np.empty((g, 2, 10))
    counts = np.zeros((g, 2, 2), dtype=np.int64)
    _day_kernel(starts, ends, close, bucket, rth, out, counts)
    keys = frame.select("ticker", "date").gather(starts)
    cols: dict[str, pl.Series] = {
        "ticker": pl.Series("ticker", np.repeat(keys["ticker"].to_numpy(), 2), dtype=pl.String),
        "date": keys["date"].gather(np.repeat(np.arange(g), 2)),
        "mode": pl.Series("mode", np.tile(np.array(MODES), g), dtype=MODE_DTYPE),
        "bars__1m": pl.Series("bars__1m", counts[:, :, 0].ravel(), dtype=pl.UInt32),
        "bars__5m": pl.Series("bars__5m", counts[:, :, 1].ravel(), dtype=pl.UInt32),
    }
    flat = out.reshape(g * 2, 10)
    names = [f"{n}__{tf}" for tf in TIMEFRAMES for n in _SUMMARY]
    for j, name in enumerate(names):
        series = pl.Series(name, flat[:, j], nan_to_null=True)
        cols[name] = series.cast(pl.UInt32) if name.startswith("hist_zero_cross") else series
    return pl.DataFrame(list(cols.values())).select(list(MACD_DAY_SCHEMA))


# ---------------------------------------------------------------------------------------------
# Bar-level MACD (the old batch script's --write-bar-level output)

MACD_BARS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "mode": MODE_DTYPE,
    "window_start": pl.Datetime("ns", "America/New_York"),
    "close": pl.Float64(),
    "macd": pl.Float64(),
    "macd_signal": pl.Float64(),
    "macd_hist": pl.Float64(),
}


@njit(parallel=True, cache=True)
def _bars_kernel(starts, ends, close, keep, offsets, out_rows, out_macd, out_sig, out_hist):
    """1-minute MACD of each ticker-day's kept bars, written at ``offsets[g]`` onwards."""
    for g in prange(starts.shape[0]):
        s = starts[g]
        e = ends[g]
        k = 0
        c = np.empty(e - s)
        for i in range(s, e):
            if keep[i]:
                c[k] = close[i]
                out_rows[offsets[g] + k] = i
                k += 1
        o = offsets[g]
        for j in range(k):
            out_macd[o + j] = np.nan
            out_sig[o + j] = np.nan
            out_hist[o + j] = np.nan
        _macd_into(c[:k], FAST, SLOW, SIGNAL, out_macd[o : o + k], out_sig[o : o + k], out_hist[o : o + k])


def macd_bars(minute: pl.DataFrame, modes=MODES) -> pl.DataFrame:
    """MACD(12,26,9), signal and histogram at every 1-minute bar of each ticker-day, per mode
    (null for a ticker-day's first 33 bars in that mode). One row per bar and mode: large."""
    if minute.is_empty():
        return pl.DataFrame(schema=MACD_BARS_SCHEMA)
    frame, starts, ends = _prepare(minute)
    close = np.ascontiguousarray(frame["close"].to_numpy(), dtype=np.float64)
    rth = (frame["session"] == "rth").to_numpy()
    parts = []
    for mode in modes:
        keep = np.ones(frame.height, dtype=bool) if mode == "all" else rth
        counts = np.add.reduceat(keep.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(offsets[-1])
        rows = np.empty(total, dtype=np.int64)
        m, sg, h = np.empty(total), np.empty(total), np.empty(total)
        _bars_kernel(starts, ends, close, keep, offsets, rows, m, sg, h)
        parts.append(
            frame.select("ticker", "date", "window_start", "close")
            .gather(rows)
            .with_columns(
                pl.lit(mode, dtype=MODE_DTYPE).alias("mode"),
                pl.Series("macd", m, nan_to_null=True),
                pl.Series("macd_signal", sg, nan_to_null=True),
                pl.Series("macd_hist", h, nan_to_null=True),
            )
            .select(list(MACD_BARS_SCHEMA))
        )
    return pl.concat(parts)


# ---------------------------------------------------------------------------------------------
# Zero-cross events and their triple-barrier labels

OUTCOMES = ("target", "stop", "both", "timeout", "no_forward_bars")
OUTCOME_DTYPE = pl.Enum(list(OUTCOMES))

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "mode": MODE_DTYPE,
    "event_time": pl.Datetime("ns", "America/New_York"),
    "bar_index": pl.UInt32(),
    "direction": pl.Int8(),
    "entry_price": pl.Float64(),
    "macd_at_event": pl.Float64(),
    "signal_at_event": pl.Float64(),
    "hist_at_event": pl.Float64(),
    "prev_hist": pl.Float64(),
    "forward_bars": pl.UInt32(),
    "bars_to_outcome": pl.UInt32(),
    "outcome": OUTCOME_DTYPE,
    "label": pl.Int8(),
    "ret_fwd": pl.Float64(),
}

EVENT_DOCS: dict[str, str] = {
    "ticker": "Symbol as the vendor spells it",
    "date": "Trading day (New York)",
    "mode": "Bars the MACD and the forward window use: all sessions, or regular hours only",
    "event_time": "Start of the 1-minute bar whose close completed the zero cross (New York time); the event is known at that bar's close",
    "bar_index": "Position of the event bar among the ticker-day's bars in this mode (0 = first bar)",
    "direction": "+1 long (histogram crossed above zero), -1 short (crossed below zero)",
    "entry_price": "Close of the event bar, USD",
    "macd_at_event": "1-minute MACD line at the event bar, USD",
    "signal_at_event": "1-minute signal line at the event bar, USD",
    "hist_at_event": "1-minute histogram at the event bar (first value past zero), USD",
    "prev_hist": "Last non-zero histogram before the event bar (opposite sign), USD",
    "forward_bars": "Bars available after the event within time_window (fewer near the day's end)",
    "bars_to_outcome": "Bars after the event until a barrier was touched; null on timeout",
    "outcome": "target / stop = first barrier touched; both = one bar touched both (counted as a loss); timeout = neither within the window; no_forward_bars = the event is the day's last bar",
    "label": "1 when the target barrier was touched first, 0 otherwise (stop, both, timeout); null when no bar follows the event",
    "ret_fwd": "Signed trade return in the event's direction: +target_move on target, -target_move on stop/both, the close-to-close return at the window's last bar on timeout; null when no bar follows",
}


@njit(cache=True)
def _events_for_group(close, high, low, n, target_move, window, want_long, want_short, hist, macd, sig, res, write):
    """Find the crosses of one series and, when ``write``, fill ``res`` rows; returns the count.

    ``res`` columns: bar index, direction, macd, signal, hist, prev hist, forward bars,
    bars to outcome (-1 none), outcome code, label (-1 null), ret_fwd (NaN null).
    """
    for i in range(n):
        hist[i] = np.nan
    _macd_into(close[:n], FAST, SLOW, SIGNAL, macd[:n], sig[:n], hist[:n])
    start = MACD_MIN_BARS - 1
    count = 0
    last_sign = 0
    last_value = 0.0
    for i in range(start, n):
        h = hist[i]
        s = 1 if h > 0.0 else (-1 if h < 0.0 else 0)
        if s == 0:
            continue
        crossed = (last_sign == -1 and s == 1) or (last_sign == 1 and s == -1)
        prev_value = last_value
        last_sign = s
        last_value = h
        if not crossed or (s == 1 and not want_long) or (s == -1 and not want_short):
            continue
        if write:
            entry = close[i]
            up = entry * (1.0 + target_move)
            dn = entry * (1.0 - target_move)
            last = min(n - 1, i + window)
            fwd = last - i
            outcome = 3  # timeout
            hit_at = -1
            for j in range(i + 1, last + 1):
                hit_up = high[j] >= up
                hit_dn = low[j] <= dn
                if hit_up or hit_dn:
                    hit_at = j - i
                    if hit_up and hit_dn:
                        outcome = 2
                    elif (hit_up and s == 1) or (hit_dn and s == -1):
                        outcome = 0
                    else:
                        outcome = 1
                    break
            if fwd == 0:
                outcome = 4
            row = res[count]
            row[0] = i
            row[1] = s
            row[2] = macd[i]
            row[3] = sig[i]
            row[4] = h
            row[5] = prev_value
            row[6] = fwd
            row[7] = hit_at
            row[8] = outcome
            if outcome == 4:
                row[9] = -1
                row[10] = np.nan
            elif outcome == 0:
                row[9] = 1
                row[10] = target_move
            elif outcome == 1 or outcome == 2:
                row[9] = 0
                row[10] = -target_move
            else:
                row[9] = 0
                row[10] = s * (close[last] / entry - 1.0)
        count += 1
    return count


@njit(parallel=True, cache=True)
def _events_kernel(starts, ends, close, high, low, keep, target_move, window, want_long, want_short, offsets, res, rows, write):
    for g in prange(starts.shape[0]):
        s = starts[g]
        e = ends[g]
        n_all = e - s
        c = np.empty(n_all)
        h = np.empty(n_all)
        lo = np.empty(n_all)
        idx = np.empty(n_all, np.int64)
        k = 0
        for i in range(s, e):
            if keep[i]:
                c[k] = close[i]
                h[k] = high[i]
                lo[k] = low[i]
                idx[k] = i
                k += 1
        hist = np.empty(k)
        macd = np.empty(k)
        sig = np.empty(k)
        if write:
            o = offsets[g]
            n_ev = offsets[g + 1] - o
            buf = np.empty((n_ev, 11))
            _events_for_group(c, h, lo, k, target_move, window, want_long, want_short, hist, macd, sig, buf, True)
            for j in range(n_ev):
                for q in range(11):
                    res[o + j, q] = buf[j, q]
                rows[o + j] = idx[int(buf[j, 0])]
        else:
            dummy = np.empty((0, 11))
            offsets[g + 1] = _events_for_group(c, h, lo, k, target_move, window, want_long, want_short, hist, macd, sig, dummy, False)


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENTS_SCHEMA)


@dataclasses.dataclass(frozen=True)
class EventRule:
    """The knobs of :func:`macd_events` (research/macd_event_labels)."""

    target_move: float = knob(0.008, "Barrier distance from the entry close, fraction (0.008 = 80 bp).", gt=0, lt=1)
    time_window: int = knob(30, "Forward bars (not clock minutes) scanned for a barrier, within the day.", ge=1)
    mode: str = knob("all", "Bars used: 'all' sessions or 'rth' only (MACD and forward window alike).")
    long_only: bool = knob(False, "Keep only cross-up (long) events.")
    short_only: bool = knob(False, "Keep only cross-down (short) events.")


def macd_events(
    minute: pl.DataFrame,
    *,
    mode: str = EventRule.mode,
    target_move: float = EventRule.target_move,
    time_window: int = EventRule.time_window,
    long_only: bool = EventRule.long_only,
    short_only: bool = EventRule.short_only,
) -> pl.DataFrame:
    """One event per 1-minute MACD histogram zero cross of each ticker-day, with its label.

    Barrier rule: the entry is the event bar's close ``P``; the target is ``P*(1+target_move)``
    for a long (``P*(1-target_move)`` for a short) and the stop the same distance the other way.
    The next ``time_window`` bars of the same ticker, day and mode (bars, not clock minutes; a
    window never crosses into the next day) are scanned in order with their **highs and lows**:
    the first bar whose high reaches the upper barrier or whose low reaches the lower one decides.
    A bar that touches both is a tie whose order inside the minute is unknown: outcome ``both``,
    counted as a loss (label 0). No barrier within the window: ``timeout``, label 0.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if long_only and short_only:
        raise ValueError("long_only and short_only exclude each other: set at most one")
    if not 0 < target_move < 1:
        raise ValueError(f"target_move must be a fraction in (0, 1), got {target_move}")
    if time_window < 1:
        raise ValueError(f"time_window must be at least 1 bar, got {time_window}")
    if minute.is_empty():
        return empty_events()
    frame, starts, ends = _prepare(minute)
    close = np.ascontiguousarray(frame["close"].to_numpy(), dtype=np.float64)
    high = np.ascontiguousarray(frame["high"].to_numpy(), dtype=np.float64)
    low = np.ascontiguousarray(frame["low"].to_numpy(), dtype=np.float64)
    keep = np.ones(frame.height, dtype=bool) if mode == "all" else (frame["session"] == "rth").to_numpy()
    g = len(starts)
    offsets = np.zeros(g + 1, dtype=np.int64)
    args = (starts, ends, close, high, low, keep, float(target_move), int(time_window), not short_only, not long_only)
    _events_kernel(*args, offsets, np.empty((0, 11)), np.empty(0, np.int64), False)
    offsets = np.cumsum(offsets)
    total = int(offsets[-1])
    res = np.empty((total, 11))
    rows = np.empty(total, dtype=np.int64)
    _events_kernel(*args, offsets, res, rows, True)
    base = frame.select("ticker", "date", pl.col("window_start").alias("event_time")).gather(rows)
    outcome_codes = res[:, 8].astype(np.int64)
    label = pl.Series("label", res[:, 9]).cast(pl.Int8)
    hit = pl.Series("bars_to_outcome", res[:, 7])
    return base.with_columns(
        pl.lit(mode, dtype=MODE_DTYPE).alias("mode"),
        pl.Series("bar_index", res[:, 0].astype(np.uint32)),
        pl.Series("direction", res[:, 1].astype(np.int8)),
        pl.Series("entry_price", close[rows]),
        pl.Series("macd_at_event", res[:, 2]),
        pl.Series("signal_at_event", res[:, 3]),
        pl.Series("hist_at_event", res[:, 4]),
        pl.Series("prev_hist", res[:, 5]),
        pl.Series("forward_bars", res[:, 6].astype(np.uint32)),
        pl.when(hit >= 0).then(hit).otherwise(None).cast(pl.UInt32).alias("bars_to_outcome"),
        pl.Series("outcome", np.array(OUTCOMES)[outcome_codes], dtype=OUTCOME_DTYPE),
        pl.when(label >= 0).then(label).otherwise(None).alias("label"),
        pl.Series("ret_fwd", res[:, 10], nan_to_null=True),
    ).select(list(EVENTS_SCHEMA))


def _plus_macd_schema(minute_features_schema: Mapping[str, pl.DataType]) -> dict:
    schema = dict(minute_features_schema)
    for suffix in ("", "_rth"):
        for c in MACD_FEATURE_COLUMNS:
            schema[f"{c}{suffix}"] = MACD_DAY_SCHEMA[c]
    return schema


# research/minute_features_plus_macd: market/minute_features, then the MACD summaries of mode
# all, then those of mode rth (suffix _rth).
PLUS_MACD_SCHEMA = _plus_macd_schema(market.MINUTE_FEATURES_SCHEMA)
PLUS_MACD_DOCS = {
    **{c: d for c, d in market.COLUMN_DOCS.items() if c in market.MINUTE_FEATURES_SCHEMA},
    **{c: f"{COLUMN_DOCS[c]} (mode all)" for c in MACD_FEATURE_COLUMNS},
    **{f"{c}_rth": f"{COLUMN_DOCS[c]} (mode rth)" for c in MACD_FEATURE_COLUMNS},
}


def with_macd_day(minute_features: pl.DataFrame, macd_day: pl.DataFrame, schema: Mapping[str, pl.DataType] = PLUS_MACD_SCHEMA) -> pl.DataFrame:
    """Minute features with their ticker-day's MACD summaries beside them (left join): mode
    ``all`` under the summary names, mode ``rth`` with the suffix ``_rth``; columns of ``schema``."""
    out = minute_features
    for mode, suffix in (("all", ""), ("rth", "_rth")):
        part = macd_day.filter(pl.col("mode") == mode).select(
            "ticker", "date", *[pl.col(c).alias(f"{c}{suffix}") for c in MACD_FEATURE_COLUMNS]
        )
        out = out.join(part, on=["ticker", "date"], how="left")
    return out.select(list(schema))


def mode_row_violations(features: pl.DataFrame, modes: Sequence[str]) -> tuple[int, int]:
    """(ticker-days, those without exactly one row per mode of ``modes``) of MACD-day features."""
    if not features.height:
        return 0, 0
    counts = features.group_by("ticker", "date").len()
    return counts.height, counts.filter(pl.col("len") != len(modes)).height
