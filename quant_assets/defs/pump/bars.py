"""Pump, bars: 1-second delta bars per signal window and minute candles
(``quant_assets.lib.pump.bars``)."""


import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.partitions import partition_dates, utc_days
from quant_assets.defs.pump.common import table_meta
from quant_assets.defs.pump.keys import DAYS_PER_RUN, IDENTITY_CHECK, KEYS, SECONDS_CHECK, WINDOW_S
from quant_assets.lib import frames
from quant_assets.lib.pump import bars, schemas, trades

DELTA_CHECKS = qc.AssetChecks(
    KEYS["delta_bars_1s"],
    qc.Check(
        SECONDS_CHECK,
        "Every signal with bars has exactly one row per second of its 24 h window, consecutive, with a finite "
        "positive price in every row.",
    ),
    qc.Check(IDENTITY_CHECK, "low <= open, close <= high; delta = buy - sell; volume = buy + sell; counts >= 0."),
)
CANDLE_CHECKS = qc.AssetChecks(KEYS["minute_candles"])


@house_asset(
    KEYS["delta_bars_1s"], "curated", {"polars", "numba", "parquet"}, "2",  # v2: large trades against earlier trades only
    partitions_def=utc_days, per_run=DAYS_PER_RUN, metadata=table_meta(schemas.DELTA_BARS_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"]), "agg_trades": AssetIn(key=KEYS["agg_trades"])}, checks=DELTA_CHECKS,
)
def delta_bars_1s(context: AssetExecutionContext, signals: pl.DataFrame, agg_trades: pl.DataFrame):
    """1-second bars of every signal's 24 h window with buy/sell delta: 86,400 rows per signal,
    ``second_ts`` from the signal's first whole second (UTC Unix seconds).

    OHLC of the second's trades; a second without trades carries the last close with zero
    volume. ``delta`` = aggressive buy volume - aggressive sell volume (``is_buyer_maker`` true
    is a sell). ``large_*_count``: trades above mean + 2 sample standard deviations of the
    window's trade sizes. A signal whose first seconds have no price is skipped and counted.
    """
    days = partition_dates(context.partition_keys)
    sig = schemas.conform(signals, schemas.SIGNALS_SCHEMA)
    run = bars.delta_bars_by_day(sig, schemas.conform(agg_trades, schemas.AGG_TRADES_SCHEMA), days, WINDOW_S)
    md.per_day(context, run.figures, closed=lambda d: None if run.figures[d]["signals"] else "no signal on this day")
    out = frames.stitch(*run.by_day.values(), schemas.empty(schemas.DELTA_BARS_SCHEMA))
    return DELTA_CHECKS.materialize(context, run.by_day, outcomes=_bar_outcomes(out), schema=out.schema)


def _bar_outcomes(out: pl.DataFrame) -> dict[str, qc.Outcome]:
    if not out.height:
        return {SECONDS_CHECK: qc.Outcome(True, "No bars in this run."), IDENTITY_CHECK: qc.Outcome(True, "No bars in this run.")}
    signals, bad = bars.second_violations(out, WINDOW_S)
    broken = bars.identity_violations(out)
    seconds = qc.Outcome(
        not bad,
        f"{len(bad)} signal(s) without exactly {WINDOW_S:,} priced consecutive seconds" if bad else f"{signals} signal(s) x {WINDOW_S:,} seconds.",
        {"signals": signals, "bad_signals": MetadataValue.json(bad[:50])},
    )
    identity = qc.Outcome(
        broken.height == 0,
        f"{broken.height} bar(s) break an identity" if broken.height else f"All {out.height:,} bars consistent.",
        {"bad_rows": broken.height, "first_bad": MetadataValue.md(md.markdown_preview(broken, 5)) if broken.height else ""},
    )
    return {SECONDS_CHECK: seconds, IDENTITY_CHECK: identity}


@house_asset(
    KEYS["minute_candles"], "curated", {"polars", "parquet"}, "1",
    partitions_def=utc_days, per_run=DAYS_PER_RUN, metadata=table_meta(schemas.MINUTE_CANDLES_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"]), "delta_bars_1s": AssetIn(key=KEYS["delta_bars_1s"])}, checks=CANDLE_CHECKS,
)
def minute_candles(context: AssetExecutionContext, signals: pl.DataFrame, delta_bars_1s: pl.DataFrame):
    """1-minute OHLCV of every signal's 24 h window (UTC-aligned minutes; the first one starts at
    the signal and may be partial), for the portfolio backtest. Built from ``delta_bars_1s``, so
    a minute without trades carries the last close with zero volume."""
    days = partition_dates(context.partition_keys)
    sig = schemas.conform(signals, schemas.SIGNALS_SCHEMA)
    symbols = dict(zip(sig["signal_id"].to_list(), sig["symbol"].to_list()))
    candles = bars.minute_candles(schemas.conform(delta_bars_1s, schemas.DELTA_BARS_SCHEMA), symbols)
    out = trades.by_signal_day(candles, sig, days)
    md.per_partition(
        context,
        {
            d: {"signals": frame["signal_id"].n_unique() if frame.height else 0, **({} if frame.height else md.no_data("no signal with bars on this day"))}
            for d, frame in out.items()
        },
    )
    return CANDLE_CHECKS.materialize(context, out, schema=candles.schema)
