"""Binance aggregate-trade files as data.binance.vision publishes them, from simulated prices.

``encode_agg_trades_zip`` writes one symbol-day exactly as the vendor does: a zip holding
``SYM-aggTrades-YYYY-MM-DD.csv`` and, beside it, ``.zip.CHECKSUM`` (``<sha256>  <zip name>``).
USDT-M futures files have the header line, ``true``/``false`` booleans and millisecond times;
spot files have no header, ``True``/``False``, an ``is_best_match`` column and, from 2025-01-01,
microsecond times.

``simulate_day_trades`` turns a per-second log-price path into aggregate trades: Poisson
arrivals per second (busier after a signal), prices on the symbol's tick around the path,
heavy-tailed sizes and an aggressor side leaning with the second's move.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import zipfile

import numpy as np
import polars as pl

from quant_assets.lib.sources.binance import HEADER, SPOT_EXTRA, agg_trades_key, checksum_key

SPOT_MICROS_FROM = dt.date(2025, 1, 1)


def tick_decimals(price: float) -> int:
    """Decimals of a symbol's tick: about five significant digits of its price."""
    return max(0, 4 - int(math.floor(math.log10(price))))


def lot_decimals(price: float) -> int:
    return int(min(3, max(0, math.floor(math.log10(price)) + 1)))


def simulate_day_trades(
    rng: np.random.Generator,
    day_start_s: int,
    log_price: np.ndarray,
    intensity: np.ndarray,
    *,
    price_decimals: int,
    qty_decimals: int,
    first_id: int,
    first_trade_id: int,
    sigma: float,
) -> pl.DataFrame:
    """Aggregate trades for one UTC day from its 86,400 per-second log prices and arrival rates."""
    n = log_price.shape[0]
    counts = rng.poisson(intensity)
    total = int(counts.sum())
    sec = np.repeat(np.arange(n, dtype=np.int64), counts)
    jitter = rng.normal(0.0, 0.3 * sigma, total)
    price = np.round(np.exp(log_price[sec] + jitter), price_decimals)
    tick = 10.0**-price_decimals
    price = np.maximum(price, tick)
    notional = rng.lognormal(math.log(150.0), 1.3, total)
    qty = np.round(notional / price, qty_decimals)
    qty = np.maximum(qty, 10.0**-qty_decimals)
    move = np.diff(log_price, prepend=log_price[0])[sec]
    p_sell = 0.5 - 0.35 * np.tanh(move / max(sigma, 1e-12))
    maker = rng.random(total) < p_sell
    # Trades inside a second in time order; times in microseconds.
    offs = np.sort(rng.integers(0, 1_000_000, total))
    order = np.lexsort((offs, sec))
    sec, offs = sec[order], offs[order]
    us = (day_start_s + sec) * 1_000_000 + offs
    fills = rng.integers(1, 4, total)
    last_ids = first_trade_id + np.cumsum(fills) - 1
    first_ids = last_ids - fills + 1
    return pl.DataFrame(
        {
            "agg_trade_id": np.arange(first_id, first_id + total, dtype=np.int64),
            "price": price,
            "quantity": qty,
            "first_trade_id": first_ids.astype(np.int64),
            "last_trade_id": last_ids.astype(np.int64),
            "transact_time_us": us.astype(np.int64),
            "is_buyer_maker": maker,
        }
    )


def encode_agg_trades_zip(
    trades: pl.DataFrame,
    market: str,
    symbol: str,
    day: dt.date,
    *,
    header: bool | None = None,
    price_decimals: int = 8,
    qty_decimals: int = 8,
) -> tuple[bytes, bytes]:
    """``(zip bytes, CHECKSUM bytes)`` of one symbol-day in the vendor's format."""
    spot = market == "spot"
    with_header = (not spot) if header is None else header
    micros = spot and day >= SPOT_MICROS_FROM
    ts = pl.col("transact_time_us") if micros else pl.col("transact_time_us") // 1000
    true, false = ("True", "False") if spot else ("true", "false")
    cols = [
        pl.col("agg_trade_id").cast(pl.String),
        _fixed("price", price_decimals),
        _fixed("quantity", qty_decimals),
        pl.col("first_trade_id").cast(pl.String),
        pl.col("last_trade_id").cast(pl.String),
        ts.cast(pl.String).alias("transact_time"),
        pl.when(pl.col("is_buyer_maker")).then(pl.lit(true)).otherwise(pl.lit(false)).alias("is_buyer_maker"),
    ]
    if spot:
        cols.append(pl.lit(true).alias(SPOT_EXTRA))
    text = trades.select(cols).write_csv(include_header=False, quote_style="never")
    if with_header:
        names = list(HEADER) + ([SPOT_EXTRA] if spot else [])
        text = ",".join(names) + "\n" + text
    csv_name = f"{symbol}-aggTrades-{day:%Y-%m-%d}.csv"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(csv_name, text)
    data = buf.getvalue()
    checksum = f"{hashlib.sha256(data).hexdigest()}  {symbol}-aggTrades-{day:%Y-%m-%d}.zip\n".encode()
    return data, checksum


def _fixed(name: str, decimals: int) -> pl.Expr:
    """A positive number as plain decimal text with ``decimals`` places (never 1e-05)."""
    units = (pl.col(name) * 10.0**decimals).round(0).cast(pl.Int64).cast(pl.String)
    if decimals == 0:
        return units.alias(name)
    padded = units.str.zfill(decimals + 1)
    return pl.concat_str(
        [padded.str.slice(0, padded.str.len_chars() - decimals), pl.lit("."), padded.str.slice(-decimals)]
    ).alias(name)


def write_day(store, market: str, symbol: str, day: dt.date, trades: pl.DataFrame, **kwargs) -> str:
    """Write one symbol-day zip and its .CHECKSUM into ``store``; returns the zip's key."""
    key = agg_trades_key(market, symbol, day)
    data, checksum = encode_agg_trades_zip(trades, market, symbol, day, **kwargs)
    store.write_bytes(key, data)
    store.write_bytes(checksum_key(key), checksum)
    return key
