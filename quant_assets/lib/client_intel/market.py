"""The price world the clients trade in: daily bars for six instruments, and market headlines.

Bars are on a calendar-day grid (FX and gold are quoted around the clock; the old database kept
one bar per calendar day too). Returns follow a one-factor model (a common US-dollar factor plus
an instrument's own shock) with slowly varying volatility and persistent trend regimes, so that
trends exist for trend followers and stretches away from the moving average exist for mean
reverters. The path is simulated from ``WARMUP_DAYS`` before the history to ``FUTURE_DAYS``
after it: clients arriving on the first day know the recent past, and a position opened near
the end is closed after ``as_of`` (which is why it is still open then). Only the history
itself is published.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.spec import INSTRUMENTS, SYMBOLS, Instrument, WorldSpec, instrument_arrays
from quant_assets.lib.market import OHLCV

WARMUP_DAYS = 40
FUTURE_DAYS = 120
TREND_MEAN_DAYS = 25.0
TREND_DRIFT = 0.15  # drift of a trending regime, in units of the instrument's daily volatility
VOL_PERSISTENCE = 0.97
VOL_OF_VOL = 0.25
MA_WINDOW = 20


@dataclasses.dataclass
class Market:
    """The simulated path over [history start - WARMUP_DAYS, as_of + FUTURE_DAYS].

    Arrays are (instrument, day) with day 0 = WARMUP_DAYS before the history's first day.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    offset: int  # index of the history's first day
    days: int  # days in the published history
    dates: np.ndarray  # datetime64[D] of the published history


def _decimals(tick: float) -> int:
    return int(round(-np.log10(tick)))


def simulate_market(spec: WorldSpec) -> Market:
    """The whole simulated path (published history plus hidden warm-up and future)."""
    rng = np.random.default_rng([spec.seed, 1])
    consts = instrument_arrays()
    n_inst = len(INSTRUMENTS)
    T = spec.days
    n = WARMUP_DAYS + T + FUTURE_DAYS
    sigma = consts["daily_vol"][:, None]

    # Slowly varying volatility: exp of a stationary AR(1) with unit variance.
    shocks = rng.standard_normal((n_inst, n))
    x = np.empty((n_inst, n))
    x[:, 0] = shocks[:, 0]
    scale = np.sqrt(1 - VOL_PERSISTENCE**2)
    for t in range(1, n):
        x[:, t] = VOL_PERSISTENCE * x[:, t - 1] + scale * shocks[:, t]
    vol = sigma * np.exp(VOL_OF_VOL * x - 0.5 * VOL_OF_VOL**2)

    # Trend regimes: -1, 0 or +1 for geometric durations.
    state = np.empty((n_inst, n))
    for i in range(n_inst):
        t = 0
        while t < n:
            length = int(rng.geometric(1.0 / TREND_MEAN_DAYS))
            state[i, t : t + length] = rng.choice((-1.0, 0.0, 1.0), p=(0.35, 0.30, 0.35))
            t += length
    drift = TREND_DRIFT * sigma * state

    beta = consts["usd_beta"][:, None]
    usd = rng.standard_normal((1, n))
    own = rng.standard_normal((n_inst, n))
    ret = drift + vol * (beta * usd + np.sqrt(1 - beta**2) * own)
    close_raw = consts["start_price"][:, None] * np.exp(np.cumsum(ret, axis=1) - ret[:, :1])
    prev = np.concatenate([close_raw[:, :1], close_raw[:, :-1]], axis=1)
    open_raw = prev * np.exp(0.05 * vol * rng.standard_normal((n_inst, n)))
    wick = 0.45 * vol
    high_raw = np.maximum(open_raw, close_raw) * np.exp(np.abs(wick * rng.standard_normal((n_inst, n))))
    low_raw = np.minimum(open_raw, close_raw) * np.exp(-np.abs(wick * rng.standard_normal((n_inst, n))))

    out = {}
    for name, arr in (("open", open_raw), ("high", high_raw), ("low", low_raw), ("close", close_raw)):
        rounded = np.empty_like(arr)
        for i, inst in enumerate(INSTRUMENTS):
            # Rounding is monotone, so low <= open, close <= high survives it.
            rounded[i] = np.round(arr[i], _decimals(inst.tick))
        out[name] = rounded
    base_volume = np.array([2.0e9 if inst.lot > 1 else 1.5e6 for inst in INSTRUMENTS])[:, None]
    z = np.abs(ret / vol)
    volume = np.round(base_volume * (0.6 + 0.4 * z) * np.exp(0.2 * rng.standard_normal((n_inst, n)))).astype(np.int64)
    return Market(
        open=out["open"],
        high=out["high"],
        low=out["low"],
        close=out["close"],
        volume=volume,
        offset=WARMUP_DAYS,
        days=T,
        dates=spec.dates(),
    )


MARKET_BARS_SCHEMA: dict[str, pl.DataType] = {"instrument": pl.String(), "date": pl.Date(), **OHLCV, "ret_1d": pl.Float64()}


def market_bars_frame(market: Market) -> pl.DataFrame:
    """The published bars: one row per instrument and calendar day of the history."""
    lo, hi = market.offset, market.offset + market.days
    n_inst = len(INSTRUMENTS)
    close = market.close[:, lo:hi]
    ret = np.full_like(close, np.nan)
    ret[:, 1:] = close[:, 1:] / close[:, :-1] - 1.0
    return pl.DataFrame(
        {
            "instrument": np.repeat(np.array(SYMBOLS), market.days),
            "date": np.tile(market.dates, n_inst),
            "open": market.open[:, lo:hi].ravel(),
            "high": market.high[:, lo:hi].ravel(),
            "low": market.low[:, lo:hi].ravel(),
            "close": close.ravel(),
            "volume": market.volume[:, lo:hi].ravel(),
            "ret_1d": ret.ravel(),
        },
        schema=MARKET_BARS_SCHEMA,
    ).with_columns(pl.col("ret_1d").fill_nan(None))


@dataclasses.dataclass
class Panel:
    """The published bars as dense (instrument, day) arrays: what every derived table is computed
    from (never the hidden warm-up or future)."""

    dates: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @property
    def days(self) -> int:
        return len(self.dates)

    def quote_to_usd(self) -> np.ndarray:
        """USD per unit of each instrument's quote currency, at each day's close."""
        base_is_usd = instrument_arrays()["base_is_usd"][:, None]
        return np.where(base_is_usd, 1.0 / self.close, 1.0)

    def base_to_usd(self) -> np.ndarray:
        """USD per unit of each instrument's base currency (or ounce), at each day's close."""
        base_is_usd = instrument_arrays()["base_is_usd"][:, None]
        return np.where(base_is_usd, 1.0, self.close)

    def log_returns(self) -> np.ndarray:
        """Daily log returns close to close; NaN on the first day."""
        out = np.full_like(self.close, np.nan)
        out[:, 1:] = np.log(self.close[:, 1:] / self.close[:, :-1])
        return out


class BarsError(ValueError):
    pass


def panel_from_bars(bars: pl.DataFrame) -> Panel:
    """Dense arrays from ``market_bars``; fails when an instrument or a day is missing or repeated."""
    missing = sorted(set(SYMBOLS) - set(bars["instrument"].unique().to_list()))
    if missing:
        raise BarsError(f"client_intel/market_bars has no rows for instrument(s) {missing}")
    bars = bars.filter(pl.col("instrument").is_in(list(SYMBOLS)))
    dates = np.sort(bars["date"].unique().to_numpy().astype("datetime64[D]"))
    full = np.arange(dates[0], dates[-1] + 1, dtype="datetime64[D]")
    if len(full) != len(dates) or bars.height != len(SYMBOLS) * len(dates):
        raise BarsError(
            f"client_intel/market_bars is not one row per instrument and calendar day from {dates[0]} to "
            f"{dates[-1]}: {bars.height} rows for {len(SYMBOLS)} x {len(full)} expected"
        )
    order = {s: i for i, s in enumerate(SYMBOLS)}
    b = bars.with_columns(pl.col("instrument").replace_strict(order, return_dtype=pl.Int64).alias("_i")).sort("_i", "date")
    shape = (len(SYMBOLS), len(dates))
    return Panel(
        dates=dates,
        open=b["open"].to_numpy().reshape(shape).astype(np.float64),
        high=b["high"].to_numpy().reshape(shape).astype(np.float64),
        low=b["low"].to_numpy().reshape(shape).astype(np.float64),
        close=b["close"].to_numpy().reshape(shape).astype(np.float64),
    )


def panel_from_market(market: Market) -> Panel:
    lo, hi = market.offset, market.offset + market.days
    return Panel(
        dates=market.dates,
        open=market.open[:, lo:hi],
        high=market.high[:, lo:hi],
        low=market.low[:, lo:hi],
        close=market.close[:, lo:hi],
    )


# --------------------------------------------------------------------------- headlines

HEADLINES_SCHEMA: dict[str, pl.DataType] = {
    "headline_id": pl.Int64(),
    "published_at": pl.Datetime("us"),
    "instrument": pl.String(),
    "headline": pl.String(),
    "source": pl.String(),
    "sentiment": pl.Float64(),
    "tags": pl.String(),
}

_SOURCES = ("Reuters", "Bloomberg", "Financial Times", "Dow Jones", "MarketWatch", "FXStreet")
_DRIVERS = {
    "EUR": ("ECB", "euro-area PMIs", "German inflation", "ECB minutes"),
    "GBP": ("the Bank of England", "UK CPI", "UK wage data", "gilt yields"),
    "JPY": ("the Bank of Japan", "Japanese intervention talk", "JGB yields", "Tokyo CPI"),
    "AUD": ("the RBA", "Chinese demand", "iron ore prices", "Australian jobs data"),
    "CHF": ("the SNB", "safe-haven flows", "Swiss inflation", "SNB reserves"),
    "XAU": ("central-bank buying", "real yields", "safe-haven demand", "ETF flows"),
    "USD": ("the Fed", "US payrolls", "US CPI", "Treasury yields"),
}
_UP = ("rallies", "climbs", "gains", "jumps", "advances", "firms")
_DOWN = ("slides", "falls", "drops", "slumps", "retreats", "weakens")
_FLAT = ("steadies", "holds range", "drifts", "consolidates")


def _pair(inst: Instrument) -> str:
    return "Gold" if inst.base == "XAU" else f"{inst.base}/{inst.quote}"


def headlines_frame(panel: Panel, spec: WorldSpec) -> pl.DataFrame:
    """``spec.n_headlines`` headlines on the bars' moves: a day's big move is more likely to make
    the news, and the sentiment follows the move's sign and size (from the base currency's side:
    positive when the pair rises).

    Sentiment = tanh(0.8 z) + N(0, 0.15), clipped to [-1, 1], with z the day's log return in units
    of the instrument's daily volatility. Published on the bar's date between 12:00 and 22:00 UTC.
    """
    rng = np.random.default_rng([spec.seed, 2])
    n_inst, T = panel.close.shape
    logret = panel.log_returns()
    sigma = instrument_arrays()["daily_vol"][:, None]
    z = np.nan_to_num(logret / sigma)
    weight = (0.25 + z**2).ravel()
    weight[np.isnan(logret).ravel()] = 0.0  # the first day has no move to report
    n = spec.n_headlines
    cells = rng.choice(weight.size, size=n, replace=True, p=weight / weight.sum())
    inst_idx, day_idx = np.divmod(cells, T)
    zz = z[inst_idx, day_idx]
    sentiment = np.clip(np.tanh(0.8 * zz) + 0.15 * rng.standard_normal(n), -1.0, 1.0)
    seconds = rng.integers(12 * 3600, 22 * 3600, size=n)
    published = panel.dates[day_idx].astype("datetime64[us]") + seconds.astype("timedelta64[s]")
    pick = rng.integers(0, 1 << 30, size=(n, 3))
    texts, tags, sources = [], [], []
    for k in range(n):
        inst = INSTRUMENTS[inst_idx[k]]
        side = inst.quote if inst.base in ("USD", "XAU") and inst.quote != "USD" else inst.base
        if inst.base == "XAU":
            side = "XAU"
        drivers = _DRIVERS[side]
        driver = drivers[pick[k, 0] % len(drivers)]
        verb_set = _UP if zz[k] > 0.5 else _DOWN if zz[k] < -0.5 else _FLAT
        verb = verb_set[pick[k, 1] % len(verb_set)]
        move = abs(logret[inst_idx[k], day_idx[k]]) * 100
        texts.append(f"{_pair(inst)} {verb} {move:.2f}% as markets weigh {driver}")
        topic = driver.replace("the ", "")
        tags.append(json.dumps(list(dict.fromkeys((inst.symbol, inst.base, inst.quote, topic)))))
        sources.append(_SOURCES[pick[k, 2] % len(_SOURCES)])
    df = pl.DataFrame(
        {
            "published_at": published,
            "instrument": np.array(SYMBOLS)[inst_idx],
            "headline": texts,
            "source": sources,
            "sentiment": np.round(sentiment, 4),
            "tags": tags,
        }
    ).sort("published_at", "instrument", maintain_order=True)
    return df.with_row_index("headline_id", offset=1).with_columns(pl.col("headline_id").cast(pl.Int64)).select(
        list(HEADLINES_SCHEMA)
    ).cast(HEADLINES_SCHEMA)
