"""The smart-money LightGBM classifier: preprocessing fitted on train only, training with early
stopping on validation, the decision threshold chosen on validation, and test evaluation.

Artifacts (``models/smart-money-flow/vX.Y.Z/`` in the lake):

* ``model.txt``       -- the LightGBM booster (``Booster(model_str=...)`` reads it back);
* ``normalizer.json`` -- per feature, in order: the training median used to fill a missing
  value, then the training mean and standard deviation of the filled value (z-score);
* ``metadata.json``   -- features, parameters, data window, the decision threshold, training and
  validation metrics and feature importance.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from quant_assets.lib.knobs import check_knobs, knob
from quant_assets.lib.smart_money.features import FEATURE_NAMES

MODEL_NAME = "smart-money-flow"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def model_dir(version: str) -> str:
    if not VERSION_RE.match(version):
        raise ValueError(f"model version must look like 1.2.3, got {version!r}")
    return f"models/{MODEL_NAME}/v{version}"


@dataclasses.dataclass
class Normalizer:
    """Median imputation then z-scoring, every statistic from the training split."""

    features: list[str]
    medians: list[float]
    means: list[float]
    stds: list[float]

    @classmethod
    def fit(cls, train: pl.DataFrame, features: Sequence[str] = FEATURE_NAMES) -> Normalizer:
        x = _matrix(train, features)
        medians = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else np.zeros(len(features))
        # A feature never observed in training is filled with 0.
        medians = np.where(np.isfinite(medians), medians, 0.0)
        filled = np.where(np.isfinite(x), x, medians)
        means = filled.mean(axis=0) if len(x) else np.zeros(len(features))
        stds = filled.std(axis=0) if len(x) else np.ones(len(features))
        stds = np.where(stds > 0, stds, 1.0)
        return cls(list(features), medians.tolist(), means.tolist(), stds.tolist())

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        x = _matrix(frame, self.features)
        med = np.array(self.medians)
        filled = np.where(np.isfinite(x), x, med)
        return (filled - np.array(self.means)) / np.array(self.stds)

    def to_json(self) -> str:
        return json.dumps(
            {
                "method": "median imputation, then z-score ((x - mean) / std); statistics of the training split",
                "features": self.features,
                "median": dict(zip(self.features, self.medians, strict=True)),
                "mean": dict(zip(self.features, self.means, strict=True)),
                "std": dict(zip(self.features, self.stds, strict=True)),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        d = json.loads(text)
        feats = list(d["features"])
        return cls(feats, [d["median"][f] for f in feats], [d["mean"][f] for f in feats], [d["std"][f] for f in feats])


def _matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise KeyError(f"columns missing from the frame: {missing}")
    if frame.height == 0:
        return np.zeros((0, len(features)))
    return frame.select([pl.col(f).cast(pl.Float64) for f in features]).to_numpy().astype(float)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    num_leaves: int = knob(15, "LightGBM num_leaves.", ge=2)
    learning_rate: float = knob(0.03, "LightGBM learning_rate.", gt=0)
    num_boost_round: int = knob(400, "Most boosting rounds.", ge=1)
    early_stopping_rounds: int = knob(40, "Stop when validation log-loss has not improved for this many rounds.", ge=1)
    min_data_in_leaf: int = knob(20, "LightGBM min_data_in_leaf.", ge=1)
    feature_fraction: float = knob(0.8, "LightGBM feature_fraction.", gt=0, le=1)
    bagging_fraction: float = knob(0.8, "LightGBM bagging_fraction.", gt=0, le=1)
    bagging_freq: int = 1
    lambda_l2: float = knob(1.0, "LightGBM lambda_l2.", ge=0)
    seed: int = knob(7, "Random seed (LightGBM runs deterministic, single-threaded).")

    def __post_init__(self) -> None:
        check_knobs(self)

    def lightgbm(self) -> dict:
        return {
            "objective": "binary",
            "metric": ["binary_logloss", "auc"],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbose": -1,
        }


TOP_FRACTION = 0.1  # precision at k: the top 10 % of rows by predicted probability
# The decision threshold is the one maximising F1 on validation unless told (else 0.5).
TUNE_THRESHOLD = True


def precision_at_k(y: np.ndarray, p: np.ndarray, fraction: float = TOP_FRACTION) -> tuple[float | None, int]:
    """(share of positives among the ``k`` rows with the highest scores, k), ``k`` = ``fraction`` of
    the rows rounded up (at least 1). Ties at the cut are broken by row order (stable sort)."""
    y = np.asarray(y).astype(int)
    if len(y) == 0:
        return None, 0
    k = max(1, int(np.ceil(fraction * len(y))))
    top = np.argsort(-np.asarray(p, dtype=float), kind="stable")[:k]
    return float(y[top].mean()), k


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC, precision at k (top 10 %) and the confusion
    matrix at ``threshold``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "positive_rate": float(y.mean()) if len(y) else 0.0,
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else 0.0,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "precision_at_k": precision_at_k(y, p)[0],
        "k": precision_at_k(y, p)[1],
        "confusion_matrix": {"tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tp": int(cm[1, 1])},
    }


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 on (validation) data; 0.5 when it cannot be told."""
    y = np.asarray(y).astype(int)
    if len(y) == 0 or y.sum() == 0:
        return 0.5
    best_t, best_f1 = 0.5, -1.0
    for t in np.unique(np.round(p, 4)):
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        fp = float((pred & (y == 0)).sum())
        fn = float((~pred & (y == 1)).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t


@dataclasses.dataclass
class TrainedModel:
    booster: object
    normalizer: Normalizer
    threshold: float
    best_iteration: int
    train_metrics: dict
    val_metrics: dict
    importance: dict[str, dict[str, float]]

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(self.normalizer.transform(frame), num_iteration=self.best_iteration))


def feature_importance(booster, features: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per feature: total gain (and its share) and number of splits, largest gain first."""
    gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    split = np.asarray(booster.feature_importance(importance_type="split"), dtype=float)
    total = gain.sum() or 1.0
    rows = sorted(zip(features, gain, split, strict=True), key=lambda r: -r[1])
    return {f: {"gain": float(g), "gain_share": float(g / total), "splits": int(s)} for f, g, s in rows}


def train(
    train_frame: pl.DataFrame,
    val_frame: pl.DataFrame,
    params: TrainParams = TrainParams(),
    *,
    tune_threshold: bool = TUNE_THRESHOLD,
    features: Sequence[str] = FEATURE_NAMES,
) -> TrainedModel:
    """Fit the normaliser on train, train LightGBM with early stopping on validation."""
    import lightgbm as lgb

    if train_frame.height == 0 or val_frame.height == 0:
        raise ValueError("training needs a non-empty train and validation split")
    norm = Normalizer.fit(train_frame, features)
    x_tr, y_tr = norm.transform(train_frame), train_frame["label"].to_numpy().astype(int)
    x_va, y_va = norm.transform(val_frame), val_frame["label"].to_numpy().astype(int)
    dtrain = lgb.Dataset(x_tr, label=y_tr, feature_name=list(features), free_raw_data=False)
    dval = lgb.Dataset(x_va, label=y_va, reference=dtrain, feature_name=list(features), free_raw_data=False)
    booster = lgb.train(
        params.lightgbm(),
        dtrain,
        num_boost_round=params.num_boost_round,
        valid_sets=[dval],
        valid_names=["val"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    p_tr = booster.predict(x_tr, num_iteration=best)
    p_va = booster.predict(x_va, num_iteration=best)
    threshold = best_threshold(y_va, p_va) if tune_threshold else 0.5
    return TrainedModel(
        booster=booster,
        normalizer=norm,
        threshold=threshold,
        best_iteration=best,
        train_metrics=classification_metrics(y_tr, p_tr, threshold),
        val_metrics=classification_metrics(y_va, p_va, threshold),
        importance=feature_importance(booster, features),
    )


def shuffle_labels_within_dates(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``frame`` with ``label`` permuted among the rows of each date."""
    from quant_assets.lib.research.modeling import shuffle_within_dates

    if frame.height == 0:
        return frame
    y = shuffle_within_dates(frame["label"].to_numpy(), frame["date"].to_numpy(), seed)
    return frame.with_columns(pl.Series("label", y, dtype=frame["label"].dtype))


BASELINE_METRICS = ("roc_auc", "precision_at_k", "f1")


def no_skill_baselines(
    train_frame: pl.DataFrame,
    val_frame: pl.DataFrame,
    test_frame: pl.DataFrame,
    model_metrics: dict,
    params: TrainParams = TrainParams(),
    *,
    tune_threshold: bool = TUNE_THRESHOLD,
    seed: int = 0,
    features: Sequence[str] = FEATURE_NAMES,
) -> dict:
    """The test metrics of two no-skill models beside the model's: ``constant`` (the training
    base rate for every row: ROC-AUC 0.5, precision at k the test base rate) and ``shuffled``
    (the same training -- normaliser, early stopping, threshold -- on train and validation
    labels shuffled within each date); ``gap``: the model minus the better baseline."""
    y = test_frame["label"].to_numpy().astype(int)
    base = float(train_frame["label"].mean()) if train_frame.height else 0.0
    constant = classification_metrics(y, np.full(len(y), base), 0.5)
    constant["precision_at_k"] = float(y.mean()) if len(y) else None  # any k rows of a tie: the base rate on average
    shuffled_model = train(
        shuffle_labels_within_dates(train_frame, seed),
        shuffle_labels_within_dates(val_frame, seed + 1),
        params,
        tune_threshold=tune_threshold,
        features=features,
    )
    shuffled = classification_metrics(y, shuffled_model.predict(test_frame), shuffled_model.threshold)
    gap = {}
    for m in BASELINE_METRICS:
        values = [b[m] for b in (constant, shuffled) if b.get(m) is not None]
        gap[m] = None if model_metrics.get(m) is None or not values else float(model_metrics[m] - max(values))
    keep = ("roc_auc", "precision_at_k", "f1", "precision", "accuracy", "k")
    return {
        "constant": {k: constant[k] for k in keep},
        "shuffled": {k: shuffled[k] for k in keep},
        "gap": gap,
    }


def params_from_metadata(meta: Mapping) -> TrainParams:
    """The TrainParams a model's ``metadata.json`` was trained with."""
    p = meta["parameters"]
    fields = {f.name for f in dataclasses.fields(TrainParams)}
    return TrainParams(**{k: v for k, v in p.items() if k in fields})


def model_metadata(model: TrainedModel, params: TrainParams, splits: Mapping[str, tuple], rows: Mapping[str, int], version: str) -> dict:
    return {
        "name": MODEL_NAME,
        "version": version,
        "algorithm": "LightGBM binary classifier (gradient-boosted trees)",
        "target": "label = 1 when the 14-calendar-day forward return exceeds 5%",
        "features": list(model.normalizer.features),
        "preprocessing": "median imputation and z-score normalisation fitted on the training split (normalizer.json)",
        "parameters": {**params.lightgbm(), "num_boost_round": params.num_boost_round,
                       "early_stopping_rounds": params.early_stopping_rounds},
        "best_iteration": model.best_iteration,
        "decision_threshold": model.threshold,
        "data_window": {s: {"first_date": str(a), "last_date": str(b), "rows": int(rows.get(s, 0))} for s, (a, b) in splits.items()},
        "metrics": {"train": model.train_metrics, "val": model.val_metrics},
        "feature_importance": model.importance,
    }


def load_booster(model_text: str):
    import lightgbm as lgb

    return lgb.Booster(model_str=model_text)


@dataclasses.dataclass
class Evaluation:
    """A trained model on the test split, beside its no-skill baselines."""

    test: pl.DataFrame
    metrics: dict
    baselines: dict

    def report(self, version: str, importance: Mapping) -> dict:
        """The ``evaluation.json`` document."""
        return {
            "version": version,
            "test_window": {"first_date": str(self.test["date"].min()), "last_date": str(self.test["date"].max()), "rows": self.test.height},
            "metrics": self.metrics,
            "no_skill_baselines": self.baselines,
            "feature_importance": dict(importance),
        }


def evaluate(splits: pl.DataFrame, booster, normalizer: Normalizer, meta: Mapping) -> Evaluation:
    """The model (``booster`` with its ``normalizer`` and ``metadata.json`` content ``meta``) on
    the test split at its decision threshold, and the no-skill baselines on the same rows."""
    test = splits.filter(pl.col("split") == "test")
    metrics = classification_metrics(test["label"].to_numpy(), booster.predict(normalizer.transform(test)), meta["decision_threshold"])
    baselines = no_skill_baselines(
        splits.filter(pl.col("split") == "train"),
        splits.filter(pl.col("split") == "val"),
        test,
        metrics,
        params_from_metadata(meta),
        tune_threshold=bool(meta.get("tune_threshold", TUNE_THRESHOLD)),
        features=meta["features"],
    )
    return Evaluation(test, metrics, baselines)


def importance_markdown(importance: Mapping[str, Mapping[str, float]]) -> str:
    """Feature importance as a Markdown table (gain share, splits)."""
    lines = ["| feature | gain share | splits |", "|---|---|---|"]
    lines += [f"| {f} | {v['gain_share']:.3f} | {v['splits']} |" for f, v in importance.items()]
    return "\n".join(lines)


def baseline_markdown(metrics: Mapping, baselines: Mapping) -> str:
    """The model's metrics beside the no-skill baselines and its gap, as a Markdown table."""

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| metric | model | constant (base rate) | shuffled labels | gap |", "|---|---|---|---|---|"]
    for m in BASELINE_METRICS:
        lines.append(
            f"| {m} | {f(metrics.get(m))} | {f(baselines['constant'].get(m))} | {f(baselines['shuffled'].get(m))} | "
            f"{f(baselines['gap'].get(m))} |"
        )
    return "\n".join(lines)


def confusion_markdown(cm: Mapping[str, int]) -> str:
    """A confusion matrix (tn, fp, fn, tp) as a Markdown table."""
    return (
        "| | predicted 0 | predicted 1 |\n|---|---|---|\n"
        f"| actual 0 | {cm['tn']} | {cm['fp']} |\n| actual 1 | {cm['fn']} | {cm['tp']} |"
    )
