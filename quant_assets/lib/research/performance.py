"""Performance statistics of daily simple returns, with empyrical's conventions.

Each function computes what the empyrical function of the same name computes (252 periods a
year, zero risk-free rate, sample standard deviation with ddof 1, historical VaR by linear
interpolation of the 5th percentile, CVaR as the mean of the lowest ``int((n-1)*0.05)+1``
returns, Sortino against a 0 required return, max drawdown from a peak that starts at the initial
value). The test suite checks every figure against empyrical-reloaded to 1e-10.

Returns are fractions (0.01 = 1 %); inputs hold no NaN (the callers align them first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl

from quant_assets.lib.calendar import TRADING_DAYS_PER_YEAR
from quant_assets.lib.research.universe import DELISTING_RETURN, held_returns

PERIODS_PER_YEAR = TRADING_DAYS_PER_YEAR
PORTFOLIO_SCHEMA = {"date": pl.Date, "ret_1d": pl.Float64, "names": pl.UInt32, "exits": pl.UInt32}

PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "name",
    "n_days",
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "var_95",
    "cvar_95",
    "max_drawdown",
    "alpha",
    "beta",
    "information_ratio",
)
PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    c: (pl.String() if c == "name" else pl.Int64() if c == "n_days" else pl.Float64()) for c in PERFORMANCE_COLUMNS
}
COLUMN_DOCS: dict[str, str] = {
    "name": "Ticker, or 'portfolio' for the equal-weight portfolio of market/daily_filtered",
    "n_days": "Days with a return for both the name and the benchmark (the sample every figure uses)",
    "total_return": "Compounded return over the sample (empyrical cum_returns_final), fraction",
    "annual_return": "Compound annual growth rate with 252 days a year (empyrical annual_return)",
    "annual_volatility": "Sample std of daily returns x sqrt(252) (empyrical annual_volatility)",
    "sharpe_ratio": "mean / sample std of daily returns x sqrt(252), zero risk-free rate (empyrical sharpe_ratio)",
    "sortino_ratio": "mean x 252 / downside deviation below 0 annualised (empyrical sortino_ratio)",
    "calmar_ratio": "annual_return / |max_drawdown| (empyrical calmar_ratio); null without a drawdown",
    "var_95": "Historical 1-day value at risk: 5th percentile of daily returns (empyrical value_at_risk, cutoff 0.05)",
    "cvar_95": "Mean of the worst 5 % of daily returns (empyrical conditional_value_at_risk, cutoff 0.05)",
    "max_drawdown": "Largest peak-to-trough fall of the compounded value, negative fraction (empyrical max_drawdown)",
    "alpha": "Annualised alpha against the benchmark: (1 + mean(r - beta r_b))^252 - 1 (empyrical alpha_beta, risk-free 0)",
    "beta": "Cov(r, r_b) / Var(r_b) with population moments (empyrical alpha_beta)",
    "information_ratio": "mean(r - r_b) / sample std(r - r_b) x sqrt(252) (empyrical excess_sharpe x sqrt(252))",
}


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _constant(x: np.ndarray) -> bool:
    return bool(x.size) and float(np.max(x)) == float(np.min(x))


def cum_returns_final(r) -> float:
    r = _arr(r)
    if r.size == 0:
        return math.nan
    return float(np.prod(r + 1.0) - 1.0)


def annual_return(r, periods: int = PERIODS_PER_YEAR) -> float:
    r = _arr(r)
    if r.size < 1:
        return math.nan
    years = r.size / periods
    ending = float(np.prod(r + 1.0))
    return ending ** (1.0 / years) - 1.0


def annual_volatility(r, periods: int = PERIODS_PER_YEAR) -> float:
    r = _arr(r)
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1)) * periods ** 0.5


def sharpe_ratio(r, periods: int = PERIODS_PER_YEAR) -> float:
    r = _arr(r)
    if r.size < 2:
        return math.nan
    sd = 0.0 if _constant(r) else float(np.std(r, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(np.mean(r), sd) * np.sqrt(periods))


def downside_risk(r, periods: int = PERIODS_PER_YEAR) -> float:
    r = _arr(r)
    if r.size < 1:
        return math.nan
    d = np.clip(r, -np.inf, 0.0)
    return float(np.sqrt(np.mean(np.square(d))) * np.sqrt(periods))


def sortino_ratio(r, periods: int = PERIODS_PER_YEAR) -> float:
    r = _arr(r)
    if r.size < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(np.mean(r) * periods, downside_risk(r, periods)))


def max_drawdown(r) -> float:
    r = _arr(r)
    if r.size < 1:
        return math.nan
    value = np.empty(r.size + 1)
    value[0] = 100.0
    value[1:] = 100.0 * np.cumprod(r + 1.0)
    peak = np.fmax.accumulate(value)
    return float(np.min(((value - peak) / peak)[1:]))


def calmar_ratio(r, periods: int = PERIODS_PER_YEAR) -> float:
    mdd = max_drawdown(r)
    if not mdd < 0:
        return math.nan
    out = annual_return(r, periods) / abs(mdd)
    return math.nan if math.isinf(out) else out


def value_at_risk(r, cutoff: float = 0.05) -> float:
    r = _arr(r)
    return float(np.percentile(r, 100 * cutoff))


def conditional_value_at_risk(r, cutoff: float = 0.05) -> float:
    r = _arr(r)
    r = r[~np.isnan(r)]
    if r.size == 0:
        return math.nan
    k = int((r.size - 1) * cutoff)
    return float(np.mean(np.partition(r, k)[: k + 1]))


def beta(r, b) -> float:
    r, b = _arr(r), _arr(b)
    if r.size < 1 or b.size < 2:
        return math.nan
    resid = b - np.mean(b)
    cov = np.mean(resid * r)
    var = np.mean(np.square(resid))
    if var < 1.0e-30:
        return math.nan
    return float(cov / var)


def alpha_beta(r, b, periods: int = PERIODS_PER_YEAR) -> tuple[float, float]:
    r, b = _arr(r), _arr(b)
    be = beta(r, b)
    if r.size < 2:
        return math.nan, be
    a = (np.mean(r - be * b) + 1.0) ** periods - 1.0
    return float(a), be


def excess_sharpe(r, b) -> float:
    r, b = _arr(r), _arr(b)
    if r.size < 2:
        return math.nan
    active = r - b
    te = 0.0 if _constant(active) else float(np.std(active, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(np.mean(active), te))


def information_ratio(r, b, periods: int = PERIODS_PER_YEAR) -> float:
    return excess_sharpe(r, b) * math.sqrt(periods)


def performance_row(name: str, r, b) -> dict[str, float | int | str | None]:
    r, b = _arr(r), _arr(b)
    a, be = alpha_beta(r, b)
    row = {
        "name": name,
        "n_days": int(r.size),
        "total_return": cum_returns_final(r),
        "annual_return": annual_return(r),
        "annual_volatility": annual_volatility(r),
        "sharpe_ratio": sharpe_ratio(r),
        "sortino_ratio": sortino_ratio(r),
        "calmar_ratio": calmar_ratio(r),
        "var_95": value_at_risk(r) if r.size else math.nan,
        "cvar_95": conditional_value_at_risk(r),
        "max_drawdown": max_drawdown(r),
        "alpha": a,
        "beta": be,
        "information_ratio": information_ratio(r, b),
    }
    # NaN and infinities (no variance, no drawdown) are undefined figures: stored as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def aligned_returns(returns: pl.DataFrame, name: str, benchmark: pl.DataFrame) -> pl.DataFrame:
    """``date, r, b`` on the dates where both the name (``returns``: date, ret_1d) and the
    benchmark (date, ret_1d) have a return."""
    left = returns.select("date", pl.col("ret_1d").alias("r")).drop_nulls()
    right = benchmark.select("date", pl.col("ret_1d").alias("b")).drop_nulls()
    return left.join(right, on="date", how="inner").filter(pl.col("r").is_finite() & pl.col("b").is_finite()).sort("date")


def equal_weight_portfolio(daily: pl.DataFrame, universe: pl.DataFrame, *, delisting_return: float = DELISTING_RETURN) -> pl.DataFrame:
    """``date, ret_1d, names, exits`` of the equal-weight portfolio of ``universe``
    (market/daily_filtered: ticker, date).

    Point in time: the names held over day D's return (close D-1 to close D) are those in the
    universe on D-1, the previous NYSE session, whose membership used data up to D-1 only.
    A held name without a bar on D stopped trading: it is sold at its last close times
    ``1 + delisting_return`` and that return enters D's average (``exits`` counts them), never
    dropped (see :func:`quant_assets.lib.research.universe.held_returns`).
    """
    from quant_assets.lib import calendar as cal

    if universe.is_empty() or daily.is_empty():
        return pl.DataFrame(schema=PORTFOLIO_SCHEMA)
    days = sorted(daily["date"].unique().to_list())
    prev = pl.DataFrame(
        {"date": days, "member_date": [cal.previous_trading_day(d) for d in days]},
        schema={"date": pl.Date, "member_date": pl.Date},
    )
    members = universe.select("ticker", pl.col("date").alias("member_date")).unique().join(prev, on="member_date").select("date", "ticker")
    held = held_returns(daily, members, delisting_return=delisting_return)
    return (
        held.group_by("date")
        .agg(pl.col("ret_1d").mean(), pl.len().alias("names"), pl.col("exit").sum().cast(pl.UInt32).alias("exits"))
        .sort("date")
        .select("date", "ret_1d", "names", "exits")
    )


def performance_table(series: Mapping[str, pl.DataFrame], benchmark: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """One row per name (``series``: name -> frame with date, ret_1d), and the aligned returns
    each row was computed from."""
    rows = []
    aligned: dict[str, pl.DataFrame] = {}
    for name, frame in series.items():
        a = aligned_returns(frame, name, benchmark)
        aligned[name] = a
        rows.append(performance_row(name, a["r"].to_numpy(), a["b"].to_numpy()))
    table = pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA) if rows else pl.DataFrame(schema=PERFORMANCE_SCHEMA)
    return table, aligned


def cumulative_lines(aligned: pl.DataFrame, name: str, benchmark: str) -> dict:
    """``{name: (dates, cumulative return), benchmark: (...)}`` of one aligned series (columns
    ``date``, ``r``, ``b``); empty when it has no row."""
    if not aligned.height:
        return {}
    dates = aligned["date"].to_list()
    return {
        name: (dates, ((aligned["r"] + 1).cum_prod() - 1).to_list()),
        benchmark: (dates, ((aligned["b"] + 1).cum_prod() - 1).to_list()),
    }


def portfolio_figures(portfolio: pl.DataFrame) -> dict:
    """Days, mean names held and delisting exits of the equal-weight portfolio."""
    if not portfolio.height:
        return {"portfolio_days": 0, "portfolio_mean_names": 0.0, "portfolio_exits": 0}
    return {
        "portfolio_days": int(portfolio.height),
        "portfolio_mean_names": float(portfolio["names"].mean()),
        "portfolio_exits": int(portfolio["exits"].sum()),
    }


def name_series(returns: pl.DataFrame, names) -> dict[str, pl.DataFrame]:
    """``{name: its (ticker, date, ret_1d) rows}``."""
    return {t: returns.filter(pl.col("ticker") == t) for t in names}
