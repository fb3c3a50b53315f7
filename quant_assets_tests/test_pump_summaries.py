"""The pump summaries the asset layer turns into metadata and checks: the portfolio ledger,
JSON-safe range figures, the evaluation window and the score ranges of a composite."""

import datetime as dt

import polars as pl

from quant_assets.lib.pump import backtest, composite, portfolio


def test_ledger_problems_catch_each_accounting_break():
    eq = pl.DataFrame({"cash": [100.0, 90.0], "positions_value": [0.0, 12.0], "equity": [100.0, 102.0]})
    trades = pl.DataFrame({"proceeds": [12.0], "cost": [10.0]})
    assert portfolio.ledger_problems(eq, trades, 100.0) == []
    assert portfolio.ledger_problems(eq.with_columns(pl.Series("cash", [100.0, -1.0])), trades, 100.0)[:2] == [
        "cash went negative",
        "equity != cash + positions",
    ]
    assert portfolio.ledger_problems(eq, trades.with_columns(pl.lit(11.0).alias("cost")), 100.0) == [
        "final equity 102.00 != capital + net PnL 101.00"
    ]
    assert portfolio.ledger_problems(eq.clear(), trades, 100.0) == []


def test_range_figures_json_nulls_an_infinite_profit_factor():
    trades = pl.DataFrame({"score_range": ["100-200", "100-200"], "pnl": [0.1, 0.2], "cumulative_pnl": [0.1, 0.3]})
    got = backtest.range_figures_json(trades)
    assert got["100-200"]["profit_factor"] is None and got["100-200"]["trades"] == 2
    assert backtest.range_figures_json(trades.clear()) == {}


def test_evaluation_window_spans_the_folds_or_says_in_sample():
    champions = pl.DataFrame(
        {
            "selection": ["walk_forward"] * 2,
            "evaluation_start": [dt.date(2025, 1, 10), dt.date(2025, 1, 20)],
            "evaluation_end": [dt.date(2025, 1, 19), dt.date(2025, 1, 29)],
        }
    )
    got = composite.evaluation_window(champions)
    assert (got["evaluation_start"], got["evaluation_end"]) == ("2025-01-10", "2025-01-29")
    assert composite.evaluation_window(champions.with_columns(pl.lit("in_sample").alias("selection")))["window"].startswith("in sample")


def test_score_ranges_cover_the_defaults_in_numeric_order():
    ranges = composite.score_ranges(pl.DataFrame({"score_range": ["800-900", "100-200"]}))
    assert ranges[0] == "100-200" and ranges[-1] == "800-900" and len(ranges) == 8
