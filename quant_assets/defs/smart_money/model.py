"""Smart money, stage 3: time-ordered splits, the LightGBM model and its evaluation on the test
split (``quant_assets.lib.smart_money.splits`` and ``.model``)."""


import json

import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetRecordsFilter, Failure, MaterializeResult, MetadataValue
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import lib_params, mirrors, parse
from quant_assets.defs.resources import Lake
from quant_assets.defs.smart_money.keys import CHANCE_CHECK, DOMAIN, FMP, KEYS, SPLITS_DOCS, SPLITS_SCHEMA, TIME_ORDER_CHECK
from quant_assets.lib.smart_money.dataset import to_csv
from quant_assets.lib.smart_money.model import (
    TUNE_THRESHOLD,
    Normalizer,
    TrainParams,
    baseline_markdown,
    confusion_markdown,
    evaluate,
    importance_markdown,
    load_booster,
    model_dir,
    model_metadata,
    train,
)
from quant_assets.lib.smart_money.splits import SPLITS, SplitError, SplitFractions, bullish_shares, by_split, time_split

SPLIT_CHECKS = qc.AssetChecks(
    KEYS["splits"],
    qc.Check(
        TIME_ORDER_CHECK,
        "Every validation and test example is later than every training example (and every test example later than every validation one).",
    ),
)
EVALUATION_CHECKS = qc.AssetChecks(
    KEYS["evaluation"], qc.Check(CHANCE_CHECK, "The model ranks test examples better than chance (ROC-AUC > 0.5).", blocking=False), schema=False
)


@mirrors(SplitFractions)
class SplitsConfig(BaseModel):
    """The split shares (declared in ``lib.smart_money.splits.SplitFractions``)."""


@house_asset(
    KEYS["splits"], "dataset", {"polars", "parquet", "csv"}, "1",
    metadata=md.table_definition_metadata(SPLITS_SCHEMA, SPLITS_DOCS), ins={"dataset": AssetIn(key=KEYS["dataset"])}, checks=SPLIT_CHECKS,
    config=SplitsConfig, tags=FMP,
)
def splits(context: AssetExecutionContext, dataset: pl.DataFrame, lake: Lake):
    """Train / validation / test (70/15/15 by default) of the dataset, ordered by date: whole sample
    dates per split, the earliest for training. One row per example with its ``split``; also
    written as ``train.csv``, ``val.csv`` and ``test.csv`` (dataset columns) under
    ``smart_money/splits/`` in the lake."""
    config = parse(SplitsConfig, context)
    try:
        out, report = time_split(dataset, config.train_fraction, config.val_fraction, config.test_fraction)
    except SplitError as exc:
        raise Failure(description=str(exc)) from None
    uris = {}
    for name, part in by_split(out).items():
        key = f"{DOMAIN}/splits/{name}.csv"
        lake.store().write_bytes(key, to_csv(part))
        uris[f"{name}_csv"] = MetadataValue.path(lake.describe(key))
    tr, va, te = report.dates["train"], report.dates["val"], report.dates["test"]
    meta = {
        **{f"{s}_rows": report.rows[s] for s in SPLITS},
        **{f"{s}_dates": f"{a}..{b}" for s, (a, b) in report.dates.items()},
        **{f"{s}_bullish_share": share for s, share in bullish_shares(out).items()},
        "purged_rows": MetadataValue.json(report.purged),
        **uris,
    }
    outcome = qc.Outcome(tr[1] < va[0] and va[1] < te[0], f"train {tr[0]}..{tr[1]} < val {va[0]}..{va[1]} < test {te[0]}..{te[1]}.")
    return SPLIT_CHECKS.materialize(context, out, meta, {TIME_ORDER_CHECK: outcome})


@mirrors(TrainParams)
class ModelConfig(BaseModel):
    version: str = Field(default="1.0.0", description="Model version X.Y.Z: artifacts go to models/smart-money-flow/vX.Y.Z/.")
    tune_threshold: bool = Field(default=TUNE_THRESHOLD, description="Choose the decision threshold maximising F1 on validation (else 0.5).")

def _round(v: float | None) -> float:
    return round(v, 4) if v is not None else float("nan")


@house_asset(
    KEYS["model"], "model", {"lightgbm", "python"}, "1",
    ins={"splits": AssetIn(key=KEYS["splits"])}, config=ModelConfig, tags=FMP,
)
def model(context: AssetExecutionContext, splits: pl.DataFrame, lake: Lake):
    """The LightGBM classifier of the 14-day label, trained on the training split with early stopping
    on validation. Median imputation and z-score normalisation are fitted on the training split
    only. Writes ``models/smart-money-flow/vX.Y.Z/model.txt``, ``normalizer.json`` and
    ``metadata.json`` (features, parameters, data window, decision threshold, train and
    validation metrics, feature importance) to the lake."""
    config = parse(ModelConfig, context)
    try:
        folder = model_dir(config.version)
    except ValueError as exc:
        raise Failure(description=str(exc)) from None
    parts = by_split(splits)
    params = lib_params(config, TrainParams)
    trained = train(parts["train"], parts["val"], params, tune_threshold=config.tune_threshold)
    window = {s: (part["date"].min(), part["date"].max()) for s, part in parts.items()}
    meta = model_metadata(trained, params, window, {s: part.height for s, part in parts.items()}, config.version)
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
            "feature_importance": MetadataValue.md(importance_markdown(trained.importance)),
            "parameters": MetadataValue.json(meta["parameters"]),
            "data_window": MetadataValue.json(meta["data_window"]),
            "metadata_json": MetadataValue.json(meta),
        }
    )


@house_asset(
    KEYS["evaluation"], "analysis", {"lightgbm", "python"}, "2",  # v2: precision at k and no-skill baselines
    ins={"splits": AssetIn(key=KEYS["splits"])}, deps=[KEYS["model"]], checks=EVALUATION_CHECKS, tags=FMP,
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
    folder = model_dir(version)
    store = lake.store()
    try:
        booster = load_booster(store.read_bytes(f"{folder}/model.txt").decode())
        normalizer = Normalizer.from_json(store.read_bytes(f"{folder}/normalizer.json").decode())
        meta = json.loads(store.read_bytes(f"{folder}/metadata.json"))
    except FileNotFoundError as exc:
        raise Failure(description=f"model v{version} artifacts are incomplete in the lake: {exc}") from None
    ev = evaluate(splits, booster, normalizer, meta)
    store.write_bytes(f"{folder}/evaluation.json", json.dumps(ev.report(version, meta["feature_importance"]), indent=2).encode())
    metrics, baselines, test = ev.metrics, ev.baselines, ev.test
    auc = metrics["roc_auc"]
    run_meta = {
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
        "baselines": MetadataValue.md(baseline_markdown(metrics, baselines)),
        "gap_roc_auc": _round(baselines["gap"]["roc_auc"]),
        "gap_precision_at_k": _round(baselines["gap"]["precision_at_k"]),
        "no_skill_baselines": MetadataValue.json(baselines),
        "decision_threshold": round(metrics["threshold"], 4),
        "positive_rate": round(metrics["positive_rate"], 4),
        "confusion_matrix": MetadataValue.md(confusion_markdown(metrics["confusion_matrix"])),
        "feature_importance": MetadataValue.md(importance_markdown(meta["feature_importance"])),
        "evaluation_json": MetadataValue.path(lake.describe(f"{folder}/evaluation.json")),
        "metrics": MetadataValue.json(metrics),
    }
    outcome = qc.Outcome(
        auc is not None and auc > 0.5,
        f"Test ROC-AUC {auc:.3f}." if auc is not None else "The test split holds one class only: no ROC-AUC.",
        {"roc_auc": round(auc, 4) if auc is not None else -1.0},
    )
    return EVALUATION_CHECKS.materialize(context, metadata=run_meta, outcomes={CHANCE_CHECK: outcome})
