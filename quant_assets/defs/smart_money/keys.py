"""Names of the smart_money group: its asset keys, check names and table schemas, and the
sample schedule recorded with the universe -- importable by other domains and by tests without
the asset code."""



import polars as pl
from dagster import AssetKey, BackfillPolicy, Failure

from quant_assets.defs import metadata as md
from quant_assets.lib.smart_money.dataset import COLUMN_DOCS, DATASET_SCHEMA
from quant_assets.lib.smart_money.raw import RAW_TABLES
from quant_assets.lib.smart_money.universe import Schedule

DOMAIN = "smart_money"
KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in ("universe", "features", "dataset", "splits", "model", "evaluation")
}
RAW_KEYS = {table: AssetKey([DOMAIN, f"raw_{table}"]) for table in RAW_TABLES}
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
SPLITS_SCHEMA = {**DATASET_SCHEMA, "split": pl.String}
SPLITS_DOCS = {**COLUMN_DOCS, "split": "train, val or test (whole sample dates, in date order)."}

COMPLETENESS_CHECK = "completeness"
QUARANTINE_CHECK = "quarantine_share"
LABEL_BALANCE_CHECK = "label_balance"
MISSING_CHECK = "missing_features"
TIME_ORDER_CHECK = "time_ordered"
CHANCE_CHECK = "roc_auc_above_chance"


# Every smart-money asset's vendor tag.
FMP = {"vendor": "fmp"}


def smart_money_kwargs(layer: str, kinds: set[str], code_version: str = "1") -> dict:
    return md.asset_kwargs(DOMAIN, layer=layer, kinds=kinds, code_version=code_version, tags=FMP)


def schedule_of(universe: pl.DataFrame) -> Schedule:
    """The sample schedule recorded with the universe."""
    if universe.height == 0:
        raise Failure(description="smart_money/universe is empty: materialize it with at least one symbol first")
    row = universe.row(0, named=True)
    return Schedule(start_month=row["start_month"], end_month=row["end_month"], sample_day=int(row["sample_day"]))

