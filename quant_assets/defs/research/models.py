"""Research, models: LightGBM, linear and logistic models with walk-forward CV, nested tuning
and no-skill baselines (``quant_assets.lib.research.modeling``)."""


import polars as pl
from dagster import AssetDep, AssetExecutionContext, AssetKey, Failure, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import fraction, lib_params, mirrors, parse
from quant_assets.defs.partitions import trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.common import key_table
from quant_assets.defs.research.keys import ALL_DAYS, KEYS, PURGE_CHECK
from quant_assets.defs.resources import Lake
from quant_assets.lib.research import charts, modeling

MODEL_NAMES = ("lgbm_classifier", "lgbm_regressor", "linear_model", "logistic_model")
PURGE = qc.Check(PURGE_CHECK, "Every fold's training dates end gap_days dates before its test block.")
MODEL_CHECKS = {name: qc.AssetChecks(KEYS[name], PURGE, schema=False) for name in MODEL_NAMES}


class ModelConfig(BaseModel):
    data_source: str = Field(
        default="technical_features",
        description="'technical_features' (target: next-session return) or 'training_dataset' (MACD events: label / ret_fwd).",
    )
    features: list[str] = Field(
        default=[],
        description="Feature columns; empty = the source's default set (scale-free technical columns, or every event feature).",
    )
    n_splits: int = Field(default=5, ge=1, description="Walk-forward folds.")
    gap_days: int = Field(default=5, ge=0, description="Distinct dates purged between each training set and its test block.")


@mirrors(modeling.LgbmParams)
class LgbmConfig(ModelConfig):
    """A model's fields and LightGBM's knobs (declared in ``lib.research.modeling.LgbmParams``)."""


class LinearConfig(ModelConfig):
    regularization: str = Field(default="none", description="'none' (OLS), 'ridge', 'lasso' or 'elasticnet'.")
    alpha: float = Field(default=1.0, gt=0, description="Penalty strength (ignored for OLS).")
    tune_alpha: bool = Field(
        default=False,
        description="Pick alpha from a log grid by walk-forward RMSE, nested: inside each fold's training window "
        "(the fold's reported figures stay out of sample for alpha).",
    )
    l1_ratio: float = fraction(0.5, "ElasticNet mix of L1 (1) and L2 (0).")


class LogisticConfig(ModelConfig):
    regularization: str = Field(default="l2", description="'l2', 'l1' or 'none'.")
    alpha: float = Field(default=1.0, gt=0, description="Penalty strength (C = 1 / alpha).")
    tune_alpha: bool = Field(
        default=False,
        description="Pick alpha from a log grid by walk-forward log loss, nested: inside each fold's training window.",
    )


def _model_source(lake: Lake, source: str) -> pl.DataFrame:
    if source not in modeling.SOURCES:
        raise Failure(description=f"data_source must be one of {list(modeling.SOURCES)}, got {source!r}")
    key = KEYS[source]
    frame, _ = lakeio.read_partitions(lake, key, trading_days.get_partition_keys())
    return frame


def _model_metadata(lake: Lake, name: str, result: modeling.ModelResult, title: str) -> dict:
    base = f"research/models/{name}"
    meta = {
        "metrics (mean over folds)": MetadataValue.json(modeling.json_ready(result.mean_metrics)),
        **{f"cv/{k}": float(v) for k, v in result.mean_metrics.items() if v is not None},
        "folds": key_table(result.folds, 20),
        "dropped_features": MetadataValue.json(result.results["data"]["dropped_features"]),
        "training_rows": int(result.results["data"]["rows"]),
        **(
            {"alpha_by_fold": MetadataValue.json(result.results["alpha_by_fold"]), "tuning": result.results["tuning"]}
            if result.results.get("alpha_by_fold")
            else {}
        ),
        "results_json": MetadataValue.path(lakeio.write_json(lake, f"{base}/results.json", modeling.json_ready(result.results))),
    }
    table_key = f"{base}/{'importance' if result.model_text else 'coefficients'}.parquet"
    lake.write_frame(table_key, result.table)
    meta["importance" if result.model_text else "coefficients"] = key_table(result.table, 40)
    meta["table_file"] = MetadataValue.path(lake.describe(table_key))
    if result.model_text is not None:
        lake.store().write_bytes(f"{base}/model.txt", result.model_text.encode())
        meta["model_file (LightGBM text format)"] = MetadataValue.path(lake.describe(f"{base}/model.txt"))
    labels_, values = modeling.leading_terms(result.table)
    if labels_:
        meta["chart (inline)"] = MetadataValue.md(f"{title}\n\n" + charts.text_bars(labels_[:15], values[:15]))
        png = charts.bar_chart(labels_, values, title=title, xlabel=title.split(":")[0])
        meta.update(lakeio.write_chart(lake, f"research/charts/{name}.png", png, "chart"))
    return meta


def _finish(context, name: str, result: modeling.ModelResult, config: ModelConfig, lake: Lake, title: str, **extra):
    """The model asset's return: its folds, metadata and purge check."""
    bad, n, gap = result.purge_violations, result.folds.height, config.gap_days
    outcome = qc.Outcome(
        not bad,
        f"Folds {bad} train within {gap} dates of their test block." if bad else f"All {n} folds purge {gap} dates before testing.",
        {"folds": n, "gap_days": gap},
    )
    meta = {**_model_metadata(lake, name, result, title), **extra}
    return MODEL_CHECKS[name].materialize(context, result.folds, meta, {PURGE_CHECK: outcome})


def _train(key: AssetKey, lake: Lake, config: ModelConfig, kind: str, fit):
    frame = _model_source(lake, config.data_source)
    try:
        data = modeling.model_data(config.data_source, frame, kind=kind, features=config.features)
        result = fit(data)
    except modeling.ModelingError as exc:
        raise Failure(description=f"{key.to_user_string()}: {exc}") from None
    return result


def _model_asset(name: str, config: type[BaseModel]):
    kinds = {"lightgbm" if name.startswith("lgbm") else "scikitlearn", "polars"}
    fold_schema = {
        "fold": pl.Int32(), "train_start": pl.Date(), "train_end": pl.Date(), "test_start": pl.Date(), "test_end": pl.Date(),
        "n_train": pl.Int64(), "n_test": pl.Int64(),
    }
    return house_asset(
        KEYS[name], "model", kinds, "2",
        deps=[AssetDep(KEYS["technical_features"], partition_mapping=ALL_DAYS), AssetDep(KEYS["training_dataset"], partition_mapping=ALL_DAYS)],
        metadata=md.table_definition_metadata(fold_schema, modeling.FOLD_DOCS), checks=MODEL_CHECKS[name], config=config,
    )


def _fit_lgbm(context, lake: Lake, name: str, kind: str):
    """LightGBM of ``kind`` (classifier or regressor) under walk-forward CV, as the asset ``name``."""
    config = parse(LgbmConfig, context)
    params = lib_params(config, modeling.LgbmParams)
    result = _train(KEYS[name], lake, config, kind, lambda d: modeling.train_lgbm(d, kind, params, config.n_splits, config.gap_days))
    return _finish(context, name, result, config, lake, "gain share: feature importance")


@_model_asset("lgbm_classifier", LgbmConfig)
def lgbm_classifier(context: AssetExecutionContext, lake: Lake):
    """LightGBM classifier of direction: next-session return > 0 (technical features) or the event
    label (training dataset). Walk-forward CV with a purge gap; accuracy, ROC-AUC, F1 per fold and
    on average; gain importance. The final model (fitted on all rows) is stored in LightGBM's own
    text format with a results JSON under ``research/models/lgbm_classifier/`` in the lake."""
    return _fit_lgbm(context, lake, "lgbm_classifier", "classifier")


@_model_asset("lgbm_regressor", LgbmConfig)
def lgbm_regressor(context: AssetExecutionContext, lake: Lake):
    """LightGBM regressor of the return: next-session return (technical features) or the event's
    ``ret_fwd`` (training dataset). Walk-forward CV with a purge gap; RMSE, R^2, direction accuracy
    and rank IC per fold and on average; gain importance; LightGBM text model + results JSON under
    ``research/models/lgbm_regressor/``."""
    return _fit_lgbm(context, lake, "lgbm_regressor", "regressor")


@_model_asset("linear_model", LinearConfig)
def linear_model(context: AssetExecutionContext, lake: Lake):
    """Linear regression of the return (OLS, Ridge, Lasso or ElasticNet; ``regularization``) on
    z-scored features, rows with every feature present. Walk-forward RMSE / R^2 / direction
    accuracy; coefficients with standard errors, t-stats and p-values (OLS exact, Ridge sandwich,
    Lasso / ElasticNet post-selection OLS); ``tune_alpha`` picks alpha by walk-forward RMSE.
    Coefficients and results JSON under ``research/models/linear_model/``."""
    config = parse(LinearConfig, context)
    result = _train(
        KEYS["linear_model"], lake, config, "regressor",
        lambda d: modeling.train_linear(
            d, regularization=config.regularization, alpha=config.alpha, tune_alpha=config.tune_alpha,
            l1_ratio=config.l1_ratio, n_splits=config.n_splits, gap_days=config.gap_days,
        ),
    )
    alpha = float(result.results["alpha"]) if result.results["alpha"] is not None else 0.0
    return _finish(context, "linear_model", result, config, lake, "coefficient per 1 std: linear model", alpha=alpha)


@_model_asset("logistic_model", LogisticConfig)
def logistic_model(context: AssetExecutionContext, lake: Lake):
    """Logistic regression of direction (next-session return > 0, or the event label) on z-scored
    features, rows with every feature present. Walk-forward accuracy / ROC-AUC / F1; log-odds
    coefficients per standard deviation and odds ratios. Results JSON under
    ``research/models/logistic_model/``."""
    config = parse(LogisticConfig, context)
    result = _train(
        KEYS["logistic_model"], lake, config, "classifier",
        lambda d: modeling.train_logistic(
            d, regularization=config.regularization, alpha=config.alpha, tune_alpha=config.tune_alpha,
            n_splits=config.n_splits, gap_days=config.gap_days,
        ),
    )
    return _finish(context, "logistic_model", result, config, lake, "log-odds per 1 std: logistic model")


