"""The dated liquid universe: ranked on what was known at each rebalance date, late listings
joining and delistings kept, against a slow reference."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.research import universe as uni

SESSIONS = cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 9, 30))
SPEC = uni.UniverseSpec(count=5, window=20, rebalance="monthly", min_history=15)


def market(seed=0, tickers=14):
    """Random-walk bars; T12 lists in April, T13 delists in June."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(tickers):
        price, scale = 10.0 + k, float(np.exp(rng.normal(13, 1)))
        for d in SESSIONS:
            if k == 12 and d < dt.date(2024, 4, 1) or k == 13 and d > dt.date(2024, 6, 14):
                continue
            rows.append((f"T{k:02d}", d, price, scale * float(np.exp(rng.normal(0, 0.3)))))
            price *= 1 + 0.02 * rng.normal()
    frame = pl.DataFrame(rows, schema=["ticker", "date", "close", "volume"], orient="row")
    # Make the late lister and the delister the two most liquid names while they trade.
    return frame.with_columns(pl.when(pl.col("ticker").is_in(["T12", "T13"])).then(pl.col("volume") * 1e3).otherwise(pl.col("volume")).alias("volume"))


def whole_history_most_liquid(daily, n, min_coverage=0.8):
    """The name picker the dated universe replaced: median dollar volume over the whole sample,
    among names with bars on 80 % of its sessions (look-ahead and survivorship by design)."""
    sessions = daily["date"].n_unique()
    ranked = (
        daily.group_by("ticker")
        .agg((pl.col("close") * pl.col("volume")).median().alias("dv"), pl.len().alias("days"))
        .filter(pl.col("days") >= min_coverage * sessions)
        .sort(["dv", "ticker"], descending=[True, False])
    )
    return ranked["ticker"].head(n).to_list()


def reference(daily, spec, day):
    """The rule as written, for one rebalance date."""
    i = SESSIONS.index(day)
    window = set(SESSIONS[max(0, i - spec.window + 1) : i + 1])
    rows = []
    for (ticker,), g in daily.filter(pl.col("date").is_in(list(window))).group_by(["ticker"]):
        if day in g["date"].to_list() and g.height >= spec.min_history:
            rows.append((-float((g["close"] * g["volume"]).median()), ticker))
    return [t for _, t in sorted(rows)[: spec.count]]


def test_membership_equals_the_rule_on_every_rebalance_date():
    daily = market()
    got = uni.liquid_universe(daily, SPEC)
    dates = uni.rebalance_dates(SESSIONS, "monthly")
    assert sorted(set(got["rebalance_date"].to_list())) == dates[1:]  # January has too little history
    for d in dates:
        assert got.filter(pl.col("rebalance_date") == d).sort("rank")["ticker"].to_list() == reference(daily, SPEC, d)


def test_late_listing_joins_and_delisting_stays_until_the_next_rebalance():
    daily = market()
    got = uni.liquid_universe(daily, SPEC)
    by_date = {d: set(g["ticker"]) for (d,), g in got.group_by(["rebalance_date"])}
    assert "T12" not in by_date[dt.date(2024, 4, 1)] and "T12" in by_date[dt.date(2024, 5, 1)]  # needs 15 bars first
    assert "T13" in by_date[dt.date(2024, 6, 3)] and "T13" not in by_date[dt.date(2024, 7, 1)]
    held = uni.members_by_session(got, SESSIONS)
    june = held.filter(pl.col("ticker") == "T13")["date"]
    assert june.max() == dt.date(2024, 7, 1)  # still held after its last bar (June 14): the portfolio must exit it
    # The whole-history ranking never admits either of them (coverage of the whole sample).
    assert not {"T12", "T13"} & set(whole_history_most_liquid(daily, 5))


def test_nothing_after_a_date_changes_membership_dated_on_or_before_it():
    daily = market()
    cut = dt.date(2024, 6, 3)
    later = pl.col("date") > cut
    top = whole_history_most_liquid(daily, 5)[0]
    # After the cut: every volume scaled, and the most liquid name delists.
    perturbed = daily.with_columns(pl.when(later).then(pl.col("volume") * 1e6).otherwise(pl.col("volume")).alias("volume"))
    perturbed = perturbed.filter(~(later & (pl.col("ticker") == top)))
    a = uni.liquid_universe(daily, SPEC).filter(pl.col("rebalance_date") <= cut)
    b = uni.liquid_universe(perturbed, SPEC).filter(pl.col("rebalance_date") <= cut)
    assert a.height > 0 and a.equals(b)
    assert top in set(a["ticker"])
    # The whole-history ranking drops the name before the cut too: it "never traded" there.
    assert top not in whole_history_most_liquid(daily.filter(~(later & (pl.col("ticker") == top))), 5)


def test_spec_is_validated_and_rebalance_dates_are_first_sessions():
    with pytest.raises(ValueError, match="rebalance"):
        uni.UniverseSpec(rebalance="yearly")
    with pytest.raises(ValueError, match="min_history"):
        uni.UniverseSpec(window=10, min_history=11)
    weekly = uni.rebalance_dates(SESSIONS[:10], "weekly")
    assert weekly == [d for i, d in enumerate(SESSIONS[:10]) if i == 0 or d.isocalendar()[1] != SESSIONS[i - 1].isocalendar()[1]]
    assert uni.rebalance_dates(SESSIONS, "daily") == SESSIONS


def with_returns(daily: pl.DataFrame) -> pl.DataFrame:
    """ret_1d (close over the previous bar's close) and an open a little off the close."""
    return (
        daily.sort("ticker", "date")
        .with_columns((pl.col("close") / pl.col("close").shift(1).over("ticker") - 1).alias("ret_1d"))
        .with_columns((pl.col("close") * (1 + 0.001 * ((pl.col("date").dt.day() % 5) - 2))).alias("open"))
    )


def test_a_held_name_that_stops_trading_is_sold_never_dropped():
    d = SESSIONS[:5]
    daily = pl.DataFrame(
        {
            "ticker": ["A"] * 5 + ["B"] * 2 + ["B"],
            "date": d + d[:2] + [d[4]],  # B trades d0, d1, stops, and trades again on d4
            "ret_1d": [None, 0.01, 0.02, 0.03, 0.04, None, -0.05, 0.5],
        }
    )
    membership = pl.DataFrame({"date": d[1:] * 2, "ticker": ["A"] * 4 + ["B"] * 4})
    held = uni.held_returns(daily, membership, delisting_return=-0.3)
    b = held.filter(pl.col("ticker") == "B")
    # d1: its own return; d2: no bar, sold at the last close less 30 %; d3: nothing left to hold;
    # d4: it trades again but had no close on d3 to enter at, so the gap's 50 % is not earned.
    assert b.rows() == [(d[1], "B", -0.05, False), (d[2], "B", -0.3, True)]
    assert held.filter(pl.col("ticker") == "A")["ret_1d"].to_list() == [0.01, 0.02, 0.03, 0.04]
    with pytest.raises(ValueError, match="delisting_return"):
        uni.held_returns(daily, membership, delisting_return=-2)


def test_the_equal_weight_portfolio_realises_a_delisting_loss():
    from quant_assets.lib.research import performance

    d0, d1, d2 = SESSIONS[:3]
    daily = pl.DataFrame({"ticker": ["A", "B", "A", "B", "A"], "date": [d0, d0, d1, d1, d2], "ret_1d": [0.0, 0.0, 0.02, 0.04, 0.01]})
    filtered = pl.DataFrame({"ticker": ["A", "B", "A", "B"], "date": [d0, d0, d1, d1]})  # B's last bar is d1
    port = performance.equal_weight_portfolio(daily, filtered, delisting_return=-0.5)
    got = {r["date"]: (r["ret_1d"], r["names"], r["exits"]) for r in port.iter_rows(named=True)}
    assert got[d1] == (pytest.approx(0.03), 2, 0)
    assert got[d2] == (pytest.approx((0.01 - 0.5) / 2), 2, 1)  # B still counts, sold at half its last close
    assert performance.equal_weight_portfolio(daily, filtered)["ret_1d"].to_list()[-1] == pytest.approx(0.005)


def test_backtests_trade_members_only_and_realise_a_delisting():
    from quant_assets.lib.research import backtests

    daily = with_returns(market())
    members = uni.liquid_universe(daily, SPEC)
    names, membership = uni.selection(members, 3, SESSIONS)
    assert "T13" in names  # the delister was a member when it stopped trading (June 14)
    params = backtests.BacktestParams(fees=0.0, slippage=0.0)
    stats, equity, _ = backtests.run_backtests(daily, names, ["macd", "rsi"], params, min_bars=35, membership=membership, delisting_return=-0.5)
    t13 = stats.filter(pl.col("ticker") == "T13")
    assert t13["delisted"].all() and (t13["end"] == dt.date(2024, 6, 17)).all()  # sold on the next session
    for row in stats.iter_rows(named=True):
        first_member = membership.filter(pl.col("ticker") == row["ticker"])["date"].min()
        assert row["start"] >= first_member
    # Every simulated day is a bar of the name, or the delisting session it is sold on.
    off_bar = equity.join(daily.select("ticker", "date"), on=["ticker", "date"], how="anti")
    assert set(off_bar["ticker"]) == {"T13"} and set(off_bar["date"]) == {dt.date(2024, 6, 17)}
    # RSI held T13 into its last bar: the position is sold at half its last close, all-in.
    curve = {s: equity.filter((pl.col("ticker") == "T13") & (pl.col("strategy") == s)).sort("date")["equity"].to_list() for s in ("macd", "rsi")}
    assert curve["rsi"][-1] == pytest.approx(0.5 * curve["rsi"][-2], rel=1e-12)
    assert curve["macd"][-1] == curve["macd"][-2]  # flat then: nothing to lose
    at_last_close, _, _ = backtests.run_backtests(daily, ["T13"], ["rsi"], params, min_bars=35, membership=membership)
    assert at_last_close["final_value"][0] == pytest.approx(curve["rsi"][-2], rel=1e-12)  # the default: sold at the last close


def test_nothing_after_a_date_changes_a_backtest_or_a_report_on_or_before_it():
    from quant_assets.lib.research import backtests

    daily = with_returns(market())
    cut = dt.date(2024, 6, 3)
    later = pl.col("date") > cut
    top = whole_history_most_liquid(daily, 5)[0]
    perturbed = with_returns(
        market()
        .with_columns(pl.when(later).then(pl.col("volume") * 1e6).otherwise(pl.col("volume")).alias("volume"))
        .filter(~(later & (pl.col("ticker") == top)))
    )
    params = backtests.BacktestParams()

    def dated(frame):
        members = uni.liquid_universe(frame, SPEC)
        names, membership = uni.selection(members, 3, SESSIONS)
        _, equity, _ = backtests.run_backtests(frame, names, ["macd", "rsi"], params, min_bars=35, membership=membership)
        held = uni.held_returns(frame, membership)
        return equity.filter(pl.col("date") <= cut).sort("ticker", "strategy", "date"), held.filter(pl.col("date") <= cut)

    (eq_a, held_a), (eq_b, held_b) = dated(daily), dated(perturbed)
    assert eq_a.height > 0 and held_a.height > 0
    assert eq_a.equals(eq_b) and held_a.equals(held_b)
