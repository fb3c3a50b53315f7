"""Can an agent tell the segments apart from the features table? A cross-validated classifier.

The model is a standardized multinomial logistic regression on the behavioural features (the
client's segment is never an input). Clients are independent rows with no time order, so the
folds are stratified K-fold, shuffled with the world's seed; every client is predicted by a
model that never saw it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.spec import SEGMENTS

FEATURE_COLUMNS = (
    "momentum_beta_1d",
    "momentum_beta_5d",
    "momentum_beta_20d",
    "log_holding_period_avg",
    "turnover",
    "aggressiveness",
    "lead_lag_alpha",
    "exposure_hhi",
)
MAX_FOLDS = 5
MIN_ACCURACY = 0.90


@dataclasses.dataclass
class ClassifierReport:
    accuracy: float | None  # None when there are too few clients per segment to cross-validate
    folds: int
    labels: list[str]
    confusion: list[list[int]]  # rows = true segment, columns = predicted, in `labels` order
    recall: dict[str, float]
    n_clients: int
    reason: str = ""

    def confusion_markdown(self) -> str:
        if not self.labels:
            return "(no clients)"
        head = "| true \\ predicted | " + " | ".join(self.labels) + " |"
        lines = [head, "|---" * (len(self.labels) + 1) + "|"]
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        return "\n".join(lines)


def design_matrix(features: pl.DataFrame) -> np.ndarray:
    """The classifier's inputs, one row per client (NaN where a feature is missing)."""
    hhi = [
        sum(v * v for v in json.loads(s).values()) if s else np.nan
        for s in features["exposure_concentration"].to_list()
    ]
    cols = [
        features["momentum_beta_1d"],
        features["momentum_beta_5d"],
        features["momentum_beta_20d"],
        features["holding_period_avg"].log(),
        features["turnover"],
        features["aggressiveness"],
        features["lead_lag_alpha"],
        pl.Series(hhi, dtype=pl.Float64),
    ]
    return np.column_stack([c.cast(pl.Float64).fill_null(np.nan).to_numpy() for c in cols])


def _model(seed: int):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def cross_validate(features: pl.DataFrame, clients: pl.DataFrame, seed: int) -> ClassifierReport:
    """Out-of-fold predictions of every client's segment, their accuracy and confusion matrix."""
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    df = features.join(clients.select("client_id", "segment"), on="client_id", how="inner")
    y = df["segment"].to_numpy()
    labels = [s for s in SEGMENTS if s in set(y)]
    counts = {s: int((y == s).sum()) for s in labels}
    folds = min(MAX_FOLDS, min(counts.values(), default=0))
    if len(labels) < 2 or folds < 2:
        return ClassifierReport(
            accuracy=None,
            folds=0,
            labels=labels,
            confusion=[[0] * len(labels) for _ in labels],
            recall={},
            n_clients=df.height,
            reason=f"cross-validation needs at least 2 segments with 2 clients each; got {counts}",
        )
    x = design_matrix(df)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32))
    pred = cross_val_predict(_model(seed % (2**32)), x, y, cv=cv)
    cm = confusion_matrix(y, pred, labels=labels)
    recall = {s: round(float(cm[i, i] / cm[i].sum()), 4) for i, s in enumerate(labels)}
    return ClassifierReport(
        accuracy=float((pred == y).mean()),
        folds=folds,
        labels=labels,
        confusion=cm.tolist(),
        recall=recall,
        n_clients=df.height,
    )
