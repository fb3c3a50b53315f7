"""Walk-forward selection of the pump composite: folds, the purge, a selection blind to its
evaluation window, and the out-of-sample record equal to a bar-by-bar replay."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib.pump import backtest as pbt
from quant_assets.lib.pump import composite as pcomp
from quant_assets.lib.pump import filters as pfil
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump import walkforward as wf
from quant_assets.lib.pump.signals import score_band_expr

DAY = 86_400
T0 = int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp())
BANDS = [f"{lo}-{lo + 100}" for lo in pfil.DEFAULT_BANDS]


def test_folds_tile_the_days_and_step_forward():
    first, last = dt.date(2025, 1, 1), dt.date(2025, 1, 10)
    folds = wf.make_folds(first, last, wf.WalkForwardSpec(train_days=4, test_days=2, step_days=2))
    assert [(f.selection_start.day, f.selection_end.day, f.evaluation_start.day, f.evaluation_end.day) for f in folds] == [
        (1, 5, 5, 7),
        (3, 7, 7, 9),
        (5, 9, 9, 11),
    ]
    # The last evaluation window stops at the last day.
    short = wf.make_folds(first, dt.date(2025, 1, 9), wf.WalkForwardSpec(train_days=4, test_days=2, step_days=2))
    assert short[-1].evaluation_end == dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    with pytest.raises(wf.WalkForwardError, match="train_days=4"):
        wf.make_folds(first, dt.date(2025, 1, 4), wf.WalkForwardSpec(train_days=4))
    (one,) = wf.make_folds(first, last, wf.WalkForwardSpec(selection="in_sample"))
    assert one.evaluation_start is None and one.selection_end == dt.datetime(2025, 1, 11, tzinfo=dt.UTC)
    with pytest.raises(wf.WalkForwardError, match="selection"):
        wf.WalkForwardSpec(selection="best")


def test_purge_and_the_newest_champion_rules():
    folds = wf.make_folds(dt.date(2025, 1, 1), dt.date(2025, 1, 8), wf.WalkForwardSpec(train_days=3, test_days=3, step_days=1))
    ws = np.array([T0, T0 + DAY + 10, T0 + 2 * DAY - 1, T0 + 2 * DAY + 5, T0 + 3 * DAY + 1, T0 + 4 * DAY + 1])
    # Fold 0 selects on days 1-3 but only on 24 h windows closed when day 4 opens: a day-3 signal
    # is purged.
    assert wf.selectable(ws, folds[0]).tolist() == [True, True, True, False, False, False]
    # A day-5 signal is in the evaluation windows of folds 0 and 1: the newer fold rules.
    assert wf.evaluation_fold(ws, folds).tolist() == [-1, -1, -1, -1, 0, 1]


def world(seed, n=160, days=8, seconds=3_000):
    rng = np.random.default_rng(seed)
    research = pl.DataFrame(
        {
            "signal_id": np.arange(n, dtype=np.int64) + 1,
            "symbol": [f"S{i % 9}USDT" for i in range(n)],
            "window_start": np.sort(rng.integers(T0, T0 + days * DAY, n)),
            "total_score": rng.integers(100, 901, n).astype(np.int32),
            "rsi": rng.uniform(20, 95, n),
            "volume_zscore": rng.gamma(2, 1, n),
            "oi_change_pct": rng.normal(3, 6, n),
        }
    ).with_columns(
        score_band_expr().alias("score_range"),
        (pl.col("window_start") * 1000).cast(pl.Datetime("ms", "UTC")).alias("signal_ts"),
        pl.from_epoch("window_start").dt.date().alias("signal_date"),
    )
    paths = [np.round(10 * np.exp(np.cumsum(rng.normal(0.0, 0.004, seconds))), 4) for _ in range(n)]
    closes = np.concatenate(paths)
    offsets = np.arange(n + 1, dtype=np.int64) * seconds
    strategies = opt.strategy_grid(opt.GridSpec(sl_levels=(0.01, 0.03), profiles=("SCALPING", "BALANCED"), timeouts_s=(300, 2_000), entry_delays_s=(0, 30)))
    return research, closes, offsets, strategies


GRID = pfil.FilterGrid(rsi_cuts=(50,), volume_cuts=(2,), oi_cuts=(3,))


def select(research, pnl, ex, strategies, spec, horizon_s=DAY):
    days = research["signal_date"]
    folds = wf.make_folds(days.min(), days.max(), spec)
    sel = wf.select_per_fold(research, pnl, ex, strategies, GRID, folds, spec.selection, horizon_s=horizon_s, min_trades=2)
    frame = sel.results.select(list(wf.fold_frame(folds, spec.selection).columns)).unique(subset="fold").sort("fold")
    champions = pcomp.choose_champions(sel.results, BANDS, 2, frame)
    return folds, champions


def test_selection_never_sees_its_evaluation_window():
    research, closes, offsets, strategies = world(3)
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    spec = wf.WalkForwardSpec(train_days=3, test_days=2, step_days=2)
    folds, champions = select(research, pnl, ex, strategies, spec, horizon_s=3_000)
    assert champions["has_champion"].sum() > 0
    # Rewrite the outcomes of everything from fold 1's evaluation window on: folds 0 and 1 choose
    # the same champions; their in-sample figures do not move.
    later = research["window_start"].to_numpy() >= int(folds[1].evaluation_start.timestamp())
    rng = np.random.default_rng(0)
    pnl2 = pnl.copy()
    pnl2[:, later] = rng.normal(0.05, 0.02, (pnl.shape[0], int(later.sum())))
    _, champions2 = select(research, pnl2, ex, strategies, spec, horizon_s=3_000)
    keep = pl.col("fold") <= 1
    assert champions.filter(keep).equals(champions2.filter(keep))
    assert not champions.filter(~keep).equals(champions2.filter(~keep))


def test_out_of_sample_record_equals_the_bar_by_bar_replay():
    research, closes, offsets, strategies = world(5)
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    folds, champions = select(research, pnl, ex, strategies, wf.WalkForwardSpec(train_days=3, test_days=1, step_days=1), horizon_s=3_000)
    oos = wf.out_of_sample(research, pnl, ex, champions, folds)
    champions = pcomp.with_out_of_sample(champions, oos.by_fold)
    assert oos.trades.height > 10
    rep = pbt.replay(research, closes, offsets, champions)
    assert pbt.disagreements(champions, rep.trades) == []
    assert set(rep.trades["sample"].to_list()) == {"out_of_sample"}
    # Each trade's signal lies in its fold's evaluation window, after its selection window.
    fold = {f.fold: f for f in folds}
    for r in rep.trades.iter_rows(named=True):
        f = fold[r["fold"]]
        assert f.selection_end <= f.evaluation_start <= r["signal_ts"] < f.evaluation_end
    # The whole-sequence figures per range are the replay's, trade for trade.
    for band, fig in oos.by_range.items():
        mine = rep.trades.filter(pl.col("score_range") == band)["pnl"].to_list()
        assert fig == wf.figures_from_returns(mine) or fig["trades"] == 0
    doc = pcomp.composite_document(champions, min_trades=2, research=research, out_of_sample=oos.by_range)
    entries = [e for e in doc["score_ranges"].values() if e]
    assert entries and all(e["out_of_sample"]["trades"] == oos.by_range[b]["trades"] for b, e in doc["score_ranges"].items() if e)
    assert all(e["folds"] == len(folds) and len(e["by_fold"]) == len(folds) for e in entries)
    lines = pcomp.summary_lines(pcomp.champions_from_document(doc))
    assert any("in sample:" in line and "out of sample:" in line for line in lines)
    table = pcomp.summary_table(pcomp.champions_from_document(doc))
    assert "IS pnl" in table[0] and "OOS pnl" in table[0] and "DSR" in table[0] and len(table) == 2 + len(BANDS)
    for band, entry in doc["score_ranges"].items():
        if entry and entry["out_of_sample"]:
            line = next(x for x in table if x.strip().startswith(band))
            assert f"{entry['out_of_sample']['total_pnl'] * 100:+.1f}%" in line


def test_docs_explain_every_selection_figure_and_knob():
    from pathlib import Path

    from quant_assets.defs.pump.backtests import PortfolioConfig
    from quant_assets.defs.pump.strategy import CompositeConfig, OptimizationConfig
    from quant_assets.lib.pump.schemas import OOS_FIGURES_SCHEMA, OVERFITTING_FIGURES_SCHEMA

    text = (Path(__file__).resolve().parents[1] / "docs" / "pump.md").read_text()
    section = text.split("## In sample, out of sample, and known biases", 1)
    assert len(section) == 2, "docs/pump.md lacks its in-sample / out-of-sample section"
    body = section[1].split("\n## ", 1)[0]
    for name in [*OVERFITTING_FIGURES_SCHEMA, "sharpe_trials", "configurations_tried", "not_overfit", "in_sample", "out_of_sample"]:
        assert name in body, name
    assert "oos_" in body and "Biases that remain" in body
    for model in (OptimizationConfig, CompositeConfig, PortfolioConfig):
        for field in model.model_fields:
            assert f"`{field}`" in text, f"{model.__name__}.{field} is not documented in docs/pump.md"
    assert set(OOS_FIGURES_SCHEMA) == {f"oos_{k}" for k in ("trades", "total_pnl", "win_rate", "profit_factor", "max_drawdown")}
