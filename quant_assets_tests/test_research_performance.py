"""Performance figures against empyrical-reloaded to 1e-10, the point-in-time equal-weight
portfolio, and the vectorbt backtests against a hand-simulated fill-at-next-open strategy."""

import datetime as dt
import zlib

import empyrical as ep
import numpy as np
import pandas as pd
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.research import backtests, indicators, performance

DAYS = cal.trading_days(dt.date(2022, 1, 3), dt.date(2024, 6, 28))


def empyrical_row(r: pd.Series, b: pd.Series) -> dict:
    alpha, beta = ep.alpha_beta(r, b, risk_free=0.0)
    return {
        "total_return": ep.cum_returns_final(r),
        "annual_return": ep.annual_return(r),
        "annual_volatility": ep.annual_volatility(r),
        "sharpe_ratio": ep.sharpe_ratio(r),
        "sortino_ratio": ep.sortino_ratio(r),
        "calmar_ratio": ep.calmar_ratio(r),
        "var_95": ep.value_at_risk(r, cutoff=0.05),
        "cvar_95": ep.conditional_value_at_risk(r, cutoff=0.05),
        "max_drawdown": ep.max_drawdown(r),
        "alpha": alpha,
        "beta": beta,
        "information_ratio": ep.excess_sharpe(r, b) * np.sqrt(252),
    }


@pytest.mark.parametrize("case", ["normal", "short", "all_up", "constant", "crash", "two_days"])
def test_every_figure_equals_empyrical(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    n = {"short": 12, "two_days": 2}.get(case, 400)
    idx = pd.DatetimeIndex(DAYS[:n])
    b = pd.Series(rng.normal(0.0004, 0.011, n), index=idx)
    r = pd.Series(0.8 * b.to_numpy() + rng.normal(0.0002, 0.015, n), index=idx)
    if case == "all_up":
        r = r.abs()  # no drawdown: calmar undefined
    if case == "constant":
        r = pd.Series(np.full(n, 0.001), index=idx)  # no variance: sharpe undefined
    if case == "crash":
        r.iloc[n // 2] = -0.6
    dates = pl.Series(DAYS[:n])
    table, aligned = performance.performance_table(
        {"X": pl.DataFrame({"date": dates, "ret_1d": r.to_numpy()})}, pl.DataFrame({"date": dates, "ret_1d": b.to_numpy()})
    )
    assert table.columns == list(performance.PERFORMANCE_COLUMNS)
    row = table.row(0, named=True)
    assert row["name"] == "X" and row["n_days"] == n
    for name, ref in empyrical_row(r, b).items():
        ref = float(ref)
        if not np.isfinite(ref):
            assert row[name] is None, (name, row[name])
        else:
            assert row[name] == pytest.approx(ref, rel=1e-10, abs=1e-14), name


def test_alignment_uses_dates_where_both_have_a_return():
    dates = DAYS[:6]
    name = pl.DataFrame({"date": dates, "ret_1d": [None, 0.01, 0.02, -0.01, 0.03, 0.0]})
    bench = pl.DataFrame({"date": dates[:5] , "ret_1d": [0.01, None, 0.01, 0.02, -0.02]})
    a = performance.aligned_returns(name, "X", bench)
    assert a["date"].to_list() == [dates[2], dates[3], dates[4]]


def test_portfolio_holds_the_previous_sessions_universe():
    d0, d1, d2 = DAYS[:3]
    daily = pl.DataFrame(
        {
            "ticker": ["A", "B", "C"] * 3,
            "date": [d0] * 3 + [d1] * 3 + [d2] * 3,
            "ret_1d": [0.0, 0.0, 0.0, 0.10, 0.20, 0.90, 0.01, None, 0.05],
        }
    )
    universe = pl.DataFrame({"ticker": ["A", "B", "A", "B", "C"], "date": [d0, d0, d1, d1, d1]})
    port = performance.equal_weight_portfolio(daily, universe)
    got = dict(zip(port["date"].to_list(), port["ret_1d"].to_list()))
    assert got[d1] == pytest.approx(0.15)  # A and B (in on d0); C joined on d1 and is not held over d1
    assert got[d2] == pytest.approx(0.03)  # A and C (B has no return on d2, left out)
    assert d0 not in got  # nobody was in the universe before d0


def ohlc(n=150, seed=1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    return pl.DataFrame({"ticker": ["Z"] * n, "date": DAYS[:n], "open": open_, "close": close})


def test_signals_follow_the_documented_rules():
    bars = ohlc()
    close = bars["close"].to_numpy()
    entries, exits = backtests.macd_signals(close)
    _, _, hist = indicators.macd(close)
    for i in np.flatnonzero(entries):
        prior = hist[:i][~np.isnan(hist[:i]) & (hist[:i] != 0)]
        assert hist[i] > 0 and prior[-1] < 0
    for i in np.flatnonzero(exits):
        prior = hist[:i][~np.isnan(hist[:i]) & (hist[:i] != 0)]
        assert hist[i] < 0 and prior[-1] > 0
    e, x = backtests.rsi_signals(close, 14, 30, 70)
    r = indicators.rsi(close, 14)
    assert all(r[i - 1] >= 30 > r[i] for i in np.flatnonzero(e))
    assert all(r[i - 1] <= 70 < r[i] for i in np.flatnonzero(x))
    with pytest.raises(ValueError, match="oversold < overbought"):
        backtests.rsi_signals(close, 14, 70, 30)
    size = backtests.order_sizes(np.array([1, 1, 0, 0, 1, 0], bool), np.array([0, 0, 1, 1, 0, 1], bool))
    assert np.isinf(size[0]) and size[0] > 0 and np.isnan(size[1]) and size[2] < 0 and np.isnan(size[3]) and size[4] > 0 and size[5] < 0


def test_backtest_equals_a_hand_simulation_with_next_open_fills_fees_and_slippage():
    bars = ohlc(200, seed=3)
    params = backtests.BacktestParams(fees=0.001, slippage=0.0005, init_cash=10_000.0)
    stats, equity, notes = backtests.run_backtests(bars, ["Z", "NOPE"], ["macd"], params, min_bars=60)
    assert notes == ["NOPE: 0 bar(s), fewer than min_bars=60; not backtested"]
    close = bars["close"].to_numpy()
    open_ = bars["open"].to_numpy()
    entries, exits = backtests.macd_signals(close)
    cash, shares, values, trades = params.init_cash, 0.0, [], 0
    for i in range(len(close)):
        if i > 0 and shares == 0 and entries[i - 1] and not exits[i - 1]:
            price = open_[i] * (1 + params.slippage)
            shares = cash / (price * (1 + params.fees))
            cash -= shares * price * (1 + params.fees)
            trades += 1
        elif i > 0 and shares > 0 and exits[i - 1]:
            price = open_[i] * (1 - params.slippage)
            cash += shares * price * (1 - params.fees)
            shares = 0.0
        values.append(cash + shares * close[i])
    row = stats.row(0, named=True)
    assert row["n_trades"] == trades > 0
    np.testing.assert_allclose(equity["equity"].to_numpy(), values, rtol=1e-9)
    assert row["total_return"] == pytest.approx(values[-1] / params.init_cash - 1, rel=1e-9)
    rets = np.diff(np.r_[params.init_cash, values]) / np.r_[params.init_cash, values[:-1]]
    assert row["sharpe_ratio"] == pytest.approx(ep.sharpe_ratio(pd.Series(rets)), rel=1e-9)
    assert row["buy_and_hold_return"] == pytest.approx(close[-1] / open_[0] - 1)
    with pytest.raises(ValueError, match="unknown strategies"):
        backtests.run_backtests(bars, ["Z"], ["momentum"], params)
