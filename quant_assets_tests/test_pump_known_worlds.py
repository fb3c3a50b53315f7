"""Known worlds: the pump research run end to end (phase 1, walk-forward selection, the
out-of-sample record, PBO and DSR) on simulated prices with no edge at all and with a planted
one. Selection luck must show as luck; a real edge must survive out of sample."""

import numpy as np
import polars as pl
import pytest

from quant_assets.lib.pump import composite as pcomp
from quant_assets.lib.pump import filters as pfil
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump import overfitting as pof
from quant_assets.lib.pump import walkforward as wf
from quant_assets.lib.pump.signals import score_band_expr
from quant_assets.lib.pump.trades import window_start_expr
from quant_assets.simulate import pump_paths

SECONDS = 7_200
SEEDS = (0, 1, 2)
EDGE = {"edge_score": 500, "edge_drift": 0.10, "edge_rise_s": 600.0}


def research_run(world: str, seed: int):
    closes, offsets, signals = pump_paths(600, SECONDS, seed=seed, days=30, world=world, **(EDGE if world == "planted" else {}))
    research = signals.with_columns(
        window_start_expr(), score_band_expr().alias("score_range"), pl.col("signal_ts").dt.date().alias("signal_date")
    )
    strategies = opt.strategy_grid(
        opt.GridSpec(sl_levels=(0.02, 0.05), profiles=tuple(opt.PROFILES), timeouts_s=(900, 3_600, SECONDS), entry_delays_s=(0, 300), fee=0.0)
    )
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    grid = pfil.FilterGrid(rsi_cuts=(50, 70), volume_cuts=(1, 2), oi_cuts=(0, 5))
    folds = wf.make_folds(research["signal_date"].min(), research["signal_date"].max(), wf.WalkForwardSpec(train_days=6, test_days=3, step_days=3))
    sel = wf.select_per_fold(research, pnl, ex, strategies, grid, folds, "walk_forward", horizon_s=SECONDS, min_trades=3)
    champions = pcomp.choose_champions(sel.results, [grid.band_label(lo) for lo in grid.bands], 3, wf.fold_frame(folds, "walk_forward"))
    oos = wf.out_of_sample(research, pnl, ex, champions, folds)
    measured = pof.measure(research, pnl, ex, sel.results, champions, folds, horizon_s=SECONDS, spa_reps=0)
    return champions.filter(pl.col("has_champion")), oos.trades, measured


@pytest.fixture(scope="module")
def worlds():
    return {world: [research_run(world, seed) for seed in SEEDS] for world in ("no_edge", "planted")}


def edged(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("score_range").str.split("-").list.first().cast(pl.Int32) >= EDGE["edge_score"]


def mean_and_se(values: pl.Series) -> tuple[float, float]:
    v = values.to_numpy()
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def test_edge_free_world_champions_are_luck(worlds):
    runs = worlds["no_edge"]
    champions = pl.concat([c for c, _, _ in runs])
    trades = pl.concat([t for _, t, _ in runs])
    measured = pl.concat([m for _, _, m in runs])
    # In sample the champions look good: the best of many tries on the window they were chosen on.
    in_sample = float(champions["total_pnl"].sum() / champions["trades"].sum())
    assert in_sample > 0.03
    # Out of sample they earn nothing: the mean trade centres on zero across seeds.
    mean, se = mean_and_se(trades["pnl"])
    assert trades.height > 500 and abs(mean) < 3 * se and in_sample > mean + 10 * se
    # PBO says the choice is a coin toss or worse; the DSR clears 0.95 no more often than a 5 %
    # test should by chance.
    assert measured["pbo"].drop_nulls().len() > 0.9 * measured.height
    assert float(measured["pbo"].mean()) >= 0.5
    assert float((measured["deflated_sharpe"].fill_null(0.0) >= 0.95).mean()) <= 0.05


def test_planted_edge_is_found_out_of_sample(worlds):
    runs = worlds["planted"]
    trades = pl.concat([t for _, t, _ in runs])
    measured = pl.concat([m for _, _, m in runs])
    with_edge = trades.filter(edged(trades))["pnl"]
    without = trades.filter(~edged(trades))["pnl"]
    mean, se = mean_and_se(with_edge)
    assert with_edge.len() > 300 and mean > 0.05 and mean > 8 * se  # most of the planted 10 % drift, out of sample
    mean0, se0 = mean_and_se(without)
    assert abs(mean0) < 3 * se0  # ranges below the edge score still earn nothing
    assert float(measured["pbo"].mean()) < 0.15
    # The edged champions' DSR stands far above the edge-free world's.
    edge_free = pl.concat([m for _, _, m in worlds["no_edge"]])["deflated_sharpe"].fill_null(0.0)
    planted = measured.filter(edged(measured))["deflated_sharpe"].fill_null(0.0)
    assert float(planted.median()) > 10 * float(edge_free.median()) and float(planted.max()) > 0.95
