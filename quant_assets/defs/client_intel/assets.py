"""Client intelligence: one deterministic world of FX clients, their behaviour-faithful trades and
everything derived from them, as nine assets written to the lake, plus their load into the SQL
warehouse that trading-intelligence agents read.

The nine tables are not partitioned: each materialization is one coherent world for one
``seed`` (the prices the trades react to, the clients, their trades and every derived table
belong together), so they are built by one step and always re-materialized together.
"""


import time

import polars as pl
from dagster import AssetCheckSeverity, AssetExecutionContext, AssetIn, AssetKey, AssetOut, MetadataValue, multi_asset
from pydantic import BaseModel, Field, field_validator

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import config_schema, lib_params, mirrors, parse
from quant_assets.defs.resources import WarehouseResource
from quant_assets.lib.client_intel import spec
from quant_assets.lib.client_intel.classifier import cross_validate
from quant_assets.lib.client_intel.quality import Verdict, classifier_verdict, table_figures
from quant_assets.lib.client_intel.world import COLUMN_DOCS, SCHEMAS, TABLES, build_world, verify

DOMAIN = "client_intel"
KEYS: dict[str, AssetKey] = {t: AssetKey([DOMAIN, t]) for t in TABLES}
WAREHOUSE_KEY = AssetKey([DOMAIN, "warehouse_tables"])
CODE_VERSION = "1"
CLASSIFIER_CHECK = "segment_classifier"
AS_OF_CHECK = "as_of_not_in_future"
SCHEMA_CHECK = qc.SCHEMA_CHECK
WAREHOUSE_CHECK = "rows_match_lake"

_WORLD = "Not partitioned: one coherent world per seed, re-materialized as a whole."
DESCRIPTIONS: dict[str, str] = {
    "market_bars": "Daily bars of EURUSD, GBPUSD, USDJPY, AUDUSD, USDCHF and gold (XAUUSD): the price world the "
    "clients trade against. One row per instrument and calendar day of the history (6 x ~182 = ~1,092 rows by "
    "default). Prices in the quote currency. " + _WORLD,
    "clients": "The client book: one row per client (ids ACME_FX_001...), name, desk, region, behavioural "
    "segment (Trend Follower, Mean Reverter, Hedger, Trend Setter; numbers per segment follow segment_mix) and "
    "onboarding date. " + _WORLD,
    "trades": "Every execution of every client over the history, generated from the client's segment "
    "behaviour against market_bars (trend following, mean reversion around the 20-day MA, anticipating dips "
    "that recover, hedging in tranches). One row per trade; quantity in base units, price in quote currency, "
    "notional in USD. About 10,000 trades for 50 clients. " + _WORLD,
    "positions": "Open positions on as_of: the FIFO replay of client_intel/trades, one row per client and "
    "instrument with a non-zero net quantity (base units), average entry price, mark and unrealized PnL (USD). "
    + _WORLD,
    "headlines": "About 500 market headlines per 6 months on the bars' moves (bigger moves make the news more "
    "often), tagged with their instrument, sentiment in [-1, 1] agreeing with the move's sign. " + _WORLD,
    "pnl_risk": "Daily PnL, exposure and risk per client computed from the trades and bars: realized (FIFO) and "
    "unrealized PnL, gross and net USD exposure, one-day 95% historical VaR, drawdown. One row per client and "
    "day; USD. " + _WORLD,
    "features": "Behavioural features per client (warehouse table `features`): momentum betas at 1, 5 and 20 "
    "days, average holding period (days), turnover, aggressiveness (market-order share), lead-lag alpha and "
    "exposure concentration (JSON), from trades, positions and bars. One row per client. " + _WORLD,
    "client_regimes": "Segment timeline per client since onboarding: 1-4 contiguous, non-overlapping regimes, the "
    "current one open-ended (end_date null) and equal to the client's segment, with confidence and notes. "
    + _WORLD,
    "switch_probability_history": "10-15 point-in-time evaluations per client of the probability that it is "
    "switching segment (0.15-0.85, steps <= 0.10), with confidence, segment, drivers and risk flags (JSON "
    "arrays). " + _WORLD,
}

# Which tables each table is computed from (the lineage shown in the UI).
UPSTREAM: dict[str, set[str]] = {
    "market_bars": set(),
    "clients": set(),
    "trades": {"market_bars", "clients"},
    "positions": {"trades", "market_bars"},
    "headlines": {"market_bars"},
    "pnl_risk": {"trades", "market_bars"},
    "features": {"trades", "positions", "market_bars"},
    "client_regimes": {"clients", "features"},
    "switch_probability_history": {"clients", "trades", "pnl_risk"},
}

# Checks per table: (name, description, blocking).
CHECKS: dict[str, list[tuple[str, str, bool]]] = {
    "market_bars": [("bars_complete", "One bar per instrument and calendar day of the history, OHLC consistent.", True)],
    "clients": [
        ("clients_valid", "n_clients clients with unique ids, segments following segment_mix, onboarded before the history.", True),
        (AS_OF_CHECK, "as_of is not after today (warns: a history that runs into the future is generated, but flagged).", False),
    ],
    "trades": [
        ("trades_valid", "Trades of known clients, priced inside their day's [low, high], in whole lots; every client trades.", True),
        (
            "segment_patterns",
            "Segment behaviour visible in the trades: market-order shares (Trend Follower ~70%, Trend Setter ~80%, "
            "Mean Reverter 0%), Hedgers 5-15 trades per 6 months and ~70% sells, Trend Followers enter with the "
            "5-day trend, Mean Reverters buy below and sell above the 20-day moving average.",
            True,
        ),
    ],
    "positions": [("positions_match_trades", "Replaying the trades gives exactly the positions.", True)],
    "headlines": [("headlines_valid", "~500 headlines per 6 months, known instruments, sentiment in [-1, 1] agreeing with big moves.", False)],
    "pnl_risk": [("pnl_consistent", "One row per client-day; last-day exposures equal the positions; cumulative PnL adds up.", True)],
    "features": [
        ("features_complete", "Features for every client, none missing, in their ranges.", True),
        ("holding_period_bands", "Average holding period per client inside its segment's band (TF 2-5, MR 1-3, TS 5-15, Hedger 30-90 days).", True),
        ("lead_lag_signs", "Trend Setters lead (lead_lag_alpha > 0), Trend Followers lag (< 0).", True),
        (
            CLASSIFIER_CHECK,
            "A cross-validated scikit-learn classifier recovers the segment from the features with >= 90% "
            "accuracy (metadata: confusion matrix).",
            True,
        ),
    ],
    "client_regimes": [("regimes_valid", "1-4 regimes per client, non-overlapping, current one open-ended and equal to the client's segment.", True)],
    "switch_probability_history": [
        ("switch_probability_gradual", "10-15 points per client in [0.15, 0.85] with no step larger than 0.10.", True)
    ],
}


TABLE_CHECKS = {t: qc.AssetChecks(KEYS[t], *(qc.Check(n, d, blocking=b) for n, d, b in CHECKS[t])) for t in TABLES}
WAREHOUSE_CHECKS = qc.AssetChecks(
    WAREHOUSE_KEY, qc.Check(WAREHOUSE_CHECK, "Every warehouse table holds exactly the rows of its lake table."), schema=False
)


@mirrors(spec.WorldSpec, convert={"as_of": spec.parse_as_of})
class ClientWorldConfig(BaseModel):
    """The knobs of the client-intelligence world (the old seed scripts' defaults)."""

    as_of: str = Field(
        default=spec.DEFAULT_AS_OF.isoformat(),
        description="Last day of the history (YYYY-MM-DD); positions and features are as of this day.",
    )

    @field_validator("segment_mix", check_fields=False)  # the knob @mirrors adds from WorldSpec
    @classmethod
    def _known_segments(cls, value: dict[str, float]) -> dict[str, float]:
        spec.validate_segment_mix(value)
        return value

    @field_validator("as_of")
    @classmethod
    def _date(cls, value: str) -> str:
        spec.parse_as_of(value)
        return value


def _out(table: str) -> AssetOut:
    return AssetOut(
        key=KEYS[table],
        description=DESCRIPTIONS[table],
        metadata=md.table_definition_metadata(SCHEMAS[table], COLUMN_DOCS[table], warehouse_table=table),
        **md.asset_kwargs(
            DOMAIN,
            layer="features" if table in ("features", "client_regimes", "switch_probability_history") else "curated",
            kinds={"polars", "parquet", "numba"} if table in ("trades", "positions", "pnl_risk") else {"polars", "parquet"},
            code_version=CODE_VERSION,
        ),
    )


def _outcome(verdict: Verdict) -> qc.Outcome:
    meta = {k: (MetadataValue.json(v) if isinstance(v, (dict, list)) else v) for k, v in verdict.metadata.items() if v is not None}
    meta.update({k: MetadataValue.md(v) for k, v in verdict.markdown.items()})
    return qc.Outcome(verdict.passed, verdict.description, meta, severity=AssetCheckSeverity.WARN if verdict.warn_only else None)


@multi_asset(
    name="client_intel_world",
    outs={t: _out(t) for t in TABLES},
    internal_asset_deps={t: {KEYS[u] for u in UPSTREAM[t]} for t in TABLES},
    check_specs=[check_spec for checks in TABLE_CHECKS.values() for check_spec in checks.specs],
    can_subset=False,
    description="Builds one client-intelligence world (all nine client_intel tables) for the configured seed.",
    config_schema=config_schema(ClientWorldConfig),
)
def client_intel_world(context: AssetExecutionContext):
    """Generate the world, verify it, and hand every table to the lake with its checks."""
    config = parse(ClientWorldConfig, context)
    world_spec = lib_params(config, spec.WorldSpec)
    t0 = time.perf_counter()
    world = build_world(world_spec)
    built = time.perf_counter() - t0
    verdicts = verify(world)
    classifier = cross_validate(world["features"], world["clients"], world_spec.seed)
    verdicts["features"][CLASSIFIER_CHECK] = classifier_verdict(classifier)
    future = spec.as_of_warning(world_spec.as_of)
    if future:
        context.log.warning(f"client_intel: {future}")
    verdicts["clients"][AS_OF_CHECK] = Verdict(not future, future or f"as_of {world_spec.as_of} is not after today.", {"as_of": str(world_spec.as_of)})
    context.log.info(
        f"client_intel world seed={world_spec.seed}: {world_spec.n_clients} clients, {world_spec.start}..{world_spec.as_of}, "
        f"{world['trades'].height:,} trades, built in {built:.2f}s"
    )
    for table in TABLES:
        df = world[table]
        figures = {k: (MetadataValue.json(v) if isinstance(v, dict) else v) for k, v in table_figures(table, df, world["clients"]).items()}
        meta = {
            "seed": world_spec.seed,
            "n_clients": world_spec.n_clients,
            "history": f"{world_spec.start}..{world_spec.as_of}",
            "compute_seconds": round(world.seconds.get(table, 0.0), 4),
            **figures,
            **({"segment_classifier_accuracy": classifier.accuracy} if table == "features" and classifier.accuracy is not None else {}),
        }
        outcomes = {name: _outcome(verdicts[table][name]) for name, _, _ in CHECKS[table]}
        yield TABLE_CHECKS[table].materialize(context, df, meta, outcomes, asset_key=True)


# The verification queries of the old seed scripts' guide, run against the loaded warehouse.
HOLDING_BY_SEGMENT_SQL = """
SELECT segment, COUNT(*) AS clients, AVG(holding_period_avg) AS avg_holding_days,
       MIN(holding_period_avg) AS min_holding_days, MAX(holding_period_avg) AS max_holding_days
FROM features JOIN clients USING (client_id)
GROUP BY segment ORDER BY segment
"""


@house_asset(
    WAREHOUSE_KEY, "warehouse", {"sql", "duckdb", "postgres"}, CODE_VERSION,
    ins={t: AssetIn(key=KEYS[t]) for t in TABLES}, checks=WAREHOUSE_CHECKS,
    # DuckDB allows one writing process per file: warehouse loads queue behind each other.
    pool="warehouse",
)
def warehouse_tables(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    market_bars: pl.DataFrame,
    clients: pl.DataFrame,
    trades: pl.DataFrame,
    positions: pl.DataFrame,
    headlines: pl.DataFrame,
    pnl_risk: pl.DataFrame,
    features: pl.DataFrame,
    client_regimes: pl.DataFrame,
    switch_probability_history: pl.DataFrame,
):
    """The nine client_intel tables loaded into the SQL warehouse under their own names
    (``market_bars``, ``clients``, ``trades``, ``positions``, ``headlines``, ``pnl_risk``,
    ``features``, ``client_regimes``, ``switch_probability_history``; DDL in
    ``sql/002_client_intel.sql``). Each table is replaced in one transaction, so re-materializing
    never duplicates rows and readers never see a half-loaded table. DuckDB by default,
    PostgreSQL when ``QUANT_WAREHOUSE_URL`` points at one. Not partitioned.
    """
    frames = {
        "market_bars": market_bars,
        "clients": clients,
        "trades": trades,
        "positions": positions,
        "headlines": headlines,
        "pnl_risk": pnl_risk,
        "features": features,
        "client_regimes": client_regimes,
        "switch_probability_history": switch_probability_history,
    }
    t0 = time.perf_counter()
    with warehouse.connect() as wh:
        for table in TABLES:
            wh.replace_table(table, frames[table])
        counts = {t: int(wh.query(f"SELECT COUNT(*) AS n FROM {t}")["n"][0]) for t in TABLES}
        holding = wh.query(HOLDING_BY_SEGMENT_SQL)
        dialect = wh.dialect
    mismatched = {t: (counts[t], frames[t].height) for t in TABLES if counts[t] != frames[t].height}
    figures = {
        s: {"clients": int(n), "avg": round(float(a), 3), "min": round(float(lo), 3), "max": round(float(hi), 3)}
        for s, n, a, lo, hi in holding.iter_rows()
    }
    meta = {
        "dialect": dialect,
        "warehouse": warehouse_url_masked(warehouse),
        "table_rows": MetadataValue.json(counts),
        "holding_period_by_segment": MetadataValue.json(figures),
        "load_seconds": round(time.perf_counter() - t0, 3),
        md.ROW_COUNT: sum(counts.values()),
    }
    outcome = qc.Outcome(
        not mismatched,
        f"Warehouse rows differ from the lake (warehouse, lake): {mismatched}"
        if mismatched
        else f"{sum(counts.values()):,} rows in {len(TABLES)} tables, equal to the lake.",
        {"table_rows": MetadataValue.json(counts), "mismatched": MetadataValue.json(mismatched)},
    )
    return WAREHOUSE_CHECKS.materialize(context, metadata=meta, outcomes={WAREHOUSE_CHECK: outcome})


def warehouse_url_masked(warehouse: WarehouseResource) -> str:
    from quant_assets.lib.warehouse import mask_url

    return mask_url(warehouse.url)
