"""1-second delta bars, candles and window figures against straightforward reference code."""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from quant_assets.lib.pump import bars as pbars
from quant_assets.lib.pump import trades as ptr
from quant_assets.lib.pump.schemas import DELTA_BARS_SCHEMA

START = int(dt.datetime(2025, 3, 4, 10, 0, 0, tzinfo=dt.UTC).timestamp())


def random_trades(rng, start, window, n, pre=50):
    """Trades from ``pre`` seconds before the window to its end: clustered in time (many
    seconds empty, some with several trades), sizes with a heavy tail."""
    secs = np.sort(rng.integers(start - pre, start + window, n))
    us = secs * 1_000_000 + rng.integers(0, 1_000_000, n)
    us.sort()
    return pl.DataFrame(
        {
            "agg_trade_id": np.arange(5_000, 5_000 + n),
            "price": np.round(10 + np.cumsum(rng.normal(0, 0.05, n)), 2),
            "quantity": np.round(rng.lognormal(0, 1.2, n), 3),
            "first_trade_id": np.arange(n),
            "last_trade_id": np.arange(n),
            "transact_time": pl.Series(us).cast(pl.Datetime("us", "UTC")),
            "is_buyer_maker": rng.random(n) < 0.45,
        }
    )


def reference_bars(trades: pl.DataFrame, start: int, window: int) -> pl.DataFrame:
    """Group by second, join onto every second of the window, carry the last close forward."""
    t = trades.sort("agg_trade_id").with_columns((pl.col("transact_time").dt.epoch("us") // 1_000_000).alias("sec"))
    inside = t.filter((pl.col("sec") >= start) & (pl.col("sec") < start + window))
    # A trade is large against the window's earlier trades only (mean + 2 sample sd, two needed).
    sizes = inside["quantity"].to_list()
    large = [k >= 2 and q > float(np.mean(sizes[:k]) + 2 * np.std(sizes[:k], ddof=1)) for k, q in enumerate(sizes)]
    inside = inside.with_columns(pl.Series("large", large, dtype=pl.Boolean))
    seed = t.filter(pl.col("sec") < start)["price"].tail(1).to_list()
    per = inside.group_by("sec").agg(
        pl.col("price").first().alias("o"),
        pl.col("price").max().alias("h"),
        pl.col("price").min().alias("l"),
        pl.col("price").last().alias("c"),
        pl.col("quantity").sum().alias("v"),
        pl.col("quantity").filter(~pl.col("is_buyer_maker")).sum().alias("b"),
        pl.col("quantity").filter(pl.col("is_buyer_maker")).sum().alias("s"),
        pl.len().alias("n"),
        (pl.col("large") & ~pl.col("is_buyer_maker")).sum().alias("lb"),
        (pl.col("large") & pl.col("is_buyer_maker")).sum().alias("ls"),
    )
    grid = pl.DataFrame({"sec": np.arange(start, start + window)})
    out = grid.join(per, on="sec", how="left").sort("sec")
    carried = out["c"].fill_null(strategy="forward")
    if seed:
        carried = carried.fill_null(seed[0])
    out = out.with_columns(carried.alias("cc"))
    return out.select(
        pl.col("sec").alias("second_ts"),
        pl.coalesce("o", "cc").alias("open_price"),
        pl.coalesce("h", "cc").alias("high_price"),
        pl.coalesce("l", "cc").alias("low_price"),
        pl.col("cc").alias("close_price"),
        pl.col("v").fill_null(0.0).alias("volume"),
        pl.col("b").fill_null(0.0).alias("buy_volume"),
        pl.col("s").fill_null(0.0).alias("sell_volume"),
        pl.col("n").fill_null(0).cast(pl.Int32).alias("trade_count"),
        pl.col("lb").fill_null(0).cast(pl.Int32).alias("large_buy_count"),
        pl.col("ls").fill_null(0).cast(pl.Int32).alias("large_sell_count"),
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_bars_equal_reference_aggregation(seed):
    rng = np.random.default_rng(seed)
    window = 3_000
    trades = random_trades(rng, START, window, int(rng.integers(50, 4_000)))
    got = pbars.delta_bars(trades, 77, START, window)
    assert got.bars is not None and got.bars.schema == pl.Schema(DELTA_BARS_SCHEMA)
    ref = reference_bars(trades, START, window)
    bars = got.bars
    assert bars["signal_id"].unique().to_list() == [77]
    for col in ref.columns:
        if col in ("volume", "buy_volume", "sell_volume"):
            np.testing.assert_allclose(bars[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12, atol=1e-12, err_msg=col)
        else:
            assert bars[col].to_list() == ref[col].to_list(), col
    np.testing.assert_allclose(bars["delta"].to_numpy(), (ref["buy_volume"] - ref["sell_volume"]).to_numpy(), atol=1e-9)
    assert (bars["volume"] == 0).sum() > 0  # some seconds had no trade


def test_quiet_second_carries_last_close_and_is_seller_aware():
    t0 = START * 1_000_000
    trades = pl.DataFrame(
        {
            "agg_trade_id": [1, 2, 3, 4, 5],
            "price": [9.0, 10.0, 10.5, 9.5, 11.0],
            "quantity": [1.0, 2.0, 3.0, 4.0, 5.0],
            "first_trade_id": [1, 2, 3, 4, 5],
            "last_trade_id": [1, 2, 3, 4, 5],
            "transact_time": pl.Series([t0 - 5_000_000, t0 + 100, t0 + 200_000, t0 + 900_000, t0 + 3_000_000]).cast(pl.Datetime("us", "UTC")),
            "is_buyer_maker": [False, False, True, True, False],
        }
    )
    bars = pbars.delta_bars(trades, 1, START, 5).bars
    assert bars["second_ts"].to_list() == [START + i for i in range(5)]
    row0 = bars.row(0, named=True)
    assert (row0["open_price"], row0["high_price"], row0["low_price"], row0["close_price"]) == (10.0, 10.5, 9.5, 9.5)
    assert (row0["buy_volume"], row0["sell_volume"], row0["delta"], row0["trade_count"]) == (2.0, 7.0, -5.0, 3)
    for k in (1, 2):  # quiet seconds: last close, zero volume
        r = bars.row(k, named=True)
        assert (r["open_price"], r["high_price"], r["low_price"], r["close_price"], r["volume"], r["trade_count"]) == (9.5, 9.5, 9.5, 9.5, 0.0, 0)
    assert bars.row(3, named=True)["close_price"] == 11.0 and bars.row(4, named=True)["close_price"] == 11.0
    # Sizes in the window: 2, 3, 4, 5; 4 against (2, 3): 2.5 + 2 * 0.71 = 3.91 -> large (a sell);
    # 5 against (2, 3, 4): 3 + 2 * 1 = 5 -> not above it. The 1.0 before the window never counts.
    assert bars["large_buy_count"].sum() == 0 and bars["large_sell_count"].sum() == 1


def test_leading_seconds_take_the_pre_window_price():
    t0 = START * 1_000_000
    trades = pl.DataFrame(
        {
            "agg_trade_id": [1, 2],
            "price": [7.0, 8.0],
            "quantity": [1.0, 1.0],
            "first_trade_id": [1, 2],
            "last_trade_id": [1, 2],
            "transact_time": pl.Series([t0 - 3_000_000_000, t0 + 2_000_000]).cast(pl.Datetime("us", "UTC")),
            "is_buyer_maker": [False, True],
        }
    )
    bars = pbars.delta_bars(trades, 1, START, 4).bars
    assert bars["close_price"].to_list() == [7.0, 7.0, 8.0, 8.0]
    assert bars["volume"].to_list() == [0.0, 0.0, 1.0, 0.0]


def test_window_without_a_starting_price_is_reported_not_filled():
    t0 = START * 1_000_000
    trades = pl.DataFrame(
        {
            "agg_trade_id": [1],
            "price": [8.0],
            "quantity": [1.0],
            "first_trade_id": [1],
            "last_trade_id": [1],
            "transact_time": pl.Series([t0 + 2_000_000]).cast(pl.Datetime("us", "UTC")),
            "is_buyer_maker": [True],
        }
    )
    got = pbars.delta_bars(trades, 9, START, 4)
    assert got.bars is None and "no trade before second 2" in got.problem


def test_large_trades_are_judged_against_earlier_trades_only():
    t0 = START * 1_000_000
    sizes = [1.0] * 30 + [50.0, 60.0]
    n = len(sizes)
    trades = pl.DataFrame(
        {
            "agg_trade_id": list(range(n)),
            "price": [5.0] * n,
            "quantity": sizes,
            "first_trade_id": list(range(n)),
            "last_trade_id": list(range(n)),
            "transact_time": pl.Series([t0 + i * 1_000_000 for i in range(n)]).cast(pl.Datetime("us", "UTC")),
            "is_buyer_maker": [False] * (n - 1) + [True],
        }
    )
    bars = pbars.delta_bars(trades, 1, START, n).bars
    assert 50.0 > 1.0 and 60.0 > np.mean(sizes[:31]) + 2 * np.std(sizes[:31], ddof=1)  # both big ones are large
    assert bars["large_buy_count"].sum() == 1 and bars["large_sell_count"].sum() == 1
    # A later trade never changes an earlier bar: a burst of giant trades after second 31 leaves
    # seconds 0..31 as they were (a whole-window threshold would unmark both).
    giants = trades.tail(1).with_columns(pl.col("agg_trade_id") + 1, pl.lit(10_000.0).alias("quantity"), pl.col("transact_time") + pl.duration(seconds=1))
    later = pbars.delta_bars(pl.concat([trades, giants]), 1, START, n + 1).bars
    assert later.head(n).equals(bars)


def test_candles_and_figures_match_reference():
    rng = np.random.default_rng(5)
    start = START + 17  # mid-minute: the first minute candle is partial
    trades = random_trades(rng, start, 1_200, 900)
    bars = pbars.delta_bars(trades, 3, start, 1_200).bars
    minutes = pbars.minute_candles(bars, {3: "WIFUSDT"})
    ref = (
        bars.with_columns((pl.col("second_ts") // 60 * 60).alias("m"))
        .group_by("m")
        .agg(
            pl.col("open_price").first(),
            pl.col("high_price").max(),
            pl.col("low_price").min(),
            pl.col("close_price").last(),
            pl.col("volume").sum(),
        )
        .sort("m")
    )
    assert minutes["open_time"].dt.epoch("s").to_list() == ref["m"].to_list()
    assert minutes["open"].to_list() == ref["open_price"].to_list()
    assert minutes["high"].to_list() == ref["high_price"].to_list()
    assert minutes["low"].to_list() == ref["low_price"].to_list()
    assert minutes["close"].to_list() == ref["close_price"].to_list()
    np.testing.assert_allclose(minutes["volume"].to_numpy(), ref["volume"].to_numpy())
    assert minutes["symbol"].unique().to_list() == ["WIFUSDT"] and minutes.height == 21
    fig = pbars.window_figures(bars).row(0, named=True)
    c0 = bars["close_price"][0]
    assert fig["entry_price"] == c0
    assert fig["max_growth_pct"] == pytest.approx((bars["high_price"].max() / c0 - 1) * 100)
    assert fig["max_drawdown_pct"] == pytest.approx((bars["low_price"].min() / c0 - 1) * 100)
    assert fig["time_to_peak_seconds"] == int(np.argmax(bars["high_price"].to_numpy()))
    five = json.loads(pbars.candles_json(bars)[3])
    assert five[0][0] == (start // 300 * 300) * 1000 and len(five) == 5
    assert max(r[2] for r in five) == bars["high_price"].max()


def test_window_start_is_the_first_whole_second():
    assert ptr.window_start(dt.datetime(2025, 1, 1, 0, 0, 0, tzinfo=dt.UTC)) == 1735689600
    assert ptr.window_start(dt.datetime(2025, 1, 1, 0, 0, 0, 1000, tzinfo=dt.UTC)) == 1735689601
    frame = pl.DataFrame({"signal_ts": [dt.datetime(2025, 1, 1, 0, 0, 0, 999000, tzinfo=dt.UTC)]}).with_columns(
        pl.col("signal_ts").cast(pl.Datetime("ms", "UTC"))
    )
    assert frame.select(ptr.window_start_expr()).item() == 1735689601


def test_gather_reads_each_day_once_and_skips_as_documented():
    from quant_assets.lib.sources import binance

    day = dt.date(2025, 3, 4)
    calls = []

    def load(sym, d):
        calls.append((sym, d))
        if sym == "GONEUSDT":
            raise binance.BinanceDataError("x", "missing_file", "gone")
        t0 = int(dt.datetime.combine(d, dt.time(), dt.UTC).timestamp() * 1_000_000)
        n = 0 if sym == "QUIETUSDT" else 48
        return pl.DataFrame(
            {
                "agg_trade_id": [int(d.strftime("%Y%m%d")) * 100 + i for i in range(n)],
                "price": [1.0] * n,
                "quantity": [1.0] * n,
                "first_trade_id": [0] * n,
                "last_trade_id": [0] * n,
                "transact_time": pl.Series([t0 + i * 1_800_000_000 for i in range(n)], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
                "is_buyer_maker": [False] * n,
            }
        )

    ts = lambda h: dt.datetime.combine(day, dt.time(h), dt.UTC)
    signals = pl.DataFrame(
        {"signal_id": [1, 2, 3, 4], "symbol": ["WIFUSDT", "WIFUSDT", "QUIETUSDT", "GONEUSDT"], "signal_ts": [ts(1), ts(5), ts(2), ts(3)]}
    )
    with pytest.raises(binance.BinanceDataError, match=r"signal 4 \(GONEUSDT at 2025-03-04 03:00:00Z\) needs this file"):
        ptr.gather(signals, load)
    got = ptr.gather(signals, load, skip_missing_days=True, workers=1)
    assert got.status == {1: "ok", 2: "ok", 3: "no_trades", 4: "missing_day_file"}
    assert calls.count(("WIFUSDT", day)) == 2  # once in each of the two gather calls
    w = got.trades.filter(pl.col("signal_id") == 1)
    assert w["transact_time"].min() >= ts(0) and w["transact_time"].max() < ts(1) + dt.timedelta(days=1)


def test_delta_bars_by_day_counts_each_day_and_the_checks_see_breaks():
    rng = np.random.default_rng(7)
    t0 = dt.datetime.fromtimestamp(START, dt.UTC)
    signals = pl.DataFrame(
        {"signal_id": [1, 2, 3], "signal_ts": [t0, t0 + dt.timedelta(days=1), t0 + dt.timedelta(days=1, hours=1)]}
    ).with_columns(pl.col("signal_ts").dt.cast_time_unit("ms"))
    trades = random_trades(rng, START, 30, 200).with_columns(signal_id=pl.lit(1, pl.Int64))
    days = [t0.date(), t0.date() + dt.timedelta(days=1)]
    run = pbars.delta_bars_by_day(signals, trades, days, 30)
    first, second = (run.figures[d] for d in days)
    assert first == {"signals": 1, "signals_with_bars": 1, "skipped/no_trades_upstream": 0, "skipped/unpriced_start": 0}
    assert second["signals"] == 2 and second["skipped/no_trades_upstream"] == 2 and second["signals_with_bars"] == 0
    bars = run.by_day[days[0].isoformat()]
    assert bars.height == 30 and run.by_day[days[1].isoformat()].is_empty()
    assert pbars.second_violations(bars, 30) == (1, []) and pbars.identity_violations(bars).is_empty()
    assert pbars.second_violations(bars.filter(pl.col("second_ts") != START + 3), 30) == (1, [1])
    broken = bars.with_columns(pl.when(pl.col("second_ts") == START).then(-1.0).otherwise(pl.col("delta")).alias("delta"))
    assert pbars.identity_violations(broken).height == 1
    split = ptr.by_signal_day(bars, signals, days)
    assert split[days[0].isoformat()].height == 30 and split[days[1].isoformat()].is_empty()
