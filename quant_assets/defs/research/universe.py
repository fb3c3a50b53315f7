"""Research, universe: the most liquid names as of each rebalance date, from what was known then
(``quant_assets.lib.research.universe``)."""


from dagster import AssetDep, AssetExecutionContext, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.research.common import all_daily, key_table, table_meta
from quant_assets.defs.research.keys import ALL_DAYS, BENCHMARK, KEYS, UNIVERSE_CHECK
from quant_assets.defs.resources import Lake
from quant_assets.lib.research import universe


@mirrors(universe.UniverseSpec)
class LiquidUniverseConfig(BaseModel):
    exclude: list[str] = Field(default=[BENCHMARK], description="Tickers never admitted (the benchmark).")


UNIVERSE_CHECKS = qc.AssetChecks(
    KEYS["liquid_universe"], qc.Check(UNIVERSE_CHECK, "Every rebalance date with window sessions of history before it has members.")
)


@house_asset(
    KEYS["liquid_universe"], "analysis", {"polars"}, "1",
    metadata=table_meta(universe.UNIVERSE_SCHEMA, universe.UNIVERSE_DOCS, partitioned=False),
    deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)], checks=UNIVERSE_CHECKS, config=LiquidUniverseConfig,
)
def liquid_universe(context: AssetExecutionContext, lake: Lake):
    """The most liquid names as of each rebalance date, from what was known then: candidates have
    a bar on the rebalance date and at least ``min_history`` bars in the ``window`` sessions
    ending on it, ranked by median daily dollar volume (close x volume) over those bars; the
    first ``count`` are members from the next session until the next rebalance. A name that
    lists late joins once it has the history; one that delists stays a member until the next
    rebalance after its last bar. One row per (rebalance date, member)."""
    config = parse(LiquidUniverseConfig, context)
    try:
        spec = lib_params(config, universe.UniverseSpec)
    except ValueError as exc:
        raise Failure(description=f"research/liquid_universe: {exc}") from None
    daily = all_daily(lake, ["ticker", "date", "close", "volume"])
    members = universe.liquid_universe(daily, spec, exclude=config.exclude)
    due, empty = universe.empty_rebalances(members, daily["date"].unique().to_list(), spec)
    per_date = universe.members_per_date(members)
    meta = {
        "rebalance_dates": per_date.height,
        "distinct_members": int(members["ticker"].n_unique()),
        "members_per_date": key_table(per_date, 40),
        "latest_members": MetadataValue.json(universe.latest_members(members)),
        "preview": key_table(universe.newest_first(members), 20),
    }
    outcome = qc.Outcome(
        not empty,
        f"No member on {len(empty)} rebalance date(s): {[str(d) for d in empty[:10]]}" if empty else f"{len(due)} rebalance date(s), each with members.",
        {"empty_rebalance_dates": MetadataValue.json([str(d) for d in empty])},
    )
    return UNIVERSE_CHECKS.materialize(context, members, meta, {UNIVERSE_CHECK: outcome})
