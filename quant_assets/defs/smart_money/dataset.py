"""Smart money, stage 2: point-in-time features per symbol and the dataset CSV with its quality
checks (``quant_assets.lib.smart_money.features`` and ``.dataset``)."""



import polars as pl
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import fraction, parse
from quant_assets.defs.partitions import smart_money_symbols
from quant_assets.defs.resources import Lake, partition_file
from quant_assets.defs.smart_money.keys import (
    COMPLETENESS_CHECK,
    DOMAIN,
    FMP,
    KEYS,
    LABEL_BALANCE_CHECK,
    MISSING_CHECK,
    PER_SYMBOL,
    RAW_KEYS,
    schedule_of,
)
from quant_assets.lib import frames
from quant_assets.lib.smart_money.dataset import (
    COLUMN_DOCS,
    DATASET_SCHEMA,
    LABEL_THRESHOLD,
    assemble,
    dataset_rows,
    quality,
    sampled_rows,
    symbol_figures,
    to_csv,
)
from quant_assets.lib.smart_money.features import ETF_POLICIES
from quant_assets.lib.smart_money.raw import RAW_SCHEMAS
from quant_assets.lib.smart_money.universe import DATASET_FILE_NAMES, SURVIVORSHIP_STATIC

FEATURE_CHECKS = qc.AssetChecks(KEYS["features"])
DATASET_CHECKS = qc.AssetChecks(
    KEYS["dataset"],
    qc.Check(COMPLETENESS_CHECK, "Labelled examples exceed min_completeness (85%) of symbols x sample dates."),
    qc.Check(LABEL_BALANCE_CHECK, "The share of bullish labels is within 30%-70%."),
    qc.Check(MISSING_CHECK, "Fewer than max_missing_share (15%) of examples miss any feature."),
)


class FeaturesConfig(BaseModel):
    etf_snapshot_policy: str = Field(
        default="static",
        description="FMP's ETF exposure is a present-day snapshot with no history. static = it describes every "
        "sample date (ETF holdings follow index weights and move slowly; a known look-ahead, flagged in "
        "metadata); strict = ETF features are null before the snapshot's date.",
    )
    label_threshold: float = Field(default=LABEL_THRESHOLD, gt=-1, lt=1, description="label = 1 when return_14d is above this.")


@house_asset(
    KEYS["features"], "features", {"polars", "parquet"}, "3",  # v2: insider shares on the sample date's split basis; v3: prices too
    partitions_def=smart_money_symbols, backfill_policy=PER_SYMBOL,
    metadata=md.table_definition_metadata(DATASET_SCHEMA, COLUMN_DOCS, partition_column="symbol"),
    ins={"universe": AssetIn(key=KEYS["universe"]), **{f"raw_{t}": AssetIn(key=k) for t, k in RAW_KEYS.items()}}, checks=FEATURE_CHECKS,
    config=FeaturesConfig, tags=FMP,
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
    inputs = {t: frames.conform(f, RAW_SCHEMAS[t]) for t, f in inputs.items()}
    symbols = list(context.partition_keys)
    frame = dataset_rows(inputs, symbols, dates, etf_policy=config.etf_snapshot_policy, threshold=config.label_threshold)
    policy = {"etf_snapshot_policy": config.etf_snapshot_policy, "etf_point_in_time": config.etf_snapshot_policy == "strict"}
    md.per_partition(context, {symbol: {**figures, **policy} for symbol, figures in symbol_figures(frame, symbols).items()})
    return FEATURE_CHECKS.materialize(context, frame)


class DatasetConfig(BaseModel):
    min_completeness: float = fraction(0.85, "Blocking: labelled rows / (symbols x sample dates) must exceed this.")
    min_bullish_share: float = fraction(0.30, "Blocking: share of label = 1 must be at least this.")
    max_bullish_share: float = fraction(0.70, "Blocking: share of label = 1 must be at most this.")
    max_missing_share: float = fraction(0.15, "Blocking: share of rows with any missing feature must be below this.")


def dataset_key(universe_name: str) -> str:
    return f"{DOMAIN}/dataset/{DATASET_FILE_NAMES[universe_name]}"


@house_asset(
    KEYS["dataset"], "dataset", {"polars", "parquet", "csv"}, "2",  # v2: rows on each symbol's membership dates only
    metadata=md.table_definition_metadata(DATASET_SCHEMA, COLUMN_DOCS), ins={"universe": AssetIn(key=KEYS["universe"])},
    deps=[KEYS["features"]], checks=DATASET_CHECKS, config=DatasetConfig, tags=FMP,
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
    kept, absent = _features_of(lake, symbols, dates, sampled)
    data = assemble(kept)
    q = quality(data, expected=sum(len(v) for v in sampled.values()))
    universe_name = universe["universe"][0]
    csv_key = dataset_key(universe_name)
    lake.store().write_bytes(csv_key, to_csv(data))
    if absent:
        context.log.warning(f"{len(absent)} symbol(s) have no features partition yet: {absent[:20]}")
    meta = {
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
    }
    return DATASET_CHECKS.materialize(context, data, meta, _quality_outcomes(config, q, absent))


def _features_of(lake: Lake, symbols: list[str], dates: list, sampled: dict) -> tuple[list[pl.DataFrame], list[str]]:
    """Each symbol's features rows on its sample dates, and the symbols without a features
    partition; a Failure when a partition was built for another sample schedule."""
    kept, absent, stale = [], [], []
    for symbol in symbols:
        try:
            rows = lake.read_frame(partition_file(KEYS["features"], symbol))
        except FileNotFoundError:
            absent.append(symbol)
            continue
        if rows.height and sorted(set(rows["date"].to_list())) != dates:
            stale.append(symbol)
            continue
        kept.append(sampled_rows(rows, sampled[symbol]))
    if stale:
        raise Failure(
            description=f"smart_money/features of {len(stale)} symbol(s) ({', '.join(stale[:10])}) were built for another "
            "sample schedule than the universe's; rematerialize them"
        )
    return kept, absent


def _quality_outcomes(config: DatasetConfig, q, absent: list[str]) -> dict[str, qc.Outcome]:
    return {
        COMPLETENESS_CHECK: qc.Outcome(
            q.completeness > config.min_completeness,
            f"{q.rows:,} of {q.expected:,} expected examples ({q.completeness:.1%}; needs > {config.min_completeness:.0%}).",
            {"rows": q.rows, "expected": q.expected, "completeness": round(q.completeness, 4), "symbols_without_features": MetadataValue.json(absent[:100])},
        ),
        LABEL_BALANCE_CHECK: qc.Outcome(
            config.min_bullish_share <= q.bullish_share <= config.max_bullish_share,
            f"{q.bullish_share:.1%} bullish (needs {config.min_bullish_share:.0%}-{config.max_bullish_share:.0%}).",
            {"bullish_share": round(q.bullish_share, 4)},
        ),
        MISSING_CHECK: qc.Outcome(
            q.missing_share < config.max_missing_share,
            f"{q.rows_missing_features:,} example(s) ({q.missing_share:.1%}) miss at least one feature (needs < {config.max_missing_share:.0%}).",
            {"missing_share": round(q.missing_share, 4), "missing_by_feature": MetadataValue.json(q.missing_by_feature)},
        ),
    }
