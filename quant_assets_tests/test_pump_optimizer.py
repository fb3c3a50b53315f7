"""Phase 1: ``evaluate_strategies`` against a bar-by-bar walk of the exit rule, hand-worked
answers, the default grid and bad input."""

import numpy as np
import pandas as pd
import polars as pl
import pytest

from quant_assets.lib.pump import optimizer as opt


def naive(c, e, sl, activation, callback, timeout, fee):
    """The rule as written, in plain Python (independent of the jitted reference)."""
    if e >= len(c):
        return float("nan"), -1, "no_entry"
    p = c[e]
    last = len(c) - 1
    for t in range(e + 1, min(e + timeout, last) + 1):
        high = max(c[e : t + 1])
        if c[t] <= p * (1 - sl):
            return c[t] / p - 1 - fee, t - e, "stop"
        if high >= p * (1 + activation) and c[t] <= high * (1 - callback):
            return c[t] / p - 1 - fee, t - e, "trailing"
    x = min(e + timeout, last)
    return c[x] / p - 1 - fee, x - e, "timeout" if e + timeout <= last else "end_of_window"


def path(rng, n):
    """Paths with ties, flat stretches, exact threshold hits and jumps."""
    if n == 0:
        return np.empty(0)
    kind = rng.integers(0, 5)
    if kind == 0:  # tick-rounded random walk: many equal closes
        return np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 1)
    if kind == 1:  # a few levels, held for several seconds: flat stretches and exact ties
        levels = np.array([100.0, 98.0, 99.6, 104.0, 101.92, 95.0, 110.0, 105.6, 96.0])
        return np.repeat(rng.choice(levels, n // 3 + 1), 3)[:n]
    if kind == 2:  # constant
        return np.full(n, 50.0)
    if kind == 3:  # pump then dump
        up = np.linspace(1.0, 1.3, max(1, n // 2))
        return 10 * np.concatenate([up, np.linspace(1.3, 0.8, n - up.shape[0])])[:n]
    return np.round(np.exp(np.cumsum(rng.normal(0, 0.03, n))), 3) + 0.001


def strategies(rng, k):
    return pl.DataFrame(
        {
            "sl": rng.choice([0.0, 0.004, 0.01, 0.02, 0.04, 0.05, 0.1, 1.5], k),
            "activation": rng.choice([0.0, 0.004, 0.04, 0.07, 0.1], k),
            "callback": rng.choice([0.0, 0.002, 0.02, 0.03, 0.04], k),
            "timeout_s": rng.choice([0, 1, 2, 5, 30, 200, 10_000], k),
            "entry_delay_s": rng.choice([0, 1, 2, 7, 60, 500], k),
            "fee": rng.choice([0.0, 0.001], k),
        }
    )


def csr(paths):
    lens = [len(p) for p in paths]
    closes = np.concatenate(paths) if sum(lens) else np.empty(0)
    return closes, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def test_equals_bar_by_bar_walk_on_random_paths():
    rng = np.random.default_rng(20240101)
    checked = 0
    for _ in range(80):
        lens = rng.choice([0, 1, 2, 3, 8, 40, 300, 2_000, 5_000, 13_000], rng.integers(1, 6))
        paths = [path(rng, int(n)) for n in lens]
        closes, offsets = csr(paths)
        st = strategies(rng, int(rng.integers(1, 40)))
        pnl, ex = opt.evaluate_strategies(closes, offsets, st)
        ref_pnl, ref_ex = opt.reference_strategies(closes, offsets, st)
        assert pnl.shape == (st.height, len(paths))
        np.testing.assert_array_equal(pnl, ref_pnl)  # nan == nan here; bits otherwise
        np.testing.assert_array_equal(ex, ref_ex)
        checked += pnl.size
    assert checked > 3_000


def test_jitted_reference_is_the_rule_as_written():
    rng = np.random.default_rng(7)
    for _ in range(300):
        c = path(rng, int(rng.choice([1, 2, 5, 30, 120])))
        row = strategies(rng, 1).row(0, named=True)
        args = (row["entry_delay_s"], row["sl"], row["activation"], row["callback"], row["timeout_s"], row["fee"])
        pnl, exit_s, reason = opt.simulate_one(c, *args)
        want = naive(list(c), *args)
        assert (pnl == want[0] or (np.isnan(pnl) and np.isnan(want[0]))) and exit_s == want[1]
        assert opt.REASONS[reason] == want[2]


def test_hand_worked_exits():
    c = np.array([100.0, 101.0, 104.0, 106.0, 103.0, 103.8, 97.0, 94.0])
    one = lambda **kw: opt.simulate_one(c, kw.get("e", 0), kw["sl"], kw["act"], kw["cb"], kw.get("to", 100), kw.get("fee", 0.0))
    # Armed at 104 (>= 104 = 100 * 1.04), high 106, exits at 103 <= 106 * 0.98 = 103.88.
    assert one(sl=0.05, act=0.04, cb=0.02)[1:] == (4, opt.TRAILING)
    # Never armed (needs 110): the stop at 95 fires on 94 at t=7.
    assert one(sl=0.05, act=0.10, cb=0.04)[1:] == (7, opt.STOP)
    # Timeout after 3 seconds: exit at c[3] = 106.
    pnl, ex, reason = one(sl=0.05, act=0.10, cb=0.04, to=3, fee=0.001)
    assert (ex, reason) == (3, opt.TIMEOUT) and pnl == 106.0 / 100.0 - 1.0 - 0.001
    # The path ends before the timeout: exit on the last bar.
    assert one(sl=0.5, act=0.5, cb=0.5, to=1000)[1:] == (7, opt.END_OF_WINDOW)
    # Exit on the first bar after entry: the stop is the entry price itself (sl = 0) and 97 <= 103.8.
    assert one(sl=0.0, act=0.5, cb=0.5, e=5)[1:] == (1, opt.STOP)
    # A close exactly on the stop level counts (<=): 98 = 100 * (1 - 0.02).
    flat = np.array([100.0, 100.0, 98.0, 120.0])
    assert opt.simulate_one(flat, 0, 0.02, 0.5, 0.5, 10, 0.0)[1:] == (2, opt.STOP)
    # Entry delay beyond the path: no trade.
    pnl, ex, reason = opt.simulate_one(c, 8, 0.05, 0.04, 0.02, 10, 0.0)
    assert np.isnan(pnl) and ex == -1 and reason == opt.NO_ENTRY


def test_evaluate_matches_hand_worked_matrix():
    c = np.array([100.0, 101.0, 104.0, 106.0, 103.0, 103.8, 97.0, 94.0])
    st = pd.DataFrame(
        {
            "sl": [0.05, 0.05, 0.05],
            "activation": [0.04, 0.10, 0.10],
            "callback": [0.02, 0.04, 0.04],
            "timeout_s": [100, 100, 3],
            "entry_delay_s": [0, 0, 0],
            "fee": [0.0, 0.0, 0.001],
        }
    )
    pnl, ex = opt.evaluate_strategies(c, [0, c.shape[0]], st)
    assert ex[:, 0].tolist() == [4, 7, 3]
    assert pnl[:, 0].tolist() == [103.0 / 100.0 - 1.0 - 0.0, 94.0 / 100.0 - 1.0 - 0.0, 106.0 / 100.0 - 1.0 - 0.001]


def test_default_grid_has_5400_strategies_over_four_profiles():
    grid = opt.strategy_grid()
    assert grid.height == 5400 >= 5400
    assert set(grid["profile"].unique()) == {"SCALPING", "BALANCED", "MODERATE", "CONSERVATIVE"}
    profiles = {r["profile"]: (r["activation"], r["callback"]) for r in grid.unique("profile").iter_rows(named=True)}
    assert profiles == {"SCALPING": (0.004, 0.002), "BALANCED": (0.04, 0.02), "MODERATE": (0.07, 0.03), "CONSERVATIVE": (0.10, 0.04)}
    assert grid["strategy_id"].to_list() == list(range(5400))
    assert grid.select("sl", "profile", "timeout_s", "entry_delay_s").unique().height == 5400


def test_default_grid_on_pump_paths_equals_reference():
    from quant_assets.simulate import pump_paths

    closes, offsets, _ = pump_paths(3, seconds=20_000, seed=3, days=3)
    grid = opt.strategy_grid()
    pnl, ex = opt.evaluate_strategies(closes, offsets, grid)
    ref_pnl, ref_ex = opt.reference_strategies(closes, offsets, grid)
    np.testing.assert_array_equal(pnl, ref_pnl)
    np.testing.assert_array_equal(ex, ref_ex)


def test_bad_input_is_named():
    st = opt.strategy_grid(opt.GridSpec(sl_levels=(0.05,), profiles=("BALANCED",), timeouts_s=(10,), entry_delays_s=(0,)))
    good = np.array([1.0, 1.1, 1.2])
    with pytest.raises(opt.StrategyError, match="signal 1 has nan at second 1"):
        opt.evaluate_strategies(np.array([1.0, 2.0, 1.0, np.nan, 1.0]), [0, 2, 5], st)
    with pytest.raises(opt.StrategyError, match="finite and > 0"):
        opt.evaluate_strategies(np.array([1.0, -1.0]), [0, 2], st)
    with pytest.raises(opt.StrategyError, match="offsets must start at 0"):
        opt.evaluate_strategies(good, [0, 2], st)
    with pytest.raises(opt.StrategyError, match=r"lack column\(s\) \['fee'\]"):
        opt.evaluate_strategies(good, [0, 3], st.drop("fee"))
    with pytest.raises(opt.StrategyError, match="whole seconds"):
        opt.evaluate_strategies(good, [0, 3], st.with_columns(pl.lit(1.5).alias("timeout_s")))
    with pytest.raises(opt.StrategyError, match="unknown trailing profile"):
        opt.strategy_grid(opt.GridSpec(profiles=("YOLO",)))


def test_empty_inputs():
    st = opt.strategy_grid(opt.GridSpec(sl_levels=(0.05,), profiles=("BALANCED",), timeouts_s=(10,), entry_delays_s=(0, 5)))
    pnl, ex = opt.evaluate_strategies(np.empty(0), [0], st)
    assert pnl.shape == (2, 0) and ex.shape == (2, 0)
    pnl, ex = opt.evaluate_strategies(np.array([1.0, 2.0]), [0, 0, 2], st)
    assert np.isnan(pnl[:, 0]).all() and (ex[:, 0] == -1).all()
    assert ex[:, 1].tolist() == [1, -1]


def test_matrix_arrays_round_trip_the_long_strategy_matrix_in_research_order():
    strategies = opt.strategy_grid(opt.GridSpec(sl_levels=(0.02, 0.05), profiles=tuple(opt.PROFILES)[:1], timeouts_s=(600,), entry_delays_s=(0,), fee=0.0))
    research = pl.DataFrame({"signal_id": [30, 10, 20]})
    rng = np.random.default_rng(0)
    pnl = rng.normal(0, 0.1, (strategies.height, 3))
    exit_s = rng.integers(1, 600, (strategies.height, 3))
    long = pl.concat(
        strategies.with_columns(pl.lit(sid).alias("signal_id"), pl.Series("pnl", pnl[:, j]), pl.Series("exit_s", exit_s[:, j]))
        for j, sid in enumerate(research["signal_id"])
    ).sample(fraction=1.0, shuffle=True, seed=1)
    got_strategies, got_pnl, got_exit = opt.matrix_arrays(long, research)
    assert got_strategies["strategy_id"].to_list() == sorted(strategies["strategy_id"].to_list())
    np.testing.assert_array_equal(got_pnl, pnl)
    np.testing.assert_array_equal(got_exit, exit_s)
    with pytest.raises(ValueError, match="covers 2 of 3|of .* \\(strategy, signal\\) cells"):
        opt.matrix_arrays(long.head(long.height - 1), research)


def test_matrix_frame_is_the_inverse_of_matrix_arrays_and_reference_sample_agrees():
    from quant_assets.lib.pump.schemas import STRATEGY_MATRIX_SCHEMA

    strategies = opt.strategy_grid(opt.GridSpec(sl_levels=(0.02, 0.05), profiles=tuple(opt.PROFILES)[:2], timeouts_s=(60,), entry_delays_s=(0, 5), fee=0.001))
    rng = np.random.default_rng(3)
    paths = [path(rng, 120) for _ in range(4)]
    closes = np.concatenate(paths)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in paths])]).astype(np.int64)
    pnl, exit_s = opt.evaluate_strategies(closes, offsets, strategies)
    ids = np.array([40, 10, 30, 20])
    frame = opt.matrix_frame(strategies, ids, pnl, exit_s, STRATEGY_MATRIX_SCHEMA)
    assert list(frame.schema) == list(STRATEGY_MATRIX_SCHEMA) and frame.height == pnl.size
    assert frame["signal_id"].head(4).to_list() == ids.tolist() and frame["strategy_id"].head(5).to_list() == [0, 0, 0, 0, 1]
    _, back_pnl, back_exit = opt.matrix_arrays(frame, pl.DataFrame({"signal_id": ids}))
    np.testing.assert_array_equal(back_pnl, pnl)
    np.testing.assert_array_equal(back_exit, exit_s)
    cells, bad = opt.reference_mismatches(closes, offsets, strategies, pnl, exit_s, 100)
    assert cells == pnl.size == 32 and bad == []
    tampered = pnl.copy()
    tampered[:] += 1.0
    cells, bad = opt.reference_mismatches(closes, offsets, strategies, tampered, exit_s, 10)
    assert cells == 10 and len(bad) == 10 and set(bad[0]) == {"strategy_id", "signal", "fast", "walk"}
    assert opt.reference_mismatches(closes, offsets, strategies, pnl, exit_s, 0) == (0, [])
