"""Technical indicators against TA-Lib (the ``talib`` wheel) on random and adversarial series,
the multi-ticker table against a per-ticker TA-Lib loop, and incremental == full history."""

import datetime as dt
import zlib

import numpy as np
import polars as pl
import pytest
import talib

from quant_assets.lib.research import indicators as ind

RTOL = 1e-9


def assert_talib_equal(ours: np.ndarray, ref: np.ndarray, name: str) -> None:
    """Null exactly where TA-Lib gives NaN; elsewhere equal to 1e-9 relative, or to 1e-9 of the
    series' largest magnitude where a value is a small difference of large ones (a lower band near
    zero, MACD at a crossing): there the last bits depend on summation order, not on correctness."""
    assert ours.shape == ref.shape, name
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{name}: NaN positions differ")
    ok = ~np.isnan(ref)
    scale = float(np.max(np.abs(ref[ok]))) if ok.any() else 0.0
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=RTOL, atol=RTOL * scale, err_msg=name)


def stable_seed(name: str) -> int:
    """A seed that is the same in every process (``hash`` of a str is salted per interpreter)."""
    return zlib.crc32(name.encode())


def ohlcv(kind: str, n: int, rng: np.random.Generator):
    if kind == "random":
        c = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        h = c * (1 + np.abs(rng.normal(0, 0.01, n)))
        lo = c * (1 - np.abs(rng.normal(0, 0.01, n)))
    elif kind == "cents":  # prices on a cent grid: many exact ties and repeated closes
        c = np.round(np.maximum(5 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], n)), 0.01), 2)
        h = np.round(c + rng.choice([0.0, 0.01, 0.02], n), 2)
        lo = np.round(np.maximum(c - rng.choice([0.0, 0.01, 0.02], n), 0.001), 2)
    elif kind == "flat":
        c = np.full(n, np.round(rng.uniform(0.5, 400), 2))
        h = c.copy()
        lo = c.copy()
    elif kind == "penny":  # variance below TA-Lib's 1e-8 "is zero" guards
        c = np.round(0.01 + np.abs(np.cumsum(rng.normal(0, 0.00005, n))), 5)
        h = c + 0.00002
        lo = c - 0.00002
    elif kind == "gaps":  # overnight jumps of +-40 % (a session skipped by the ticker)
        r = rng.normal(0, 0.01, n)
        r[rng.random(n) < 0.05] = rng.choice([-0.4, 0.4])
        c = 10 * np.exp(np.cumsum(r))
        h = c * 1.005
        lo = c * 0.995
    elif kind == "steps":  # long flat stretches then jumps
        c = np.round(np.repeat(rng.uniform(5, 6, n // 7 + 1), 7)[:n], 2)
        h = c.copy()
        lo = c.copy()
    else:
        raise ValueError(kind)
    v = np.round(rng.lognormal(10, 1.5, n))
    v[rng.random(n) < 0.05] = 0.0
    return h, lo, c, v


KINDS = ("random", "cents", "flat", "penny", "gaps", "steps")
LENGTHS = (1, 2, 13, 14, 15, 16, 17, 18, 20, 27, 28, 33, 34, 35, 50, 51, 199, 200, 201, 400)


@pytest.mark.parametrize("kind", KINDS)
def test_every_indicator_equals_talib(kind):
    rng = np.random.default_rng(stable_seed(kind))
    for n in LENGTHS:
        h, lo, c, v = ohlcv(kind, n, rng)
        tag = f"{kind} n={n}"
        for p in (20, 50, 200):
            assert_talib_equal(ind.sma(c, p), talib.SMA(c, p), f"SMA{p} {tag}")
        for ours, ref, name in zip(ind.macd(c), talib.MACD(c, 12, 26, 9), ("MACD", "signal", "hist")):
            assert_talib_equal(ours, ref, f"{name} {tag}")
        assert_talib_equal(ind.rsi(c, 14), talib.RSI(c, 14), f"RSI {tag}")
        for ours, ref, name in zip(ind.stoch(h, lo, c), talib.STOCH(h, lo, c, 14, 3, 0, 3, 0), ("slowk", "slowd")):
            assert_talib_equal(ours, ref, f"{name} {tag}")
        assert_talib_equal(ind.roc(c, 10), talib.ROC(c, 10), f"ROC {tag}")
        adx, pdi, mdi = ind.dmi(h, lo, c, 14)
        assert_talib_equal(adx, talib.ADX(h, lo, c, 14), f"ADX {tag}")
        assert_talib_equal(pdi, talib.PLUS_DI(h, lo, c, 14), f"+DI {tag}")
        assert_talib_equal(mdi, talib.MINUS_DI(h, lo, c, 14), f"-DI {tag}")
        assert_talib_equal(ind.atr(h, lo, c, 14), talib.ATR(h, lo, c, 14), f"ATR {tag}")
        for ours, ref, name in zip(ind.bbands(c, 20, 2.0), talib.BBANDS(c, 20, 2.0, 2.0, 0), ("upper", "middle", "lower")):
            assert_talib_equal(ours, ref, f"BB {name} {tag}")
        assert_talib_equal(ind.obv(c, v), talib.OBV(c, v), f"OBV {tag}")


def test_flat_prices_give_an_exactly_zero_histogram_and_no_crosses():
    """TA-Lib's MACD line keeps a 1e-17 seed residue on most flat series (the mean of 12 equal
    prices is not always the price); the ``y = (x - y) * k + y`` update never grows it, so the
    histogram -- the difference of two equal residues -- is exactly 0. The other EMA form,
    ``(1 - k) * y + k * x``, leaves residues that flip sign and would count phantom crosses."""
    rng = np.random.default_rng(3)
    residue_seen = False
    naive_nonzero = 0

    def naive_hist(x):
        """MACD with the other EMA form, ``(1 - k) * y + k * x``, and the same seeds."""
        def ema(v, n, start):
            k = 2 / (n + 1)
            y = v[start - n + 1 : start + 1].mean()
            out = [y]
            for value in v[start + 1 :]:
                y = (1 - k) * y + k * value
                out.append(y)
            return np.array(out)

        line = ema(x, 12, 25) - ema(x, 26, 25)
        return line[8:] - ema(line, 9, 8)

    for price in np.round(rng.uniform(0.01, 500, 300), 2):
        x = np.full(200, price)
        m, _, h = ind.macd(x)
        ok = ~np.isnan(h)
        assert np.all(h[ok] == 0.0), price
        residue_seen |= bool(np.any(m[ok] != 0.0))
        naive_nonzero += bool(np.any(naive_hist(x) != 0.0))
    assert residue_seen  # TA-Lib's seed residue exists on the MACD line, as it does in TA-Lib
    assert naive_nonzero > 0  # the other form does leave histogram residue: the property is not vacuous
    from quant_assets.lib.research.macd import _summarise

    out = np.empty(5)
    _summarise(ind.macd(np.full(120, 0.1))[2], 120, out, 0)
    assert out[3] == 0 and out[4] == 0


def _frame(series: dict[str, tuple], start=dt.date(2024, 1, 1)) -> pl.DataFrame:
    rows = []
    for ticker, (dates, h, lo, c, v) in series.items():
        for d, a, b, cc, vv in zip(dates, h, lo, c, v):
            rows.append((ticker, d, a, b, cc, int(vv)))
    return pl.DataFrame(rows, schema=["ticker", "date", "high", "low", "close", "volume"], orient="row").sort(["date", "ticker"])


def test_table_equals_a_per_ticker_talib_loop_with_gaps_and_short_histories():
    rng = np.random.default_rng(9)
    all_days = [dt.date(2023, 1, 2) + dt.timedelta(days=i) for i in range(400)]
    series = {}
    for i, n in enumerate((400, 260, 15, 34, 1, 120)):
        keep = np.sort(rng.choice(400, size=n, replace=False))  # own bars only: gaps skipped
        h, lo, c, v = ohlcv(KINDS[i % len(KINDS)], n, rng)
        series[f"T{i}"] = ([all_days[k] for k in keep], h, lo, c, v)
    table = ind.technical_features(_frame(series))
    assert table.columns == list(ind.TECHNICAL_COLUMNS)
    for ticker, (dates, h, lo, c, v) in series.items():
        got = table.filter(pl.col("ticker") == ticker).sort("date")
        assert got["date"].to_list() == dates
        assert got["bars_history"].to_list() == list(range(1, len(dates) + 1))
        col = lambda name: got[name].cast(pl.Float64).fill_null(np.nan).to_numpy()  # noqa: E731
        assert_talib_equal(col("rsi_14"), talib.RSI(c, 14), ticker)
        k, d = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
        assert_talib_equal(col("stoch_k"), k, ticker)
        assert_talib_equal(col("stoch_d"), d, ticker)
        assert_talib_equal(col("adx_14"), talib.ADX(h, lo, c, 14), ticker)
        assert_talib_equal(col("atr_14"), talib.ATR(h, lo, c, 14), ticker)
        assert_talib_equal(col("sma_200"), talib.SMA(c, 200), ticker)
        u, m, low = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        assert_talib_equal(col("bb_upper"), u, ticker)
        assert_talib_equal(col("bb_lower"), low, ticker)
        assert_talib_equal(col("obv"), talib.OBV(c, v.astype(float)), ticker)
        mm, ms, mh = talib.MACD(c, 12, 26, 9)
        assert_talib_equal(col("macd_hist"), mh, ticker)
        # Indicators outside TA-Lib, against direct numpy definitions.
        lr = np.diff(np.log(c))
        hv = np.full(len(c), np.nan)
        for i in range(20, len(c)):
            hv[i] = np.std(lr[i - 20 : i], ddof=1) * np.sqrt(252)
        np.testing.assert_allclose(col("hv_20"), hv, rtol=1e-9, atol=1e-12, equal_nan=True)
        tp = (h + lo + c) / 3
        vw = np.full(len(c), np.nan)
        for i in range(19, len(c)):
            vol = v[i - 19 : i + 1].sum()
            if vol > 0:
                vw[i] = (tp[i - 19 : i + 1] * v[i - 19 : i + 1]).sum() / vol
        np.testing.assert_allclose(col("vwap_approx"), vw, rtol=1e-9, equal_nan=True)
        s20, s50 = talib.SMA(c, 20), talib.SMA(c, 50)
        cross = np.full(len(c), np.nan)
        for i in range(1, len(c)):
            if not np.isnan([s20[i], s50[i], s20[i - 1], s50[i - 1]]).any():
                cross[i] = 1 if s20[i] > s50[i] and s20[i - 1] <= s50[i - 1] else (-1 if s20[i] < s50[i] and s20[i - 1] >= s50[i - 1] else 0)
        np.testing.assert_array_equal(col("sma_20_50_cross"), cross)
        rsi = talib.RSI(c, 14)
        flag = np.where(np.isnan(rsi), np.nan, (rsi > 70).astype(float))
        np.testing.assert_array_equal(col("rsi_overbought"), flag)
    long = table.filter(pl.col("ticker") == "T0").sort("date")  # 400 bars: every lookback as documented
    for column, lookback in ind.LOOKBACK_BARS.items():
        first = long[column].is_not_null().arg_true()[0]
        assert first == lookback, (column, first, lookback)
    short = table.filter(pl.col("ticker") == "T2")  # 15 bars: one RSI, no ADX / MACD / SMA200
    assert short["rsi_14"].drop_nulls().len() == 1
    assert short["adx_14"].null_count() == 15 and short["macd"].null_count() == 15
    assert table.filter(pl.col("ticker") == "T4").height == 1


def test_one_day_from_the_full_history_equals_the_backfill():
    rng = np.random.default_rng(4)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(300)]
    series = {f"S{i}": (days, *ohlcv("random", 300, rng)) for i in range(4)}
    full = _frame(series)
    backfill = ind.technical_features(full)
    for day in (days[20], days[150], days[-1]):
        history = full.filter(pl.col("date") <= day)
        one = ind.technical_features(history, keep_dates=[day]).sort("ticker")
        expected = backfill.filter(pl.col("date") == day).sort("ticker")
        assert one.equals(expected), day


def test_bad_daily_input_fails_with_the_cause():
    base = _frame({"A": ([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1, 1])})
    with pytest.raises(ValueError, match="more than one row for ticker A on 2024-01-02"):
        ind.technical_features(pl.concat([base, base.tail(1)]))
    with pytest.raises(ValueError, match="non-positive price"):
        ind.technical_features(base.with_columns(pl.lit(0.0).alias("close")))
    assert ind.technical_features(base.clear()).schema == ind.empty_technical().schema
