"""Research, factors: factor IC with overlap-aware t-statistics and CAPM / Fama-French
regressions on Ken French files (``quant_assets.lib.research.factors``,
``quant_assets.lib.sources.kenfrench``)."""


import polars as pl
from dagster import AssetDep, AssetExecutionContext, AssetIn, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.common import all_daily, dated_returns, key_table, table_meta
from quant_assets.defs.research.keys import ALL_DAYS, BENCHMARK, COVERAGE_CHECK, FACTOR_COVERAGE_CHECK, KEYS
from quant_assets.defs.resources import Lake, LandingZone
from quant_assets.lib import http
from quant_assets.lib.research import factors, indicators
from quant_assets.lib.sources import kenfrench

EVALUATION_CHECKS = qc.AssetChecks(
    KEYS["factor_evaluation"],
    qc.Check(COVERAGE_CHECK, "Every evaluated feature has at least one date with an IC (warns).", blocking=False),
)
MODEL_CHECKS = qc.AssetChecks(
    KEYS["factor_models"],
    qc.Check(
        FACTOR_COVERAGE_CHECK,
        "The factor files cover the last day with returns (warns: the library publishes monthly, with a lag).",
        blocking=False,
    ),
)
T_STATISTICS = (
    "horizon 1: plain t-test (Student t, n-1 df); longer horizons: Newey-West HAC standard errors "
    "(statsmodels, Bartlett kernel, 2 x horizon lags, small-sample correction), p from Student t with "
    "floor(n / (lags + 1)) - 1 df; per row in t_method, hac_lags, t_df"
)


class FactorEvaluationConfig(BaseModel):
    factor_column: str = Field(
        default="all",
        description="'all' (every numeric indicator of research/technical_features), one column, or a comma-separated list.",
    )
    horizons: list[int] = Field(default=list(factors.HORIZONS), description="Forward-return horizons in NYSE sessions.")
    min_pairs: int = Field(default=factors.MIN_PAIRS, ge=3, description="Dates with fewer (feature, return) pairs are skipped.")


@house_asset(
    KEYS["factor_evaluation"], "analysis", {"polars", "scipy"}, "2",
    metadata=table_meta(factors.FACTOR_EVALUATION_SCHEMA, factors.FACTOR_EVALUATION_DOCS, partitioned=False),
    deps=[AssetDep(KEYS["technical_features"], partition_mapping=ALL_DAYS)], checks=EVALUATION_CHECKS, config=FactorEvaluationConfig,
)
def factor_evaluation(context: AssetExecutionContext, lake: Lake):
    """Information coefficients of the technical features: one row per (feature, horizon).

    Per date, the Spearman IC across tickers between the feature and the forward return of
    horizon h (close on the h-th next NYSE session / close - 1; null when the ticker has no bar
    then); dates with fewer than ``min_pairs`` pairs or a constant side are skipped (alphalens
    conventions). Mean, std, ICIR, t-stat and p-value (plain for horizon 1, Newey-West for longer,
    overlapping horizons; method, lags and degrees of freedom beside them), positive share, and
    the mean forward return of five equal-count feature quintiles. An all-null feature gets ``n_dates = 0`` and nulls. The
    per-date ICs are stored beside the table (``research/factor_evaluation/ic_by_date.parquet``).
    """
    config = parse(FactorEvaluationConfig, context)
    feats, _ = lakeio.read_partitions(lake, KEYS["technical_features"], trading_days.get_partition_keys())
    if feats.is_empty():
        raise Failure(description="research/technical_features has no materialized partition; materialize it first")
    try:
        columns = factors.factor_columns(feats.schema, indicators.FEATURE_COLUMNS, config.factor_column)
    except ValueError as exc:
        raise Failure(description=str(exc)) from None
    if any(h < 1 for h in config.horizons) or not config.horizons:
        raise Failure(description=f"horizons must be positive session counts, got {config.horizons}")
    summary, by_date = factors.factor_evaluation(feats, columns, config.horizons, min_pairs=config.min_pairs)
    ic_key = "research/factor_evaluation/ic_by_date.parquet"
    lake.write_frame(ic_key, by_date)
    meta = {
        "ic_table": key_table(factors.ranked_summary(summary), 100),
        "t_statistics": T_STATISTICS,
        "t_stats_compared": MetadataValue.md(factors.t_comparison_markdown(by_date, summary)),
        "ic_by_date_file": MetadataValue.path(lake.describe(ic_key)),
        "dates": int(feats["date"].n_unique()),
        "features": len(columns),
    }
    h1 = min(config.horizons)
    series = factors.rolling_ic(summary, by_date, h1)
    if series:
        meta.update(lakeio.chart(lake, "research/charts/factor_evaluation_ic.png", series, f"20-date rolling mean IC, horizon {h1} (top |ICIR|)", "Spearman IC", zero_line=True))
    empty = factors.features_without_ic(summary)
    outcome = qc.Outcome(
        not empty,
        f"No usable date for {empty} (all null or too short a history)." if empty else "Every feature has ICs.",
        {"features_without_ic": MetadataValue.json(empty)},
    )
    return EVALUATION_CHECKS.materialize(context, summary, meta, {COVERAGE_CHECK: outcome})


# ---------------------------------------------------------------------------------------------
# Factor models


class FactorModelConfig(BaseModel):
    tickers: list[str] = Field(
        default=[], description="Tickers to regress over their whole history; empty = the members of research/liquid_universe plus SPY."
    )
    n_liquid: int = Field(
        default=20, ge=0, description="When tickers is empty: the first n_liquid members of each rebalance date, each regressed over the sessions it was held."
    )
    analysis: str = Field(default="compare", description="'capm', 'ff' (the model below) or 'compare' (CAPM, FF3 and FF5).")
    model: str = Field(default="5-factor", description="Fama-French model for analysis='ff': '3-factor' or '5-factor'.")
    factor_source: str = Field(
        default="landing",
        description="'landing' (Ken French zips under kenfrench/ in the landing zone) or 'http' (download them).",
    )
    kenfrench_base_url: str = Field(default=kenfrench.BASE_URL, description="Where the Ken French zips are downloaded from.")
    http_timeout_s: float = Field(default=http.TIMEOUT_S, gt=0, description="Deadline of each download (connect and every read together), seconds.")
    min_obs: int = Field(default=factors.MIN_OBS, ge=5, description="Regressions with fewer common days are skipped (and listed).")


def _models_for(config: FactorModelConfig) -> list[str]:
    if config.analysis == "capm":
        return ["capm"]
    if config.analysis == "ff":
        if config.model not in ("3-factor", "5-factor"):
            raise Failure(description=f"model must be '3-factor' or '5-factor', got {config.model!r}")
        return ["ff3" if config.model == "3-factor" else "ff5"]
    if config.analysis == "compare":
        return ["capm", "ff3", "ff5"]
    raise Failure(description=f"analysis must be 'capm', 'ff' or 'compare', got {config.analysis!r}")


def load_factor_tables(config: FactorModelConfig, landing: LandingZone, models: list[str]) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    """Factor table per model and where each file came from."""
    needed = {kenfrench.MODEL_DATASET[m] for m in models}
    tables: dict[kenfrench.Dataset, pl.DataFrame] = {}
    sources: dict[str, str] = {}
    client = kenfrench.download_client(config.kenfrench_base_url, timeout_s=config.http_timeout_s) if config.factor_source == "http" else None
    try:
        for ds in sorted(needed, key=lambda d: d.name):
            if config.factor_source == "landing":
                key = kenfrench.landing_key(ds)
                where = landing.describe(key)
                try:
                    data = landing.store().read_bytes(key)
                except FileNotFoundError:
                    raise Failure(
                        description=f"no Ken French file at {where}: drop the vendor zip there (the simulator writes one), "
                        "or set factor_source='http'"
                    ) from None
            elif config.factor_source == "http":
                where = kenfrench.url(ds, config.kenfrench_base_url)
                try:
                    data = kenfrench.fetch_zip(client, ds, config.kenfrench_base_url)
                except kenfrench.KenFrenchDownloadError as exc:
                    raise Failure(description=str(exc)) from None
            else:
                raise Failure(description=f"factor_source must be 'landing' or 'http', got {config.factor_source!r}")
            try:
                tables[ds] = kenfrench.read_daily_factors(data, where, ds)
            except kenfrench.KenFrenchFormatError as exc:
                raise Failure(description=f"changed Ken French layout: {exc}", metadata={"file": where}) from None
            sources[ds.name] = where
    finally:
        if client is not None:
            client.close()
    return {m: tables[kenfrench.MODEL_DATASET[m]] for m in models}, sources


@house_asset(
    KEYS["factor_models"], "analysis", {"polars", "statsmodels"}, "2",
    metadata=table_meta(factors.FACTOR_MODEL_SCHEMA, factors.FACTOR_MODEL_DOCS, partitioned=False),
    ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])}, deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)],
    checks=MODEL_CHECKS, config=FactorModelConfig, tags={"vendor": "kenfrench"},
)
def factor_models(context: AssetExecutionContext, liquid_universe: pl.DataFrame, landing: LandingZone, lake: Lake):
    """CAPM, Fama-French 3- and 5-factor regressions of daily excess returns, one row per
    (ticker, model): annualised alpha (x 252), betas, t-stats, R^2, residual volatility.

    Returns: ``ret_1d`` of ``market/daily_bars``; excess over the factor file's RF. Factors: the
    Ken French daily CSV zips (percent units converted to fractions) from the landing zone
    (``kenfrench/F-F_Research_Data_Factors_daily_CSV.zip`` and the 5-factor 2x3 zip) or over HTTP.
    CAPM and FF3 use the three-factor file, FF5 the five-factor file. Plain OLS standard errors.

    Names: ``tickers`` over their whole history, or the dated ``research/liquid_universe`` (its
    first ``n_liquid`` members of each rebalance date), each over the sessions it was held, a
    delisting's exit included, so no name is chosen by how it did later.
    """
    config = parse(FactorModelConfig, context)
    models = _models_for(config)
    daily = all_daily(lake, ["ticker", "date", "close", "volume", "ret_1d"])
    returns, tickers = dated_returns(daily, liquid_universe, config.tickers, config.n_liquid)
    if not config.tickers:
        tickers, returns = tickers + [BENCHMARK], factors.with_benchmark(returns, daily, BENCHMARK)
    tables, sources = load_factor_tables(config, landing, models)
    _require_sessions(tables, sources, factors.return_span(returns)[0], daily["date"].max())
    table, notes = factors.factor_models(returns, tables, tickers, models, min_obs=config.min_obs)
    compare = factors.model_comparison(table, models)
    last_return = factors.return_span(daily)[1]
    last_factor = min(t["date"].max() for t in tables.values())
    covered = last_factor >= last_return
    meta = {
        "comparison": key_table(compare, 40) if compare.height else MetadataValue.md("(no regression had enough days)"),
        "tickers": MetadataValue.json(tickers),
        "factor_files": MetadataValue.json(sources),
        "factor_last_date": str(last_factor),
        "skipped": MetadataValue.json(notes),
    }
    outcome = qc.Outcome(
        covered,
        f"Factors end {last_factor}, returns {last_return}: " + ("covered." if covered else "later days are left out of the regressions."),
        {"factor_last_date": str(last_factor), "return_last_date": str(last_return)},
    )
    return MODEL_CHECKS.materialize(context, table, meta, {FACTOR_COVERAGE_CHECK: outcome})


def _require_sessions(tables: dict[str, pl.DataFrame], sources: dict[str, str], first_return, last_bar) -> None:
    """Inside the span the files and the returns share, every NYSE session must have factors."""
    for name, t in tables.items():
        gaps = kenfrench.missing_sessions(t, max(first_return, t["date"].min()), min(t["date"].max(), last_bar))
        if gaps:
            raise Failure(
                description=f"the Ken French file of {name} ({sources[kenfrench.MODEL_DATASET[name].name]}) has no row for "
                f"{len(gaps)} NYSE session(s) it covers, first {gaps[0]}: {', '.join(map(str, gaps[:5]))}",
                metadata={"missing_sessions": MetadataValue.json([str(d) for d in gaps[:100]])},
            )
