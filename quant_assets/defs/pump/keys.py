"""Names of the pump group: asset keys, check names, the files it writes and its partition
batching -- importable by other modules and by tests without the asset code."""


from dagster import AssetKey

from quant_assets.lib.pump import trades

DOMAIN = "pump"
NAMES = (
    "signals",
    "agg_trades",
    "delta_bars_1s",
    "minute_candles",
    "signal_analysis",
    "strategy_matrix",
    "optimization_results",
    "composite_strategy",
    "backtest_trades",
    "portfolio_backtest",
)
KEYS = {name: AssetKey([DOMAIN, name]) for name in NAMES}
COMPOSITE_JSON = f"{DOMAIN}/composite_strategy.json"
BACKTEST_CSV = f"{DOMAIN}/backtest_trades.csv"
WINDOW_S = trades.WINDOW_S  # seconds of each signal's window (24 h)
# Signal-day partitions run a week per run in a backfill (a day of trades is a few million rows).
DAYS_PER_RUN = 7

QUARANTINE_CHECK = "quarantine_share"
COVERAGE_CHECK = "windows_covered"
SECONDS_CHECK = "one_row_per_second"
IDENTITY_CHECK = "bar_identities"
RESEARCH_CHECK = "research_set_not_empty"
REFERENCE_CHECK = "matches_bar_by_bar"
PROFITABLE_CHECK = "has_profitable_configurations"
CHAMPION_CHECK = "every_range_has_champion"
AGREEMENT_CHECK = "agrees_with_optimizer"
OVERFITTING_CHECK = "not_overfit"
EQUITY_CHECK = "equity_consistent"
