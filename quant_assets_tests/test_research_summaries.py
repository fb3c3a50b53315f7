"""The research summaries the asset layer turns into metadata: which features are evaluated,
the rolling IC chart, model comparisons, the backtest chart and checks, universe coverage and
the joined MACD day features."""

import datetime as dt

import polars as pl
import pytest

from quant_assets.lib import market
from quant_assets.lib.research import backtests, factors, macd, modeling, performance, universe

D = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(40)]


def test_factor_columns_all_or_named_numeric_only():
    schema = {"a": pl.Float64, "b": pl.Int64, "c": pl.String}
    assert factors.factor_columns(schema, ["a", "b", "c"], "all") == ["a", "b"]
    assert factors.factor_columns(schema, ["a", "b", "c"], " b , a") == ["b", "a"]
    with pytest.raises(ValueError, match=r"\['c'\]"):
        factors.factor_columns(schema, ["a", "b", "c"], "a,c")


def test_rolling_ic_takes_the_top_features_by_absolute_icir():
    summary = pl.DataFrame(
        {"feature": ["f1", "f2", "f3"], "horizon": [1, 1, 1], "icir": [0.1, -0.9, None], "n_dates": [30, 30, 0]}
    )
    by_date = pl.DataFrame(
        {
            "feature": ["f1"] * 30 + ["f2"] * 30,
            "horizon": [1] * 60,
            "date": D[:30] * 2,
            "ic": [0.1] * 30 + [float(i) for i in range(30)],
        }
    )
    series = factors.rolling_ic(summary, by_date, 1, top=1, window=4, min_samples=4)
    assert list(series) == ["f2"]
    dates, values = series["f2"]
    assert dates[0] == D[3] and values[0] == pytest.approx(1.5) and values[-1] == pytest.approx(27.5)
    assert factors.features_without_ic(summary) == ["f3"]


def test_model_comparison_one_row_per_ticker():
    table = pl.DataFrame(
        {
            "ticker": ["A", "A", "B", "B"],
            "model": ["capm", "ff3"] * 2,
            "r_squared": [0.1, 0.2, 0.3, 0.4],
            "alpha_annual": [0.01, 0.02, 0.03, 0.04],
            "beta_mkt_rf": [1.1, 1.0, 0.9, 0.8],
        }
    )
    out = factors.model_comparison(table, ["capm", "ff3"]).sort("ticker")
    assert out.columns == ["ticker", "r2_capm", "r2_ff3", "alpha_ann_capm", "alpha_ann_ff3", "beta_mkt_capm"]
    assert out.row(1) == ("B", 0.3, 0.4, 0.03, 0.04, 0.9)
    assert factors.model_comparison(table.clear(), ["capm"]).is_empty()


def test_backtest_chart_series_and_idle_strategies():
    stats = pl.DataFrame(
        {"ticker": ["A", "A"], "strategy": ["macd", "rsi"], "n_trades": [3, 0], "start": [D[0]] * 2, "end": [D[2]] * 2, "delisted": [False, True]}
    )
    equity = pl.DataFrame({"ticker": ["A"] * 3, "strategy": ["macd"] * 3, "date": D[:3], "equity": [100.0, 110.0, 121.0]})
    daily = pl.DataFrame({"ticker": ["A"] * 4, "date": D[:4], "open": [10.0, 11.0, 12.0, 13.0], "close": [10.5, 11.5, 12.5, 13.5]})
    series = backtests.growth_series(stats, equity, daily, ["macd", "rsi"], 100.0)
    assert list(series) == ["macd (mean of 1)", "buy and hold (mean)"]
    assert series["macd (mean of 1)"][1] == pytest.approx([1.0, 1.1, 1.21])
    assert series["buy and hold (mean)"] == (D[:3], pytest.approx([1.05, 1.15, 1.25]))
    assert backtests.idle_strategies(stats, ["macd", "rsi"]) == ["rsi"]
    assert backtests.idle_strategies(stats.clear(), ["macd"]) == ["macd"]
    assert backtests.delisted_names(stats) == ["A"]
    assert backtests.growth_series(stats, equity.clear(), daily, ["macd"], 100.0) == {}


def test_cumulative_lines_compound_both_sides():
    aligned = pl.DataFrame({"date": D[:2], "r": [0.1, 0.1], "b": [0.0, -0.5]})
    lines = performance.cumulative_lines(aligned, "portfolio", "SPY")
    assert lines["portfolio"][1] == pytest.approx([0.1, 0.21]) and lines["SPY"][1] == pytest.approx([0.0, -0.5])
    assert performance.cumulative_lines(aligned.clear(), "portfolio", "SPY") == {}
    assert performance.portfolio_figures(pl.DataFrame({"names": [2, 4], "exits": [0, 1]})) == {
        "portfolio_days": 2,
        "portfolio_mean_names": 3.0,
        "portfolio_exits": 1,
    }


def test_leading_terms_by_gain_share_or_absolute_coefficient():
    gains = pl.DataFrame({"feature": ["a", "b"], "gain_share": [0.7, 0.3]})
    assert modeling.leading_terms(gains, 1) == (["a"], [0.7])
    coefs = pl.DataFrame({"feature": ["a", "b", "c"], "coef": [0.1, -2.0, 1.0]})
    assert modeling.leading_terms(coefs, 2) == (["b", "c"], [-2.0, 1.0])


def test_universe_coverage_lists_due_dates_without_members():
    sessions = D[:10]
    members = pl.DataFrame({"rebalance_date": [D[4], D[4], D[8]], "ticker": ["X", "Y", "Z"], "rank": [2, 1, 1]})
    spec = universe.UniverseSpec(count=2, window=3, rebalance="daily", min_history=1)
    due, empty = universe.empty_rebalances(members, sessions, spec)
    assert due == sessions[2:] and D[4] not in empty and D[2] in empty and len(empty) == 6
    assert universe.members_per_date(members).rows() == [(D[4], 2), (D[8], 1)]
    assert universe.latest_members(members) == ["Z"]
    assert universe.newest_first(members)["ticker"].to_list() == ["Z", "Y", "X"]


def test_minute_features_gain_both_modes_of_macd_day_features():
    feats = pl.DataFrame({c: [None] for c in market.MINUTE_FEATURES_SCHEMA}, schema=market.MINUTE_FEATURES_SCHEMA)
    feats = feats.with_columns(pl.lit("A").alias("ticker"), pl.lit(D[0]).alias("date"))
    day = macd.empty_macd_day()
    row = {c: None for c in day.columns} | {"ticker": "A", "date": D[0], "mode": "rth", "bars__1m": 300}
    day = pl.concat([day, pl.DataFrame([row], schema=day.schema)])
    out = macd.with_macd_day(feats, day)
    assert list(out.schema) == list(macd.PLUS_MACD_SCHEMA)
    assert out["bars__1m_rth"].to_list() == [300] and out["bars__1m"].to_list() == [None]
    assert macd.mode_row_violations(day, ["all", "rth"]) == (1, 1)
    assert macd.mode_row_violations(day, ["rth"]) == (1, 0)
