"""One row of behavioural features per client, from its trades, its positions and the bars.

Definitions (all over the published history, nothing after ``as_of``):

``momentum_beta_{1,5,20}d``
    Pearson correlation, pooled over the instruments the client traded and the days of the
    history, between the sign of the client's end-of-day position (+1 long, -1 short, 0 flat) and
    the instrument's trailing N-day log return up to the previous close, in units of its daily
    volatility times sqrt(N). The slope of a regression of one standardized variable on the
    other, hence in [-1, 1]: +1 = long after rises and short after falls (trend following),
    -1 = long after falls (buying dips). 0 when either side does not vary.
``holding_period_avg``
    Quantity-weighted mean holding period of the client's closed FIFO lots, calendar days.
``turnover``
    Trading frequency: share of the history's calendar days on which the client traded (0-1).
``aggressiveness``
    Share of the client's trades that were MARKET orders (0-1).
``lead_lag_alpha``
    Mean over the client's opening trades of side x (forward move - backward move), where the
    backward move is ln(trade price / close ``LEAD_LAG_DAYS`` days before the trade day) and the
    forward move is ln(close ``LEAD_LAG_DAYS`` days after / trade price), each in units of daily
    volatility times the square root of its window. Positive: the client trades ahead of moves
    (leading); negative: it trades after them (lagging). Near the edges of the history the
    windows shrink to what the history holds (at least one day each).
``exposure_concentration``
    JSON object {instrument: share of the client's time-averaged gross USD exposure}, shares
    summing to 1 (rounded to 4 decimals).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.book import Daily, Fifo, TradeArrays
from quant_assets.lib.client_intel.market import Panel
from quant_assets.lib.client_intel.spec import SYMBOLS

MOMENTUM_HORIZONS = (1, 5, 20)
LEAD_LAG_DAYS = 5

FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "as_of": pl.Date(),
    "n_trades": pl.Int64(),
    "momentum_beta_1d": pl.Float64(),
    "momentum_beta_5d": pl.Float64(),
    "momentum_beta_20d": pl.Float64(),
    "holding_period_avg": pl.Float64(),
    "turnover": pl.Float64(),
    "aggressiveness": pl.Float64(),
    "lead_lag_alpha": pl.Float64(),
    "exposure_concentration": pl.String(),
}


def instrument_vol(panel: Panel) -> np.ndarray:
    """Daily log-return volatility per instrument over the history."""
    return np.nanstd(panel.log_returns(), axis=1, ddof=1)


def trailing_z(panel: Panel, n: int) -> np.ndarray:
    """(instrument, day): ln(close[t-1] / close[t-1-n]) / (vol sqrt(n)); NaN where undefined."""
    close = panel.close
    out = np.full(close.shape, np.nan)
    if close.shape[1] > n + 1:
        out[:, n + 1 :] = np.log(close[:, n:-1] / close[:, : -n - 1])
    return out / (instrument_vol(panel)[:, None] * np.sqrt(n))


def momentum_betas(position: np.ndarray, traded: np.ndarray, panel: Panel) -> dict[int, np.ndarray]:
    x_all = np.sign(position)
    out = {}
    for n in MOMENTUM_HORIZONS:
        z = trailing_z(panel, n)
        valid = ~np.isnan(z)
        y = np.where(valid, z, 0.0)
        w = traded[:, :, None] & valid[None]  # (client, instrument, day)
        x = np.where(w, x_all, 0.0)
        cnt = w.sum(axis=(1, 2)).astype(np.float64)
        sx = x.sum(axis=(1, 2))
        sy = np.einsum("cit,it->c", w, y)
        sxy = np.einsum("cit,it->c", x, y)
        sxx = (x * x).sum(axis=(1, 2))
        syy = np.einsum("cit,it->c", w, y * y)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sxy - sx * sy / cnt
            vx = sxx - sx * sx / cnt
            vy = syy - sy * sy / cnt
            r = cov / np.sqrt(vx * vy)
        r = np.where((vx > 1e-12) & (vy > 1e-12) & (cnt > 2), r, 0.0)
        out[n] = np.clip(r, -1.0, 1.0)
    return out


def lead_lag(tr: TradeArrays, panel: Panel, n_clients: int) -> np.ndarray:
    T = panel.days
    ok = tr.opening & (tr.day >= 1) & (tr.day <= T - 2)
    d, i, p = tr.day[ok], tr.instrument[ok], tr.price[ok]
    # Windows shrink at the edges of the history rather than reach outside it.
    kb = np.minimum(LEAD_LAG_DAYS, d)
    kf = np.minimum(LEAD_LAG_DAYS, T - 1 - d)
    vol = instrument_vol(panel)[i]
    back = np.log(p / panel.close[i, d - kb]) / (vol * np.sqrt(kb))
    fwd = np.log(panel.close[i, d + kf] / p) / (vol * np.sqrt(kf))
    side = np.sign(tr.signed_qty[ok])
    total = np.bincount(tr.client[ok], weights=side * (fwd - back), minlength=n_clients)
    count = np.bincount(tr.client[ok], minlength=n_clients)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def concentration(exposure_usd: np.ndarray) -> list[str]:
    avg = np.abs(exposure_usd).mean(axis=2)  # (client, instrument)
    total = avg.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, avg / total, 0.0)
    out = []
    for row in np.round(share, 4):
        out.append(json.dumps({s: float(v) for s, v in zip(SYMBOLS, row, strict=True) if v > 0}))
    return out


def features_frame(tr: TradeArrays, fi: Fifo, dl: Daily, panel: Panel, client_ids: list[str]) -> pl.DataFrame:
    n = len(client_ids)
    T = panel.days
    n_inst = len(SYMBOLS)
    n_trades = np.bincount(tr.client, minlength=n)
    traded = np.zeros((n, n_inst), dtype=bool)
    traded[tr.client, tr.instrument] = True
    betas = momentum_betas(dl.position, traded, panel)
    closed = np.bincount(tr.client, weights=fi.closed_qty.astype(np.float64), minlength=n)
    held = np.bincount(tr.client, weights=fi.hold_qty_days.astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        holding = np.where(closed > 0, held / closed, np.nan)
        aggressiveness = np.where(n_trades > 0, np.bincount(tr.client, weights=tr.market, minlength=n) / n_trades, np.nan)
    trade_days = np.zeros((n, T), dtype=bool)
    trade_days[tr.client, tr.day] = True
    df = pl.DataFrame(
        {
            "client_id": client_ids,
            "as_of": np.full(n, panel.dates[-1]),
            "n_trades": n_trades.astype(np.int64),
            "momentum_beta_1d": betas[1],
            "momentum_beta_5d": betas[5],
            "momentum_beta_20d": betas[20],
            "holding_period_avg": holding,
            "turnover": trade_days.sum(axis=1) / T,
            "aggressiveness": aggressiveness,
            "lead_lag_alpha": lead_lag(tr, panel, n),
            "exposure_concentration": concentration(dl.exposure_usd),
        }
    )
    return df.with_columns(pl.col(pl.Float64).fill_nan(None)).cast(FEATURES_SCHEMA)
