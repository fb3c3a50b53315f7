"""Equity research maths: indicators, MACD day summaries, labels, datasets, models, factor
analysis, backtests and performance statistics. Plain Python (polars, numpy, numba, sklearn,
LightGBM, statsmodels, vectorbt); no Dagster import."""
