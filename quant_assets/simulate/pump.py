"""Deterministic pump signals and the Binance trades around them, for the pump research group.

``simulate_pump`` writes into a landing zone:

* ``pump/signals/YYYY/MM/YYYY-MM-DD.csv`` for every signal day: signal id, symbol, timestamp,
  ``total_score`` (100-900) and the filter attributes (RSI, volume z-score, open-interest change);
* the data.binance.vision aggTrades zips (+ ``.CHECKSUM``) of every symbol-day a signal's
  window touches (one hour before the signal to 24 h after it).

The market: a few small-cap USDT pairs with per-second log-price random walks (volatility per
symbol, raised for a few hours after a signal) and, after each signal, a pump whose size leans
on the score, the volume z-score and the open-interest change (and shrinks when RSI is already
stretched); about a fifth of signals dump instead. Prices sit on each symbol's tick, so closes
tie and stay flat across quiet seconds.

Randomness is keyed: a day's signals come from ``(seed, day)``, a symbol's path from
``(seed, symbol, first day)``, a symbol-day's trades from ``(seed, symbol, day)``. The same spec
always writes the same bytes.

``pump_paths`` gives benchmark-sized 1-second closes (one path per signal, the signal at
second 0) from the same model, without going through trades and zips.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import zlib

import numpy as np
import polars as pl

from quant_assets.lib.pump.schemas import UTC_MS
from quant_assets.lib.pump.signals import signals_key
from quant_assets.lib.sources.binance import check_market
from quant_assets.simulate.binance import lot_decimals, simulate_day_trades, tick_decimals, write_day

SYMBOLS: tuple[str, ...] = (
    "WIFUSDT",
    "BOMEUSDT",
    "PEOPLEUSDT",
    "ACEUSDT",
    "XAIUSDT",
    "PORTALUSDT",
    "DYMUSDT",
    "MANTAUSDT",
    "PIXELUSDT",
    "SAGAUSDT",
    "TNSRUSDT",
    "NFPUSDT",
    "ALTUSDT",
    "AEVOUSDT",
    "ETHFIUSDT",
    "ZETAUSDT",
    "ONDOUSDT",
    "JTOUSDT",
    "MEMEUSDT",
    "1000BONKUSDT",
)
DAY_S = 86_400
WORLDS = ("pumps", "no_edge", "planted")
SIGNAL_COLUMNS = ("signal_id", "symbol", "timestamp", "total_score", "rsi", "volume_zscore", "oi_change_pct")


@dataclasses.dataclass(frozen=True)
class PumpSimSpec:
    start: dt.date  # first signal day (UTC)
    days: int = 8
    signals_per_day: int = 6
    symbols: int = 10
    seed: int = 7
    market: str = "futures"
    base_trades_per_s: float = 0.1
    header: bool | None = None  # None: the vendor's convention for the market
    window_s: int = DAY_S
    pre_window_s: int = 3_600
    # The market's edge. "pumps": pumps sized by the signal's attributes (the research world);
    # "no_edge": no pump at all, every price a martingale (any profit a strategy shows is luck);
    # "planted": only signals with total_score >= edge_score pump, by exactly edge_drift in log
    # price, rising linearly over edge_rise_s seconds and kept; prices are otherwise martingales.
    world: str = "pumps"
    edge_score: int = 500
    edge_drift: float = 0.03
    edge_rise_s: float = 1_800.0

    def __post_init__(self) -> None:
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {WORLDS}, got {self.world!r}")

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def universe(self) -> tuple[str, ...]:
        if not 1 <= self.symbols <= len(SYMBOLS):
            raise ValueError(f"symbols must be 1..{len(SYMBOLS)}, got {self.symbols}")
        return SYMBOLS[: self.symbols]


@dataclasses.dataclass
class PumpSimReport:
    signal_files: int
    signals: int
    zip_files: int
    trades: int
    keys: list[str]


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = zlib.crc32("|".join(str(p) for p in parts).encode())
    return np.random.default_rng([seed, key])


def _epoch_s(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def _pump_params(rng: np.random.Generator, score, rsi, volz, oi) -> dict[str, np.ndarray]:
    """Pump size and shape per signal, from its attributes and keyed noise."""
    n = len(score)
    q = (np.asarray(score, dtype=float) - 100.0) / 800.0
    amp = 0.005 + 0.06 * q + 0.008 * np.asarray(volz) + 0.002 * np.asarray(oi)
    amp -= 0.004 * np.clip(np.asarray(rsi) - 72.0, 0.0, None)
    amp = np.clip(amp, 0.0, None) * rng.lognormal(0.0, 0.6, n)
    dump = rng.random(n) < (0.45 - 0.2 * q)
    amp = np.where(dump, -(0.6 * amp + 0.01), amp)
    return {
        "amp": amp,
        "rise_s": rng.uniform(120.0, 5400.0, n),
        "decay_s": rng.uniform(3600.0, 72000.0, n),
        "keep": rng.uniform(0.0, 0.6, n),
    }


def _world(spec: PumpSimSpec, params: dict[str, np.ndarray], score: np.ndarray) -> dict[str, np.ndarray]:
    """The pump parameters of the spec's world (the random draws are made either way, so every
    world shares its signals)."""
    if spec.world == "pumps":
        return params
    n = len(score)
    edge = (np.asarray(score) >= spec.edge_score) if spec.world == "planted" else np.zeros(n, dtype=bool)
    return {
        "amp": np.where(edge, spec.edge_drift, 0.0),
        "rise_s": np.full(n, float(spec.edge_rise_s)),
        "decay_s": np.full(n, 1.0),
        "keep": np.ones(n),
    }


def _martingale_drift(spec: PumpSimSpec, step_sd: np.ndarray) -> np.ndarray:
    """The log drift that makes exp(log price) a martingale outside the pumps (-sigma^2 / 2 a
    second); none in the research world, whose paths predate the option."""
    if spec.world == "pumps":
        return np.zeros_like(step_sd)
    return -0.5 * step_sd**2


def _pump_shape(u: np.ndarray, rise: float, decay: float, keep: float) -> np.ndarray:
    """0 before the signal, a rise to 1 over ``rise`` seconds, then a decay towards ``keep``."""
    out = np.zeros_like(u, dtype=float)
    up = (u >= 0) & (u < rise)
    out[up] = u[up] / rise
    down = u >= rise
    out[down] = keep + (1.0 - keep) * np.exp(-(u[down] - rise) / decay)
    return out


def simulate_signals(spec: PumpSimSpec) -> pl.DataFrame:
    """The signals of every day of the spec, with their (hidden) pump parameters."""
    universe = spec.universe()
    frames = []
    for i in range(spec.days):
        day = spec.start + dt.timedelta(days=i)
        rng = _rng(spec.seed, "signals", day.isoformat())
        n = spec.signals_per_day
        ms = np.sort(rng.integers(0, DAY_S * 1000, n))
        score = np.clip(np.round(100 + 800 * rng.beta(1.3, 1.5, n)), 100, 900).astype(np.int32)
        rsi = np.round(np.clip(rng.normal(62, 12, n), 5, 98), 2)
        volz = np.round(rng.gamma(2.0, 0.9, n), 3)
        oi = np.round(rng.normal(3.0, 6.0, n), 3)
        params = _world(spec, _pump_params(rng, score, rsi, volz, oi), score)
        frames.append(
            pl.DataFrame(
                {
                    "signal_id": np.array([int(f"{day:%Y%m%d}") * 1000 + k for k in range(n)], dtype=np.int64),
                    "symbol": [universe[j] for j in rng.integers(0, len(universe), n)],
                    "signal_ts_ms": _epoch_s(day) * 1000 + ms,
                    "total_score": score,
                    "rsi": rsi,
                    "volume_zscore": volz,
                    "oi_change_pct": oi,
                    **{f"_{k}": v for k, v in params.items()},
                }
            )
        )
    df = pl.concat(frames)
    return df.with_columns(pl.col("signal_ts_ms").cast(UTC_MS).alias("signal_ts")).sort("signal_ts", "signal_id")


def _signal_csv(day_signals: pl.DataFrame) -> bytes:
    out = day_signals.select(
        "signal_id",
        "symbol",
        pl.col("signal_ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").alias("timestamp"),
        "total_score",
        "rsi",
        "volume_zscore",
        "oi_change_pct",
    )
    return out.write_csv().encode()


def _symbol_path(spec: PumpSimSpec, symbol: str, t0: int, n: int, events: pl.DataFrame):
    """Per-second log prices and trade intensities of one symbol over ``[t0, t0 + n)``."""
    rng = _rng(spec.seed, "path", symbol, spec.start.isoformat())
    p0 = float(np.exp(rng.uniform(math.log(0.005), math.log(40.0))))
    sigma = float(rng.uniform(0.0003, 0.0008))
    t = np.arange(n, dtype=np.float64)
    vol = np.ones(n)
    pump = np.zeros(n)
    busy = np.ones(n)
    for s_ms, amp, rise, decay, keep in events.select("signal_ts_ms", "_amp", "_rise_s", "_decay_s", "_keep").iter_rows():
        u = t - (s_ms / 1000.0 - t0)
        after = u >= 0
        ua = np.where(after, u, 0.0)
        vol += np.where(after, 2.0 * np.exp(-ua / 3600.0), 0.0)
        busy += np.where(after, 8.0 * np.exp(-ua / 1800.0), 0.0)
        pump += amp * _pump_shape(u, rise, decay, keep)
    step = sigma * vol
    log_price = math.log(p0) + np.cumsum(rng.normal(0.0, 1.0, n) * step + _martingale_drift(spec, step)) + pump
    return log_price, spec.base_trades_per_s * busy, sigma, p0


def simulate_pump(store, spec: PumpSimSpec) -> PumpSimReport:
    """Write the spec's signal files and the trade zips their windows need."""
    check_market(spec.market)
    signals = simulate_signals(spec)
    keys: list[str] = []
    for day in (spec.start + dt.timedelta(days=i) for i in range(spec.days)):
        day_signals = signals.filter(pl.col("signal_ts").dt.date() == day)
        key = signals_key(day)
        store.write_bytes(key, _signal_csv(day_signals))
        keys.append(key)
    t0 = _epoch_s(spec.start - dt.timedelta(days=1))
    n = (spec.days + 2) * DAY_S
    zips = trades = 0
    for symbol in spec.universe():
        events = signals.filter(pl.col("symbol") == symbol)
        if events.height == 0:
            continue
        needed: set[dt.date] = set()
        for s_ms in events["signal_ts_ms"].to_list():
            start = -((-s_ms) // 1000)
            lo, hi = start - spec.pre_window_s, start + spec.window_s - 1
            d = dt.datetime.fromtimestamp(lo, dt.UTC).date()
            while d <= dt.datetime.fromtimestamp(hi, dt.UTC).date():
                needed.add(d)
                d += dt.timedelta(days=1)
        log_price, intensity, sigma, p0 = _symbol_path(spec, symbol, t0, n, events)
        sym_base = (zlib.crc32(symbol.encode()) % 1000) * 10**9
        for day in sorted(needed):
            i0 = _epoch_s(day) - t0
            rng = _rng(spec.seed, "trades", symbol, day.isoformat())
            day_no = (day - dt.date(2020, 1, 1)).days
            df = simulate_day_trades(
                rng,
                _epoch_s(day),
                log_price[i0 : i0 + DAY_S],
                intensity[i0 : i0 + DAY_S],
                price_decimals=tick_decimals(p0),
                qty_decimals=lot_decimals(p0),
                first_id=sym_base + day_no * 5_000_000,
                first_trade_id=sym_base * 3 + day_no * 15_000_000,
                sigma=sigma,
            )
            keys.append(
                write_day(
                    store,
                    spec.market,
                    symbol,
                    day,
                    df,
                    header=spec.header,
                    price_decimals=tick_decimals(p0),
                    qty_decimals=lot_decimals(p0),
                )
            )
            zips += 1
            trades += df.height
    return PumpSimReport(spec.days, signals.height, zips, trades, keys)


def pump_paths(n_signals: int, seconds: int = DAY_S, seed: int = 7, days: int = 30, **world):
    """Benchmark and known-world inputs: ``(closes, offsets, signals)``: one tick-rounded
    1-second close path per signal (the signal at second 0; a second without a trade keeps the
    last close), over ``days`` of signal times, with the signals' scores and filter attributes.
    ``world``: ``PumpSimSpec``'s ``world``, ``edge_score``, ``edge_drift``, ``edge_rise_s``."""
    spec = PumpSimSpec(
        start=dt.date(2025, 1, 1), days=days, signals_per_day=max(1, math.ceil(n_signals / days)), seed=seed, symbols=len(SYMBOLS), **world
    )
    signals = simulate_signals(spec).head(n_signals)
    closes = np.empty(n_signals * seconds)
    t = np.arange(seconds, dtype=np.float64)
    for j, (sid, amp, rise, decay, keep) in enumerate(
        signals.select("signal_id", "_amp", "_rise_s", "_decay_s", "_keep").iter_rows()
    ):
        rng = _rng(seed, "bench-path", sid)
        p0 = float(np.exp(rng.uniform(math.log(0.005), math.log(40.0))))
        sigma = float(rng.uniform(0.0003, 0.0008))
        vol = 1.0 + 2.0 * np.exp(-t / 3600.0)
        step = sigma * vol
        lp = math.log(p0) + np.cumsum(rng.normal(0.0, 1.0, seconds) * step + _martingale_drift(spec, step)) + amp * _pump_shape(t, rise, decay, keep)
        price = np.round(np.exp(lp), tick_decimals(p0))
        traded = rng.random(seconds) < 1.0 - np.exp(-0.1 * (1.0 + 8.0 * np.exp(-t / 1800.0)))
        traded[0] = True
        idx = np.maximum.accumulate(np.where(traded, np.arange(seconds), 0))
        closes[j * seconds : (j + 1) * seconds] = price[idx]
    offsets = np.arange(n_signals + 1, dtype=np.int64) * seconds
    public = signals.select("signal_id", "symbol", "signal_ts", "total_score", "rsi", "volume_zscore", "oi_change_pct")
    return closes, offsets, public
