"""Pump, ingest: the signal files (or warehouse table) per UTC day and the Binance aggregate
trades around each signal, validated and quarantined (``quant_assets.lib.pump.signals``,
``.trades``, ``quant_assets.lib.sources.binance``)."""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import fraction, parse
from quant_assets.defs.partitions import partition_dates, utc_days
from quant_assets.defs.pump.common import fail, table_meta
from quant_assets.defs.pump.keys import COVERAGE_CHECK, DAYS_PER_RUN, KEYS, QUARANTINE_CHECK
from quant_assets.defs.quarantine import keep_rejected, share_outcome
from quant_assets.defs.resources import Lake, LandingZone, WarehouseResource
from quant_assets.defs.vendors import HttpClientResource
from quant_assets.lib import frames
from quant_assets.lib.pump import schemas, trades
from quant_assets.lib.pump.signals import ParsedSignals, SignalFileError, normalise, read_signals_csv, signal_day_figures, signals_key
from quant_assets.lib.sources import binance

SIGNAL_CHECKS = qc.AssetChecks(
    KEYS["signals"], qc.Check(QUARANTINE_CHECK, "Each day's share of quarantined signal rows is within max_rejected_fraction.")
)
TRADE_CHECKS = qc.AssetChecks(
    KEYS["agg_trades"],
    qc.Check(
        COVERAGE_CHECK,
        "Every signal of the day has trades in its 24 h window; skipped signals are listed (a warning: they "
        "are left out of the research set, never filled in).",
        blocking=False,
    ),
    qc.Check(
        QUARANTINE_CHECK,
        "Each day file's share of quarantined rows (outside its UTC day, conflicting copies of a trade id) is "
        "within max_rejected_fraction.",
    ),
)


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
    max_rejected_fraction: float = fraction(
        0.05,
        "The quarantine_share check fails (blocking downstream) when more than this fraction of a "
        "day's rows break a rule.",
    )


@house_asset(
    KEYS["signals"], "raw", {"polars", "parquet"}, "1",
    partitions_def=utc_days, per_run=DAYS_PER_RUN, metadata=table_meta(schemas.SIGNALS_SCHEMA), checks=SIGNAL_CHECKS, config=SignalsConfig,
    tags={"vendor": "signal-source"},
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
    kept, meta, shares = [], {}, {}
    for day in days:
        parsed, source = _read_signals(config, day, landing, warehouse)
        figures = signal_day_figures(parsed)
        shares[day.isoformat()] = figures.pop("rejected_share")
        quarantine = keep_rejected(lake, f"quarantine/pump/signals/{day.isoformat()}.parquet", parsed.rejected)
        meta[day] = {"source": source, **figures, **quarantine}
        kept.append(parsed.rows)
    md.per_day(context, meta, closed=lambda d: None if meta[d]["signals"] else "no signal fired on this day")
    out = frames.stitch(*kept, schemas.empty(schemas.SIGNALS_SCHEMA))
    over = {d: round(s, 4) for d, s in shares.items() if s > config.max_rejected_fraction}
    limit = config.max_rejected_fraction
    outcome = qc.Outcome(
        not over,
        f"Quarantined share above {limit:.1%} on {sorted(over)}" if over else f"Every day within the {limit:.1%} limit.",
        {"days_over_limit": MetadataValue.json(over), "max_share": round(max(shares.values(), default=0.0), 4)},
    )
    by_day = frames.split_by_day(out, days, pl.col("signal_ts").dt.date())
    return SIGNAL_CHECKS.materialize(context, by_day, outcomes={QUARANTINE_CHECK: outcome}, schema=out.schema)


def _read_signals(config: SignalsConfig, day: dt.date, landing: LandingZone, warehouse: WarehouseResource) -> tuple[ParsedSignals, str]:
    """One UTC day's signals, parsed and validated, and where they came from."""
    if config.source == "landing":
        key = signals_key(day)
        source = landing.describe(key)
        store = landing.store()
        if not store.exists(key):
            raise fail(f"{source}: [missing_file] no signal file for {day} (not exported yet?)", file=source)
        try:
            return read_signals_csv(store.read_bytes(key), source, day), source
        except SignalFileError as exc:
            raise fail(str(exc), file=source, rule=exc.rule) from None
    if config.source == "warehouse":
        source = f"warehouse table {config.warehouse_table}"
        return _warehouse_signals(warehouse, config.warehouse_table, day, source), source
    raise fail(f"unknown signals source {config.source!r}; choose 'landing' or 'warehouse'")


def _warehouse_signals(warehouse: WarehouseResource, table: str, day: dt.date, source: str) -> ParsedSignals:
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
        raise fail(f"{source}: cannot read signals for {day}: {exc}", table=table) from None
    except Exception as exc:  # noqa: BLE001 - the drivers raise their own error types
        raise fail(f"{source}: cannot read signals for {day}: {type(exc).__name__}: {exc}", table=table) from None
    try:
        return normalise(raw, source, day)
    except SignalFileError as exc:
        raise fail(str(exc), table=table) from None



class AggTradesConfig(BaseModel):
    source: str = Field(
        default="landing",
        description="'landing': data.binance.vision daily zips already in the landing zone; 'vision': download "
        "them from vision_url (verified, then mirrored into the landing zone); 'rest': the aggTrades REST endpoint.",
    )
    market: str = Field(default="futures", description="'futures' (USDT-M, data/futures/um/...) or 'spot' (data/spot/...).")
    pre_window_s: int = Field(
        default=trades.PRE_WINDOW_S,
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
    max_rejected_fraction: float = fraction(
        0.05,
        "The quarantine_share check fails (blocking downstream) when more than this fraction of a day "
        "file's rows are quarantined (outside the file's UTC day, or conflicting copies of one trade id).",
    )
    min_rows_ratio: float = fraction(
        binance.MIN_ROWS_RATIO,
        "A day file with fewer trades than this fraction of the median of the same symbol's other days "
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
            got = trades.gather_rest(signals_df, rest, pre_window_s=config.pre_window_s)
            context.log.info(f"REST aggTrades: {rest.stats.calls} calls ({rest.stats.pages_by_id} by fromId), {client.stats}")
            return got
    raise fail(f"unknown agg_trades source {config.source!r}; choose 'landing', 'vision' or 'rest'")


def _gather_files(config: AggTradesConfig, market: str, signals_df: pl.DataFrame, files) -> trades.Gathered:
    def load(sym: str, day: dt.date):
        return binance.load_day_checked(files, market, sym, day, require_checksum=config.require_checksum)

    return trades.gather(
        signals_df,
        load,
        pre_window_s=config.pre_window_s,
        skip_missing_days=config.skip_missing_days,
        describe_day=lambda sym, day: files.describe(binance.agg_trades_key(market, sym, day)),
        workers=config.workers,
        min_rows_ratio=config.min_rows_ratio,
    )


@house_asset(
    KEYS["agg_trades"], "raw", {"polars", "parquet"}, "2",  # v2: per-row units, day bounds, conflicts held back
    partitions_def=utc_days, per_run=DAYS_PER_RUN, metadata=table_meta(schemas.AGG_TRADES_SCHEMA),
    ins={"signals": AssetIn(key=KEYS["signals"])}, checks=TRADE_CHECKS, config=AggTradesConfig, tags={"vendor": "binance"},
)
def agg_trades(context: AssetExecutionContext, signals: pl.DataFrame, landing: LandingZone, http: HttpClientResource):
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
    sig = schemas.conform(signals, schemas.SIGNALS_SCHEMA)
    try:
        got = _gather(context, config, sig, landing, http)
    except binance.BinanceDataError as exc:
        raise fail(str(exc), file=exc.source, rule=exc.rule) from None
    except binance.BinanceBanned as exc:
        raise fail(str(exc), endpoint=exc.endpoint) from None
    out = trades.by_signal_day(got.trades, sig, days)
    figures = trades.day_figures(got, sig, out, days)
    md.per_day(context, figures, closed=lambda d: None if figures[d]["signals"] else "no signal on this day", source=config.source, market=config.market)
    context.log.info(f"read {len(got.files_read)} day file(s); {got.count('ok')} signal(s) with trades")
    outcomes = {COVERAGE_CHECK: _coverage(got, sig.height), QUARANTINE_CHECK: _trade_quarantine(got.reports, config.max_rejected_fraction)}
    return TRADE_CHECKS.materialize(context, out, outcomes=outcomes, schema=got.trades.schema)


def _coverage(got: trades.Gathered, n_signals: int) -> qc.Outcome:
    skipped = {str(s): got.problems[s] for s in got.problems}
    return qc.Outcome(
        not skipped,
        f"{len(skipped)} signal(s) skipped: " + ", ".join(f"{k} ({got.status[int(k)]})" for k in list(skipped)[:10])
        if skipped
        else f"All {n_signals} signal(s) have trades in their window.",
        {
            "signals": n_signals,
            **{f"skipped/{s}": got.count(s) for s in trades.STATUSES if s != "ok"},
            "skipped_signals": MetadataValue.json(dict(list(skipped.items())[:100])),
            "files_read": len(got.files_read),
        },
    )


def _trade_quarantine(reports: list[binance.DayReport], limit: float) -> qc.Outcome:
    meta = {
        "limit": limit,
        "files": len(reports),
        "rows_quarantined": sum(r.quarantined for r in reports),
        "quarantined/outside_day": sum(r.outside_day for r in reports),
        "quarantined/conflicting_duplicate": sum(r.conflicting_duplicate for r in reports),
        "duplicates_dropped": sum(r.duplicates_dropped for r in reports),
    }
    return share_outcome(reports, limit, meta, lambda r: {"file": r.source, "share": round(r.share, 6), **r.as_metadata()})
