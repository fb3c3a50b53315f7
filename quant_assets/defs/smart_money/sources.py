"""Smart money, stage 1: the universe (symbols, membership and sample dates) and the raw FMP
sources per symbol, cached and validated (``quant_assets.lib.sources.fmp``,
``quant_assets.lib.smart_money.raw``).

Symbols are the dynamic partitions ``smart_money_symbols`` (registered by ``smart_money/universe``):
every symbol is a checkpoint, so a backfill that dies resumes with only the symbols not yet done,
and the permanent response cache makes a rerun of done work free of HTTP calls.
"""



import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, MetadataValue, multi_asset
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import config_schema, fraction, lib_params, mirrors, parse
from quant_assets.defs.partitions import smart_money_symbols
from quant_assets.defs.smart_money.keys import (
    FMP,
    KEYS,
    PER_SYMBOL,
    QUARANTINE_CHECK,
    RAW_KEYS,
    UNIVERSE_DOCS,
    UNIVERSE_SCHEMA,
    schedule_of,
    smart_money_kwargs,
)
from quant_assets.defs.vendors import FmpResource
from quant_assets.lib.http import HttpError
from quant_assets.lib.smart_money.raw import RAW_SCHEMAS, RAW_TABLES, conflict_verdict, fetch_figures, fetch_raw_many
from quant_assets.lib.smart_money.universe import (
    DATASET_FILE_NAMES,
    DEFAULT_HEDGE_FUNDS,
    UNIVERSES,
    FetchWindow,
    Schedule,
    UniverseError,
    resolve_universe,
)
from quant_assets.lib.sources import fmp as fmp_source

UNIVERSE_CHECKS = qc.AssetChecks(KEYS["universe"])
RAW_CHECKS = {
    table: qc.AssetChecks(
        key,
        qc.Check(
            QUARANTINE_CHECK,
            "Each symbol's share of conflicting records (same key, different values: all copies held back) is within "
            "max_conflict_share; above it the features are blocked.",
        ),
    )
    for table, key in RAW_KEYS.items()
}


@mirrors(Schedule)
class UniverseConfig(BaseModel):
    universe: str = Field(
        default="test",
        description=f"Which stocks: {', '.join(UNIVERSES)}. test = TSLA, NVDA, AAPL; custom = `symbols`; "
        "topN = the first N symbols of `universe_file` (on each date, of its members then when it is a dated membership file).",
    )
    symbols: list[str] = Field(default=[], description="Tickers of the custom universe (e.g. AAPL, GOOGL, MSFT, TSLA).")
    universe_file: str = Field(
        default="",
        description="For top50/top100/top500: a CSV with a `symbol` column (and optionally `rank`), a static list; "
        "or a dated membership file with `symbol, start, end` (and optionally `rank`) per membership span. "
        "Empty = the embedded S&P 500 list ranked by market capitalisation (static: survivorship bias).",
    )


@house_asset(
    KEYS["universe"], "curated", {"polars", "parquet"}, "2",  # v2: sample_dates per symbol (dated membership), survivorship
    metadata=md.table_definition_metadata(UNIVERSE_SCHEMA, UNIVERSE_DOCS), checks=UNIVERSE_CHECKS, config=UniverseConfig, tags=FMP,
)
def universe(context: AssetExecutionContext):
    """The stocks and the monthly sample dates of the study; registers one ``smart_money_symbols``
    partition per stock. One row per symbol, in rank order.

    ``test`` (TSLA, NVDA, AAPL), ``custom`` (Config ``symbols``), or ``top50`` / ``top100`` /
    ``top500`` from a universe file: a static list, or a dated membership file (symbol, start,
    end), whose first N members on each sample date are the ones sampled then. Existing
    partitions are kept (their data stays valid); downstream assets read the symbols, the dates
    each is sampled on and the schedule from this table.
    """
    config = parse(UniverseConfig, context)
    try:
        schedule = lib_params(config, Schedule)
        dates = schedule.sample_dates()
        selection = resolve_universe(config.universe, dates, config.symbols, config.universe_file or None)
    except UniverseError as exc:
        raise Failure(description=str(exc)) from None
    symbols = selection.symbols
    existing = set(context.instance.get_dynamic_partitions(smart_money_symbols.name))
    new = [s for s in symbols if s not in existing]
    if new:
        context.instance.add_dynamic_partitions(smart_money_symbols.name, new)
    frame = selection.table(config.universe, schedule, UNIVERSE_SCHEMA)
    meta = {
        "symbols": len(symbols),
        "partitions_registered": len(new),
        "sample_dates": len(dates),
        "first_sample": str(dates[0]),
        "last_sample": str(dates[-1]),
        "expected_examples": selection.examples,
        "survivorship": selection.survivorship,
        "membership_changes": selection.membership_changes(),
        "dataset_file": DATASET_FILE_NAMES[config.universe],
        "symbol_list": MetadataValue.json(symbols),
    }
    return UNIVERSE_CHECKS.materialize(context, frame, meta)


class FmpFetchConfig(BaseModel):
    source: str = Field(
        default="auto",
        description="auto = the real FMP when FMP_API_KEY (or FMP_BASE_URL) is set, else the simulated FMP; "
        "simulated = always the simulator; fmp = always the configured vendor.",
    )
    calls_per_minute: int = Field(default=300, gt=0, description="Most requests per minute to FMP (the plan's limit).")
    max_concurrency: int = Field(default=4, ge=1, le=32, description="Most requests in flight at once.")
    hedge_fund_ciks: list[str] = Field(
        default=list(DEFAULT_HEDGE_FUNDS),
        description="SEC CIKs of the hedge funds tracked by raw_hedge_fund_holdings (default: twenty large hedge funds).",
    )
    insider_page_size: int = Field(default=1000, ge=1, le=1000, description="Rows per insider-trading page.")
    holders_page_size: int = Field(
        default=100, ge=1, le=1000, description="Rows per 13F holder-analytics page (not above the vendor's cap)."
    )
    max_conflict_share: float = fraction(
        0.01,
        "The quarantine_share check of each raw table fails (blocking the features) when more than this "
        "fraction of a symbol's rows conflict (same day, filer and quarter, or ETF with different values; all "
        "copies are held back).",
    )
    fetch_budget_s: float = Field(
        default=3600.0,
        gt=0,
        description="Most seconds the run's whole fetch may take (requests, retries, Retry-After waits); past it the "
        "run fails naming the request, and the responses already cached are kept.",
    )


_RAW_DOCS = {
    "insider_trades": "Insider transactions (SEC Forms 3/4/5) of the stock filed in the study window: one row per "
    "reported transaction, with the day it became public (known_from). Source: FMP insider-trading/search.",
    "institutional_ownership": "13F holder analytics: one row per filer and quarter (positions as fractions of "
    "shares outstanding and of the filer's portfolio), with the filing day. Source: FMP "
    "institutional-ownership/extract-analytics/holder, one request per quarter.",
    "hedge_fund_holdings": "The tracked hedge funds' 13F positions in the stock (the configured CIKs among the 13F "
    "holders): one row per fund and quarter.",
    "senate_trades": "Senators' trades of the stock from periodic transaction reports disclosed in the window: one "
    "row per trade, with its disclosure day. Source: FMP senate-trades.",
    "house_trades": "House members' trades of the stock disclosed in the window: one row per trade, with its "
    "disclosure day. Source: FMP house-trades.",
    "etf_exposure": "ETFs holding the stock: one row per ETF, a present-day snapshot stamped with the day it was "
    "fetched (FMP keeps no history). Source: FMP etf/asset-exposure.",
    "prices": "Daily bars over the window, split-adjusted, with the factor back to as-traded prices. Source: FMP "
    "historical-price-eod/full and splits.",
}


@multi_asset(
    name="raw_fmp_sources",
    outs={
        f"raw_{table}": AssetOut(
            key=RAW_KEYS[table],
            is_required=False,
            description=_RAW_DOCS[table],
            metadata=md.table_definition_metadata(RAW_SCHEMAS[table], fmp_source.COLUMN_DOCS, partition_column="symbol"),
            # prices v2: split_ratio (the bar each split takes effect)
            **smart_money_kwargs("raw", {"polars", "parquet", "api"}, "2" if table == "prices" else "1"),
        )
        for table in RAW_TABLES
    },
    ins={"universe": AssetIn(key=KEYS["universe"])},
    partitions_def=smart_money_symbols,
    backfill_policy=PER_SYMBOL,
    can_subset=True,
    check_specs=[spec for checks in RAW_CHECKS.values() for spec in checks.specs],
    # One FMP account, one rate limit: runs fetching from it queue behind each other when the
    # instance limits the pool (dagster.yaml: concurrency: pools: ...).
    pool="fmp",
    config_schema=config_schema(FmpFetchConfig),
)
def raw_fmp_sources(context: AssetExecutionContext, universe: pl.DataFrame, fmp: FmpResource):
    """Every FMP source of each symbol in the run, from the permanent response cache or the vendor,
    normalised to one table per source (see each asset's description). A symbol whose vendor
    request fails for good fails the run, naming the symbol and endpoint; the responses already
    received stay cached, so a retry asks only for what is missing."""
    config = parse(FmpFetchConfig, context)
    schedule = schedule_of(universe)
    window = FetchWindow.for_schedule(schedule)
    selected = [t for t, k in RAW_KEYS.items() if k in context.selected_asset_keys]
    try:
        client = fmp.client(
            calls_per_minute=config.calls_per_minute,
            max_concurrency=config.max_concurrency,
            page_sizes={"insider_trades": config.insider_page_size, "institutional_ownership": config.holders_page_size},
            source=config.source,
            budget_s=config.fetch_budget_s,
        )
    except ValueError as exc:
        raise Failure(description=str(exc)) from None
    symbols = list(context.partition_keys)
    try:
        try:
            frames, reports = fetch_raw_many(client, symbols, window, tables=selected, hedge_fund_ciks=config.hedge_fund_ciks)
        except HttpError as exc:
            raise Failure(
                description=str(exc),
                metadata={"endpoint": exc.endpoint, "status": exc.status if exc.status else -1},
            ) from None
        stats = client.http.stats
    finally:
        client.http.close()
    entries, size = client.cache.entries()
    cache_state = {"cache_entries": entries, "cache_bytes": size, "cache_dir": MetadataValue.path(str(client.cache.root))}
    for t in selected:
        for symbol in symbols:
            figures = {
                "vendor": fmp.describe(config.source),
                "endpoints": MetadataValue.json([fmp_source.ENDPOINTS[d].path for d in RAW_TABLES[t]]),
                "window": f"{window.start}..{window.end}",
                **fetch_figures([reports[symbol][d] for d in RAW_TABLES[t]]),
                **cache_state,
            }
            if t == "hedge_fund_holdings":
                # Read from the same cached 13F responses as raw_institutional_ownership.
                figures["same_requests_as"] = RAW_KEYS["institutional_ownership"].to_user_string()
            context.add_asset_metadata(figures, asset_key=RAW_KEYS[t], partition_key=symbol)
    hits = sum(r.cache_hits for rep in reports.values() for r in rep.values())
    misses = sum(r.cache_misses for rep in reports.values() for r in rep.values())
    context.log.info(
        f"{len(symbols)} symbol(s) from {fmp.describe(config.source)}: {stats.calls} HTTP call(s) "
        f"({stats.retries} retried, {stats.throttled} throttled), cache {hits} hit(s) / {misses} miss(es); "
        f"cache holds {entries:,} entries, {size:,} bytes"
    )
    for t in selected:
        passed, verdict, held, over = conflict_verdict({s: [reports[s][d] for d in RAW_TABLES[t]] for s in symbols}, config.max_conflict_share)
        meta = {"limit": config.max_conflict_share, "conflicts_quarantined": held, "symbols_over_limit": MetadataValue.json(over)}
        yield RAW_CHECKS[t].materialize(context, frames[t], outcomes={QUARANTINE_CHECK: qc.Outcome(passed, verdict, meta)}, asset_key=True)
