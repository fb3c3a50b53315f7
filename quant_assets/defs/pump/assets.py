"""Pump research: signals -> Binance aggregate trades -> 1-second delta bars -> the two-phase
exit-strategy optimizer -> composite strategy -> detailed and portfolio backtests.

Signals, trades, bars and minute candles are partitioned by the signal's UTC day (crypto trades
every day); each partition holds the rows of every signal of that day, keyed by ``signal_id``.
The research stage (signal_analysis onwards) works on one research set -- the selected signals
of the last ``days`` days -- and is unpartitioned.
"""

import dataclasses
import datetime as dt
import io
import time

import numpy as np
import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.partitions import partition_dates, utc_days
from quant_assets.defs.resources import HttpClientResource, Lake, LandingZone, WarehouseResource, partition_file
from quant_assets.lib.pump import analysis as pan
from quant_assets.lib.pump import backtest as pbt
from quant_assets.lib.pump import bars as pbars
from quant_assets.lib.pump import composite as pcomp
from quant_assets.lib.pump import filters as pfil
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump import overfitting as pof
from quant_assets.lib.pump import portfolio as pport
from quant_assets.lib.pump import schemas as sch
from quant_assets.lib.pump import signals as psig
from quant_assets.lib.pump import trades as ptr
from quant_assets.lib.pump import walkforward as wf
from quant_assets.lib.sources import binance

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
# Signal-day partitions run a week per run in a backfill (a day of trades is a few million rows).
DAYS_PER_RUN = 7
WINDOW_S = ptr.WINDOW_S

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


def _meta(schema: dict, **extra) -> dict:
    return md.table_definition_metadata(schema, sch.COLUMN_DOCS, **extra)


def _kwargs(layer: str, kinds: set[str], version: str, **tags) -> dict:
    return md.asset_kwargs(DOMAIN, layer=layer, kinds=kinds, code_version=version, tags=tags or None)


def read_lake_partition(lake: Lake, key: AssetKey, partition: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    """One stored partition (only ``columns``), or None when it was never materialized."""
    path = partition_file(key, partition)
    store = lake.store()
    local = store.local_path(path)
    if local is not None:
        return pl.read_parquet(local, columns=columns) if local.is_file() else None
    if not store.exists(path):
        return None
    return pl.read_parquet(io.BytesIO(store.read_bytes(path)), columns=columns)


def _by_day(frame: pl.DataFrame, days: list[dt.date], column: str = "signal_ts") -> dict[str, pl.DataFrame]:
    """A range output split into one frame per partition (every partition gets one)."""
    day_col = pl.col(column).dt.date()
    return {d.isoformat(): frame.filter(day_col == d) for d in days}


def _fail(description: str, **metadata) -> Failure:
    return Failure(description=description, metadata={k: str(v) for k, v in metadata.items()})


# --------------------------------------------------------------------------- signals


class SignalsConfig(BaseModel):
    source: str = Field(
        default="landing",
        description="'landing': pump/signals/YYYY/MM/YYYY-MM-DD.csv in the landing zone; 'warehouse': the "
        "table named by warehouse_table.",
    )
    warehouse_table: str = Field(
        default="pump_signals",
        description="Warehouse table with columns signal_id, symbol, timestamp (UTC), total_score, rsi, "
        "volume_zscore, oi_change_pct (source='warehouse').",
    )
    max_rejected_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The quarantine_share check fails (blocking downstream) when more than this fraction of a "
        "day's rows break a rule.",
    )


@asset(
    key=KEYS["signals"],
    **_kwargs("raw", {"polars", "parquet"}, "1", vendor="signal-source"),
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_meta(sch.SIGNALS_SCHEMA),
    check_specs=[
        qc.spec(
            KEYS["signals"],
            QUARANTINE_CHECK,
            "Each day's share of quarantined signal rows is within max_rejected_fraction.",
        ),
        qc.schema_spec(KEYS["signals"]),
    ],
    config_schema=config_schema(SignalsConfig),
)
def signals(context: AssetExecutionContext, landing: LandingZone, lake: Lake, warehouse: WarehouseResource):
    """Pump signal events of a UTC day: one row per signal (id, symbol, time, ``total_score``
    100-900, RSI, volume z-score, open-interest change %).

    Source: the landing zone's ``pump/signals/YYYY/MM/YYYY-MM-DD.csv`` (or a warehouse table).
    Rows breaking a rule (``quant_assets.lib.pump.signals``) are quarantined under
    ``quarantine/pump/signals/`` in the lake and counted per rule; a day's missing file fails.
    """
    config = parse(SignalsConfig, context)
    days = partition_dates(context.partition_keys)
    frames, meta, shares = [], {}, {}
    for day in days:
        if config.source == "landing":
            key = psig.signals_key(day)
            source = landing.describe(key)
            store = landing.store()
            if not store.exists(key):
                raise _fail(f"{source}: [missing_file] no signal file for {day} (not exported yet?)", file=source)
            try:
                parsed = psig.read_signals_csv(store.read_bytes(key), source, day)
            except psig.SignalFileError as exc:
                raise _fail(str(exc), file=source, rule=exc.rule) from None
        elif config.source == "warehouse":
            source = f"warehouse table {config.warehouse_table}"
            parsed = _warehouse_signals(warehouse, config.warehouse_table, day, source)
        else:
            raise _fail(f"unknown signals source {config.source!r}; choose 'landing' or 'warehouse'")
        qkey = f"quarantine/pump/signals/{day.isoformat()}.parquet"
        read = parsed.rows.height + parsed.rejected.height
        shares[day.isoformat()] = parsed.rejected.height / read if read else 0.0
        meta[day.isoformat()] = {
            "source": source,
            "rows_read": read,
            "signals": parsed.rows.height,
            "symbols": parsed.rows["symbol"].n_unique(),
            "rows_quarantined": parsed.rejected.height,
            **{f"quarantined/{rule}": n for rule, n in parsed.rule_counts.items()},
            **({} if parsed.rows.height else md.no_data("no signal fired on this day")),
        }
        if parsed.rejected.height:
            lake.write_frame(qkey, parsed.rejected)
            meta[day.isoformat()]["quarantine_file"] = MetadataValue.path(lake.describe(qkey))
        elif lake.exists(qkey):
            lake.delete(qkey)
        frames.append(parsed.rows)
    md.per_partition(context, meta)
    out = pl.concat(frames) if frames else sch.empty(sch.SIGNALS_SCHEMA)
    over = {d: round(s, 4) for d, s in shares.items() if s > config.max_rejected_fraction}
    return MaterializeResult(
        value=_by_day(out, days),
        check_results=[
            qc.result(
                KEYS["signals"],
                QUARANTINE_CHECK,
                not over,
                f"Quarantined share above {config.max_rejected_fraction:.1%} on {sorted(over)}"
                if over
                else f"Every day within the {config.max_rejected_fraction:.1%} limit.",
                {"days_over_limit": MetadataValue.json(over), "max_share": round(max(shares.values(), default=0.0), 4)},
            ),
            qc.schema_result(context, KEYS["signals"], out.schema),
        ],
    )


def _warehouse_signals(warehouse: WarehouseResource, table: str, day: dt.date, source: str) -> psig.ParsedSignals:
    from quant_assets.lib.warehouse import WarehouseError, quote_identifier

    lo = dt.datetime.combine(day, dt.time())
    hi = lo + dt.timedelta(days=1)
    try:
        with warehouse.connect() as wh:
            raw = wh.query(
                "SELECT signal_id, symbol, \"timestamp\", total_score, rsi, volume_zscore, oi_change_pct "
                f"FROM {quote_identifier(table)} WHERE \"timestamp\" >= %s AND \"timestamp\" < %s ORDER BY \"timestamp\"",
                (lo, hi),
            )
    except (WarehouseError, ValueError) as exc:
        raise _fail(f"{source}: cannot read signals for {day}: {exc}", table=table) from None
    except Exception as exc:  # noqa: BLE001 - the drivers raise their own error types
        raise _fail(f"{source}: cannot read signals for {day}: {type(exc).__name__}: {exc}", table=table) from None
    try:
        return psig.normalise(raw, source, day)
    except psig.SignalFileError as exc:
        raise _fail(str(exc), table=table) from None


# --------------------------------------------------------------------------- aggregate trades


class AggTradesConfig(BaseModel):
    source: str = Field(
        default="landing",
        description="'landing': data.binance.vision daily zips already in the landing zone; 'vision': download "
        "them from vision_url (verified, then mirrored into the landing zone); 'rest': the aggTrades REST endpoint.",
    )
    market: str = Field(default="futures", description="'futures' (USDT-M, data/futures/um/...) or 'spot' (data/spot/...).")
    pre_window_s: int = Field(
        default=ptr.PRE_WINDOW_S,
        ge=0,
        le=86_400,
        description="Seconds of trades kept before each signal's window (the last one prices the first seconds).",
    )
    skip_missing_days: bool = Field(
        default=False,
        description="Skip (and count) signals whose day file is missing instead of failing the run.",
    )
    require_checksum: bool = Field(default=True, description="Refuse a zip without its .CHECKSUM file.")
    workers: int = Field(default=4, ge=1, le=32, description="Day files read (or downloaded) at once.")
    vision_url: str = Field(default=binance.VISION_URL, description="Base URL of the daily zips (source='vision').")
    rest_url: str = Field(default="", description="REST base URL (source='rest'); empty = Binance's own for the market.")
    mirror_to_landing: bool = Field(default=True, description="Save downloaded zips into the landing zone (source='vision').")
    max_ban_wait_s: float = Field(
        default=300.0,
        ge=0,
        description="Longest HTTP 418 ban (Retry-After) waited out before failing (source='rest').",
    )
    max_rejected_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The quarantine_share check fails (blocking downstream) when more than this fraction of a day "
        "file's rows are quarantined (outside the file's UTC day, or conflicting copies of one trade id).",
    )
    min_rows_ratio: float = Field(
        default=binance.MIN_ROWS_RATIO,
        ge=0.0,
        le=1.0,
        description="A day file with fewer trades than this fraction of the median of the same symbol's other days "
        "in the run fails (too_few_rows; 0 switches it off). Pump coins swing tenfold from day to day: the default "
        "is low.",
    )


def _gather(context, config: AggTradesConfig, signals_df: pl.DataFrame, landing: LandingZone, http: HttpClientResource):
    market = binance.check_market(config.market)
    if config.source == "landing":
        files = binance.StoreDayFiles(landing.store(), landing.describe)
        return _gather_files(config, market, signals_df, files)
    if config.source == "vision":
        with http.client(config.vision_url) as client:
            files = binance.VisionDayFiles(client, landing.store() if config.mirror_to_landing else None)
            got = _gather_files(config, market, signals_df, files)
            context.log.info(f"data.binance.vision: {client.stats}")
            return got
    if config.source == "rest":
        transport = binance.rest_transport(market, max_ban_wait_s=config.max_ban_wait_s)
        with http.client(config.rest_url or binance.REST_URL[market], transport=transport) as client:
            rest = binance.RestAggTrades(client, market, http.cache("binance"))
            got = ptr.gather_rest(signals_df, rest, pre_window_s=config.pre_window_s)
            context.log.info(f"REST aggTrades: {rest.stats.calls} calls ({rest.stats.pages_by_id} by fromId), {client.stats}")
            return got
    raise _fail(f"unknown agg_trades source {config.source!r}; choose 'landing', 'vision' or 'rest'")


def _gather_files(config: AggTradesConfig, market: str, signals_df: pl.DataFrame, files) -> ptr.Gathered:
    def load(sym: str, day: dt.date):
        return binance.load_day_checked(files, market, sym, day, require_checksum=config.require_checksum)

    return ptr.gather(
        signals_df,
        load,
        pre_window_s=config.pre_window_s,
        skip_missing_days=config.skip_missing_days,
        describe_day=lambda sym, day: files.describe(binance.agg_trades_key(market, sym, day)),
        workers=config.workers,
        min_rows_ratio=config.min_rows_ratio,
    )


@asset(
    key=KEYS["agg_trades"],
    **_kwargs("raw", {"polars", "parquet"}, "2", vendor="binance"),  # v2: per-row units, day bounds, conflicts held back
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_meta(sch.AGG_TRADES_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"])},
    check_specs=[
        qc.spec(
            KEYS["agg_trades"],
            COVERAGE_CHECK,
            "Every signal of the day has trades in its 24 h window; skipped signals are listed (a warning: they "
            "are left out of the research set, never filled in).",
            blocking=False,
        ),
        qc.spec(
            KEYS["agg_trades"],
            QUARANTINE_CHECK,
            "Each day file's share of quarantined rows (outside its UTC day, conflicting copies of a trade id) is "
            "within max_rejected_fraction.",
        ),
        qc.schema_spec(KEYS["agg_trades"]),
    ],
    config_schema=config_schema(AggTradesConfig),
)
def agg_trades(
    context: AssetExecutionContext,
    signals: pl.DataFrame,
    landing: LandingZone,
    http: HttpClientResource,
):
    """Binance aggregate trades around each signal: one row per (signal, aggregate trade) from
    ``pre_window_s`` before the signal's first whole second to 24 h after it, de-duplicated by
    trade id and sorted.

    Sources: the data.binance.vision daily zips in the landing zone (default), downloaded from
    data.binance.vision, or the REST ``aggTrades`` endpoint. Every zip is SHA-256-verified
    against its ``.CHECKSUM``; a bad checksum, a truncated zip or (unless
    ``skip_missing_days``) a missing day file fails the run naming the file. A signal with no
    trade in its window is skipped and counted. Prices in the quote asset, sizes in the base
    asset, times UTC (microseconds).
    """
    config = parse(AggTradesConfig, context)
    days = partition_dates(context.partition_keys)
    sig = sch.conform(signals, sch.SIGNALS_SCHEMA)
    try:
        got = _gather(context, config, sig, landing, http)
    except binance.BinanceDataError as exc:
        raise _fail(str(exc), file=exc.source, rule=exc.rule) from None
    except binance.BinanceBanned as exc:
        raise _fail(str(exc), endpoint=exc.endpoint) from None
    sig_day = dict(zip(sig["signal_id"].to_list(), sig["signal_ts"].dt.date().to_list()))
    trades = got.trades.join(
        sig.select("signal_id", pl.col("signal_ts").dt.date().alias("_day")), on="signal_id", how="left"
    )
    out = {d.isoformat(): trades.filter(pl.col("_day") == d).drop("_day") for d in days}
    meta = {}
    for d in days:
        ids = [s for s, sd in sig_day.items() if sd == d]
        statuses = [got.status.get(s, "ok") for s in ids]
        meta[d.isoformat()] = {
            "signals": len(ids),
            "signals_with_trades": statuses.count("ok"),
            **{f"skipped/{s}": statuses.count(s) for s in ptr.STATUSES if s != "ok"},
            "trades": out[d.isoformat()].height,
            "source": config.source,
            "market": config.market,
            **({"skipped_signals": MetadataValue.json({str(s): got.problems[s] for s in ids if s in got.problems})} if any(s in got.problems for s in ids) else {}),
            **({} if ids else md.no_data("no signal on this day")),
        }
        files_of_day = [r for r in got.reports if r.day == d]
        for name in ("rows_read", "quarantined/outside_day", "quarantined/conflicting_duplicate", "duplicates_dropped"):
            meta[d.isoformat()][name] = sum(r.as_metadata()[name] for r in files_of_day)
    md.per_partition(context, meta)
    context.log.info(f"read {len(got.files_read)} day file(s); {got.count('ok')} signal(s) with trades")
    skipped = {str(s): got.problems[s] for s in got.problems}
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["agg_trades"],
                COVERAGE_CHECK,
                not skipped,
                f"{len(skipped)} signal(s) skipped: "
                + ", ".join(f"{k} ({got.status[int(k)]})" for k in list(skipped)[:10])
                if skipped
                else f"All {sig.height} signal(s) have trades in their window.",
                {
                    "signals": sig.height,
                    **{f"skipped/{s}": got.count(s) for s in ptr.STATUSES if s != "ok"},
                    "skipped_signals": MetadataValue.json(dict(list(skipped.items())[:100])),
                    "files_read": len(got.files_read),
                },
                severity=AssetCheckSeverity.WARN,
            ),
            _trade_quarantine_result(got.reports, config.max_rejected_fraction),
            qc.schema_result(context, KEYS["agg_trades"], got.trades.schema),
        ],
    )


def _trade_quarantine_result(reports: list[binance.DayReport], limit: float):
    over = [r for r in reports if r.share > limit]
    worst = max(reports, key=lambda r: r.share, default=None)
    meta = {
        "limit": limit,
        "files": len(reports),
        "rows_quarantined": sum(r.quarantined for r in reports),
        "quarantined/outside_day": sum(r.outside_day for r in reports),
        "quarantined/conflicting_duplicate": sum(r.conflicting_duplicate for r in reports),
        "duplicates_dropped": sum(r.duplicates_dropped for r in reports),
        "files_over_limit": MetadataValue.json([{"file": r.source, "share": round(r.share, 6), **r.as_metadata()} for r in over[:50]]),
    }
    if over:
        desc = f"{len(over)} file(s) had more than {limit:.1%} of their rows quarantined; worst {worst.source} at {worst.share:.1%}"
    else:
        desc = f"Every file within the {limit:.1%} quarantine limit" + (f" (worst {worst.share:.2%})." if worst else ".")
    return qc.result(KEYS["agg_trades"], QUARANTINE_CHECK, not over, desc, meta)


# --------------------------------------------------------------------------- bars


@asset(
    key=KEYS["delta_bars_1s"],
    **_kwargs("curated", {"polars", "numba", "parquet"}, "2"),  # v2: large trades against earlier trades only
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_meta(sch.DELTA_BARS_SCHEMA),
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
    **_kwargs("curated", {"polars", "parquet"}, "1"),
    partitions_def=utc_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    metadata=_meta(sch.MINUTE_CANDLES_SCHEMA),
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


# --------------------------------------------------------------------------- research set


class SignalAnalysisConfig(BaseModel):
    days: int = Field(default=30, ge=1, description="Research window: the last `days` UTC days ending at end_date.")
    min_score: int = Field(default=100, ge=100, le=900, description="Lowest total_score kept (inclusive).")
    max_score: int = Field(default=900, ge=100, le=900, description="Highest total_score kept (inclusive).")
    dedup: bool = Field(
        default=True,
        description="Drop a signal when the same symbol had a kept signal less than dedup_hours before it.",
    )
    dedup_hours: float = Field(default=24.0, gt=0, description="Window of the dedup rule, hours.")
    end_date: str = Field(
        default="",
        description="Last UTC day of the window (YYYY-MM-DD); empty = the latest day with signals materialized.",
    )


def _materialized_days(context, key: AssetKey) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(k) for k in context.instance.get_materialized_partitions(key))


@asset(
    key=KEYS["signal_analysis"],
    **_kwargs("analysis", {"polars", "parquet"}, "1"),
    metadata=_meta(sch.SIGNAL_ANALYSIS_SCHEMA),
    deps=[KEYS["signals"], KEYS["delta_bars_1s"]],
    check_specs=[
        qc.spec(KEYS["signal_analysis"], RESEARCH_CHECK, "The research set holds at least one signal with bars."),
        qc.schema_spec(KEYS["signal_analysis"]),
    ],
    config_schema=config_schema(SignalAnalysisConfig),
)
def signal_analysis(context: AssetExecutionContext, lake: Lake):
    """The research set: one row per selected signal of the last ``days`` UTC days, with its
    24 h outcome from the 1-second bars -- ``max_growth_pct`` / ``max_drawdown_pct`` (highest /
    lowest price vs the first close, percent), ``time_to_peak_seconds`` and ``candles_data``
    (24 h of UTC-aligned 5-minute candles as JSON).

    Selection: ``min_score <= total_score <= max_score``; with ``dedup``, the first signal of a
    symbol within ``dedup_hours`` wins. Signals skipped upstream (no trades, no price) are
    counted, not guessed.
    """
    config = parse(SignalAnalysisConfig, context)
    signal_days = _materialized_days(context, KEYS["signals"])
    if not signal_days:
        raise _fail("pump/signals has no materialized day: run pump_daily_job for the signal days first")
    end = dt.date.fromisoformat(config.end_date) if config.end_date else signal_days[-1]
    first = end - dt.timedelta(days=config.days - 1)
    window = [d for d in signal_days if first <= d <= end]
    if not window:
        raise _fail(f"no pump/signals day materialized between {first} and {end}")
    # A day whose signals are in but whose bars are not would silently drop out of the research.
    bar_days = set(_materialized_days(context, KEYS["delta_bars_1s"]))
    gaps = [d for d in window if d not in bar_days]
    if gaps:
        raise _fail(
            f"pump/signals is materialized but pump/delta_bars_1s is not for {', '.join(map(str, gaps[:10]))}"
            f"{' ...' if len(gaps) > 10 else ''}: run pump_daily_job for those days, or narrow the window (days, end_date)"
        )
    sig_frames, bar_frames = [], []
    for d in window:
        s = read_lake_partition(lake, KEYS["signals"], d.isoformat())
        if s is None:
            raise _fail(f"pump/signals {d} is not in the lake although its bars are; re-materialize that day")
        sig_frames.append(s)
        b = read_lake_partition(lake, KEYS["delta_bars_1s"], d.isoformat(), ["signal_id", "second_ts", "open_price", "high_price", "low_price", "close_price", "volume"])
        if b is not None and b.height:
            bar_frames.append(b)
    all_signals = sch.conform(pl.concat(sig_frames), sch.SIGNALS_SCHEMA)
    chosen = psig.select_research_set(
        all_signals, min_score=config.min_score, max_score=config.max_score, dedup=config.dedup, dedup_hours=config.dedup_hours
    )
    bars = pl.concat(bar_frames) if bar_frames else sch.empty(sch.DELTA_BARS_SCHEMA)
    ids = chosen.signals["signal_id"].implode()
    bars = bars.filter(pl.col("signal_id").is_in(ids))
    result = pan.build_signal_analysis(chosen.signals, bars)
    table = result.table
    by_range = dict(table.group_by("score_range").len().sort("score_range").iter_rows()) if table.height else {}
    run_meta = (
        {
            "window_first_day": first.isoformat(),
            "window_last_day": end.isoformat(),
            "days_with_data": len(window),
            "signals_in_window": all_signals.height,
            "excluded/outside_score": chosen.outside_score,
            "excluded/dedup": chosen.duplicates,
            "excluded/no_bars": len(result.without_bars),
            "signals_by_score_range": MetadataValue.json(by_range),
            "median_max_growth_pct": float(table["max_growth_pct"].median()) if table.height else 0.0,
        }
    )
    return MaterializeResult(
        metadata=run_meta,
        value=table,
        check_results=[
            qc.result(
                KEYS["signal_analysis"],
                RESEARCH_CHECK,
                table.height > 0,
                f"{table.height} signal(s) in the research set." if table.height else "The research set is empty.",
                {"signals": table.height},
            ),
            qc.schema_result(context, KEYS["signal_analysis"], table.schema),
        ],
    )


def research_closes(lake: Lake, research: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The 1-second closes of the research set's signals, in the research table's order (CSR)."""
    frames = []
    ids = research["signal_id"].implode()
    for d in sorted(set(research["signal_date"].to_list())):
        b = read_lake_partition(lake, KEYS["delta_bars_1s"], d.isoformat(), ["signal_id", "second_ts", "close_price"])
        if b is None:
            raise _fail(f"pump/delta_bars_1s {d} is no longer in the lake; re-materialize it")
        frames.append(b.filter(pl.col("signal_id").is_in(ids)))
    bars = pl.concat(frames) if frames else sch.empty(sch.DELTA_BARS_SCHEMA)
    closes, offsets = opt.paths_from_frame(bars, research["signal_id"].to_list())
    short = np.flatnonzero(np.diff(offsets) != WINDOW_S)
    if short.size:
        sid = research["signal_id"][int(short[0])]
        raise _fail(f"signal {sid} has {int(np.diff(offsets)[short[0]])} bars instead of {WINDOW_S}; re-materialize its day")
    return closes, offsets


# --------------------------------------------------------------------------- phase 1


class StrategyMatrixConfig(BaseModel):
    sl_levels: list[float] = Field(
        default=list(opt.DEFAULT_SL_LEVELS), description="Stop-loss levels below the entry, fractions (0.05 = 5 %)."
    )
    profiles: list[str] = Field(
        default=list(opt.PROFILES),
        description="Trailing profiles: SCALPING 0.4/0.2, BALANCED 4/2, MODERATE 7/3, CONSERVATIVE 10/4 "
        "(activation/callback, %).",
    )
    timeouts_s: list[int] = Field(default=list(opt.DEFAULT_TIMEOUTS_S), description="Longest holds, seconds after entry.")
    entry_delays_s: list[int] = Field(
        default=list(opt.DEFAULT_ENTRY_DELAYS_S), description="Entry delays, seconds after the signal's first second."
    )
    fee: float = Field(default=opt.DEFAULT_FEE, description="Round-trip fee deducted from each trade, fraction.")
    reference_sample: int = Field(
        default=2000, ge=0, description="(strategy, signal) cells re-walked bar by bar by the matches_bar_by_bar check."
    )

    def grid(self) -> opt.GridSpec:
        return opt.GridSpec(
            sl_levels=tuple(self.sl_levels),
            profiles=tuple(self.profiles),
            timeouts_s=tuple(self.timeouts_s),
            entry_delays_s=tuple(self.entry_delays_s),
            fee=self.fee,
        )


@asset(
    key=KEYS["strategy_matrix"],
    **_kwargs("analysis", {"numba", "parquet"}, "1"),
    metadata=_meta(sch.STRATEGY_MATRIX_SCHEMA),
    ins={"signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    deps=[KEYS["delta_bars_1s"]],
    check_specs=[
        qc.spec(
            KEYS["strategy_matrix"],
            REFERENCE_CHECK,
            "A random sample of (strategy, signal) cells equals a bar-by-bar walk of the exit rule exactly.",
        ),
        qc.schema_spec(KEYS["strategy_matrix"]),
    ],
    config_schema=config_schema(StrategyMatrixConfig),
)
def strategy_matrix(context: AssetExecutionContext, signal_analysis: pl.DataFrame, lake: Lake):
    """Phase 1 of the optimizer: PnL (fraction, after the round-trip fee) and seconds to exit of
    every exit strategy of the grid on every signal of the research set -- one row per
    (strategy, signal), strategy-major.

    The rule: enter ``entry_delay_s`` after the signal's first second at that close; exit at the
    first close at or below ``entry * (1 - sl)``, or -- once the running high reached
    ``entry * (1 + activation)`` -- at or below ``high * (1 - callback)``; else at the close
    ``timeout_s`` after entry (or the window's last). Default grid: 15 stop levels x 4 trailing
    profiles x 9 timeouts x 10 entry delays = 5,400 strategies.
    """
    config = parse(StrategyMatrixConfig, context)
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    try:
        strategies = opt.strategy_grid(config.grid())
    except opt.StrategyError as exc:
        raise _fail(f"strategy grid: {exc}") from None
    closes, offsets = research_closes(lake, research)
    t0 = time.perf_counter()
    pnl, exit_s = opt.evaluate_strategies(closes, offsets, strategies)
    seconds = time.perf_counter() - t0
    sims = pnl.size
    check = _reference_result(closes, offsets, strategies, pnl, exit_s, config.reference_sample)
    n_st, n_sig = pnl.shape
    frame = (
        strategies.select(pl.all().repeat_by(n_sig).explode())
        .with_columns(
            pl.Series("signal_id", np.tile(research["signal_id"].to_numpy(), n_st), dtype=pl.Int64),
            pl.Series("pnl", np.ascontiguousarray(pnl).ravel()).fill_nan(None),
            pl.Series("exit_s", np.ascontiguousarray(exit_s).ravel()).cast(pl.Int64),
        )
        .select(list(sch.STRATEGY_MATRIX_SCHEMA))
    )
    run_meta = (
        {
            "strategies": n_st,
            "signals": n_sig,
            "simulations": sims,
            "seconds": round(seconds, 3),
            "simulations_per_second": round(sims / seconds) if seconds > 0 else 0,
            "strategy_grid": MetadataValue.md(
                f"{len(config.sl_levels)} stop levels x {len(config.profiles)} profiles x {len(config.timeouts_s)} "
                f"timeouts x {len(config.entry_delays_s)} entry delays = {n_st:,} strategies"
            ),
        }
    )
    return MaterializeResult(metadata=run_meta, value=frame, check_results=[check, qc.schema_result(context, KEYS["strategy_matrix"], frame.schema)])


def _reference_result(closes, offsets, strategies, pnl, exit_s, sample: int):
    n_st, n_sig = pnl.shape
    if sample == 0 or pnl.size == 0:
        return qc.result(KEYS["strategy_matrix"], REFERENCE_CHECK, True, "No cell sampled.", {"cells": 0})
    rng = np.random.default_rng(n_st * 7919 + n_sig)
    cells = rng.integers(0, pnl.size, min(sample, pnl.size))
    rows = strategies.to_dicts()
    bad = []
    for cell in cells:
        k, j = divmod(int(cell), n_sig)
        s = rows[k]
        ref = opt.simulate_one(
            closes[offsets[j] : offsets[j + 1]], s["entry_delay_s"], s["sl"], s["activation"], s["callback"], s["timeout_s"], s["fee"]
        )
        same = (ref[0] == pnl[k, j] or (np.isnan(ref[0]) and np.isnan(pnl[k, j]))) and ref[1] == exit_s[k, j]
        if not same:
            bad.append({"strategy_id": k, "signal": j, "fast": [float(pnl[k, j]), int(exit_s[k, j])], "walk": [float(ref[0]), int(ref[1])]})
    return qc.result(
        KEYS["strategy_matrix"],
        REFERENCE_CHECK,
        not bad,
        f"{len(bad)} of {len(cells)} sampled cells differ from the bar-by-bar walk" if bad else f"{len(cells)} sampled cells equal the bar-by-bar walk.",
        {"cells": len(cells), "mismatches": MetadataValue.json(bad[:20])},
    )


def matrix_arrays(matrix: pl.DataFrame, research: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Strategies and the (strategies, signals) PnL / exit arrays back from the long table, in
    the research table's signal order."""
    strategies = matrix.select(list(sch.STRATEGY_SCHEMA)).unique(subset="strategy_id").sort("strategy_id")
    pos = pl.DataFrame({"signal_id": research["signal_id"]}).with_row_index("_j")
    m = matrix.select("strategy_id", "signal_id", "pnl", "exit_s").join(pos, on="signal_id", how="inner")
    n_st, n_sig = strategies.height, research.height
    if m.height != n_st * n_sig:
        raise _fail(
            f"pump/strategy_matrix covers {m.height:,} of {n_st * n_sig:,} (strategy, signal) cells of the current "
            "research set; re-materialize pump/strategy_matrix after pump/signal_analysis"
        )
    m = m.sort("strategy_id", "_j")
    pnl = m["pnl"].fill_null(np.nan).to_numpy().reshape(n_st, n_sig)
    ex = m["exit_s"].to_numpy().reshape(n_st, n_sig)
    return strategies.with_columns(pl.col("strategy_id").cast(pl.Int32)), pnl, ex


# --------------------------------------------------------------------------- phase 2


class OptimizationConfig(BaseModel):
    score_bands: list[int] = Field(
        default=list(pfil.DEFAULT_BANDS), description="Lower bounds of the score ranges (each 100 wide; 800-900 includes 900)."
    )
    rsi_cuts: list[float] = Field(
        default=list(pfil.DEFAULT_RSI_CUTS), description="RSI cut points; every pair (and the open ends) is a range."
    )
    volume_zscore_cuts: list[float] = Field(default=list(pfil.DEFAULT_VOLUME_CUTS), description="Volume z-score cut points.")
    oi_change_cuts: list[float] = Field(default=list(pfil.DEFAULT_OI_CUTS), description="Open-interest change (%) cut points.")
    min_trades: int = Field(default=3, ge=1, description="Fewest trades for a configuration to be kept.")
    max_strategies_per_filter: int = Field(
        default=5, ge=1, description="Most profitable strategies kept per distinct filtered signal set."
    )
    max_results_per_range: int = Field(
        default=5000, ge=0, description="Rows kept per score range, best total PnL first (0 = every kept candidate)."
    )
    selection: str = Field(
        default=wf.WalkForwardSpec.selection,
        description="'walk_forward': rank on a selection window, report on the later evaluation window it never saw, "
        "stepping forward; 'in_sample': rank on every research signal (figures labelled in sample).",
    )
    train_days: int = Field(default=wf.WalkForwardSpec.train_days, ge=1, description="Walk-forward selection window, UTC days.")
    test_days: int = Field(default=wf.WalkForwardSpec.test_days, ge=1, description="Walk-forward evaluation window, UTC days.")
    step_days: int = Field(default=wf.WalkForwardSpec.step_days, ge=1, description="Days between consecutive folds' starts.")

    def walk_forward(self) -> wf.WalkForwardSpec:
        return wf.WalkForwardSpec(self.selection, self.train_days, self.test_days, self.step_days)

    def grid(self) -> pfil.FilterGrid:
        return pfil.FilterGrid(
            bands=tuple(self.score_bands),
            rsi_cuts=tuple(self.rsi_cuts),
            volume_cuts=tuple(self.volume_zscore_cuts),
            oi_cuts=tuple(self.oi_change_cuts),
        )


@asset(
    key=KEYS["optimization_results"],
    **_kwargs("analysis", {"numba", "parquet"}, "2"),
    metadata=_meta(sch.OPTIMIZATION_RESULTS_SCHEMA),
    ins={"strategy_matrix": AssetIn(key=KEYS["strategy_matrix"]), "signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    check_specs=[
        qc.spec(
            KEYS["optimization_results"],
            PROFITABLE_CHECK,
            "At least one (filter, strategy) configuration is profitable with min_trades trades.",
            blocking=False,
        ),
        qc.schema_spec(KEYS["optimization_results"]),
    ],
    config_schema=config_schema(OptimizationConfig),
)
def optimization_results(
    context: AssetExecutionContext, strategy_matrix: pl.DataFrame, signal_analysis: pl.DataFrame
):
    """Phase 2 of the optimizer: the profitable (filter, strategy) configurations, best total PnL
    first within each score range.

    A filter is a score range and ranges of RSI, volume z-score and open-interest change (every
    pair of cut points; default 8 x 55 x 21 x 21 = 194,040 filters). For each filter and
    strategy the passing signals are walked in time order, a trade taken only when no earlier
    accepted trade is still open; figures: trades, total PnL (sum of returns, fraction), win
    rate, profit factor, max drawdown of the cumulative return. Kept: up to
    ``max_strategies_per_filter`` per distinct signal set and ``max_results_per_range`` per range,
    each with at least ``min_trades`` trades and total PnL > 0.
    """
    config = parse(OptimizationConfig, context)
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    strategies, pnl, ex = matrix_arrays(strategy_matrix, research)
    try:
        grid = config.grid()
        spec = config.walk_forward()
        folds = wf.make_folds(research["signal_date"].min(), research["signal_date"].max(), spec)
    except ValueError as exc:
        raise _fail(f"optimization_results: {exc}") from None
    t0 = time.perf_counter()
    sel = wf.select_per_fold(
        research,
        pnl,
        ex,
        strategies,
        grid,
        folds,
        spec.selection,
        horizon_s=WINDOW_S,
        min_trades=config.min_trades,
        per_filter=config.max_strategies_per_filter,
        max_per_range=config.max_results_per_range,
    )
    seconds = time.perf_counter() - t0
    results = sel.results
    run_meta = (
        {
            "selection": spec.selection,
            "folds": len(folds),
            "walk_forward": MetadataValue.json(dataclasses.asdict(spec)),
            "by_fold": MetadataValue.json(sel.stats),
            "filters": grid.size,
            "filters_per_range": grid.per_band,
            "strategies": strategies.height,
            "configurations_per_fold": grid.size * strategies.height,
            "evaluated_configurations": sel.evaluated_pairs,
            "profitable_configurations": sel.profitable_pairs,
            "kept_rows": results.height,
            "figures": f"{spec.selection}: each row's figures are in sample for its fold's selection window",
            "seconds": round(seconds, 3),
        }
    )
    return MaterializeResult(
        metadata=run_meta,
        value=results,
        check_results=[
            qc.result(
                KEYS["optimization_results"],
                PROFITABLE_CHECK,
                results.height > 0,
                f"{sel.profitable_pairs:,} profitable configuration(s) over {len(folds)} fold(s); {results.height:,} kept."
                if results.height
                else "No configuration is profitable with enough trades.",
                {"profitable_configurations": sel.profitable_pairs},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["optimization_results"], results.schema),
        ],
    )


class CompositeConfig(BaseModel):
    min_trades: int = Field(default=5, ge=1, description="Fewest trades for a score range's champion.")
    spa_reps: int = Field(
        default=200,
        ge=0,
        description="Bootstrap replications of Hansen's SPA test per fold (0 skips it; on the default grids and 300 "
        "signals each 100 cost about 9 s a fold).",
    )


@asset(
    key=KEYS["composite_strategy"],
    **_kwargs("analysis", {"json", "parquet"}, "2"),
    metadata=_meta(sch.COMPOSITE_SCHEMA, file=f"lake: {COMPOSITE_JSON}"),
    ins={
        "optimization_results": AssetIn(key=KEYS["optimization_results"]),
        "signal_analysis": AssetIn(key=KEYS["signal_analysis"]),
        "strategy_matrix": AssetIn(key=KEYS["strategy_matrix"]),
    },
    check_specs=[
        qc.spec(
            KEYS["composite_strategy"],
            CHAMPION_CHECK,
            "Every score range has a champion with at least min_trades trades (a warning: a range without one trades nothing).",
            blocking=False,
        ),
        qc.spec(
            KEYS["composite_strategy"],
            OVERFITTING_CHECK,
            "Warns when a champion's probability of backtest overfitting is above 0.5 or its deflated Sharpe ratio below "
            "0.95: its in-sample figures are indistinguishable from the luck of choosing among many configurations.",
            blocking=False,
        ),
        qc.schema_spec(KEYS["composite_strategy"]),
    ],
    config_schema=config_schema(CompositeConfig),
)
def composite_strategy(
    context: AssetExecutionContext,
    optimization_results: pl.DataFrame,
    signal_analysis: pl.DataFrame,
    strategy_matrix: pl.DataFrame,
    lake: Lake,
):
    """The champion rules per score range (100-200 ... 800-900), written to
    ``composite_strategy.json`` in the lake: per walk-forward fold, each range's best
    configuration (filter bounds, exit strategy) with at least ``min_trades`` trades on the
    fold's selection window, its in-sample figures there, and its out-of-sample figures on the
    fold's evaluation window. The deployed rule of a range is its latest fold's champion. One
    row per (fold, range) here.
    """
    config = parse(CompositeConfig, context)
    results = sch.conform(optimization_results, sch.OPTIMIZATION_RESULTS_SCHEMA)
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    strategies, pnl, ex = matrix_arrays(strategy_matrix, research)
    ranges = sorted(set(results["score_range"].to_list()) | {psig.score_band(lo) for lo in pfil.DEFAULT_BANDS}, key=lambda r: int(r.split("-")[0]))
    folds_frame = results.select(list(sch.FOLD_SCHEMA)).unique(subset="fold").sort("fold") if results.height else None
    champions = pcomp.choose_champions(results, ranges, config.min_trades, folds_frame)
    selection = champions["selection"][0] if champions.height else "in_sample"
    oos = None
    folds = wf.folds_from_frame(champions) if champions.height else []
    if selection == "walk_forward":
        oos = wf.out_of_sample(research, pnl, ex, champions, folds)
        champions = pcomp.with_out_of_sample(champions, oos.by_fold)
    t0 = time.perf_counter()
    measured = pof.measure(research, pnl, ex, results, champions, folds, horizon_s=WINDOW_S, spa_reps=config.spa_reps)
    champions = pcomp.with_overfitting(champions, measured)
    overfit_seconds = time.perf_counter() - t0
    overfit = pof.warnings(measured)
    doc = pcomp.composite_document(
        champions,
        min_trades=config.min_trades,
        research=research,
        walk_forward={"selection": selection, "folds": int(champions["fold"].n_unique()) if champions.height else 0},
        out_of_sample=oos.by_range if oos is not None else None,
    )
    lake.store().write_bytes(COMPOSITE_JSON, pcomp.to_json(doc))
    deployed = pcomp.champions_from_document(doc)
    missing = deployed.filter(~pl.col("has_champion"))["score_range"].to_list()
    run_meta = (
        {
            "selection": selection,
            "composite_strategy.json": MetadataValue.json(doc),
            "file": MetadataValue.path(lake.describe(COMPOSITE_JSON)),
            "champions": int(deployed["has_champion"].sum()),
            "out_of_sample_signals": oos.signals_evaluated if oos is not None else 0,
            "overfitting": MetadataValue.md(pof.markdown(measured)),
            "overfitting_seconds": round(overfit_seconds, 3),
            "summary": MetadataValue.md("\n".join(f"- {line}" for line in pcomp.summary_lines(deployed))),
        }
    )
    return MaterializeResult(
        metadata=run_meta,
        value=champions,
        check_results=[
            qc.result(
                KEYS["composite_strategy"],
                CHAMPION_CHECK,
                not missing,
                f"No champion for {missing}" if missing else "Every score range has a champion.",
                {"ranges_without_champion": MetadataValue.json(missing)},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.result(
                KEYS["composite_strategy"],
                OVERFITTING_CHECK,
                not overfit,
                "; ".join(overfit[:8]) if overfit else "Every champion has PBO <= 0.5 and DSR >= 0.95.",
                {"flagged": MetadataValue.json(overfit)},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["composite_strategy"], champions.schema),
        ],
    )


def _evaluation_window(champions: pl.DataFrame) -> dict:
    """Metadata naming the signals a backtest traded: the out-of-sample window, or in sample."""
    if not champions.height or champions["selection"][0] != "walk_forward":
        return {"window": "in sample: every research signal (the signals the champions were chosen on)"}
    start, end = champions["evaluation_start"].min(), champions["evaluation_end"].max()
    return {
        "window": f"out of sample: {start.isoformat()} .. {end.isoformat()} (each fold's evaluation window)",
        "evaluation_start": start.isoformat(),
        "evaluation_end": end.isoformat(),
    }


class BacktestConfig(BaseModel):
    position_scope: str = Field(
        default="score_range",
        description="'score_range': one position at a time per score range (the optimizer's assumption; figures "
        "agree exactly); 'global': one position shared by all ranges.",
    )


@asset(
    key=KEYS["backtest_trades"],
    **_kwargs("analysis", {"csv", "parquet"}, "2"),
    metadata=_meta(sch.BACKTEST_TRADES_SCHEMA, file=f"lake: {BACKTEST_CSV}"),
    ins={"composite_strategy": AssetIn(key=KEYS["composite_strategy"]), "signal_analysis": AssetIn(key=KEYS["signal_analysis"])},
    deps=[KEYS["delta_bars_1s"]],
    check_specs=[
        qc.spec(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            "With position_scope 'score_range', each range's trades, total PnL, win rate, profit factor and drawdown "
            "equal the composite strategy's figures exactly.",
        ),
        qc.schema_spec(KEYS["backtest_trades"]),
    ],
    config_schema=config_schema(BacktestConfig),
)
def backtest_trades(
    context: AssetExecutionContext,
    composite_strategy: pl.DataFrame,
    signal_analysis: pl.DataFrame,
    lake: Lake,
):
    """The composite strategy replayed on the timeline with position tracking, walked bar by bar:
    one row per trade (entry, exit, reason, PnL fraction after the fee, cumulative PnL), also
    written as ``backtest_trades.csv`` in the lake. With walk-forward champions (the default)
    only out-of-sample signals are traded, each under the champion of the fold evaluating it
    (``sample = out_of_sample``); in-sample champions trade the signals they were chosen on
    (``sample = in_sample``)."""
    config = parse(BacktestConfig, context)
    if config.position_scope not in pbt.SCOPES:
        raise _fail(f"position_scope must be one of {pbt.SCOPES}, got {config.position_scope!r}")
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    champions = sch.conform(composite_strategy, sch.COMPOSITE_SCHEMA)
    closes, offsets = research_closes(lake, research)
    rep = pbt.replay(research, closes, offsets, champions, position_scope=config.position_scope)
    trades = rep.trades
    lake.store().write_bytes(BACKTEST_CSV, trades.write_csv().encode())
    per_range = pbt.figures(trades) if trades.height else {}
    if config.position_scope == "score_range":
        problems = pbt.disagreements(champions, trades)
        agreement = qc.result(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            not problems,
            "; ".join(problems[:5]) if problems else "Every score range's figures equal the composite strategy's exactly.",
            {"differences": MetadataValue.json(problems[:50])},
        )
    else:
        agreement = qc.result(
            KEYS["backtest_trades"],
            AGREEMENT_CHECK,
            True,
            "position_scope 'global' shares one position across ranges: the figures differ from the per-range optimizer "
            "by design; nothing to compare.",
        )
    sample = "out_of_sample" if champions.height and champions["selection"][0] == "walk_forward" else "in_sample"
    run_meta = (
        {
            "sample": sample,
            **_evaluation_window(champions),
            "file": MetadataValue.path(lake.describe(BACKTEST_CSV)),
            "trades": trades.height,
            "total_pnl": float(trades["pnl"].sum()) if trades.height else 0.0,
            "skipped_position_open": rep.skipped_busy,
            "skipped_no_entry": rep.no_entry,
            "exit_reasons": MetadataValue.json(dict(trades.group_by("exit_reason").len().iter_rows()) if trades.height else {}),
            "by_score_range": MetadataValue.json({k: {**v, "profit_factor": None if np.isinf(v["profit_factor"]) else v["profit_factor"]} for k, v in per_range.items()}),
        }
    )
    return MaterializeResult(metadata=run_meta, value=trades, check_results=[agreement, qc.schema_result(context, KEYS["backtest_trades"], trades.schema)])


class PortfolioConfig(BaseModel):
    sl: float = Field(default=0.05, gt=0, lt=1, description="Stop loss below the entry reference price, fraction.")
    activation: float = Field(default=0.04, ge=0, description="Rise over the entry that arms the trailing exit, fraction.")
    callback: float = Field(default=0.02, gt=0, lt=1, description="Fall from the running high that exits once armed, fraction.")
    timeout: int = Field(default=240, ge=1, description="Longest hold, minutes.")
    fee_rate: float = Field(default=0.0005, ge=0, description="Fee per side, fraction of the notional (0.05 % taker).")
    slippage_bps: float = Field(default=10.0, ge=0, description="Slippage per fill, basis points (entries pay up, exits give up).")
    initial_capital: float = Field(default=10_000.0, gt=0, description="Starting cash, USDT.")
    position_size: float = Field(default=0.1, gt=0, le=1, description="Notional per position, fraction of book equity.")
    max_positions: int = Field(default=5, ge=1, description="Most positions open at once.")
    only_composite_signals: bool = Field(
        default=False, description="Trade only signals passing their score range's champion filter (else every research signal)."
    )
    signals: str = Field(
        default="out_of_sample",
        description="'out_of_sample': only signals of the walk-forward evaluation windows (each under its fold's champion "
        "filter with only_composite_signals); 'all': every research signal (in sample for the champions' filters).",
    )


@asset(
    key=KEYS["portfolio_backtest"],
    **_kwargs("analysis", {"polars", "parquet"}, "2"),
    metadata=_meta(sch.EQUITY_SCHEMA),
    ins={"signal_analysis": AssetIn(key=KEYS["signal_analysis"]), "composite_strategy": AssetIn(key=KEYS["composite_strategy"])},
    deps=[KEYS["minute_candles"]],
    check_specs=[
        qc.spec(
            KEYS["portfolio_backtest"],
            EQUITY_CHECK,
            "Equity = cash + positions at every minute, cash never negative, the final equity equals initial capital "
            "plus the trades' net PnL.",
        ),
        qc.schema_spec(KEYS["portfolio_backtest"]),
    ],
    config_schema=config_schema(PortfolioConfig),
)
def portfolio_backtest(
    context: AssetExecutionContext,
    signal_analysis: pl.DataFrame,
    composite_strategy: pl.DataFrame,
    lake: Lake,
):
    """A multi-asset portfolio on 1-minute candles: every research signal (or only those passing
    the composite filters) traded with one rule -- stop ``sl``, trailing ``activation`` /
    ``callback``, ``timeout`` minutes -- with slippage and fees, sized from book equity, at most
    ``max_positions`` at once. One row per minute of the equity curve (USDT); the metrics
    (return, drawdown, daily Sharpe annualised with sqrt(365), win rate, skips) are in the
    metadata, with a text chart of the curve."""
    config = parse(PortfolioConfig, context)
    if config.signals not in ("out_of_sample", "all"):
        raise _fail(f"signals must be 'out_of_sample' or 'all', got {config.signals!r}")
    research = sch.conform(signal_analysis, sch.SIGNAL_ANALYSIS_SCHEMA)
    champions = sch.conform(composite_strategy, sch.COMPOSITE_SCHEMA)
    chosen = pport.portfolio_signals(research, champions, out_of_sample=config.signals == "out_of_sample", only_composite=config.only_composite_signals)
    window = _evaluation_window(champions) if config.signals == "out_of_sample" else {"window": "all research signals"}
    sample = "out_of_sample" if config.signals == "out_of_sample" and "evaluation_start" in window else "in_sample"
    research = chosen
    frames = []
    for d in sorted(set(research["signal_date"].to_list())):
        c = read_lake_partition(lake, KEYS["minute_candles"], d.isoformat())
        if c is None:
            raise _fail(f"pump/minute_candles {d} is not materialized; materialize the signal days first")
        frames.append(c)
    candles = pl.concat(frames) if frames else sch.empty(sch.MINUTE_CANDLES_SCHEMA)
    rules = pport.PortfolioRules(
        sl=config.sl,
        activation=config.activation,
        callback=config.callback,
        timeout_minutes=config.timeout,
        fee_rate=config.fee_rate,
        slippage=config.slippage_bps / 10_000.0,
        initial_capital=config.initial_capital,
        position_size=config.position_size,
        max_positions=config.max_positions,
    )
    res = pport.simulate_portfolio(research, candles, rules)
    eq = res.equity
    problems = []
    if eq.height:
        if (eq["cash"] < -1e-9).any():
            problems.append("cash went negative")
        if ((eq["equity"] - eq["cash"] - eq["positions_value"]).abs() > 1e-6).any():
            problems.append("equity != cash + positions")
        net = float((res.trades["proceeds"] - res.trades["cost"]).sum())
        if abs(float(eq["equity"][-1]) - (config.initial_capital + net)) > 1e-6 * config.initial_capital:
            problems.append(f"final equity {float(eq['equity'][-1]):.2f} != capital + net PnL {config.initial_capital + net:.2f}")
    metrics = {k: (v if v is not None else float("nan")) for k, v in res.metrics.items()}
    run_meta = (
        {
            "sample": sample,
            **window,
            "signals_traded_from": research.height,
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
            "equity_chart": MetadataValue.md(pport.text_chart(eq)),
            "trades_preview": MetadataValue.md(md.markdown_preview(res.trades, 10)),
        }
    )
    return MaterializeResult(
        metadata=run_meta,
        value=eq,
        check_results=[
            qc.result(
                KEYS["portfolio_backtest"],
                EQUITY_CHECK,
                not problems,
                "; ".join(problems) if problems else f"{eq.height:,} minutes consistent; {res.trades.height} trade(s).",
                {"problems": MetadataValue.json(problems)},
            ),
            qc.schema_result(context, KEYS["portfolio_backtest"], eq.schema),
        ],
    )


DAILY_ASSETS = [signals, agg_trades, delta_bars_1s, minute_candles]
RESEARCH_ASSETS = [signal_analysis, strategy_matrix, optimization_results, composite_strategy, backtest_trades, portfolio_backtest]
