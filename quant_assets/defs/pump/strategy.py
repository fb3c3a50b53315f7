"""Pump, strategy: phase 2 (filters per score range, walk-forward folds) and the composite
strategy with its out-of-sample record and overfitting measures (``quant_assets.lib.pump.filters``,
``.walkforward``, ``.composite``, ``.overfitting``)."""

import dataclasses
import time

import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.pump.common import fail, table_meta
from quant_assets.defs.pump.keys import CHAMPION_CHECK, COMPOSITE_JSON, KEYS, OVERFITTING_CHECK, PROFITABLE_CHECK, WINDOW_S
from quant_assets.defs.resources import Lake
from quant_assets.lib.pump import composite, filters, optimizer, overfitting, schemas, walkforward

RESULT_CHECKS = qc.AssetChecks(
    KEYS["optimization_results"],
    qc.Check(PROFITABLE_CHECK, "At least one (filter, strategy) configuration is profitable with min_trades trades.", blocking=False),
)
COMPOSITE_CHECKS = qc.AssetChecks(
    KEYS["composite_strategy"],
    qc.Check(
        CHAMPION_CHECK,
        "Every score range has a champion with at least min_trades trades (a warning: a range without one trades nothing).",
        blocking=False,
    ),
    qc.Check(
        OVERFITTING_CHECK,
        "Warns when a champion's probability of backtest overfitting is above 0.5 or its deflated Sharpe ratio below "
        "0.95: its in-sample figures are indistinguishable from the luck of choosing among many configurations.",
        blocking=False,
    ),
)


@mirrors(walkforward.WalkForwardSpec)
@mirrors(filters.FilterGrid, rename={"score_bands": "bands", "volume_zscore_cuts": "volume_cuts", "oi_change_cuts": "oi_cuts"})
class OptimizationConfig(BaseModel):
    score_bands: list[int] = Field(
        default=list(filters.FilterGrid.bands), description="Lower bounds of the score ranges (each 100 wide; 800-900 includes 900)."
    )
    volume_zscore_cuts: list[float] = Field(default=list(filters.FilterGrid.volume_cuts), description="Volume z-score cut points.")
    oi_change_cuts: list[float] = Field(default=list(filters.FilterGrid.oi_cuts), description="Open-interest change (%) cut points.")
    min_trades: int = Field(default=3, ge=1, description="Fewest trades for a configuration to be kept.")
    max_strategies_per_filter: int = Field(
        default=5, ge=1, description="Most profitable strategies kept per distinct filtered signal set."
    )
    max_results_per_range: int = Field(
        default=5000, ge=0, description="Rows kept per score range, best total PnL first (0 = every kept candidate)."
    )

    def walk_forward(self) -> walkforward.WalkForwardSpec:
        return lib_params(self, walkforward.WalkForwardSpec)

    def grid(self) -> filters.FilterGrid:
        return lib_params(self, filters.FilterGrid)


@house_asset(
    KEYS["optimization_results"], "analysis", {"numba", "parquet"}, "2",
    metadata=table_meta(schemas.OPTIMIZATION_RESULTS_SCHEMA),
    ins={"strategy_matrix": AssetIn(key=KEYS["strategy_matrix"]), "signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    checks=RESULT_CHECKS, config=OptimizationConfig,
)
def optimization_results(context: AssetExecutionContext, strategy_matrix: pl.DataFrame, signal_analysis: pl.DataFrame):
    """Phase 2 of the optimizer: the profitable (filter, strategy) configurations, best total PnL
    first within each score range.

    A filter is a score range and ranges of RSI, volume z-score and open-interest change (every
    pair of cut points; default 8 x 55 x 21 x 21 = 194,040 filters). For each filter and
    strategy the passing signals are walked in time order, a trade taken only when no earlier
    accepted trade is still open; figures: trades, total PnL (sum of returns, fraction), win
    rate, profit factor, max drawdown of the cumulative return. Kept: up to
    ``max_strategies_per_filter`` per distinct signal set and ``max_results_per_range`` per range,
    each with at least ``min_trades`` trades and total PnL > 0.
    """
    config = parse(OptimizationConfig, context)
    research = schemas.conform(signal_analysis, schemas.SIGNAL_ANALYSIS_SCHEMA)
    strategies, pnl, ex = _matrix_arrays(strategy_matrix, research)
    try:
        grid = config.grid()
        spec = config.walk_forward()
        folds = walkforward.make_folds(research["signal_date"].min(), research["signal_date"].max(), spec)
    except ValueError as exc:
        raise fail(f"optimization_results: {exc}") from None
    t0 = time.perf_counter()
    sel = walkforward.select_per_fold(
        research, pnl, ex, strategies, grid, folds, spec.selection, horizon_s=WINDOW_S, min_trades=config.min_trades,
        per_filter=config.max_strategies_per_filter, max_per_range=config.max_results_per_range,
    )
    seconds = time.perf_counter() - t0
    results = sel.results
    run_meta = {
            "selection": spec.selection,
            "folds": len(folds),
            "walk_forward": MetadataValue.json(dataclasses.asdict(spec)),
            "by_fold": MetadataValue.json(sel.stats),
            "filters": grid.size,
            "filters_per_range": grid.per_band,
            "strategies": strategies.height,
            "configurations_per_fold": grid.size * strategies.height,
            "evaluated_configurations": sel.evaluated_pairs,
            "profitable_configurations": sel.profitable_pairs,
            "kept_rows": results.height,
            "figures": f"{spec.selection}: each row's figures are in sample for its fold's selection window",
            "seconds": round(seconds, 3),
    }
    outcome = qc.Outcome(
        results.height > 0,
        f"{sel.profitable_pairs:,} profitable configuration(s) over {len(folds)} fold(s); {results.height:,} kept."
        if results.height
        else "No configuration is profitable with enough trades.",
        {"profitable_configurations": sel.profitable_pairs},
    )
    return RESULT_CHECKS.materialize(context, results, run_meta, {PROFITABLE_CHECK: outcome})


class CompositeConfig(BaseModel):
    min_trades: int = Field(default=5, ge=1, description="Fewest trades for a score range's champion.")
    spa_reps: int = Field(
        default=200,
        ge=0,
        description="Bootstrap replications of Hansen's SPA test per fold (0 skips it; on the default grids and 300 "
        "signals each 100 cost about 9 s a fold).",
    )


@house_asset(
    KEYS["composite_strategy"], "analysis", {"json", "parquet"}, "2",
    metadata=table_meta(schemas.COMPOSITE_SCHEMA, file=f"lake: {COMPOSITE_JSON}"),
    ins={
        "optimization_results": AssetIn(key=KEYS["optimization_results"]),
        "signal_analysis": AssetIn(key=KEYS["signal_analysis"]),
        "strategy_matrix": AssetIn(key=KEYS["strategy_matrix"]),
    },
    checks=COMPOSITE_CHECKS, config=CompositeConfig,
)
def composite_strategy(
    context: AssetExecutionContext,
    optimization_results: pl.DataFrame,
    signal_analysis: pl.DataFrame,
    strategy_matrix: pl.DataFrame,
    lake: Lake,
):
    """The champion rules per score range (100-200 ... 800-900), written to
    ``composite_strategy.json`` in the lake: per walk-forward fold, each range's best
    configuration (filter bounds, exit strategy) with at least ``min_trades`` trades on the
    fold's selection window, its in-sample figures there, and its out-of-sample figures on the
    fold's evaluation window. The deployed rule of a range is its latest fold's champion. One
    row per (fold, range) here.
    """
    config = parse(CompositeConfig, context)
    results = schemas.conform(optimization_results, schemas.OPTIMIZATION_RESULTS_SCHEMA)
    research = schemas.conform(signal_analysis, schemas.SIGNAL_ANALYSIS_SCHEMA)
    _, pnl, ex = _matrix_arrays(strategy_matrix, research)
    run = composite.build_composite(results, research, pnl, ex, min_trades=config.min_trades, spa_reps=config.spa_reps, horizon_s=WINDOW_S)
    lake.store().write_bytes(COMPOSITE_JSON, composite.to_json(run.document))
    run_meta = {
        "selection": run.selection,
        "composite_strategy.json": MetadataValue.json(run.document),
        "file": MetadataValue.path(lake.describe(COMPOSITE_JSON)),
        "champions": int(run.deployed["has_champion"].sum()),
        "out_of_sample_signals": run.out_of_sample.signals_evaluated if run.out_of_sample is not None else 0,
        "overfitting": MetadataValue.md(overfitting.markdown(run.measured)),
        "overfitting_seconds": round(run.overfitting_seconds, 3),
        "summary": MetadataValue.md("\n".join(f"- {line}" for line in composite.summary_lines(run.deployed))),
    }
    missing, overfit = run.missing_ranges, run.warnings
    outcomes = {
        CHAMPION_CHECK: qc.Outcome(
            not missing, f"No champion for {missing}" if missing else "Every score range has a champion.", {"ranges_without_champion": MetadataValue.json(missing)}
        ),
        OVERFITTING_CHECK: qc.Outcome(
            not overfit, "; ".join(overfit[:8]) if overfit else "Every champion has PBO <= 0.5 and DSR >= 0.95.", {"flagged": MetadataValue.json(overfit)}
        ),
    }
    return COMPOSITE_CHECKS.materialize(context, run.champions, run_meta, outcomes)


def _matrix_arrays(matrix: pl.DataFrame, research: pl.DataFrame):
    try:
        return optimizer.matrix_arrays(matrix, research)
    except ValueError as exc:
        raise fail(str(exc)) from None
