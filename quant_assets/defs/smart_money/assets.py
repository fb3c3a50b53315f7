"""Smart-money flow: FMP sources -> raw tables per symbol -> point-in-time features per symbol ->
the dataset CSV -> time-ordered splits -> a LightGBM model -> its evaluation on the test split.

Symbols are the dynamic partitions ``smart_money_symbols`` (registered by ``smart_money/universe``):
every symbol is a checkpoint, so a backfill that dies resumes with only the symbols not yet done,
and the permanent response cache makes a rerun of done work free of HTTP calls.
"""


import json

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetRecordsFilter,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.partitions import smart_money_symbols
from quant_assets.defs.resources import FmpResource, Lake, partition_file
from quant_assets.lib.http import HttpError
from quant_assets.lib.smart_money import dataset as ds
from quant_assets.lib.smart_money import model as mdl
from quant_assets.lib.smart_money import raw as rw
from quant_assets.lib.smart_money import splits as sp
from quant_assets.lib.smart_money.features import ETF_POLICIES
from quant_assets.lib.smart_money.universe import (
    DATASET_FILE_NAMES,
    DEFAULT_HEDGE_FUNDS,
    UNIVERSES,
    FetchWindow,
    Schedule,
    SURVIVORSHIP_STATIC,
    UniverseError,
    resolve_universe,
)
from quant_assets.lib.sources import fmp as fmp_source

DOMAIN = "smart_money"
KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in ("universe", "features", "dataset", "splits", "model", "evaluation")
}
RAW_KEYS = {table: AssetKey([DOMAIN, f"raw_{table}"]) for table in rw.RAW_TABLES}
# One symbol per run in a backfill: each symbol is materialized (a checkpoint) on its own.
PER_SYMBOL = BackfillPolicy.multi_run(max_partitions_per_run=1)

UNIVERSE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "rank": pl.Int32,
    "universe": pl.String,
    "start_month": pl.String,
    "end_month": pl.String,
    "sample_day": pl.Int32,
    "sample_dates": pl.List(pl.Date),
    "survivorship": pl.String,
}
UNIVERSE_DOCS = {
    "symbol": "Stock ticker; one smart_money_symbols partition each.",
    "rank": "Position in the universe (1 = first; the universe file's rank for top50/100/500).",
    "universe": "Universe name: test, custom, top50, top100 or top500.",
    "start_month": "First sample month (YYYY-MM).",
    "end_month": "Last sample month (YYYY-MM).",
    "sample_day": "Day of the month sampled (the next NYSE session when it is not one).",
    "sample_dates": "The sample dates on which the symbol is in the universe (all of them for a static list; "
    "its membership spans for a dated membership file).",
    "survivorship": "static_universe (one list on every date: only its survivors are sampled) or dated_membership.",
}
SPLITS_SCHEMA = {**ds.DATASET_SCHEMA, "split": pl.String}
SPLITS_DOCS = {**ds.COLUMN_DOCS, "split": "train, val or test (whole sample dates, in date order)."}

COMPLETENESS_CHECK = "completeness"
QUARANTINE_CHECK = "quarantine_share"
LABEL_BALANCE_CHECK = "label_balance"
MISSING_CHECK = "missing_features"
TIME_ORDER_CHECK = "time_ordered"
CHANCE_CHECK = "roc_auc_above_chance"


def _kwargs(layer: str, kinds: set[str], code_version: str = "1") -> dict:
    return md.asset_kwargs(DOMAIN, layer=layer, kinds=kinds, code_version=code_version, tags={"vendor": "fmp"})


def schedule_of(universe: pl.DataFrame) -> Schedule:
    """The sample schedule recorded with the universe."""
    if universe.height == 0:
        raise Failure(description="smart_money/universe is empty: materialize it with at least one symbol first")
    row = universe.row(0, named=True)
    return Schedule(start_month=row["start_month"], end_month=row["end_month"], sample_day=int(row["sample_day"]))


# ---------------------------------------------------------------------------------------
# Universe
# ---------------------------------------------------------------------------------------


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
    start_month: str = Field(default="2022-01", description="First sample month (YYYY-MM).")
    end_month: str = Field(default="2024-12", description="Last sample month (YYYY-MM).")
    sample_day: int = Field(default=15, ge=1, le=28, description="Day of the month sampled; the next NYSE session when not one.")


@asset(
    key=KEYS["universe"],
    **_kwargs("curated", {"polars", "parquet"}, "2"),  # v2: sample_dates per symbol (dated membership), survivorship
    metadata=md.table_definition_metadata(UNIVERSE_SCHEMA, UNIVERSE_DOCS),
    check_specs=[qc.schema_spec(KEYS["universe"])],
    config_schema=config_schema(UniverseConfig),
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
        schedule = Schedule(config.start_month, config.end_month, config.sample_day)
        dates = schedule.sample_dates()
        selection = resolve_universe(config.universe, dates, config.symbols, config.universe_file or None)
    except UniverseError as exc:
        raise Failure(description=str(exc)) from None
    symbols = selection.symbols
    existing = set(context.instance.get_dynamic_partitions(smart_money_symbols.name))
    new = [s for s in symbols if s not in existing]
    if new:
        context.instance.add_dynamic_partitions(smart_money_symbols.name, new)
    frame = pl.DataFrame(
        {
            "symbol": symbols,
            "rank": list(range(1, len(symbols) + 1)),
            "universe": [config.universe] * len(symbols),
            "start_month": [config.start_month] * len(symbols),
            "end_month": [config.end_month] * len(symbols),
            "sample_day": [config.sample_day] * len(symbols),
            "sample_dates": [selection.sample_dates_of(sym) for sym in symbols],
            "survivorship": [selection.survivorship] * len(symbols),
        },
        schema=UNIVERSE_SCHEMA,
    )
    changes = [d for prev, d in zip(dates, dates[1:]) if selection.sampled[prev] != selection.sampled[d]]
    return MaterializeResult(
        value=frame,
        metadata={
            "symbols": len(symbols),
            "partitions_registered": len(new),
            "sample_dates": len(dates),
            "first_sample": str(dates[0]),
            "last_sample": str(dates[-1]),
            "expected_examples": selection.examples,
            "survivorship": selection.survivorship,
            "membership_changes": len(changes),
            "dataset_file": DATASET_FILE_NAMES[config.universe],
            "symbol_list": MetadataValue.json(symbols),
        },
        check_results=[qc.schema_result(context, KEYS["universe"], frame.schema)],
    )


# ---------------------------------------------------------------------------------------
# Raw sources (one asset per source, one partition per symbol)
# ---------------------------------------------------------------------------------------


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
    max_conflict_share: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="The quarantine_share check of each raw table fails (blocking the features) when more than this "
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
            metadata=md.table_definition_metadata(rw.RAW_SCHEMAS[table], fmp_source.COLUMN_DOCS, partition_column="symbol"),
            # prices v2: split_ratio (the bar each split takes effect)
            **_kwargs("raw", {"polars", "parquet", "api"}, "2" if table == "prices" else "1"),
        )
        for table in rw.RAW_TABLES
    },
    ins={"universe": AssetIn(key=KEYS["universe"])},
    partitions_def=smart_money_symbols,
    backfill_policy=PER_SYMBOL,
    can_subset=True,
    check_specs=[qc.schema_spec(k) for k in RAW_KEYS.values()]
    + [
        qc.spec(
            k,
            QUARANTINE_CHECK,
            "Each symbol's share of conflicting records (same key, different values: all copies held back) is within "
            "max_conflict_share; above it the features are blocked.",
        )
        for k in RAW_KEYS.values()
    ],
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
            frames, reports = rw.fetch_raw_many(client, symbols, window, tables=selected, hedge_fund_ciks=config.hedge_fund_ciks)
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
        per_partition = {}
        for symbol in context.partition_keys:
            rep = [reports[symbol][d] for d in rw.RAW_TABLES[t]]
            hits, misses = sum(r.cache_hits for r in rep), sum(r.cache_misses for r in rep)
            per_partition[symbol] = {
                "vendor": fmp.describe(config.source),
                "endpoints": MetadataValue.json([fmp_source.ENDPOINTS[d].path for d in rw.RAW_TABLES[t]]),
                "window": f"{window.start}..{window.end}",
                "cache_hits": hits,
                "cache_misses": misses,
                "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
                "http_calls": sum(r.http_calls for r in rep),
                "cache_refetched": sum(r.cache_refetched for r in rep),
                "duplicates_dropped": sum(r.duplicates_dropped for r in rep),
                "conflicts_quarantined": sum(r.conflicts_quarantined for r in rep),
                **cache_state,
            }
            if t == "hedge_fund_holdings":
                # Read from the same cached 13F responses as raw_institutional_ownership.
                per_partition[symbol]["same_requests_as"] = RAW_KEYS["institutional_ownership"].to_user_string()
        for symbol, meta in per_partition.items():
            context.add_asset_metadata(meta, asset_key=RAW_KEYS[t], partition_key=symbol)
    hits = sum(r.cache_hits for rep in reports.values() for r in rep.values())
    misses = sum(r.cache_misses for rep in reports.values() for r in rep.values())
    context.log.info(
        f"{len(symbols)} symbol(s) from {fmp.describe(config.source)}: {stats.calls} HTTP call(s) "
        f"({stats.retries} retried, {stats.throttled} throttled), cache {hits} hit(s) / {misses} miss(es); "
        f"cache holds {entries:,} entries, {size:,} bytes"
    )
    for t in selected:
        key = RAW_KEYS[t]
        checks = []
        if AssetCheckKey(key, qc.SCHEMA_CHECK) in context.selected_asset_check_keys:
            checks.append(qc.schema_result(context, key, frames[t].schema))
        if AssetCheckKey(key, QUARANTINE_CHECK) in context.selected_asset_check_keys:
            checks.append(_conflict_result(key, {s: [reports[s][d] for d in rw.RAW_TABLES[t]] for s in symbols}, config.max_conflict_share))
        yield MaterializeResult(asset_key=key, value=frames[t], check_results=checks)


def _conflict_result(key: AssetKey, reports: dict[str, list[fmp_source.FetchReport]], limit: float):
    shares = {}
    for symbol, rep in reports.items():
        held = sum(r.conflicts_quarantined for r in rep)
        rows = sum(r.rows for r in rep)
        shares[symbol] = (held, held / rows if rows else 0.0)
    over = {s: v for s, v in shares.items() if v[1] > limit}
    worst = max(shares.items(), key=lambda kv: kv[1][1], default=(None, (0, 0.0)))
    desc = (
        f"{len(over)} symbol(s) with more than {limit:.1%} conflicting records; worst {worst[0]} at {worst[1][1]:.1%} "
        f"({worst[1][0]} rows held back)"
        if over
        else f"Every symbol within the {limit:.1%} conflict limit (worst {worst[1][1]:.2%})."
    )
    meta = {
        "limit": limit,
        "conflicts_quarantined": sum(v[0] for v in shares.values()),
        "symbols_over_limit": MetadataValue.json({s: {"rows": v[0], "share": round(v[1], 6)} for s, v in over.items()}),
    }
    return qc.result(key, QUARANTINE_CHECK, not over, desc, meta)


# ---------------------------------------------------------------------------------------
# Features (per symbol)
# ---------------------------------------------------------------------------------------


class FeaturesConfig(BaseModel):
    etf_snapshot_policy: str = Field(
        default="static",
        description="FMP's ETF exposure is a present-day snapshot with no history. static = it describes every "
        "sample date (ETF holdings follow index weights and move slowly; a known look-ahead, flagged in "
        "metadata); strict = ETF features are null before the snapshot's date.",
    )
    label_threshold: float = Field(default=ds.LABEL_THRESHOLD, gt=-1, lt=1, description="label = 1 when return_14d is above this.")


@asset(
    key=KEYS["features"],
    **_kwargs("features", {"polars", "parquet"}, "3"),  # v2: insider shares on the sample date's split basis; v3: prices too
    partitions_def=smart_money_symbols,
    backfill_policy=PER_SYMBOL,
    ins={"universe": AssetIn(key=KEYS["universe"]), **{f"raw_{t}": AssetIn(key=k) for t, k in RAW_KEYS.items()}},
    metadata=md.table_definition_metadata(ds.DATASET_SCHEMA, ds.COLUMN_DOCS, partition_column="symbol"),
    check_specs=[qc.schema_spec(KEYS["features"])],
    config_schema=config_schema(FeaturesConfig),
)
def features(
    context: AssetExecutionContext,
    universe: pl.DataFrame,
    raw_insider_trades: pl.DataFrame,
    raw_institutional_ownership: pl.DataFrame,
    raw_hedge_fund_holdings: pl.DataFrame,
    raw_senate_trades: pl.DataFrame,
    raw_house_trades: pl.DataFrame,
    raw_etf_exposure: pl.DataFrame,
    raw_prices: pl.DataFrame,
):
    """The 27 smart-money features, the prices and the 14-day label of one symbol: one row per
    sample date (the dataset's columns, in its order). Point in time: a filing counts from its
    filing or disclosure day, never its transaction day; each feature's definition is its
    column description. Prices USD split-adjusted; label = 1 when return_14d > 0.05."""
    config = parse(FeaturesConfig, context)
    if config.etf_snapshot_policy not in ETF_POLICIES:
        raise Failure(description=f"etf_snapshot_policy must be one of {ETF_POLICIES}, got {config.etf_snapshot_policy!r}")
    dates = schedule_of(universe).sample_dates()
    inputs = {
        "insider_trades": raw_insider_trades,
        "institutional_ownership": raw_institutional_ownership,
        "hedge_fund_holdings": raw_hedge_fund_holdings,
        "senate_trades": raw_senate_trades,
        "house_trades": raw_house_trades,
        "etf_exposure": raw_etf_exposure,
        "prices": raw_prices,
    }
    inputs = {t: _typed(f, rw.RAW_SCHEMAS[t]) for t, f in inputs.items()}
    symbols = list(context.partition_keys)
    frame = ds.dataset_rows(inputs, symbols, dates, etf_policy=config.etf_snapshot_policy, threshold=config.label_threshold)
    feature_cols = list(ds.DATASET_COLUMNS[5:-1])
    stats = (
        frame.group_by("symbol")
        .agg(
            pl.len().alias("sample_dates"),
            pl.col("label").is_not_null().sum().alias("labelled_rows"),
            pl.col("label").mean().alias("bullish_share"),
            pl.any_horizontal([pl.col(c).is_null() for c in feature_cols]).sum().alias("rows_missing_features"),
        )
        .rows_by_key("symbol", named=True, unique=True)
    )
    md.per_partition(
        context,
        {
            symbol: {
                "sample_dates": int(stats[symbol]["sample_dates"]),
                "labelled_rows": int(stats[symbol]["labelled_rows"]),
                "bullish_share": round(float(stats[symbol]["bullish_share"] or 0.0), 4),
                "rows_missing_features": int(stats[symbol]["rows_missing_features"]),
                "etf_snapshot_policy": config.etf_snapshot_policy,
                "etf_point_in_time": config.etf_snapshot_policy == "strict",
            }
            for symbol in symbols
        },
    )
    return MaterializeResult(value=frame, check_results=[qc.schema_result(context, KEYS["features"], frame.schema)])


def _typed(frame: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """An upstream frame, or an empty one of the right schema when no upstream rows exist."""
    if frame.width == 0:
        return pl.DataFrame(schema=schema)
    return frame


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------


class DatasetConfig(BaseModel):
    min_completeness: float = Field(default=0.85, ge=0, le=1, description="Blocking: labelled rows / (symbols x sample dates) must exceed this.")
    min_bullish_share: float = Field(default=0.30, ge=0, le=1, description="Blocking: share of label = 1 must be at least this.")
    max_bullish_share: float = Field(default=0.70, ge=0, le=1, description="Blocking: share of label = 1 must be at most this.")
    max_missing_share: float = Field(
        default=0.15, ge=0, le=1, description="Blocking: share of rows with any missing feature must be below this."
    )


def dataset_key(universe_name: str) -> str:
    return f"{DOMAIN}/dataset/{DATASET_FILE_NAMES[universe_name]}"


@asset(
    key=KEYS["dataset"],
    **_kwargs("dataset", {"polars", "parquet", "csv"}, "2"),  # v2: rows on each symbol's membership dates only
    ins={"universe": AssetIn(key=KEYS["universe"])},
    deps=[KEYS["features"]],
    metadata=md.table_definition_metadata(ds.DATASET_SCHEMA, ds.COLUMN_DOCS),
    check_specs=[
        qc.spec(KEYS["dataset"], COMPLETENESS_CHECK, "Labelled examples exceed min_completeness (85%) of symbols x sample dates."),
        qc.spec(KEYS["dataset"], LABEL_BALANCE_CHECK, "The share of bullish labels is within 30%-70%."),
        qc.spec(KEYS["dataset"], MISSING_CHECK, "Fewer than max_missing_share (15%) of examples miss any feature."),
        qc.schema_spec(KEYS["dataset"]),
    ],
    config_schema=config_schema(DatasetConfig),
)
def dataset(context: AssetExecutionContext, universe: pl.DataFrame, lake: Lake):
    """The training dataset of the universe: one row per symbol and sample date with a label,
    exactly the columns ``symbol, date, price_at_sample, price_after_14d, return_14d``, the 27
    features, ``label`` -- in that order, ordered by date then symbol. Also written as CSV
    (``smart_money/dataset/smart-money-flow-<universe>.csv`` in the lake). Its three data-quality
    checks block the splits and the model."""
    config = parse(DatasetConfig, context)
    symbols = universe["symbol"].to_list()
    dates = schedule_of(universe).sample_dates()
    # A universe table from before dated membership: a static list on every date.
    sampled = dict(zip(symbols, universe["sample_dates"].to_list())) if "sample_dates" in universe.columns else {s: dates for s in symbols}
    survivorship = universe["survivorship"][0] if "survivorship" in universe.columns else SURVIVORSHIP_STATIC
    frames, absent, stale = [], [], []
    for symbol in symbols:
        path = partition_file(KEYS["features"], symbol)
        try:
            rows = lake.read_frame(path)
        except FileNotFoundError:
            absent.append(symbol)
            continue
        if rows.height and sorted(set(rows["date"].to_list())) != dates:
            stale.append(symbol)
            continue
        frames.append(ds.sampled_rows(rows, sampled[symbol]))
    if stale:
        raise Failure(
            description=f"smart_money/features of {len(stale)} symbol(s) ({', '.join(stale[:10])}) were built for another "
            "sample schedule than the universe's; rematerialize them"
        )
    data = ds.assemble(frames)
    q = ds.quality(data, expected=sum(len(v) for v in sampled.values()))
    universe_name = universe["universe"][0]
    csv_key = dataset_key(universe_name)
    lake.store().write_bytes(csv_key, ds.to_csv(data))
    if absent:
        context.log.warning(f"{len(absent)} symbol(s) have no features partition yet: {absent[:20]}")
    key = KEYS["dataset"]
    checks = [
        qc.result(
            key,
            COMPLETENESS_CHECK,
            q.completeness > config.min_completeness,
            f"{q.rows:,} of {q.expected:,} expected examples ({q.completeness:.1%}; needs > {config.min_completeness:.0%}).",
            {"rows": q.rows, "expected": q.expected, "completeness": round(q.completeness, 4),
             "symbols_without_features": MetadataValue.json(absent[:100])},
        ),
        qc.result(
            key,
            LABEL_BALANCE_CHECK,
            config.min_bullish_share <= q.bullish_share <= config.max_bullish_share,
            f"{q.bullish_share:.1%} bullish (needs {config.min_bullish_share:.0%}-{config.max_bullish_share:.0%}).",
            {"bullish_share": round(q.bullish_share, 4)},
        ),
        qc.result(
            key,
            MISSING_CHECK,
            q.missing_share < config.max_missing_share,
            f"{q.rows_missing_features:,} example(s) ({q.missing_share:.1%}) miss at least one feature "
            f"(needs < {config.max_missing_share:.0%}).",
            {"missing_share": round(q.missing_share, 4), "missing_by_feature": MetadataValue.json(q.missing_by_feature)},
        ),
        qc.schema_result(context, key, data.schema),
    ]
    return MaterializeResult(
        value=data,
        metadata={
            "universe": universe_name,
            "survivorship": survivorship,
            "symbols": len(symbols),
            "sample_dates": len(dates),
            "expected_examples": q.expected,
            "completeness": round(q.completeness, 4),
            "bullish_share": round(q.bullish_share, 4),
            "missing_feature_share": round(q.missing_share, 4),
            "csv": MetadataValue.path(lake.describe(csv_key)),
            "first_date": str(dates[0]),
            "last_date": str(dates[-1]),
        },
        check_results=checks,
    )


# ---------------------------------------------------------------------------------------
# Splits, model, evaluation
# ---------------------------------------------------------------------------------------


class SplitsConfig(BaseModel):
    train_fraction: float = Field(default=0.70, gt=0, lt=1, description="Share of examples (earliest dates) for training.")
    val_fraction: float = Field(default=0.15, gt=0, lt=1, description="Share of examples (next dates) for validation.")
    test_fraction: float = Field(default=0.15, gt=0, lt=1, description="Share of examples (latest dates) for testing.")


@asset(
    key=KEYS["splits"],
    **_kwargs("dataset", {"polars", "parquet", "csv"}),
    ins={"dataset": AssetIn(key=KEYS["dataset"])},
    metadata=md.table_definition_metadata(SPLITS_SCHEMA, SPLITS_DOCS),
    check_specs=[
        qc.spec(KEYS["splits"], TIME_ORDER_CHECK, "Every validation and test example is later than every training example "
                "(and every test example later than every validation one)."),
        qc.schema_spec(KEYS["splits"]),
    ],
    config_schema=config_schema(SplitsConfig),
)
def splits(context: AssetExecutionContext, dataset: pl.DataFrame, lake: Lake):
    """Train / validation / test (70/15/15 by default) of the dataset, ordered by date: whole sample
    dates per split, the earliest for training. One row per example with its ``split``; also
    written as ``train.csv``, ``val.csv`` and ``test.csv`` (dataset columns) under
    ``smart_money/splits/`` in the lake."""
    config = parse(SplitsConfig, context)
    try:
        out, report = sp.time_split(dataset, config.train_fraction, config.val_fraction, config.test_fraction)
    except sp.SplitError as exc:
        raise Failure(description=str(exc)) from None
    uris = {}
    for name in sp.SPLITS:
        key = f"{DOMAIN}/splits/{name}.csv"
        lake.store().write_bytes(key, ds.to_csv(out.filter(pl.col("split") == name)))
        uris[f"{name}_csv"] = MetadataValue.path(lake.describe(key))
    tr, va, te = report.dates["train"], report.dates["val"], report.dates["test"]
    ordered = tr[1] < va[0] and va[1] < te[0]
    return MaterializeResult(
        value=out,
        metadata={
            **{f"{s}_rows": report.rows[s] for s in sp.SPLITS},
            **{f"{s}_dates": f"{a}..{b}" for s, (a, b) in report.dates.items()},
            **{f"{s}_bullish_share": round(float(out.filter(pl.col("split") == s)["label"].mean()), 4) for s in sp.SPLITS},
            "purged_rows": MetadataValue.json(report.purged),
            **uris,
        },
        check_results=[
            qc.result(
                KEYS["splits"],
                TIME_ORDER_CHECK,
                ordered,
                f"train {tr[0]}..{tr[1]} < val {va[0]}..{va[1]} < test {te[0]}..{te[1]}.",
            ),
            qc.schema_result(context, KEYS["splits"], out.schema),
        ],
    )


class ModelConfig(BaseModel):
    version: str = Field(default="1.0.0", description="Model version X.Y.Z: artifacts go to models/smart-money-flow/vX.Y.Z/.")
    num_leaves: int = Field(default=15, ge=2, description="LightGBM num_leaves.")
    learning_rate: float = Field(default=0.03, gt=0, description="LightGBM learning_rate.")
    num_boost_round: int = Field(default=400, ge=1, description="Most boosting rounds.")
    early_stopping_rounds: int = Field(default=40, ge=1, description="Stop when validation log-loss has not improved for this many rounds.")
    min_data_in_leaf: int = Field(default=20, ge=1, description="LightGBM min_data_in_leaf.")
    feature_fraction: float = Field(default=0.8, gt=0, le=1, description="LightGBM feature_fraction.")
    bagging_fraction: float = Field(default=0.8, gt=0, le=1, description="LightGBM bagging_fraction.")
    lambda_l2: float = Field(default=1.0, ge=0, description="LightGBM lambda_l2.")
    seed: int = Field(default=7, description="Random seed (LightGBM runs deterministic, single-threaded).")
    tune_threshold: bool = Field(default=True, description="Choose the decision threshold maximising F1 on validation (else 0.5).")

    def params(self) -> mdl.TrainParams:
        return mdl.TrainParams(
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            num_boost_round=self.num_boost_round,
            early_stopping_rounds=self.early_stopping_rounds,
            min_data_in_leaf=self.min_data_in_leaf,
            feature_fraction=self.feature_fraction,
            bagging_fraction=self.bagging_fraction,
            lambda_l2=self.lambda_l2,
            seed=self.seed,
        )


def _importance_table(importance: dict[str, dict[str, float]]) -> str:
    lines = ["| feature | gain share | splits |", "|---|---|---|"]
    lines += [f"| {f} | {v['gain_share']:.3f} | {v['splits']} |" for f, v in importance.items()]
    return "\n".join(lines)


def _round(v: float | None) -> float:
    return round(v, 4) if v is not None else float("nan")


def _baseline_table(metrics: dict, baselines: dict) -> str:
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| metric | model | constant (base rate) | shuffled labels | gap |", "|---|---|---|---|---|"]
    for m in mdl.BASELINE_METRICS:
        lines.append(
            f"| {m} | {f(metrics.get(m))} | {f(baselines['constant'].get(m))} | {f(baselines['shuffled'].get(m))} | "
            f"{f(baselines['gap'].get(m))} |"
        )
    return "\n".join(lines)


def _confusion_table(cm: dict[str, int]) -> str:
    return (
        "| | predicted 0 | predicted 1 |\n|---|---|---|\n"
        f"| actual 0 | {cm['tn']} | {cm['fp']} |\n| actual 1 | {cm['fn']} | {cm['tp']} |"
    )


@asset(
    key=KEYS["model"],
    **_kwargs("model", {"lightgbm", "python"}),
    ins={"splits": AssetIn(key=KEYS["splits"])},
    config_schema=config_schema(ModelConfig),
)
def model(context: AssetExecutionContext, splits: pl.DataFrame, lake: Lake):
    """The LightGBM classifier of the 14-day label, trained on the training split with early stopping
    on validation. Median imputation and z-score normalisation are fitted on the training split
    only. Writes ``models/smart-money-flow/vX.Y.Z/model.txt``, ``normalizer.json`` and
    ``metadata.json`` (features, parameters, data window, decision threshold, train and
    validation metrics, feature importance) to the lake."""
    config = parse(ModelConfig, context)
    try:
        folder = mdl.model_dir(config.version)
    except ValueError as exc:
        raise Failure(description=str(exc)) from None
    parts = {s: splits.filter(pl.col("split") == s) for s in sp.SPLITS}
    params = config.params()
    trained = mdl.train(parts["train"], parts["val"], params, tune_threshold=config.tune_threshold)
    window = {s: (parts[s]["date"].min(), parts[s]["date"].max()) for s in sp.SPLITS}
    meta = mdl.metadata(trained, params, window, {s: parts[s].height for s in sp.SPLITS}, config.version)
    meta["tune_threshold"] = config.tune_threshold
    store = lake.store()
    store.write_bytes(f"{folder}/model.txt", trained.booster.model_to_string(num_iteration=trained.best_iteration).encode())
    store.write_bytes(f"{folder}/normalizer.json", trained.normalizer.to_json().encode())
    store.write_bytes(f"{folder}/metadata.json", json.dumps(meta, indent=2, default=str).encode())
    val = trained.val_metrics
    return MaterializeResult(
        metadata={
            "version": config.version,
            "model_dir": MetadataValue.path(lake.describe(folder)),
            "model_txt": MetadataValue.path(lake.describe(f"{folder}/model.txt")),
            "best_iteration": trained.best_iteration,
            "decision_threshold": round(trained.threshold, 4),
            "train_rows": parts["train"].height,
            "val_rows": parts["val"].height,
            "val_roc_auc": round(val["roc_auc"], 4) if val["roc_auc"] is not None else -1.0,
            "val_f1": round(val["f1"], 4),
            "val_accuracy": round(val["accuracy"], 4),
            "feature_importance": MetadataValue.md(_importance_table(trained.importance)),
            "parameters": MetadataValue.json(meta["parameters"]),
            "data_window": MetadataValue.json(meta["data_window"]),
            "metadata_json": MetadataValue.json(meta),
        }
    )


@asset(
    key=KEYS["evaluation"],
    **_kwargs("analysis", {"lightgbm", "python"}, "2"),  # v2: precision at k and no-skill baselines
    ins={"splits": AssetIn(key=KEYS["splits"])},
    deps=[KEYS["model"]],
    check_specs=[
        qc.spec(KEYS["evaluation"], CHANCE_CHECK, "The model ranks test examples better than chance (ROC-AUC > 0.5).", blocking=False)
    ],
)
def evaluation(context: AssetExecutionContext, splits: pl.DataFrame, lake: Lake):
    """The latest ``smart_money/model`` on the test split (the latest dates, never seen in training
    or model selection): accuracy, precision, recall, F1 at the model's decision threshold,
    ROC-AUC, precision at k (the top 10 % of test rows by probability), the confusion matrix and
    the feature importance -- beside two no-skill baselines on the same test rows (the base rate,
    and the same training on labels shuffled within each date) and the model's gap to the better. Also written as ``evaluation.json``
    next to the model."""
    records = context.instance.fetch_materializations(AssetRecordsFilter(asset_key=KEYS["model"]), limit=1).records
    event = records[0].asset_materialization if records else None
    if event is None or "version" not in event.metadata:
        raise Failure(description="smart_money/model has no materialization to evaluate; materialize it first")
    version = str(event.metadata["version"].value)
    folder = mdl.model_dir(version)
    store = lake.store()
    try:
        booster = mdl.load_booster(store.read_bytes(f"{folder}/model.txt").decode())
        normalizer = mdl.Normalizer.from_json(store.read_bytes(f"{folder}/normalizer.json").decode())
        meta = json.loads(store.read_bytes(f"{folder}/metadata.json"))
    except FileNotFoundError as exc:
        raise Failure(description=f"model v{version} artifacts are incomplete in the lake: {exc}") from None
    test = splits.filter(pl.col("split") == "test")
    p = booster.predict(normalizer.transform(test))
    metrics = mdl.classification_metrics(test["label"].to_numpy(), p, meta["decision_threshold"])
    baselines = mdl.no_skill_baselines(
        splits.filter(pl.col("split") == "train"),
        splits.filter(pl.col("split") == "val"),
        test,
        metrics,
        mdl.params_from_metadata(meta),
        tune_threshold=bool(meta.get("tune_threshold", True)),
        features=meta["features"],
    )
    report = {
        "version": version,
        "test_window": {"first_date": str(test["date"].min()), "last_date": str(test["date"].max()), "rows": test.height},
        "metrics": metrics,
        "no_skill_baselines": baselines,
        "feature_importance": meta["feature_importance"],
    }
    store.write_bytes(f"{folder}/evaluation.json", json.dumps(report, indent=2).encode())
    auc = metrics["roc_auc"]
    return MaterializeResult(
        metadata={
            "version": version,
            "test_rows": test.height,
            "test_dates": f"{test['date'].min()}..{test['date'].max()}",
            "accuracy": round(metrics["accuracy"], 4),
            "precision": round(metrics["precision"], 4),
            "recall": round(metrics["recall"], 4),
            "f1": round(metrics["f1"], 4),
            "roc_auc": round(auc, 4) if auc is not None else -1.0,
            "precision_at_k": round(metrics["precision_at_k"], 4) if metrics["precision_at_k"] is not None else -1.0,
            "k": metrics["k"],
            "baselines": MetadataValue.md(_baseline_table(metrics, baselines)),
            "gap_roc_auc": _round(baselines["gap"]["roc_auc"]),
            "gap_precision_at_k": _round(baselines["gap"]["precision_at_k"]),
            "no_skill_baselines": MetadataValue.json(baselines),
            "decision_threshold": round(metrics["threshold"], 4),
            "positive_rate": round(metrics["positive_rate"], 4),
            "confusion_matrix": MetadataValue.md(_confusion_table(metrics["confusion_matrix"])),
            "feature_importance": MetadataValue.md(_importance_table(meta["feature_importance"])),
            "evaluation_json": MetadataValue.path(lake.describe(f"{folder}/evaluation.json")),
            "metrics": MetadataValue.json(metrics),
        },
        check_results=[
            qc.result(
                KEYS["evaluation"],
                CHANCE_CHECK,
                auc is not None and auc > 0.5,
                f"Test ROC-AUC {auc:.3f}." if auc is not None else "The test split holds one class only: no ROC-AUC.",
                {"roc_auc": round(auc, 4) if auc is not None else -1.0},
                severity=AssetCheckSeverity.WARN,
            )
        ],
    )
