"""Pump, bars: 1-second delta bars per signal window and minute candles
(``quant_assets.lib.pump.bars``)."""


import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.partitions import partition_dates, utc_days
from quant_assets.defs.pump.common import (
    pump_kwargs,
    table_meta,
)
from quant_assets.defs.pump.keys import (
    DAYS_PER_RUN,
    IDENTITY_CHECK,
    KEYS,
    SECONDS_CHECK,
    WINDOW_S,
)
from quant_assets.lib.pump import bars as pbars
from quant_assets.lib.pump import schemas as sch
from quant_assets.lib.pump import trades as ptr

# --------------------------------------------------------------------------- bars


@asset(
    key=KEYS["delta_bars_1s"],
    **pump_kwargs("curated", {"polars", "numba", "parquet"}, "2"),  # v2: large trades against earlier trades only
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=table_meta(sch.DELTA_BARS_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"]), "agg_trades": AssetIn(key=KEYS["agg_trades"])},
    check_specs=[
        qc.spec(
            KEYS["delta_bars_1s"],
            SECONDS_CHECK,
            "Every signal with bars has exactly one row per second of its 24 h window, consecutive, with a finite "
            "positive price in every row.",
        ),
        qc.spec(
            KEYS["delta_bars_1s"],
            IDENTITY_CHECK,
            "low <= open, close <= high; delta = buy - sell; volume = buy + sell; counts >= 0.",
        ),
        qc.schema_spec(KEYS["delta_bars_1s"]),
    ],
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
    sig = sch.conform(signals, sch.SIGNALS_SCHEMA).with_columns(ptr.window_start_expr())
    trades = sch.conform(agg_trades, sch.AGG_TRADES_SCHEMA)
    starts = dict(zip(sig["signal_id"].to_list(), sig["window_start"].to_list()))
    with_trades = set(trades["signal_id"].unique().to_list()) if trades.height else set()
    day_of = dict(zip(sig["signal_id"].to_list(), sig["signal_ts"].dt.date().to_list()))
    out, problems = {}, {}
    for d in days:
        # Built day by day: each partition's frame is assembled from its own signals only.
        todo = {s: t for s, t in starts.items() if s in with_trades and day_of[s] == d}
        day_trades = trades.filter(pl.col("signal_id").is_in(list(todo))) if todo else trades.clear()
        out[d.isoformat()], day_problems = pbars.delta_bars_for(day_trades, todo, WINDOW_S)
        problems.update(day_problems)
    no_trades = [s for s in starts if s not in with_trades]
    bars = pl.concat(list(out.values())) if out else sch.empty(sch.DELTA_BARS_SCHEMA)
    meta = {}
    for d in days:
        ids = [s for s, sd in day_of.items() if sd == d]
        meta[d.isoformat()] = {
            "signals": len(ids),
            "signals_with_bars": out[d.isoformat()]["signal_id"].n_unique() if out[d.isoformat()].height else 0,
            "skipped/no_trades_upstream": sum(1 for s in ids if s in no_trades),
            "skipped/unpriced_start": sum(1 for s in ids if s in problems),
            **({"skipped_signals": MetadataValue.json({str(s): problems[s] for s in ids if s in problems})} if any(s in problems for s in ids) else {}),
            **({} if ids else md.no_data("no signal on this day")),
        }
    md.per_partition(context, meta)
    return MaterializeResult(
        value=out,
        check_results=[
            _seconds_result(bars),
            _identity_result(bars),
            qc.schema_result(context, KEYS["delta_bars_1s"], bars.schema),
        ],
    )


def _seconds_result(bars: pl.DataFrame):
    if bars.height == 0:
        return qc.result(KEYS["delta_bars_1s"], SECONDS_CHECK, True, "No bars in this run.")
    step = bars.select(
        pl.col("signal_id"),
        ((pl.col("signal_id") == pl.col("signal_id").shift()) & (pl.col("second_ts").diff() != 1)).alias("gap"),
        (~pl.col("close_price").is_finite() | (pl.col("close_price") <= 0)).fill_null(True).alias("bad_price"),
    )
    per = step.group_by("signal_id").agg(pl.len().alias("rows"), pl.col("gap").sum(), pl.col("bad_price").sum())
    bad = per.filter((pl.col("rows") != WINDOW_S) | (pl.col("gap") > 0) | (pl.col("bad_price") > 0))
    return qc.result(
        KEYS["delta_bars_1s"],
        SECONDS_CHECK,
        bad.height == 0,
        f"{bad.height} signal(s) without exactly {WINDOW_S:,} priced consecutive seconds"
        if bad.height
        else f"{per.height} signal(s) x {WINDOW_S:,} seconds.",
        {"signals": per.height, "bad_signals": MetadataValue.json(bad["signal_id"].head(50).to_list())},
    )


def _identity_result(bars: pl.DataFrame):
    if bars.height == 0:
        return qc.result(KEYS["delta_bars_1s"], IDENTITY_CHECK, True, "No bars in this run.")
    tol = 1e-9 * pl.max_horizontal(pl.col("volume").abs(), pl.lit(1.0))
    bad = bars.filter(
        (pl.col("low_price") > pl.min_horizontal("open_price", "close_price"))
        | (pl.col("high_price") < pl.max_horizontal("open_price", "close_price"))
        | (pl.col("delta") != pl.col("buy_volume") - pl.col("sell_volume"))
        | ((pl.col("volume") - pl.col("buy_volume") - pl.col("sell_volume")).abs() > tol)
        | (pl.col("trade_count") < 0)
        | (pl.col("large_buy_count") + pl.col("large_sell_count") > pl.col("trade_count"))
    )
    return qc.result(
        KEYS["delta_bars_1s"],
        IDENTITY_CHECK,
        bad.height == 0,
        f"{bad.height} bar(s) break an identity" if bad.height else f"All {bars.height:,} bars consistent.",
        {"bad_rows": bad.height, "first_bad": MetadataValue.md(md.markdown_preview(bad, 5)) if bad.height else ""},
    )


@asset(
    key=KEYS["minute_candles"],
    **pump_kwargs("curated", {"polars", "parquet"}, "1"),
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=table_meta(sch.MINUTE_CANDLES_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"]), "delta_bars_1s": AssetIn(key=KEYS["delta_bars_1s"])},
    check_specs=[qc.schema_spec(KEYS["minute_candles"])],
)
def minute_candles(context: AssetExecutionContext, signals: pl.DataFrame, delta_bars_1s: pl.DataFrame):
    """1-minute OHLCV of every signal's 24 h window (UTC-aligned minutes; the first one starts at
    the signal and may be partial), for the portfolio backtest. Built from ``delta_bars_1s``, so
    a minute without trades carries the last close with zero volume."""
    days = partition_dates(context.partition_keys)
    sig = sch.conform(signals, sch.SIGNALS_SCHEMA)
    bars = sch.conform(delta_bars_1s, sch.DELTA_BARS_SCHEMA)
    candles = pbars.minute_candles(bars, dict(zip(sig["signal_id"].to_list(), sig["symbol"].to_list())))
    day_of = sig.select("signal_id", pl.col("signal_ts").dt.date().alias("_day"))
    joined = candles.join(day_of, on="signal_id", how="left")
    out = {d.isoformat(): joined.filter(pl.col("_day") == d).drop("_day") for d in days}
    md.per_partition(
        context,
        {
            d: {"signals": frame["signal_id"].n_unique() if frame.height else 0, **({} if frame.height else md.no_data("no signal with bars on this day"))}
            for d, frame in out.items()
        },
    )
    return MaterializeResult(value=out, check_results=[qc.schema_result(context, KEYS["minute_candles"], candles.schema)])


