"""Technical indicators of daily bars, computed the way TA-Lib computes them.

Every indicator that TA-Lib defines follows TA-Lib's own algorithm operation for operation
(seeds, running sums, Wilder smoothing, the ``y = (x - y) * k + y`` EMA update, the exact-zero
guards of its current release), so values equal ``talib``'s on the same series to 1e-9 relative
and are null exactly where TA-Lib returns NaN (its lookback). They are not bit-identical
everywhere: the TA-Lib build bundled with the ``talib`` wheel selects a fused-multiply-add
code path at run time on CPUs that have one, which moves the last bit of some results; ours
never fuses, so a flat price series gives a histogram of exactly 0 (no phantom zero crosses).
Conventions taken from TA-Lib (default compatibility, no unstable period):

* ``sma_n``: running sum; first value at bar ``n-1``.
* ``macd``: EMA(12) - EMA(26), each seeded with the simple mean of its first window *ending at
  bar 25* (TA-Lib aligns the fast EMA's seed to the slow one's, so the fast seed is the mean of
  bars 14..25); the signal is EMA(9) of MACD seeded with the mean of MACD at bars 25..33. MACD,
  signal and histogram are all first reported at bar 33.
* ``rsi_14``: Wilder's average gain / loss seeded with simple means of the first 14 changes;
  first value at bar 14; 0 when average gain + loss is 0 (flat prices).
* ``stoch_k`` / ``stoch_d``: slow stochastic (14, 3, 3) with simple moving averages; both first
  reported at bar 17; the raw %K is ``100 * ((close - low14) / (high14 - low14))`` and 0 when the
  14-bar high equals the low.
* ``adx_14`` (first at bar 27), ``plus_di_14`` / ``minus_di_14`` (first at bar 14): Wilder's
  directional movement with summed seeds.
* ``atr_14``: Wilder's average true range seeded with the mean of the first 14 true ranges;
  first at bar 14.
* ``bb_*``: Bollinger bands (20, 2) around the SMA with the population standard deviation
  (exactly 0 on a flat window).
* ``obv``: starts at the first bar's volume.
* ``roc_10``: ``(close / close 10 bars ago - 1) * 100``; first at bar 10.

Indicators outside TA-Lib: ``hv_20`` (sample standard deviation of the last 20 log returns
between consecutive bars, times sqrt(252)), ``vwap_approx`` (volume-weighted typical price
(h+l+c)/3 over the last 20 bars), the SMA crosses and the binary signals.

A ticker's series is its own bars in date order: a session without a bar is skipped, never
filled, so "bar n" counts the ticker's bars, not calendar sessions.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from numba import njit, prange

from quant_assets.lib.calendar import TRADING_DAYS_PER_YEAR

# Output columns of the numba kernel, in order.
_KERNEL_COLUMNS = (
    "rsi_14",
    "stoch_k",
    "stoch_d",
    "roc_10",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "sma_20",
    "sma_50",
    "sma_200",
    "sma_20_50_cross",
    "sma_50_200_cross",
    "atr_14",
    "hv_20",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "obv",
    "vwap_approx",
    "macd",
    "macd_signal",
    "macd_hist",
)
_COL = {name: i for i, name in enumerate(_KERNEL_COLUMNS)}

RSI_OVERBOUGHT = 70.0
RSI_OVERSOLD = 30.0
STRONG_TREND_ADX = 25.0

_KEYS_AND_CLOSE: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "close": pl.Float64(),
    "bars_history": pl.UInt32(),
}
# 0/1 flags derived from the indicators (null where the indicator is).
_FLAG_COLUMNS = ("rsi_overbought", "rsi_oversold", "bb_breakout_up", "bb_breakout_down", "strong_trend")
# The kernel's columns with the band width after the bands.
_INDICATOR_COLUMNS = (*_KERNEL_COLUMNS[: _COL["bb_lower"] + 1], "bb_width", *_KERNEL_COLUMNS[_COL["bb_lower"] + 1 :])

# A stable column order: keys, then indicators as listed in the documentation, then the flags.
TECHNICAL_SCHEMA: dict[str, pl.DataType] = {
    **_KEYS_AND_CLOSE,
    **{c: pl.Int8() if c.endswith("_cross") else pl.Float64() for c in _INDICATOR_COLUMNS},
    **{c: pl.Int8() for c in _FLAG_COLUMNS},
}
TECHNICAL_COLUMNS: tuple[str, ...] = tuple(TECHNICAL_SCHEMA)

# The indicator columns (everything but keys, the close and the history count).
FEATURE_COLUMNS: tuple[str, ...] = TECHNICAL_COLUMNS[len(_KEYS_AND_CLOSE) :]

# Columns in price units (moving averages, bands, ATR, OBV, VWAP, MACD in USD): they mean
# different things for a $2 and a $200 stock.
PRICE_LEVEL_COLUMNS: tuple[str, ...] = (
    *("sma_20", "sma_50", "sma_200", "atr_14", "bb_upper", "bb_middle", "bb_lower"),
    *("obv", "vwap_approx", "macd", "macd_signal", "macd_hist"),
)
SCALE_FREE_COLUMNS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in PRICE_LEVEL_COLUMNS)

# Bars of the ticker's own history an indicator needs before its first value (TA-Lib lookback).
LOOKBACK_BARS: dict[str, int] = {
    "rsi_14": 14,
    "stoch_k": 17,
    "stoch_d": 17,
    "roc_10": 10,
    "adx_14": 27,
    "plus_di_14": 14,
    "minus_di_14": 14,
    "sma_20": 19,
    "sma_50": 49,
    "sma_200": 199,
    "sma_20_50_cross": 50,
    "sma_50_200_cross": 200,
    "atr_14": 14,
    "hv_20": 20,
    "bb_upper": 19,
    "bb_middle": 19,
    "bb_lower": 19,
    "bb_width": 19,
    "obv": 0,
    "vwap_approx": 19,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "rsi_overbought": 14,
    "rsi_oversold": 14,
    "bb_breakout_up": 19,
    "bb_breakout_down": 19,
    "strong_trend": 27,
}

COLUMN_DOCS: dict[str, str] = {
    "ticker": "Symbol as the vendor spells it",
    "date": "Trading day (New York); the indicator uses the ticker's bars up to and including it",
    "close": "Close of the day, USD unadjusted",
    "bars_history": "Bars of this ticker from the first trading-day partition through the day (the series length the indicators saw)",
    "rsi_14": "RSI(14), Wilder smoothing with SMA seed (TA-Lib RSI); 0-100; null for the first 14 bars",
    "stoch_k": "Slow stochastic %K (14,3,3, SMA smoothing; TA-Lib STOCH); 0-100; null for the first 17 bars",
    "stoch_d": "Slow stochastic %D (SMA(3) of %K; TA-Lib STOCH); 0-100; null for the first 17 bars",
    "roc_10": "Rate of change (close / close 10 bars earlier - 1) x 100 (TA-Lib ROC), percent; null for the first 10 bars",
    "adx_14": "ADX(14), Wilder (TA-Lib ADX); 0-100; null for the first 27 bars",
    "plus_di_14": "+DI(14) (TA-Lib PLUS_DI); 0-100; null for the first 14 bars",
    "minus_di_14": "-DI(14) (TA-Lib MINUS_DI); 0-100; null for the first 14 bars",
    "sma_20": "Simple moving average of the close over 20 bars, USD; null for the first 19 bars",
    "sma_50": "Simple moving average of the close over 50 bars, USD; null for the first 49 bars",
    "sma_200": "Simple moving average of the close over 200 bars, USD; null for the first 199 bars",
    "sma_20_50_cross": "+1 golden cross (SMA20 moves above SMA50 on this bar), -1 death cross, 0 none; null until both SMAs exist on this and the previous bar",
    "sma_50_200_cross": "+1 golden cross (SMA50 moves above SMA200 on this bar), -1 death cross, 0 none; null until both SMAs exist on this and the previous bar",
    "atr_14": "Average true range(14), Wilder with SMA seed (TA-Lib ATR), USD; null for the first 14 bars",
    "hv_20": "Historical volatility: sample std (ddof 1) of the last 20 log returns between consecutive bars x sqrt(252), annualised fraction; null for the first 20 bars",
    "bb_upper": "Upper Bollinger band: SMA(20) + 2 population std (TA-Lib BBANDS), USD",
    "bb_middle": "Middle Bollinger band: SMA(20), USD",
    "bb_lower": "Lower Bollinger band: SMA(20) - 2 population std, USD",
    "bb_width": "(bb_upper - bb_lower) / bb_middle, fraction of price",
    "obv": "On-balance volume from the first bar's volume (TA-Lib OBV), shares",
    "vwap_approx": "Volume-weighted typical price (h+l+c)/3 over the last 20 bars, USD; null for the first 19 bars or zero volume",
    "macd": "MACD line EMA(12) - EMA(26) (TA-Lib MACD, aligned seeds), USD; null for the first 33 bars",
    "macd_signal": "Signal line EMA(9) of MACD, USD; null for the first 33 bars",
    "macd_hist": "MACD - signal, USD; null for the first 33 bars",
    "rsi_overbought": "1 when rsi_14 > 70, else 0; null where rsi_14 is null",
    "rsi_oversold": "1 when rsi_14 < 30, else 0; null where rsi_14 is null",
    "bb_breakout_up": "1 when close > bb_upper, else 0; null where the bands are null",
    "bb_breakout_down": "1 when close < bb_lower, else 0; null where the bands are null",
    "strong_trend": "1 when adx_14 > 25, else 0; null where adx_14 is null",
}


# ---------------------------------------------------------------------------------------------
# TA-Lib-exact kernels on one series. ``out`` arrays arrive filled with NaN; a kernel writes only
# the bars where TA-Lib produces a value. Statement order mirrors TA-Lib's C code on purpose:
# floating-point results depend on it.


@njit(cache=True)
def _sma_into(x, n, out):
    m = x.shape[0]
    lookback = n - 1
    if m <= lookback:
        return
    total = 0.0
    i = 0
    if n > 1:
        while i < lookback:
            total += x[i]
            i += 1
    trailing = 0
    while i < m:
        total += x[i]
        i += 1
        tmp = total
        total -= x[trailing]
        trailing += 1
        out[i - 1] = tmp / n


@njit(cache=True)
def _macd_into(x, fast, slow, signal, out_macd, out_signal, out_hist):
    """TA_MACD: both EMAs start at bar ``slow-1`` (the fast one seeded with the mean of its last
    ``fast`` bars up to there), the signal EMA is seeded with the mean of the first ``signal``
    MACD values; everything is reported from bar ``slow + signal - 2``."""
    if slow < fast:
        fast, slow = slow, fast
    m = x.shape[0]
    lookback_signal = signal - 1
    lookback_total = lookback_signal + slow - 1
    if m <= lookback_total:
        return
    k_slow = 2.0 / (slow + 1)
    k_fast = 2.0 / (fast + 1)
    k_sig = 2.0 / (signal + 1)
    first = slow - 1  # first bar with both EMAs
    total = 0.0
    for i in range(0, slow):
        total += x[i]
    ema_slow = total / slow
    total = 0.0
    for i in range(slow - fast, slow):
        total += x[i]
    ema_fast = total / fast
    macd_first = ema_fast - ema_slow
    # Signal seed: the mean of MACD over bars first .. first + signal - 1.
    sig_total = macd_first
    for i in range(first + 1, first + signal):
        ema_slow = ((x[i] - ema_slow) * k_slow) + ema_slow
        ema_fast = ((x[i] - ema_fast) * k_fast) + ema_fast
        sig_total += ema_fast - ema_slow
    # TA-Lib sums from 0.0; adding the first term to 0.0 is exact, so starting from it is too.
    start = first + signal - 1
    sig = sig_total / signal
    value = ema_fast - ema_slow if signal > 1 else macd_first
    out_macd[start] = value
    out_signal[start] = sig
    out_hist[start] = value - sig
    for i in range(start + 1, m):
        ema_slow = ((x[i] - ema_slow) * k_slow) + ema_slow
        ema_fast = ((x[i] - ema_fast) * k_fast) + ema_fast
        value = ema_fast - ema_slow
        sig = ((value - sig) * k_sig) + sig
        out_macd[i] = value
        out_signal[i] = sig
        out_hist[i] = value - sig


@njit(cache=True)
def _rsi_into(x, n, out):
    """TA_RSI: Wilder's averages of the up and down moves, seeded with the plain mean of the
    first ``n`` moves; the first value at bar ``n``."""
    m = x.shape[0]
    if m <= n:
        return
    gain = 0.0
    loss = 0.0
    for today in range(1, m):
        d = x[today] - x[today - 1]
        if today > n:
            loss *= n - 1
            gain *= n - 1
        if d < 0.0:
            loss -= d
        else:
            gain += d
        if today >= n:
            loss /= n
            gain /= n
            s = gain + loss
            out[today] = 0.0 if s == 0.0 else 100.0 * (gain / s)


@njit(cache=True)
def _stoch_into(high, low, close, fastk_n, slowk_n, slowd_n, out_k, out_d):
    """TA_STOCH with SMA smoothing: raw %K from bar ``fastk_n-1``; %K and %D both reported from
    bar ``fastk_n + slowk_n + slowd_n - 3``. Only the window's exact min / max enter the value,
    so a direct scan of each short window gives TA-Lib's numbers."""
    m = close.shape[0]
    lookback_k = fastk_n - 1
    lookback_total = lookback_k + (slowk_n - 1) + (slowd_n - 1)
    if m <= lookback_total:
        return
    nk = m - lookback_k
    raw = np.empty(nk)
    for today in range(lookback_k, m):
        trailing = today - lookback_k
        lowest = low[trailing]
        highest = high[trailing]
        for i in range(trailing + 1, today + 1):
            if low[i] < lowest:
                lowest = low[i]
            if high[i] > highest:
                highest = high[i]
        diff = highest - lowest
        if diff != 0.0:
            raw[trailing] = 100.0 * ((close[today] - lowest) / diff)
        else:
            raw[trailing] = 0.0
    slow_k = np.full(nk, np.nan)
    _sma_into(raw, slowk_n, slow_k)
    slow_d = np.full(nk, np.nan)
    _sma_into(slow_k[slowk_n - 1 :], slowd_n, slow_d[slowk_n - 1 :])
    first = lookback_total - lookback_k  # index into the raw-%K buffer of the first output
    for j in range(first, nk):
        out_k[j + lookback_k] = slow_k[j]
        out_d[j + lookback_k] = slow_d[j]


@njit(cache=True)
def _roc_into(x, n, out):
    m = x.shape[0]
    for i in range(n, m):
        prev = x[i - n]
        if prev != 0.0:
            out[i] = ((x[i] / prev) - 1.0) * 100.0
        else:
            out[i] = 0.0


@njit(cache=True)
def _true_range(high_today, low_today, prev_close):
    greatest = high_today - low_today
    v = abs(prev_close - high_today)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low_today)
    if v > greatest:
        greatest = v
    return greatest


@njit(cache=True)
def _dmi_into(high, low, close, n, out_adx, out_pdi, out_mdi):
    """TA_PLUS_DI / TA_MINUS_DI (from bar n) and TA_ADX (from bar 2n-1) in one pass: the three
    share the same directional-movement and true-range states bar for bar."""
    m = close.shape[0]
    if m <= n:
        return
    pdm = 0.0
    mdm = 0.0
    tr = 0.0
    sum_dx = 0.0
    adx = 0.0
    for today in range(1, m):
        h = high[today]
        lo = low[today]
        diff_p = h - high[today - 1]
        diff_m = low[today - 1] - lo
        seeding = today < n  # bars 1 .. n-1 seed the sums; Wilder smoothing from bar n
        if not seeding:
            mdm -= mdm / n
            pdm -= pdm / n
        if diff_m > 0 and diff_p < diff_m:
            mdm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            pdm += diff_p
        if seeding:
            tr += _true_range(h, lo, close[today - 1])
            continue
        tr = tr - tr / n + _true_range(h, lo, close[today - 1])
        tr_zero = tr == 0.0
        if tr_zero:
            out_pdi[today] = 0.0
            out_mdi[today] = 0.0
        else:
            minus_di = 100.0 * (mdm / tr)
            plus_di = 100.0 * (pdm / tr)
            out_pdi[today] = plus_di
            out_mdi[today] = minus_di
        # ADX: the first n DX values (bars n .. 2n-1) are summed, later ones smoothed.
        if today < 2 * n:
            if not tr_zero:
                s = minus_di + plus_di
                if s != 0.0:
                    sum_dx += 100.0 * (abs(minus_di - plus_di) / s)
            if today == 2 * n - 1:
                adx = sum_dx / n
                out_adx[today] = adx
        else:
            if not tr_zero:
                s = minus_di + plus_di
                if s != 0.0:
                    dx = 100.0 * (abs(minus_di - plus_di) / s)
                    adx = (adx * (n - 1) + dx) / n
            out_adx[today] = adx


@njit(cache=True)
def _atr_into(high, low, close, n, out):
    m = close.shape[0]
    if m <= n:
        return
    total = 0.0
    today = 1
    for _ in range(n):
        total += _true_range(high[today], low[today], close[today - 1])
        today += 1
    atr = total / n
    out[n] = atr
    while today < m:
        tr = _true_range(high[today], low[today], close[today - 1])
        atr *= n - 1
        atr += tr
        atr /= n
        out[today] = atr
        today += 1


@njit(cache=True)
def _bbands_into(x, n, nbdev, out_upper, out_middle, out_lower):
    """TA_BBANDS with an SMA middle band and equal up/down deviations. The population standard
    deviation of each window is computed on deviations from the window's first value, which is
    exact for flat windows (0) and keeps full precision when the spread is tiny next to the
    price, as the TA-Lib release bundled with the wheel does."""
    m = x.shape[0]
    if m < n:
        return
    _sma_into(x, n, out_middle)
    for o in range(n - 1, m):
        shift = x[o - n + 1]
        s1 = 0.0
        s2 = 0.0
        for j in range(o - n + 1, o + 1):
            d = x[j] - shift
            s1 += d
            s2 += d * d
        mean = s1 / n
        var = s2 / n - mean * mean
        std = math.sqrt(var) if var > 0.0 else 0.0
        if nbdev == 1.0:
            out_upper[o] = out_middle[o] + std
            out_lower[o] = out_middle[o] - std
        else:
            t = std * nbdev
            out_upper[o] = out_middle[o] + t
            out_lower[o] = out_middle[o] - t


@njit(cache=True)
def _obv_into(close, volume, out):
    m = close.shape[0]
    if m == 0:
        return
    obv = volume[0]
    prev = close[0]
    for i in range(m):
        v = close[i]
        if v > prev:
            obv += volume[i]
        elif v < prev:
            obv -= volume[i]
        out[i] = obv
        prev = v


@njit(cache=True)
def _hv_into(close, n, annualization, out):
    """Sample std of the last ``n`` log returns x sqrt(annualization). Window sums are rolled and
    recomputed from scratch every ``n`` bars, so rounding never accumulates over a long series."""
    m = close.shape[0]
    if m <= n:
        return
    r = np.empty(m)
    r[0] = 0.0
    for i in range(1, m):
        r[i] = math.log(close[i] / close[i - 1])
    scale = math.sqrt(annualization)
    s1 = 0.0
    s2 = 0.0
    for i in range(n, m):
        if (i - n) % n == 0:
            s1 = 0.0
            s2 = 0.0
            for j in range(i - n + 1, i + 1):
                s1 += r[j]
                s2 += r[j] * r[j]
        else:
            old = r[i - n]
            s1 += r[i] - old
            s2 += r[i] * r[i] - old * old
        var = (s2 - s1 * s1 / n) / (n - 1)
        out[i] = math.sqrt(var) * scale if var > 0.0 else 0.0


@njit(cache=True)
def _vwap_into(high, low, close, volume, n, out):
    """Volume-weighted typical price over the last ``n`` bars (window sums rolled and recomputed
    every ``n`` bars)."""
    m = close.shape[0]
    if m < n:
        return
    pv = 0.0
    vol = 0.0
    for i in range(n - 1, m):
        if (i - n + 1) % n == 0:
            pv = 0.0
            vol = 0.0
            for j in range(i - n + 1, i + 1):
                pv += (high[j] + low[j] + close[j]) / 3.0 * volume[j]
                vol += volume[j]
        else:
            j = i - n
            pv += (high[i] + low[i] + close[i]) / 3.0 * volume[i] - (high[j] + low[j] + close[j]) / 3.0 * volume[j]
            vol += volume[i] - volume[j]
        if vol > 0.0:
            out[i] = pv / vol


@njit(cache=True)
def _cross_into(fast, slow, out):
    m = fast.shape[0]
    for i in range(1, m):
        a0, b0, a1, b1 = fast[i - 1], slow[i - 1], fast[i], slow[i]
        if math.isnan(a0) or math.isnan(b0) or math.isnan(a1) or math.isnan(b1):
            continue
        if a1 > b1 and a0 <= b0:
            out[i] = 1.0
        elif a1 < b1 and a0 >= b0:
            out[i] = -1.0
        else:
            out[i] = 0.0


@njit(parallel=True, cache=True)
def _technical_kernel(starts, ends, high, low, close, volume, out, bars):
    """Every indicator for every ticker: rows ``starts[g]:ends[g]`` are ticker g's bars in date
    order; ``out[column, row]`` is written in full (NaN where an indicator has no value)."""
    ncols = out.shape[0]
    for g in prange(starts.shape[0]):
        s = starts[g]
        e = ends[g]
        for k in range(ncols):
            out[k, s:e] = np.nan
        for i in range(s, e):
            bars[i] = i - s + 1
        h = high[s:e]
        lo = low[s:e]
        c = close[s:e]
        v = volume[s:e]
        _rsi_into(c, 14, out[0, s:e])
        _stoch_into(h, lo, c, 14, 3, 3, out[1, s:e], out[2, s:e])
        _roc_into(c, 10, out[3, s:e])
        _dmi_into(h, lo, c, 14, out[4, s:e], out[5, s:e], out[6, s:e])
        _sma_into(c, 20, out[7, s:e])
        _sma_into(c, 50, out[8, s:e])
        _sma_into(c, 200, out[9, s:e])
        _cross_into(out[7, s:e], out[8, s:e], out[10, s:e])
        _cross_into(out[8, s:e], out[9, s:e], out[11, s:e])
        _atr_into(h, lo, c, 14, out[12, s:e])
        _hv_into(c, 20, float(TRADING_DAYS_PER_YEAR), out[13, s:e])
        _bbands_into(c, 20, 2.0, out[14, s:e], out[15, s:e], out[16, s:e])
        _obv_into(c, v, out[17, s:e])
        _vwap_into(h, lo, c, v, 20, out[18, s:e])
        _macd_into(c, 12, 26, 9, out[19, s:e], out[20, s:e], out[21, s:e])


# ---------------------------------------------------------------------------------------------
# One-series wrappers (the reference tests call these against talib).


def _f64(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def sma(close, period: int) -> np.ndarray:
    x = _f64(close)
    out = _nan(x.size)
    _sma_into(x, period, out)
    return out


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _f64(close)
    m, s, h = _nan(x.size), _nan(x.size), _nan(x.size)
    _macd_into(x, fast, slow, signal, m, s, h)
    return m, s, h


def rsi(close, period: int = 14) -> np.ndarray:
    x = _f64(close)
    out = _nan(x.size)
    _rsi_into(x, period, out)
    return out


def stoch(high, low, close, fastk: int = 14, slowk: int = 3, slowd: int = 3) -> tuple[np.ndarray, np.ndarray]:
    c = _f64(close)
    k, d = _nan(c.size), _nan(c.size)
    _stoch_into(_f64(high), _f64(low), c, fastk, slowk, slowd, k, d)
    return k, d


def roc(close, period: int = 10) -> np.ndarray:
    x = _f64(close)
    out = _nan(x.size)
    _roc_into(x, period, out)
    return out


def dmi(high, low, close, period: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(adx, plus_di, minus_di)."""
    c = _f64(close)
    a, p, m = _nan(c.size), _nan(c.size), _nan(c.size)
    _dmi_into(_f64(high), _f64(low), c, period, a, p, m)
    return a, p, m


def atr(high, low, close, period: int = 14) -> np.ndarray:
    c = _f64(close)
    out = _nan(c.size)
    _atr_into(_f64(high), _f64(low), c, period, out)
    return out


def bbands(close, period: int = 20, nbdev: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _f64(close)
    u, m, lo = _nan(x.size), _nan(x.size), _nan(x.size)
    _bbands_into(x, period, float(nbdev), u, m, lo)
    return u, m, lo


def obv(close, volume) -> np.ndarray:
    x = _f64(close)
    out = _nan(x.size)
    _obv_into(x, _f64(volume), out)
    return out


def hv(close, period: int = 20, annualization: float = TRADING_DAYS_PER_YEAR) -> np.ndarray:
    x = _f64(close)
    out = _nan(x.size)
    _hv_into(x, period, float(annualization), out)
    return out


# ---------------------------------------------------------------------------------------------
# The technical-features table


def empty_technical() -> pl.DataFrame:
    return pl.DataFrame(schema=TECHNICAL_SCHEMA)


def group_bounds(keys: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of runs of equal consecutive values of ``keys``."""
    n = keys.len()
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = keys.ne_missing(keys.shift(1)).fill_null(True).to_numpy()
    starts = np.flatnonzero(change).astype(np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    return starts, ends


def ticker_order(frame: pl.DataFrame) -> np.ndarray:
    """Row permutation that groups ``frame`` by ticker with dates ascending inside each group.

    Daily frames arrive from the lake sorted by (date, ticker); a stable sort on integer ticker
    codes then needs no string comparisons.
    """
    dates = frame["date"].to_physical().to_numpy()
    base = np.arange(frame.height)
    if dates.size and np.any(dates[1:] < dates[:-1]):
        base = np.argsort(dates, kind="stable")
    codes = frame["ticker"].cast(pl.Categorical).to_physical().to_numpy()[base]
    return base[np.argsort(codes, kind="stable")]


def technical_features(daily: pl.DataFrame, *, keep_dates=None) -> pl.DataFrame:
    """The indicator table for every (ticker, date) of ``daily`` (columns ticker, date, high,
    low, close, volume; any row order). Each ticker's series is its own bars in date order.

    ``keep_dates``: when given, only rows on those dates are returned (the indicators still see
    the whole history in ``daily``). Output sorted by (ticker, date).
    """
    if daily.is_empty():
        return empty_technical()
    bad = daily.filter(~pl.all_horizontal(pl.col("high", "low", "close").is_finite()) | (pl.col("close") <= 0))
    if bad.height:
        raise ValueError(
            f"{bad.height} daily bar(s) with a missing, non-finite or non-positive price, e.g. "
            f"{bad.select('ticker', 'date', 'high', 'low', 'close').row(0)}"
        )
    perm = ticker_order(daily)
    tickers = daily["ticker"].gather(perm)
    dates = daily["date"].gather(perm)
    starts, ends = group_bounds(tickers)
    d = dates.to_physical().to_numpy()
    same_ticker = np.ones(d.size, dtype=bool)
    same_ticker[starts] = False
    repeated = np.flatnonzero(same_ticker[1:] & (d[1:] <= d[:-1]))
    if repeated.size:
        i = int(repeated[0]) + 1
        raise ValueError(f"daily bars hold more than one row for ticker {tickers[i]} on {dates[i]}")

    def col(name: str) -> np.ndarray:
        return np.ascontiguousarray(daily[name].cast(pl.Float64).fill_null(0.0).to_numpy()[perm])

    close = col("close")
    out = np.empty((len(_KERNEL_COLUMNS), daily.height))
    bars = np.empty(daily.height, dtype=np.uint32)
    _technical_kernel(starts, ends, col("high"), col("low"), close, col("volume"), out, bars)
    result = pl.DataFrame(
        [
            tickers,
            dates,
            pl.Series("close", close),
            pl.Series("bars_history", bars),
            *(
                pl.Series(name, out[i], nan_to_null=True).cast(pl.Int8 if name.endswith("_cross") else pl.Float64)
                for i, name in enumerate(_KERNEL_COLUMNS)
            ),
        ]
    )
    if keep_dates is not None:
        result = result.filter(pl.col("date").is_in(list(keep_dates)))
    flag = lambda cond: cond.cast(pl.Int8)  # noqa: E731 - null stays null
    result = result.with_columns(
        ((pl.col("bb_upper") - pl.col("bb_lower")) / pl.col("bb_middle")).alias("bb_width"),
        flag(pl.col("rsi_14") > RSI_OVERBOUGHT).alias("rsi_overbought"),
        flag(pl.col("rsi_14") < RSI_OVERSOLD).alias("rsi_oversold"),
        flag(pl.col("close") > pl.col("bb_upper")).alias("bb_breakout_up"),
        flag(pl.col("close") < pl.col("bb_lower")).alias("bb_breakout_down"),
        flag(pl.col("adx_14") > STRONG_TREND_ADX).alias("strong_trend"),
    )
    return result.select(list(TECHNICAL_COLUMNS))


def range_violations(features: pl.DataFrame) -> dict[str, int]:
    """Rows breaking an invariant every correct indicator value satisfies (0-100 oscillators,
    ordered bands, non-negative ATR/volatility)."""
    if features.is_empty():
        return {}
    rules = {
        "rsi_outside_0_100": ~pl.col("rsi_14").is_between(0, 100),
        "stoch_outside_0_100": ~pl.col("stoch_k").is_between(-1e-9, 100 + 1e-9)
        | ~pl.col("stoch_d").is_between(-1e-9, 100 + 1e-9),
        "adx_outside_0_100": ~pl.col("adx_14").is_between(0, 100)
        | ~pl.col("plus_di_14").is_between(0, 100)
        | ~pl.col("minus_di_14").is_between(0, 100),
        "bands_out_of_order": (pl.col("bb_lower") > pl.col("bb_middle")) | (pl.col("bb_middle") > pl.col("bb_upper")),
        "negative_atr_or_hv": (pl.col("atr_14") < 0) | (pl.col("hv_20") < 0),
    }
    counts = features.select(**{k: v.fill_null(False).sum() for k, v in rules.items()}).row(0, named=True)
    return {k: int(v) for k, v in counts.items()}
