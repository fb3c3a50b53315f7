"""Market transforms against hand-computed values and slow reference implementations."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib import market


def test_classify_tickers_rules():
    tickers = [
        "ABC", "ABCW", "ABC.WS", "ABCU", "ABC.U", "ABCR", "ABC.RT", "ABCpA",
        "WXYZ", "WXYZW", "QRSTU", "LMNOR",  # 5-letter NASDAQ suffixes
        "SNOW", "PLTR", "CAR", "BRK.A", "BF.B", "SPY",  # look-alikes that trade
        "ZVZZT", "NTEST", "AB/C", "abc",
    ]
    got = dict(market.classify_tickers(tickers).iter_rows())
    assert got == {
        "ABC": None, "ABCW": "warrant", "ABC.WS": "warrant", "ABCU": "unit", "ABC.U": "unit",
        "ABCR": "right", "ABC.RT": "right", "ABCpA": "preferred",
        "WXYZ": None, "WXYZW": "warrant", "QRSTU": "unit", "LMNOR": "right",
        "SNOW": None, "PLTR": None, "CAR": None, "BRK.A": None, "BF.B": None, "SPY": None,
        "ZVZZT": "test_symbol", "NTEST": "test_symbol", "AB/C": "special_characters", "abc": "special_characters",
    }


def _day_rows(day, rows):
    return pl.DataFrame(
        [
            {"ticker": t, "date": day, "open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": v, "transactions": 5}
            for t, c, v in rows
        ],
        schema=market.DAY_AGGS_SCHEMA,
    )


def test_daily_bars_returns_use_previous_session_across_holiday():
    # 2024-07-03 (Wed) then 2024-07-04 is a holiday, 2024-07-05 (Fri).
    d0, d1 = dt.date(2024, 7, 3), dt.date(2024, 7, 5)
    aggs = pl.concat(
        [
            _day_rows(d0, [("AAA", 10.0, 100), ("BBB", 20.0, 100), ("AAAW", 1.0, 10)]),
            _day_rows(d1, [("AAA", 11.0, 100), ("CCC", 5.0, 100), ("AAAW", 1.2, 10)]),
        ]
    )
    out, removed = market.build_daily_bars(aggs, [d1], history_start=dt.date(2024, 1, 2))
    assert removed[d1]["warrant"] == 1
    rows = {r["ticker"]: r for r in out.iter_rows(named=True)}
    assert set(rows) == {"AAA", "CCC"}
    assert rows["AAA"]["prev_close"] == 10.0
    assert rows["AAA"]["ret_1d"] == pytest.approx(0.1)
    assert rows["AAA"]["log_ret_1d"] == pytest.approx(math.log(1.1))
    assert rows["CCC"]["prev_close"] is None and rows["CCC"]["ret_1d"] is None


def test_daily_bars_refuses_a_gap_in_history():
    d = dt.date(2024, 7, 9)  # previous session 2024-07-08 is absent
    aggs = pl.concat([_day_rows(dt.date(2024, 7, 5), [("AAA", 10.0, 1)]), _day_rows(d, [("AAA", 11.0, 1)])])
    with pytest.raises(market.MissingHistoryError, match="2024-07-08"):
        market.build_daily_bars(aggs, [d], history_start=dt.date(2024, 1, 2))
    # At the start of history there is nothing before: returns are null, not an error.
    out, _ = market.build_daily_bars(_day_rows(d, [("AAA", 11.0, 1)]), [d], history_start=d)
    assert out["ret_1d"].to_list() == [None]


def test_weekly_bars_by_hand():
    days = [dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3), dt.date(2024, 7, 5), dt.date(2024, 7, 8)]
    daily = pl.DataFrame(
        {
            "ticker": ["X"] * 5,
            "date": days,
            "open": [10.0, 11.0, 12.0, 13.0, 14.0],
            "high": [10.5, 13.0, 12.5, 13.5, 14.5],
            "low": [9.0, 10.0, 8.0, 12.0, 13.0],
            "close": [10.2, 11.2, 12.2, 13.2, 14.2],
            "volume": [100, 200, 300, 400, 500],
            "transactions": [1, 2, 3, 4, 5],
        }
    )
    w = market.build_weekly_bars(daily).to_dicts()
    assert w[0] == {
        "ticker": "X", "week_start": dt.date(2024, 7, 1), "week_ending": dt.date(2024, 7, 5),
        "first_date": dt.date(2024, 7, 1), "last_date": dt.date(2024, 7, 5),
        "open": 10.0, "high": 13.5, "low": 8.0, "close": 13.2, "volume": 1000, "transactions": 10, "trading_days": 4,
    }
    assert w[1]["week_start"] == dt.date(2024, 7, 8) and w[1]["trading_days"] == 1


def _random_daily(seed=1, start=dt.date(2024, 1, 2), end=dt.date(2024, 6, 28), n=30):
    rng = np.random.default_rng(seed)
    rows = []
    for d in cal.trading_days(start, end):
        for i in range(n):
            if rng.random() < 0.03 * (i % 4):  # some names skip days
                continue
            price = 0.5 + (i % 12) * 1.1 + rng.normal(0, 0.1)
            rows.append(("T%02d" % i, d, price, int(rng.lognormal(13, 0.8))))
    return pl.DataFrame(rows, schema={"ticker": pl.String, "date": pl.Date, "close": pl.Float64, "volume": pl.Int64}, orient="row").with_columns(
        pl.col("close").alias("open"), pl.col("close").alias("high"), pl.col("close").alias("low"), pl.lit(1, dtype=pl.Int64).alias("transactions"),
        pl.lit(None, dtype=pl.Float64).alias("prev_close"), pl.lit(None, dtype=pl.Float64).alias("ret_1d"), pl.lit(None, dtype=pl.Float64).alias("log_ret_1d"),
    )


def test_daily_filtered_matches_slow_reference_and_is_point_in_time():
    daily = _random_daily()
    targets = cal.trading_days(dt.date(2024, 3, 1), dt.date(2024, 6, 28))
    kw = dict(price_min=1.0, price_max=9.99, min_avg_volume=600_000, min_days=20)
    fast = market.build_daily_filtered(daily, targets, **kw)

    sessions = cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 6, 28))
    expected = set()
    for d in targets:
        window = sessions[sessions.index(d) - 19 : sessions.index(d) + 1]
        for t in daily["ticker"].unique().to_list():
            hist = daily.filter((pl.col("ticker") == t) & pl.col("date").is_in(window))
            today = hist.filter(pl.col("date") == d)
            if today.height == 0 or hist.height < 20:
                continue
            if hist["volume"].mean() >= 600_000 and 1.0 <= today["close"][0] <= 9.99:
                expected.add((t, d))
    got = set(zip(fast["ticker"], fast["date"]))
    assert got == expected and len(expected) > 50

    # Point in time: changing the future does not change the past universe.
    cut = dt.date(2024, 4, 30)
    future_shock = daily.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("volume") * 0).otherwise(pl.col("volume")).alias("volume")
    )
    past = [d for d in targets if d <= cut]
    a = market.build_daily_filtered(daily, past, **kw)
    b = market.build_daily_filtered(future_shock, past, **kw)
    assert a.equals(b)


def test_daily_filtered_refuses_a_window_longer_than_the_bars_it_reads():
    daily = _random_daily(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 31))
    with pytest.raises(ValueError, match=r"UniverseRule.min_days must be <= 90, got 91"):
        market.build_daily_filtered(daily, [dt.date(2024, 1, 31)], min_days=91)
    with pytest.raises(ValueError, match=r"SpikeBaseline.vol_spike_lookback must be >= 1, got 0"):
        market.add_volume_spike(daily, daily, 0)


def test_daily_filtered_needs_full_history():
    daily = _random_daily(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 31))
    out = market.build_daily_filtered(
        daily, cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 1, 31)),
        price_min=0, price_max=1e9, min_avg_volume=0, min_days=60,
    )
    assert out.height == 0


def _minute_frame(day, bars):
    """bars: (ticker, 'HH:MM', o, h, l, c, v)"""
    rows = []
    for t, hm, o, h, l, c, v in bars:
        hh, mm = map(int, hm.split(":"))
        ns = cal.ny_midnight_ns(day) + (hh * 3600 + mm * 60) * cal.NS_PER_SECOND
        rows.append((t, v, o, c, h, l, ns, 1))
    raw = pl.DataFrame(rows, schema=["ticker", "volume", "open", "close", "high", "low", "window_start", "transactions"], orient="row")
    return market.to_minute_aggs(raw.sort(["ticker", "window_start"]), day)


def test_minute_sessions_and_features_by_hand():
    day = dt.date(2024, 7, 2)
    m = _minute_frame(
        day,
        [
            ("X", "04:00", 10.0, 10.0, 10.0, 10.0, 100),
            ("X", "09:29", 10.0, 10.2, 9.9, 10.1, 50),
            ("X", "09:30", 10.0, 10.5, 9.5, 10.0, 1000),
            ("X", "12:00", 10.0, 11.0, 10.0, 11.0, 2000),
            ("X", "15:59", 11.0, 11.0, 10.5, 10.5, 1000),
            ("X", "16:00", 10.5, 10.6, 10.4, 10.6, 300),
            ("X", "19:59", 10.6, 12.0, 10.6, 10.6, 10),
        ],
    )
    assert m["session"].cast(pl.String).to_list() == ["pre", "pre", "rth", "rth", "rth", "post", "post"]
    assert m["window_start"].dt.hour().to_list() == [4, 9, 9, 12, 15, 16, 19]
    f = market.minute_day_features(m).to_dicts()[0]
    assert f["volume_pre"] == 150 and f["volume_rth"] == 4000 and f["volume_post"] == 310 and f["volume_total"] == 4460
    assert f["bars"] == 7 and f["bars_rth"] == 3
    assert f["range_pct"] == pytest.approx((12.0 - 9.5) / 10.0)
    assert f["range_pct_rth"] == pytest.approx((11.0 - 9.5) / 10.0)
    rth_lr = [math.log(11.0 / 10.0), math.log(10.5 / 11.0)]
    assert f["realized_vol_rth"] == pytest.approx(math.sqrt(sum(x * x for x in rth_lr)))
    closes = [10.0, 10.1, 10.0, 11.0, 10.5, 10.6, 10.6]
    all_lr = [math.log(b / a) for a, b in zip(closes, closes[1:])]
    assert f["realized_vol"] == pytest.approx(math.sqrt(sum(x * x for x in all_lr)))
    tp = [(10.5 + 9.5 + 10.0) / 3, (11.0 + 10.0 + 11.0) / 3, (11.0 + 10.5 + 10.5) / 3]
    assert f["vwap_rth"] == pytest.approx((tp[0] * 1000 + tp[1] * 2000 + tp[2] * 1000) / 4000)


def test_minute_session_boundaries_in_winter_time():
    day = dt.date(2024, 1, 3)  # EST, UTC-5
    m = _minute_frame(day, [("Y", "09:29", 1, 1, 1, 1, 1), ("Y", "09:30", 1, 1, 1, 1, 1), ("Y", "15:59", 1, 1, 1, 1, 1), ("Y", "16:00", 1, 1, 1, 1, 1)])
    assert m["session"].cast(pl.String).to_list() == ["pre", "rth", "rth", "post"]


def test_volume_spike_uses_only_previous_sessions():
    day = dt.date(2024, 7, 10)
    prev = cal.trading_days(dt.date(2024, 6, 1), dt.date(2024, 7, 9))[-3:]
    daily = pl.DataFrame(
        {"ticker": ["X"] * 4, "date": prev + [day], "volume": [100, 200, 300, 10**9]},
        schema={"ticker": pl.String, "date": pl.Date, "volume": pl.Int64},
    )
    feats = pl.DataFrame({"ticker": ["X", "Z"], "date": [day, day], "volume_total": [400, 5]}).with_columns(
        *[pl.lit(None).alias(c) for c in market.MINUTE_FEATURES_SCHEMA if c not in ("ticker", "date", "volume_total", "baseline_volume", "volume_spike_ratio")]
    )
    out = market.add_volume_spike(feats, daily, lookback=3).sort("ticker")
    assert out["baseline_volume"].to_list() == [200.0, None]
    assert out["volume_spike_ratio"].to_list() == [2.0, None]
    # A lookback longer than the ticker's history gives no ratio rather than a short-window one.
    assert market.add_volume_spike(feats, daily, lookback=4)["volume_spike_ratio"].null_count() == 2
