"""Range-expansion labels by hand, and the training dataset's point-in-time guarantee: changing any
bar after an event changes none of that event's feature columns."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.research import datasets, indicators, labels, macd
from quant_assets.lib.sources import polygon
from quant_assets.lib.storage import LocalStore
from quant_assets.simulate import PolygonSimSpec, simulate_polygon

START, END = dt.date(2024, 1, 2), dt.date(2024, 3, 28)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Daily bars of every session and minute bars of the last two, from the simulator."""
    store = LocalStore(tmp_path_factory.mktemp("landing"))
    spec = PolygonSimSpec(start=START, end=END, tickers=30, minute_days=2, seed=21)
    simulate_polygon(store, spec)
    days = cal.trading_days(START, END)
    aggs = pl.concat(
        [
            market.to_day_aggs(polygon.load_aggs(store.read_bytes(polygon.day_aggs_key(d)), "day", d).rows, d)
            for d in days
        ]
    )
    daily, _ = market.build_daily_bars(aggs, days, START)
    minute = {
        d: market.to_minute_aggs(polygon.load_aggs(store.read_bytes(polygon.minute_aggs_key(d)), "minute", d).rows, d)
        for d in days[-2:]
    }
    return daily, minute, days


def test_range_labels_by_hand():
    d1, d2, d3 = dt.date(2024, 3, 27), dt.date(2024, 3, 28), dt.date(2024, 4, 1)  # Good Friday between
    daily = pl.DataFrame(
        {
            "ticker": ["A", "A", "A", "B", "B"],
            "date": [d1, d2, d3, d1, d3],
            "high": [10.0, 11.0, 12.0, 5.0, 5.5],
            "low": [9.0, 10.0, 10.0, 4.9, 5.0],
            "close": [9.5, 10.5, 11.0, 5.0, 5.2],
        }
    )
    out = labels.range_expansion_labels(daily, [d1, d2, d3], threshold=0.08)
    a1 = out.filter((pl.col("ticker") == "A") & (pl.col("date") == d1)).row(0, named=True)
    assert a1["next_date"] == d2 and a1["next_range_pct"] == pytest.approx(1.0 / 10.5) and a1["label"] == 1
    a2 = out.filter((pl.col("ticker") == "A") & (pl.col("date") == d2)).row(0, named=True)
    assert a2["next_date"] == d3 and a2["next_range_pct"] == pytest.approx(2.0 / 11.0) and a2["label"] == 1
    b1 = out.filter((pl.col("ticker") == "B") & (pl.col("date") == d1)).row(0, named=True)
    assert b1["next_range_pct"] is None and b1["label"] is None  # B did not trade on the next session
    a3 = out.filter((pl.col("ticker") == "A") & (pl.col("date") == d3)).row(0, named=True)
    assert a3["next_date"] == dt.date(2024, 4, 2) and a3["label"] is None  # next session not loaded yet
    low = labels.range_expansion_labels(daily, [d1], threshold=0.5)
    assert low.filter(pl.col("ticker") == "A")["label"].to_list() == [0]
    with pytest.raises(ValueError, match="threshold"):
        labels.range_expansion_labels(daily, [d1], threshold=0)


def build(daily: pl.DataFrame, minute: dict, day: dt.date) -> pl.DataFrame:
    """The dataset of ``day`` from raw inputs, the way the assets chain them."""
    prev = cal.previous_trading_day(day)
    technical = indicators.technical_features(daily.filter(pl.col("date") <= prev), keep_dates=[prev])
    prev_minute = minute[prev]
    reasons = market.classify_tickers(prev_minute["ticker"].unique())
    tradable = prev_minute.filter(pl.col("ticker").is_in(reasons.filter(pl.col("reason").is_null())["ticker"].implode()))
    minute_feats = market.add_volume_spike(market.minute_day_features(tradable), daily, 20)
    previous = {
        "technical_features": technical,
        "daily_bars": daily.filter(pl.col("date") == prev),
        "minute_features": minute_feats,
        "macd_day_features": macd.macd_day_features(prev_minute),
    }
    events = labels.macd_events(minute[day])
    return datasets.build_training_dataset(events, previous)


def _moved(a: pl.Series, b: pl.Series) -> str:
    """How a feature column moved between two builds ("" when it did not). Floats may differ in
    the last bits (a parallel sum's order); a leak moves them by far more than 1e-9 relative."""
    if not a.is_null().equals(b.is_null()):
        return "null positions differ"
    if a.dtype.is_float():
        x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
        if np.allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True):
            return ""
        return f"max |diff| {np.nanmax(np.abs(x - y)):.3g}"
    return "" if a.equals(b) else f"{int((a != b).sum())} value(s) differ"


def test_no_look_ahead(raw):
    daily, minute, days = raw
    day = days[-1]
    base = build(daily, minute, day)
    assert base.height > 100
    assert (base["feature_date"] == days[-2]).all() and datasets.point_in_time_violations(base) == 0
    assert base["rsi_14"].null_count() < base.height  # technicals of the previous session joined
    assert base["hist_last__1m"].null_count() < base.height  # previous minute day's MACD joined
    assert base["realized_vol"].null_count() < base.height
    feature_cols = [c for c in base.columns if c not in datasets.TARGET_COLUMNS]
    rng = np.random.default_rng(0)
    times = base["event_time"].unique().sort()
    for cut in (times[len(times) // 4], times[len(times) // 2], times[-2]):
        # Every later minute bar of the event day, and the day's own daily bar, change.
        later = pl.col("window_start") > cut
        bumped = minute[day].with_columns(
            *(
                pl.when(later).then(pl.col(c) * pl.Series(rng.uniform(0.8, 1.2, minute[day].height))).otherwise(pl.col(c)).alias(c)
                for c in ("open", "high", "low", "close")
            ),
            pl.when(later).then(pl.col("volume") * 3).otherwise(pl.col("volume")).alias("volume"),
        )
        future_daily = daily.with_columns(
            pl.when(pl.col("date") >= day).then(pl.col("close") * 1.5).otherwise(pl.col("close")).alias("close"),
            pl.when(pl.col("date") >= day).then(pl.col("high") * 1.6).otherwise(pl.col("high")).alias("high"),
        )
        changed = build(future_daily, {**minute, day: bumped}, day)
        known = lambda f: f.filter(pl.col("event_time") <= cut).select(feature_cols).sort(["ticker", "event_time"])  # noqa: E731
        assert known(base).height > 0
        before, after = known(base), known(changed)
        assert before.height == after.height, cut
        moved = {c: _moved(before[c], after[c]) for c in before.columns}
        moved = {c: m for c, m in moved.items() if m}
        assert not moved, f"cut {cut}: features of earlier events moved: {moved}"
    # The targets do look forward: the same damage moves some labels.
    assert not base.select(datasets.TARGET_COLUMNS).equals(changed.select(datasets.TARGET_COLUMNS))


def test_same_day_summaries_never_join(raw):
    daily, minute, days = raw
    day = days[-1]
    ds = build(daily, minute, day)
    same_day = macd.macd_day_features(minute[day]).filter(pl.col("mode") == "all")
    prev_day = macd.macd_day_features(minute[days[-2]]).filter(pl.col("mode") == "all")
    row = ds.row(0, named=True)
    prev = prev_day.filter(pl.col("ticker") == row["ticker"]).row(0, named=True)
    same = same_day.filter(pl.col("ticker") == row["ticker"]).row(0, named=True)
    assert row["hist_last__1m"] == prev["hist_last__1m"]
    assert row["hist_last__1m"] != same["hist_last__1m"]


def test_clashing_sources_are_refused(raw):
    daily, minute, days = raw
    events = labels.macd_events(minute[days[-1]])
    bad = daily.filter(pl.col("date") == days[-2]).with_columns(pl.lit(1.0).alias("hist_at_event"))
    with pytest.raises(ValueError, match="unknown feature sources"):
        datasets.build_training_dataset(events, {"weekly_bars": bad})


def test_the_declared_dataset_schema_is_what_a_build_returns():
    """The schema the code location declares without running a query equals the build's, on an
    empty build and on one with events."""
    declared = datasets.dataset_schema(market.MINUTE_FEATURES_SCHEMA, market.DAILY_BARS_SCHEMA)
    empty = datasets.build_training_dataset(
        macd.macd_events(pl.DataFrame(schema=market.MINUTE_AGGS_SCHEMA)),
        {
            "technical_features": indicators.empty_technical(),
            "daily_bars": market.empty_frame(market.DAILY_BARS_SCHEMA),
            "minute_features": market.empty_frame(market.MINUTE_FEATURES_SCHEMA),
            "macd_day_features": macd.empty_macd_day(),
        },
    )
    assert list(empty.schema.items()) == list(declared.items())
    assert len(declared) == 77 and list(declared)[:5] == ["ticker", "date", "mode", "event_time", "feature_date"]


def test_loading_the_code_location_starts_no_thread():
    """A process that imports the definitions and then forks (Dagster's forkserver with
    ``preload_modules``, Dask nannies) must not have started polars' or numba's thread pools: the
    forked step would wait for threads that do not exist in it. OpenBLAS's pools (numpy's and
    scipy's own copy, started at their import) re-create themselves after a fork, so they are
    part of the baseline."""
    import subprocess
    import sys

    code = (
        "import os; import polars, numpy, scipy.linalg, dagster; before = len(os.listdir('/proc/self/task')); "
        "import quant_assets.definitions; print(before, len(os.listdir('/proc/self/task')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1], f"importing quant_assets.definitions started {int(out[1]) - int(out[0])} threads"
