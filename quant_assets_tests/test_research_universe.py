"""The dated liquid universe: ranked on what was known at each rebalance date, late listings
joining and delistings kept, against a slow reference."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.research import factors
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
    assert not {"T12", "T13"} & set(factors.most_liquid(daily, 5))


def test_nothing_after_a_date_changes_membership_dated_on_or_before_it():
    daily = market()
    cut = dt.date(2024, 6, 3)
    later = pl.col("date") > cut
    top = factors.most_liquid(daily, 5)[0]
    # After the cut: every volume scaled, and the most liquid name delists.
    perturbed = daily.with_columns(pl.when(later).then(pl.col("volume") * 1e6).otherwise(pl.col("volume")).alias("volume"))
    perturbed = perturbed.filter(~(later & (pl.col("ticker") == top)))
    a = uni.liquid_universe(daily, SPEC).filter(pl.col("rebalance_date") <= cut)
    b = uni.liquid_universe(perturbed, SPEC).filter(pl.col("rebalance_date") <= cut)
    assert a.height > 0 and a.equals(b)
    assert top in set(a["ticker"])
    # The whole-history ranking drops the name before the cut too: it "never traded" there.
    assert top not in factors.most_liquid(daily.filter(~(later & (pl.col("ticker") == top))), 5)


def test_spec_is_validated_and_rebalance_dates_are_first_sessions():
    with pytest.raises(ValueError, match="rebalance"):
        uni.UniverseSpec(rebalance="yearly")
    with pytest.raises(ValueError, match="min_history"):
        uni.UniverseSpec(window=10, min_history=11)
    weekly = uni.rebalance_dates(SESSIONS[:10], "weekly")
    assert weekly == [d for i, d in enumerate(SESSIONS[:10]) if i == 0 or d.isocalendar()[1] != SESSIONS[i - 1].isocalendar()[1]]
    assert uni.rebalance_dates(SESSIONS, "daily") == SESSIONS
