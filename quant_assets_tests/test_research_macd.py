"""MACD day features and MACD zero-cross events on minute bars, against talib.MACD and by hand."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import talib

from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.research import macd as M
from quant_assets.simulate import PolygonSimSpec, simulate_minute_day

DAY = dt.date(2024, 6, 3)


@pytest.fixture(scope="module")
def minutes() -> pl.DataFrame:
    spec = PolygonSimSpec(start=DAY, end=DAY, tickers=40, minute_days=1, seed=5)
    return market.to_minute_aggs(simulate_minute_day(spec, DAY), DAY)


def bars(ticker: str, day: dt.date, closes, minutes_after_open, highs=None, lows=None) -> pl.DataFrame:
    """Hand-made minute bars at 09:30 + offsets (regular hours) for one ticker."""
    closes = np.asarray(closes, dtype=float)
    start = cal.ny_midnight_ns(day) + (9 * 60 + 30) * 60 * cal.NS_PER_SECOND
    ws = start + np.asarray(minutes_after_open, dtype=np.int64) * 60 * cal.NS_PER_SECOND
    raw = pl.DataFrame(
        {
            "ticker": [ticker] * len(closes),
            "volume": np.full(len(closes), 100, dtype=np.int64),
            "open": closes,
            "close": closes,
            "high": closes if highs is None else np.asarray(highs, dtype=float),
            "low": closes if lows is None else np.asarray(lows, dtype=float),
            "window_start": ws,
            "transactions": np.ones(len(closes), dtype=np.int64),
        }
    )
    return market.to_minute_aggs(raw, day)


def reference(closes: np.ndarray):
    """(last, min, max, ups, downs) from talib.MACD and a plain-Python cross rule."""
    _, _, h = talib.MACD(closes, 12, 26, 9)
    h = h[~np.isnan(h)]
    if h.size == 0:
        return None
    ups = downs = 0
    last = 0
    for v in h:
        s = int(v > 0) - int(v < 0)
        if s == 0:
            continue
        ups += last == -1 and s == 1
        downs += last == 1 and s == -1
        last = s
    return h[-1], h.min(), h.max(), ups, downs


def five_minute_closes(g: pl.DataFrame) -> np.ndarray:
    if g.is_empty():
        return np.array([])
    return g.group_by_dynamic("window_start", every="5m").agg(pl.col("close").last())["close"].to_numpy()


def test_day_features_equal_talib_for_both_modes_and_timeframes(minutes):
    feats = M.macd_day_features(minutes)
    assert feats.columns == list(M.MACD_DAY_SCHEMA)
    assert feats.height == 2 * minutes.select("ticker").n_unique()
    checked = 0
    for (ticker,), g in minutes.group_by(["ticker"]):
        g = g.sort("window_start")
        for mode in ("all", "rth"):
            gm = g if mode == "all" else g.filter(pl.col("session") == "rth")
            row = feats.filter((pl.col("ticker") == ticker) & (pl.col("mode") == mode)).row(0, named=True)
            assert row["bars__1m"] == gm.height
            for tf, closes in (("1m", gm["close"].to_numpy()), ("5m", five_minute_closes(gm))):
                ref = reference(closes)
                got = [row[f"{n}__{tf}"] for n in ("hist_last", "hist_min", "hist_max", "hist_zero_cross_up_count", "hist_zero_cross_down_count")]
                if ref is None:
                    assert got == [None] * 5, (ticker, mode, tf)
                    continue
                np.testing.assert_allclose(got[:3], ref[:3], rtol=1e-9, atol=0)
                assert got[3:] == list(ref[3:]), (ticker, mode, tf)
                checked += 1
    assert checked > 100


def test_cross_rule_skips_zeros_and_flat_days_have_none():
    day = dt.date(2024, 6, 4)
    flat = bars("FLAT", day, np.full(120, 12.34), range(120))
    rising_then = bars("STEP", day, np.r_[np.full(60, 10.0), np.full(60, 10.05)], range(120))
    thin = bars("THIN", day, np.linspace(10, 11, 33), range(33))  # one bar short of a histogram
    frame = pl.concat([flat, rising_then, thin])
    feats = M.macd_day_features(frame).filter(pl.col("mode") == "all")
    f = feats.filter(pl.col("ticker") == "FLAT").row(0, named=True)
    assert f["hist_last__1m"] == 0.0 and f["hist_min__1m"] == 0.0 and f["hist_max__1m"] == 0.0
    assert f["hist_zero_cross_up_count__1m"] == 0 and f["hist_zero_cross_down_count__1m"] == 0
    s = feats.filter(pl.col("ticker") == "STEP").row(0, named=True)
    # 0, 0, ..., then positive: a histogram leaving exactly zero is not a cross.
    assert s["hist_zero_cross_up_count__1m"] == 0 and s["hist_max__1m"] > 0
    t = feats.filter(pl.col("ticker") == "THIN").row(0, named=True)
    assert t["bars__1m"] == 33 and t["hist_last__1m"] is None and t["hist_zero_cross_up_count__1m"] is None
    # The summariser itself: -1, 0, +1 is one cross up; +1, 0, +1 none.
    out = np.empty(5)
    hist = np.r_[np.full(33, np.nan), [-1.0, 0.0, 1.0, 0.0, 1.0, -2.0]]
    M._summarise(hist, hist.size, out, 0)
    assert out[3] == 1 and out[4] == 1 and out[0] == -2.0


def test_unsorted_input_gives_the_same_rows(minutes):
    shuffled = minutes.sample(fraction=1.0, shuffle=True, seed=1)
    a = M.macd_day_features(minutes).sort(["ticker", "mode"])
    b = M.macd_day_features(shuffled).sort(["ticker", "mode"])
    assert a.equals(b)
    with pytest.raises(ValueError, match="two rows for"):
        M.macd_day_features(pl.concat([minutes, minutes.head(1)]))


def test_events_are_the_counted_crosses(minutes):
    feats = M.macd_day_features(minutes)
    for mode in ("all", "rth"):
        ev = M.macd_events(minutes, mode=mode)
        counts = ev.group_by("ticker").agg(
            (pl.col("direction") == 1).sum().alias("up"), (pl.col("direction") == -1).sum().alias("down")
        )
        joined = feats.filter(pl.col("mode") == mode).join(counts, on="ticker", how="left").fill_null(0)
        assert (joined["hist_zero_cross_up_count__1m"].fill_null(0) == joined["up"]).all()
        assert (joined["hist_zero_cross_down_count__1m"].fill_null(0) == joined["down"]).all()
        assert ev.height > 50
        if mode == "rth":
            assert (ev["event_time"].dt.hour().cast(pl.Int32) * 60 + ev["event_time"].dt.minute()).is_between(570, 959).all()
    longs = M.macd_events(minutes, long_only=True)
    shorts = M.macd_events(minutes, short_only=True)
    both = M.macd_events(minutes)
    assert (longs["direction"] == 1).all() and (shorts["direction"] == -1).all()
    assert longs.height + shorts.height == both.height
    with pytest.raises(ValueError, match="exclude each other"):
        M.macd_events(minutes, long_only=True, short_only=True)
    with pytest.raises(ValueError, match="mode must be"):
        M.macd_events(minutes, mode="pre")


def _event_series(after: list[tuple[float, float, float]], direction: int, entry: float = 10.0):
    """40 bars that end in a zero cross of ``direction`` at bar 39, then the given (close, high,
    low) bars."""
    if direction == 1:
        base = np.r_[np.linspace(11, 9.8, 38), [9.5, 10.0]]
    else:
        base = np.r_[np.linspace(9, 10.2, 38), [10.5, 10.0]]
    _, _, h = talib.MACD(base, 12, 26, 9)
    assert np.sign(h[-1]) == direction and np.sign(h[-2]) == -direction
    closes = np.r_[base, [a[0] for a in after]]
    highs = np.r_[base, [a[1] for a in after]]
    lows = np.r_[base, [a[2] for a in after]]
    return closes, highs, lows


@pytest.mark.parametrize(
    "direction, after, outcome, label, ret, when",
    [
        (1, [(10.0, 10.05, 9.95), (10.0, 10.09, 9.99)], "target", 1, 0.008, 2),  # high reaches +0.8 %
        (1, [(10.0, 10.01, 9.91)], "stop", 0, -0.008, 1),  # low reaches -0.8 %
        (1, [(10.0, 10.09, 9.91)], "both", 0, -0.008, 1),  # both in one bar: a loss
        (-1, [(10.0, 10.01, 9.92)], "target", 1, 0.008, 1),  # a short's target is below
        (-1, [(10.0, 10.08, 9.99)], "stop", 0, -0.008, 1),
        (1, [(10.03, 10.04, 9.97)] * 3, "timeout", 0, 0.003, None),  # window of 3 bars, no touch
        (1, [], "no_forward_bars", None, None, None),  # the day's last bar
    ],
)
def test_barrier_rule_by_hand(direction, after, outcome, label, ret, when):
    closes, highs, lows = _event_series(after, direction)
    frame = bars("EV", dt.date(2024, 6, 5), closes, range(len(closes)), highs, lows)
    ev = M.macd_events(frame, target_move=0.008, time_window=3).filter(pl.col("bar_index") == 39)
    assert ev.height == 1
    r = ev.row(0, named=True)
    assert r["direction"] == direction and r["entry_price"] == 10.0
    assert r["outcome"] == outcome and r["label"] == label and r["bars_to_outcome"] == when
    assert r["forward_bars"] == min(3, len(after))
    if ret is None:
        assert r["ret_fwd"] is None
    else:
        assert r["ret_fwd"] == pytest.approx(ret, abs=1e-12)
    assert r["event_time"] == frame["window_start"][39]


def test_an_event_and_its_features_do_not_depend_on_later_bars(minutes):
    """Changing every bar after an event's bar changes neither the event nor its MACD values."""
    ticker = minutes.group_by("ticker").len().sort("len", descending=True)["ticker"][0]
    g = minutes.filter(pl.col("ticker") == ticker)
    ev = M.macd_events(g)
    cut = ev["event_time"][len(ev) // 2]
    rng = np.random.default_rng(2)
    later = pl.col("window_start") > cut
    noise = pl.Series(rng.uniform(0.9, 1.1, g.height))
    damaged = g.with_columns(
        *(pl.when(later).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close"))
    )
    ev2 = M.macd_events(damaged)
    cols = ["event_time", "bar_index", "direction", "entry_price", "macd_at_event", "signal_at_event", "hist_at_event", "prev_hist"]
    before = ev.filter(pl.col("event_time") <= cut).select(cols)
    after = ev2.filter(pl.col("event_time") <= cut).select(cols)
    assert before.height > 0 and before.equals(after)


def test_bar_level_macd_equals_talib_per_bar(minutes):
    bars = M.macd_bars(minutes)
    assert bars.columns == list(M.MACD_BARS_SCHEMA)
    assert bars.filter(pl.col("mode") == "all").height == minutes.height
    assert bars.filter(pl.col("mode") == "rth").height == minutes.filter(pl.col("session") == "rth").height
    for ticker in minutes["ticker"].unique().sort().head(8):
        for mode in ("all", "rth"):
            g = minutes.filter(pl.col("ticker") == ticker).sort("window_start")
            if mode == "rth":
                g = g.filter(pl.col("session") == "rth")
            got = bars.filter((pl.col("ticker") == ticker) & (pl.col("mode") == mode)).sort("window_start")
            assert got["window_start"].to_list() == g["window_start"].to_list()
            ref = talib.MACD(g["close"].to_numpy(), 12, 26, 9)
            for col, r in zip(("macd", "macd_signal", "macd_hist"), ref):
                ours = got[col].fill_null(np.nan).to_numpy()
                np.testing.assert_array_equal(np.isnan(ours), np.isnan(r))
                np.testing.assert_allclose(ours[~np.isnan(r)], r[~np.isnan(r)], rtol=1e-9)
