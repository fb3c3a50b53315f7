"""PBO, deflated Sharpe and SPA of the pump champions: the matrices they are computed on agree
with the optimizer, the trial count and variance with a brute-force walk of the grid."""

import math

import numpy as np
import polars as pl

from quant_assets.lib import overfitting as of
from quant_assets.lib.pump import composite as pcomp
from quant_assets.lib.pump import filters as pfil
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump import overfitting as pof
from quant_assets.lib.pump import walkforward as wf
from quant_assets_tests.test_pump_walkforward import BANDS, GRID, select, world


def test_trial_sharpe_count_and_variance_equal_a_brute_force_walk():
    research, closes, offsets, strategies = world(8, n=90)
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    res = pfil.optimize_filters(research, pnl, ex, strategies, GRID, min_trades=2)
    delays = strategies["entry_delay_s"].to_numpy()
    score = research["total_score"].to_numpy()
    attrs = [research[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in ("rsi", "volume_zscore", "oi_change_pct")]
    for b, lo in enumerate(GRID.bands):
        seen, ratios = set(), []
        for fid, (blo, a, v, o) in enumerate(pfil.combos(GRID)):
            if blo != lo:
                continue
            sel = pfil.in_band(score, lo, 100) & pfil.passes(attrs[0], *a) & pfil.passes(attrs[1], *v) & pfil.passes(attrs[2], *o)
            key = sel.tobytes()
            if key in seen or not sel.any():
                continue
            seen.add(key)
            for k in range(strategies.height):
                order = np.lexsort((research["signal_id"].to_numpy(), research["window_start"].to_numpy()))
                busy, rets = -(2**62), []
                for i in order:
                    if sel[i] and research["window_start"][int(i)] >= busy and not np.isnan(pnl[k, i]):
                        rets.append(pnl[k, i])
                        busy = research["window_start"][int(i)] + delays[k] + ex[k, i]
                members = int(pfil.in_band(score, lo, 100).sum())
                if rets and members >= 2:
                    series = np.zeros(members)
                    series[: len(rets)] = rets  # order does not matter to the mean and deviation
                    if np.var(series, ddof=1) > 1e-24:
                        ratios.append(series.mean() / series.std(ddof=1))
        band = res.bands[b]
        assert band.sharpe_trials == len(ratios)
        if ratios:
            assert math.isclose(band.sharpe_variance, float(np.var(ratios)), rel_tol=1e-9, abs_tol=1e-12)


def test_pbo_matrix_columns_reproduce_the_optimizer_figures():
    research, closes, offsets, strategies = world(9)
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    spec = wf.WalkForwardSpec(train_days=4, test_days=2, step_days=2)
    folds, champions = select(research, pnl, ex, strategies, spec, horizon_s=3_000)
    days = research["signal_date"]
    sel = wf.select_per_fold(research, pnl, ex, strategies, GRID, folds, "walk_forward", horizon_s=3_000, min_trades=2)
    ws = research["window_start"].to_numpy()
    checked = 0
    for (fold, band), kept in sel.results.group_by(["fold", "score_range"]):
        members = np.flatnonzero(wf.selectable(ws, folds[fold], 3_000) & (research["score_range"] == band).to_numpy())
        series, traded = pof.config_series(research[members], pnl[:, members], ex[:, members], kept)
        assert series.shape == (members.size, kept.height)
        for j, row in enumerate(kept.iter_rows(named=True)):
            fig = wf.figures_from_returns(series[traded[:, j], j].tolist())
            assert fig["trades"] == row["trades"] and fig["total_pnl"] == row["total_pnl"]
            assert fig["max_drawdown"] == row["max_drawdown"]
            checked += 1
    assert checked > 50 and days.n_unique() >= 6


def test_measure_fills_every_champion_and_the_document():
    research, closes, offsets, strategies = world(10, n=240)
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    spec = wf.WalkForwardSpec(train_days=4, test_days=2, step_days=2)
    days = research["signal_date"]
    folds = wf.make_folds(days.min(), days.max(), spec)
    sel = wf.select_per_fold(research, pnl, ex, strategies, GRID, folds, "walk_forward", horizon_s=3_000, min_trades=2)
    frame = sel.results.select(list(wf.fold_frame(folds, "walk_forward").columns)).unique(subset="fold").sort("fold")
    champions = pcomp.choose_champions(sel.results, BANDS, 2, frame)
    measured = pof.measure(research, pnl, ex, sel.results, champions, folds, horizon_s=3_000, spa_reps=200)
    assert measured.height == champions["has_champion"].sum() > 0
    defined = measured.filter(pl.col("pbo").is_not_null())
    assert defined.height > 0 and defined["pbo"].is_between(0, 1).all()
    assert measured["spa_pvalue"].drop_nulls().is_between(0, 1).all()
    # The DSR is the paper's formula on the champion's returns over its range's signals.
    row = measured.filter(pl.col("deflated_sharpe").is_not_null()).row(0, named=True)
    champ = champions.filter((pl.col("fold") == row["fold"]) & (pl.col("score_range") == row["score_range"])).row(0, named=True)
    assert math.isclose(row["sharpe_benchmark"], of.expected_max_sharpe(champ["sharpe_trials"], champ["sharpe_trials_variance"]), rel_tol=1e-12)
    # A random-walk world: the champions are noise, and the check says so.
    assert pof.warnings(measured)
    full = pcomp.with_overfitting(champions, measured)
    doc = pcomp.composite_document(full, min_trades=2, research=research)
    entries = [e for e in doc["score_ranges"].values() if e and e["overfitting"]]
    assert entries and all(set(e["overfitting"]) >= {"pbo", "deflated_sharpe", "sharpe_trials", "spa_pvalue"} for e in entries)
    back = pcomp.champions_from_document(doc)
    assert back.filter(pl.col("has_champion"))["sharpe_trials"].null_count() == 0
