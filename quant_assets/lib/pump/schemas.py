"""Column types and descriptions of every pump table (shown in the Dagster UI).

Units: prices in the quote asset (USDT for ``...USDT`` pairs), quantities in the base asset,
times in UTC. Rates in the optimizer's tables are fractions (``0.05`` = 5 %); columns whose
name ends in ``_pct`` are percent.
"""

from __future__ import annotations

import polars as pl

UTC_MS = pl.Datetime("ms", "UTC")
UTC_US = pl.Datetime("us", "UTC")

SIGNALS_SCHEMA: dict[str, pl.DataType] = {
    "signal_id": pl.Int64(),
    "symbol": pl.String(),
    "signal_ts": UTC_MS,
    "total_score": pl.Int32(),
    "rsi": pl.Float64(),
    "volume_zscore": pl.Float64(),
    "oi_change_pct": pl.Float64(),
}

AGG_TRADES_SCHEMA: dict[str, pl.DataType] = {
    "signal_id": pl.Int64(),
    "symbol": pl.String(),
    "agg_trade_id": pl.Int64(),
    "price": pl.Float64(),
    "quantity": pl.Float64(),
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
    "transact_time": UTC_US,
    "is_buyer_maker": pl.Boolean(),
}

DELTA_BARS_SCHEMA: dict[str, pl.DataType] = {
    "signal_id": pl.Int64(),
    "second_ts": pl.Int64(),
    "open_price": pl.Float64(),
    "high_price": pl.Float64(),
    "low_price": pl.Float64(),
    "close_price": pl.Float64(),
    "volume": pl.Float64(),
    "buy_volume": pl.Float64(),
    "sell_volume": pl.Float64(),
    "delta": pl.Float64(),
    "trade_count": pl.Int32(),
    "large_buy_count": pl.Int32(),
    "large_sell_count": pl.Int32(),
}

MINUTE_CANDLES_SCHEMA: dict[str, pl.DataType] = {
    "signal_id": pl.Int64(),
    "symbol": pl.String(),
    "open_time": UTC_MS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "buy_volume": pl.Float64(),
    "trade_count": pl.Int32(),
}

SIGNAL_ANALYSIS_SCHEMA: dict[str, pl.DataType] = {
    "signal_id": pl.Int64(),
    "symbol": pl.String(),
    "signal_ts": UTC_MS,
    "signal_date": pl.Date(),
    "window_start": pl.Int64(),
    "total_score": pl.Int32(),
    "score_range": pl.String(),
    "rsi": pl.Float64(),
    "volume_zscore": pl.Float64(),
    "oi_change_pct": pl.Float64(),
    "entry_price": pl.Float64(),
    "max_growth_pct": pl.Float64(),
    "max_drawdown_pct": pl.Float64(),
    "time_to_peak_seconds": pl.Int32(),
    "candles_data": pl.String(),
}

STRATEGY_SCHEMA: dict[str, pl.DataType] = {
    "strategy_id": pl.Int32(),
    "profile": pl.String(),
    "sl": pl.Float64(),
    "activation": pl.Float64(),
    "callback": pl.Float64(),
    "timeout_s": pl.Int64(),
    "entry_delay_s": pl.Int64(),
    "fee": pl.Float64(),
}

STRATEGY_MATRIX_SCHEMA: dict[str, pl.DataType] = {
    **STRATEGY_SCHEMA,
    "signal_id": pl.Int64(),
    "pnl": pl.Float64(),
    "exit_s": pl.Int64(),
}

FILTER_SCHEMA: dict[str, pl.DataType] = {
    "score_range": pl.String(),
    "score_min": pl.Int32(),
    "score_max": pl.Int32(),
    "rsi_min": pl.Float64(),
    "rsi_max": pl.Float64(),
    "volume_zscore_min": pl.Float64(),
    "volume_zscore_max": pl.Float64(),
    "oi_change_min": pl.Float64(),
    "oi_change_max": pl.Float64(),
}

FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "trades": pl.Int32(),
    "total_pnl": pl.Float64(),
    "win_rate": pl.Float64(),
    "profit_factor": pl.Float64(),
    "max_drawdown": pl.Float64(),
}

FOLD_SCHEMA: dict[str, pl.DataType] = {
    "fold": pl.Int32(),
    "selection": pl.String(),
    "selection_start": UTC_MS,
    "selection_end": UTC_MS,
    "evaluation_start": UTC_MS,
    "evaluation_end": UTC_MS,
}

OOS_FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "oos_trades": pl.Int32(),
    "oos_total_pnl": pl.Float64(),
    "oos_win_rate": pl.Float64(),
    "oos_profit_factor": pl.Float64(),
    "oos_max_drawdown": pl.Float64(),
}

PHASE2_RESULTS_SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int32(),
    **FILTER_SCHEMA,
    "filter_id": pl.Int64(),
    "equivalent_filters": pl.Int32(),
    "signals_passing": pl.Int32(),
    **STRATEGY_SCHEMA,
    **FIGURES_SCHEMA,
}

OPTIMIZATION_RESULTS_SCHEMA: dict[str, pl.DataType] = {
    **FOLD_SCHEMA,
    **PHASE2_RESULTS_SCHEMA,
    "configurations_tried": pl.Int64(),
    "sharpe_trials": pl.Int64(),
    "sharpe_trials_variance": pl.Float64(),
}

OVERFITTING_FIGURES_SCHEMA: dict[str, pl.DataType] = {
    "sharpe_per_trade": pl.Float64(),
    "sharpe_benchmark": pl.Float64(),
    "deflated_sharpe": pl.Float64(),
    "pbo": pl.Float64(),
    "pbo_configurations": pl.Int32(),
    "pbo_periods": pl.Int32(),
    "spa_pvalue": pl.Float64(),
}

COMPOSITE_SCHEMA: dict[str, pl.DataType] = {
    **FOLD_SCHEMA,
    "score_range": pl.String(),
    "has_champion": pl.Boolean(),
    **{k: v for k, v in FILTER_SCHEMA.items() if k != "score_range"},
    "filter_id": pl.Int64(),
    "signals_passing": pl.Int32(),
    **STRATEGY_SCHEMA,
    **FIGURES_SCHEMA,
    "configurations_tried": pl.Int64(),
    **OOS_FIGURES_SCHEMA,
    "sharpe_trials": pl.Int64(),
    "sharpe_trials_variance": pl.Float64(),
    **OVERFITTING_FIGURES_SCHEMA,
}

BACKTEST_TRADES_SCHEMA: dict[str, pl.DataType] = {
    "trade_no": pl.Int32(),
    "sample": pl.String(),
    "fold": pl.Int32(),
    "score_range": pl.String(),
    "signal_id": pl.Int64(),
    "symbol": pl.String(),
    "total_score": pl.Int32(),
    "strategy_id": pl.Int32(),
    "signal_ts": UTC_MS,
    "entry_time": UTC_MS,
    "entry_price": pl.Float64(),
    "exit_time": UTC_MS,
    "exit_price": pl.Float64(),
    "exit_reason": pl.String(),
    "hold_s": pl.Int64(),
    "pnl": pl.Float64(),
    "cumulative_pnl": pl.Float64(),
}

EQUITY_SCHEMA: dict[str, pl.DataType] = {
    "time": UTC_MS,
    "equity": pl.Float64(),
    "cash": pl.Float64(),
    "positions_value": pl.Float64(),
    "open_positions": pl.Int32(),
    "drawdown": pl.Float64(),
}

COLUMN_DOCS: dict[str, str] = {
    # signals
    "signal_id": "Signal identifier from the signal source (unique across days).",
    "symbol": "Binance symbol of the signal, e.g. WIFUSDT.",
    "signal_ts": "When the signal fired (UTC, millisecond precision).",
    "total_score": "Signal quality score from the signal source, 100-900.",
    "rsi": "RSI of the symbol when the signal fired (0-100), as the source reports it; null when absent.",
    "volume_zscore": "Volume z-score of the symbol when the signal fired (standard deviations above its mean); null when absent.",
    "oi_change_pct": "Open-interest change when the signal fired, percent; null when absent.",
    # agg trades
    "agg_trade_id": "Binance aggregate trade id (increases with time within a symbol).",
    "price": "Trade price, quote asset.",
    "quantity": "Trade size, base asset.",
    "first_trade_id": "First underlying trade id of the aggregate trade.",
    "last_trade_id": "Last underlying trade id of the aggregate trade.",
    "transact_time": "Trade time (UTC, microseconds; millisecond sources are scaled).",
    "is_buyer_maker": "True when the buyer's order was resting: the aggressor SOLD.",
    # delta bars
    "second_ts": "Start of the second (UTC Unix seconds); the first row is the signal's first whole second.",
    "open_price": "First trade price in the second; the last close when the second had no trade.",
    "high_price": "Highest trade price in the second; the last close when the second had no trade.",
    "low_price": "Lowest trade price in the second; the last close when the second had no trade.",
    "close_price": "Last trade price in the second, carried forward over seconds without trades.",
    "volume": "Base-asset volume traded in the second (0 without trades).",
    "buy_volume": "Volume of trades whose aggressor bought (is_buyer_maker false).",
    "sell_volume": "Volume of trades whose aggressor sold (is_buyer_maker true).",
    "delta": "buy_volume - sell_volume.",
    "trade_count": "Aggregate trades in the second (or minute).",
    "large_buy_count": "Buy trades larger than mean + 2 sample standard deviations of the sizes of the signal window's earlier trades (none before two).",
    "large_sell_count": "Sell trades larger than mean + 2 sample standard deviations of the sizes of the signal window's earlier trades (none before two).",
    # minute candles
    "open_time": "Start of the UTC minute (candles cover only seconds from the signal on).",
    "open": "First price of the minute, quote asset.",
    "high": "Highest price of the minute.",
    "low": "Lowest price of the minute.",
    "close": "Last price of the minute (carried forward over minutes without trades).",
    # signal analysis
    "signal_date": "UTC calendar day of the signal (its partition).",
    "window_start": "First second of the signal's 24 h window (UTC Unix seconds, the signal's first whole second).",
    "score_range": "Score band of the signal, e.g. '300-400' (lower bound inclusive; 800-900 includes 900).",
    "max_growth_pct": "Highest price within 24 h of the signal over entry_price - 1, percent.",
    "max_drawdown_pct": "Lowest price within 24 h of the signal over entry_price - 1, percent (<= 0).",
    "time_to_peak_seconds": "Seconds from the window start to the first second holding the 24 h high.",
    "candles_data": "JSON list of the 24 h of UTC-aligned 5-minute candles: [open_time_ms, open, high, low, close, volume].",
    # strategies
    "strategy_id": "Row of the exit-strategy grid (0-based, stable for a given grid Config).",
    "profile": "Trailing profile: SCALPING 0.4/0.2, BALANCED 4/2, MODERATE 7/3, CONSERVATIVE 10/4 (activation/callback, %).",
    "sl": "Stop loss below the entry price, fraction (0.05 = 5 %).",
    "activation": "Rise of the running high over the entry that arms the trailing exit, fraction.",
    "callback": "Fall from the running high that fires the trailing exit once armed, fraction.",
    "timeout_s": "Longest hold, seconds after entry.",
    "entry_delay_s": "Seconds after the signal's first second at which the position is entered.",
    "fee": "Round-trip fee deducted from each trade's return, fraction.",
    "pnl": "Trade return after the fee, fraction: exit / entry - 1 - fee (null: no bar to enter at).",
    "exit_s": "Seconds from entry to exit (-1: no entry).",
    # optimization results
    "fold": "Walk-forward fold (0-based, in time order); the one fold of an in-sample selection is 0.",
    "selection": "How champions were chosen: 'walk_forward' (selected on one window, reported on a later one) or 'in_sample' (selected and reported on the same signals).",
    "selection_start": "Start of the fold's selection window (UTC, inclusive): the signals the configurations were ranked on.",
    "selection_end": "End of the fold's selection window (UTC, exclusive); walk-forward selects only signals whose 24 h window closed by then.",
    "evaluation_start": "Start of the fold's evaluation window (UTC, inclusive): out-of-sample signals its champion trades; null in sample.",
    "evaluation_end": "End of the fold's evaluation window (UTC, exclusive); null in sample.",
    "configurations_tried": "(filter, strategy) configurations of the score range's grid the champion was chosen among (filters x strategies).",
    "oos_trades": "Out-of-sample trades of the fold's champion in its evaluation window (null in sample).",
    "oos_total_pnl": "Sum of the out-of-sample trades' returns, fraction (null in sample).",
    "oos_win_rate": "Share of out-of-sample trades with a return > 0 (null without trades).",
    "oos_profit_factor": "Out-of-sample winning returns / |losing returns| (inf without a loss).",
    "oos_max_drawdown": "Largest fall of the out-of-sample cumulative return within the fold, fraction.",
    "sharpe_trials": "Distinct (signal set, strategy) configurations of the fold's score range with a trade: the trials behind the deflated Sharpe ratio.",
    "sharpe_trials_variance": "Variance of those trials' Sharpe ratios per signal of the range.",
    "sharpe_per_trade": "The champion's in-sample Sharpe ratio per signal of its range (mean / sample standard deviation of the range's signals' returns, 0 where it did not trade).",
    "sharpe_benchmark": "SR0: the Sharpe ratio (same units) the best of sharpe_trials skill-less trials reaches by luck.",
    "deflated_sharpe": "Deflated Sharpe ratio (Bailey and Lopez de Prado 2014): probability the champion's true Sharpe ratio is above SR0; below 0.95 its edge is not distinguishable from selection luck.",
    "pbo": "Probability of backtest overfitting (CSCV) of choosing among the range's kept configurations on this window; about 0.5 or more: the choice carries no information.",
    "pbo_configurations": "Configurations in the PBO matrix (the ones phase 2 kept for the range and fold).",
    "pbo_periods": "Rows of the PBO matrix: the range's signals in the selection window.",
    "spa_pvalue": "Hansen's SPA p-value (consistent) of 'no kept configuration beats doing nothing'.",
    "sample": "'out_of_sample' (a walk-forward fold's champion trading signals it never saw) or 'in_sample' (the champion trading the signals it was chosen on).",
    "rank": "Rank within the fold and score range by total_pnl (1 = best); figures are in sample for the fold's selection window.",
    "score_min": "Lowest total_score of the filter (inclusive).",
    "score_max": "Highest total_score of the filter (exclusive, except 900 which is included).",
    "rsi_min": "Lowest RSI passing the filter (inclusive); null = no lower bound.",
    "rsi_max": "RSI the filter stops below (exclusive); null = no upper bound.",
    "volume_zscore_min": "Lowest volume z-score passing the filter (inclusive); null = no lower bound.",
    "volume_zscore_max": "Volume z-score the filter stops below (exclusive); null = no upper bound.",
    "oi_change_min": "Lowest open-interest change (%) passing the filter (inclusive); null = no lower bound.",
    "oi_change_max": "Open-interest change (%) the filter stops below (exclusive); null = no upper bound.",
    "filter_id": "Index of the filter in the filter grid (the first of its equivalent filters).",
    "equivalent_filters": "Filters of the grid that select exactly the same signals (the same figures).",
    "signals_passing": "Signals of the research set that pass the filter.",
    "trades": "Trades taken (a signal is skipped while an earlier accepted trade is still open).",
    "total_pnl": "Sum of the trades' returns, fraction (in optimization_results and composite_strategy: in sample, on the fold's selection window).",
    "win_rate": "Share of trades with a return > 0.",
    "profit_factor": "Sum of winning returns / |sum of losing returns| (inf without a loss).",
    "max_drawdown": "Largest fall of the cumulative summed return from its running peak (starting at 0), fraction.",
    "has_champion": "Whether the score range has a configuration with at least min_trades trades and total_pnl > 0.",
    # backtest trades
    "trade_no": "Trade number in time order.",
    "entry_time": "Entry: window start + entry_delay_s (UTC).",
    "entry_price": "Close of the entry second (in signal_analysis: of the window's first second, the reference of the 24 h figures).",
    "exit_time": "Exit second (UTC).",
    "exit_price": "Close of the exit second.",
    "exit_reason": "stop, trailing, timeout, or end_of_window (the data ended before the timeout).",
    "hold_s": "Seconds from entry to exit.",
    "cumulative_pnl": "Running sum of pnl within the score range's sleeve (or over all trades with one global position).",
    # equity
    "time": "Minute of the equity curve (UTC, the minute's close).",
    "equity": "Cash plus open positions at the minute's close, USDT.",
    "cash": "Cash after the minute's entries and exits, USDT.",
    "positions_value": "Open positions marked at the minute's close, USDT.",
    "open_positions": "Positions open at the minute's close.",
    "drawdown": "Fall of equity from its running peak, fraction.",
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``df`` with exactly ``schema``'s columns, in order and types (an empty frame when it has none)."""
    if df.width == 0:
        return empty(schema)
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise KeyError(f"missing columns {missing}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])
