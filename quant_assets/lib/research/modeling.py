"""Supervised models on research tables with walk-forward cross-validation.

Datasets
  * ``technical_features`` (the default, as in the old ``--data-path``): one row per ticker and
    day; target ``fwd_ret_1d`` = close on the next NYSE session / close - 1 (null, and the row
    dropped, when the ticker has no bar that session). Classifiers predict ``fwd_ret_1d > 0``.
  * ``training_dataset``: MACD events; classifiers predict ``label``, regressors ``ret_fwd``.

Walk-forward CV: the distinct dates are cut into ``n_splits + 1`` consecutive blocks; fold k
tests on block k+1 and trains on every date before it except the last ``gap_days`` dates (the
purge gap: a target that looks h sessions ahead needs ``gap_days >= h`` so no training label
overlaps the test period). The reported model is then fitted on all rows.

Nested tuning (``tune_alpha``): inside each outer fold, alpha is chosen by ``INNER_SPLITS``
walk-forward folds of that fold's training dates only (the same purge gap), then the model is
fitted on the training window with it and scored on the test block. An outer fold's figures
therefore depend on nothing dated after its test block, and the alpha chosen per fold is a
column of the fold table. The final model's alpha is chosen the same way over every row.

Artifacts are LightGBM's own text format and JSON: nothing here unpickles anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from quant_assets.lib import calendar as cal
from quant_assets.lib.knobs import check_knobs, knob
from quant_assets.lib.research import datasets, indicators

SOURCES = ("technical_features", "training_dataset")
LINEAR_REGULARIZATIONS = ("none", "ridge", "lasso", "elasticnet")
LOGISTIC_REGULARIZATIONS = ("none", "l2", "l1")
ALPHA_GRID = tuple(float(a) for a in np.logspace(-4, 2, 13))
INNER_SPLITS = 3  # walk-forward folds inside each outer training window when tuning alpha

# Scale-free technical columns: the price-level ones mean different things for a $2 and a $200
# stock and are left out of the default feature set.
DEFAULT_TECHNICAL_FEATURES: tuple[str, ...] = indicators.SCALE_FREE_COLUMNS
# Keys and forward-looking outcomes of the training dataset are never features.
EVENT_EXCLUDED = datasets.KEY_COLUMNS + datasets.TARGET_COLUMNS

FOLD_DOCS: dict[str, str] = {
    "fold": "Walk-forward fold number (1 = earliest test block)",
    "train_start": "First date in the training set",
    "train_end": "Last date in the training set (gap_days dates before test_start are purged)",
    "test_start": "First date of the test block",
    "test_end": "Last date of the test block",
    "n_train": "Training rows",
    "n_test": "Test rows",
    "accuracy": "Share of test rows whose predicted class is right",
    "roc_auc": "Area under the ROC curve on the test block; null when it holds one class only",
    "f1": "F1 score of the positive class on the test block",
    "base_rate": "Share of positive labels in the test block",
    "log_loss": "Mean negative log-likelihood of the test labels",
    "rmse": "Root mean squared error on the test block, target units",
    "r2": "Coefficient of determination on the test block (can be negative)",
    "direction_accuracy": "Share of test rows with a non-zero target whose sign the prediction gets right",
    "ic": "Spearman rank correlation of predictions and targets on the test block",
    "alpha": "Penalty chosen for this fold by walk-forward folds inside its own training window (nested tuning; tune_alpha only)",
    "constant_*": "No-skill baseline: the metric of predicting the training window's mean target (base rate) for every test row",
    "shuffled_*": "No-skill baseline: the metric of the same model trained on labels shuffled within each date",
}


class ModelingError(ValueError):
    """A model cannot be trained on the data it was given; the message says why."""


@dataclasses.dataclass
class ModelData:
    frame: pl.DataFrame  # keys, features and target, rows with a target only
    features: list[str]
    target: str
    dropped: dict[str, str]  # feature -> why it was left out
    source: str


@dataclasses.dataclass
class Fold:
    number: int
    train: np.ndarray
    test: np.ndarray
    train_dates: tuple[Any, Any]
    test_dates: tuple[Any, Any]


@dataclasses.dataclass
class ModelResult:
    folds: pl.DataFrame
    mean_metrics: dict[str, float | None]
    table: pl.DataFrame  # importance (LightGBM) or coefficients (linear / logistic)
    results: dict[str, Any]  # the JSON written beside the model
    model_text: str | None = None  # LightGBM's own text format
    # Folds (of the rows actually used) whose training dates reach into the purge gap.
    purge_violations: list[int] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Datasets


def next_session_returns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (ticker, date, close, ...) plus ``fwd_ret_1d``: close on the next NYSE session /
    close - 1, null when the ticker has no bar that session or it is not in the frame."""
    if frame.is_empty():
        return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("fwd_ret_1d"))
    first, last = frame["date"].min(), frame["date"].max()
    sessions = pl.DataFrame({"date": cal.trading_days(first, last)}, schema={"date": pl.Date}).with_row_index("sidx")
    indexed = frame.join(sessions, on="date", how="left")
    nxt = indexed.select("ticker", (pl.col("sidx") - 1).alias("sidx"), pl.col("close").alias("_next_close"))
    return (
        indexed.join(nxt, on=["ticker", "sidx"], how="left")
        .with_columns((pl.col("_next_close") / pl.col("close") - 1.0).alias("fwd_ret_1d"))
        .drop("sidx", "_next_close")
    )


def _usable(frame: pl.DataFrame, features: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for f in features:
        if f not in frame.columns:
            dropped[f] = "not a column of the dataset"
            continue
        col = frame[f]
        if not col.dtype.is_numeric():
            dropped[f] = f"not numeric ({col.dtype})"
            continue
        if col.null_count() == col.len():
            dropped[f] = "all null"
            continue
        kept.append(f)
    return kept, dropped


def model_data(source: str, frame: pl.DataFrame, *, kind: str, features: Sequence[str] = ()) -> ModelData:
    """Rows, features and target of ``source`` for a ``kind`` ('classifier' / 'regressor') model.

    A requested feature that is missing, not numeric or entirely null is left out and reported in
    ``dropped`` (a column of nulls carries no information; a model cannot use it)."""
    if source not in SOURCES:
        raise ModelingError(f"data_source must be one of {SOURCES}, got {source!r}")
    if kind not in ("classifier", "regressor"):
        raise ValueError(kind)
    if source == "technical_features":
        if frame.width and "close" not in frame.columns:
            raise ModelingError("research/technical_features has no close column to build next-session returns from")
        base = next_session_returns(frame) if frame.width else pl.DataFrame(schema={"ticker": pl.String, "date": pl.Date})
        wanted = list(features) or list(DEFAULT_TECHNICAL_FEATURES)
        target_col = "fwd_ret_1d"
    else:
        base = frame
        wanted = list(features) or [c for c in frame.columns if c not in EVENT_EXCLUDED]
        target_col = "label" if kind == "classifier" else "ret_fwd"
    if base.is_empty() or target_col not in base.columns:
        raise ModelingError(
            f"asked to train on zero rows: research/{source} holds no rows"
            + ("" if base.is_empty() else f" with a {target_col} column")
            + " (materialize it first)"
        )
    rows = base.filter(pl.col(target_col).is_not_null() & pl.col(target_col).is_finite())
    if rows.is_empty():
        raise ModelingError(
            f"asked to train on zero rows: none of the {base.height:,} rows of research/{source} has a "
            f"{target_col} target (it needs the following session, or events with forward bars)"
        )
    kept, dropped = _usable(rows, wanted)
    if not kept:
        raise ModelingError(f"no usable feature in research/{source}: {dropped}")
    if source == "technical_features" and kind == "classifier":
        rows = rows.with_columns((pl.col(target_col) > 0).cast(pl.Int8).alias("target"))
    elif kind == "classifier":
        rows = rows.with_columns(pl.col(target_col).cast(pl.Int8).alias("target"))
    else:
        rows = rows.with_columns(pl.col(target_col).cast(pl.Float64).alias("target"))
    out = rows.select("ticker", "date", *kept, "target").sort(["date", "ticker"])
    return ModelData(frame=out, features=kept, target=target_col, dropped=dropped, source=source)


def complete_rows(data: ModelData) -> ModelData:
    """Rows with every feature present (linear and logistic models cannot take nulls)."""
    frame = data.frame.drop_nulls(data.features)
    frame = frame.filter(pl.all_horizontal(pl.col(data.features).cast(pl.Float64).is_finite()))
    if frame.is_empty():
        nulls = {f: int(data.frame[f].null_count()) for f in data.features}
        raise ModelingError(
            f"asked to train on zero rows: none of the {data.frame.height:,} rows has every feature "
            f"{data.features} (null counts {nulls}); lookbacks need more history, or choose fewer features"
        )
    return dataclasses.replace(data, frame=frame)


# ---------------------------------------------------------------------------------------------
# Walk-forward splits


def walk_forward_splits(dates: np.ndarray, n_splits: int, gap_days: int) -> list[Fold]:
    """Expanding-window folds over the distinct values of ``dates`` (see the module docstring)."""
    if n_splits < 1:
        raise ModelingError(f"n_splits must be at least 1, got {n_splits}")
    if gap_days < 0:
        raise ModelingError(f"gap_days must be >= 0, got {gap_days}")
    unique = np.unique(dates)
    block = len(unique) // (n_splits + 1)
    if block < 1 or len(unique) - n_splits * block - gap_days < 1:
        raise ModelingError(
            f"{len(unique)} distinct date(s) cannot make {n_splits} walk-forward folds with a {gap_days}-date "
            f"purge gap (needs at least {n_splits + 1 + gap_days}); lower n_splits or gap_days, or add history"
        )
    first_test = len(unique) - n_splits * block
    folds = []
    for k in range(n_splits):
        lo = first_test + k * block
        hi = lo + block
        test_dates = unique[lo:hi]
        train_dates = unique[: lo - gap_days]
        train = np.flatnonzero(np.isin(dates, train_dates))
        test = np.flatnonzero(np.isin(dates, test_dates))
        folds.append(
            Fold(k + 1, train, test, (_py(train_dates[0]), _py(train_dates[-1])), (_py(test_dates[0]), _py(test_dates[-1])))
        )
    return folds


def _py(value):
    """A numpy date as ``datetime.date`` (other values unchanged)."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").item()
    return value


def purge_violations(folds: Sequence[Fold], dates: np.ndarray, gap_days: int) -> list[int]:
    """Folds whose training dates come within ``gap_days`` distinct dates of their test block."""
    unique = [_py(d) for d in np.unique(dates)]
    pos = {d: i for i, d in enumerate(unique)}
    bad = []
    for f in folds:
        if pos[f.test_dates[0]] - pos[f.train_dates[1]] <= gap_days:
            bad.append(f.number)
    return bad


# ---------------------------------------------------------------------------------------------
# Metrics


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


def classification_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    pred = (prob >= 0.5).astype(int)
    two = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": float(roc_auc_score(y, prob)) if two else None,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, np.clip(prob, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "base_rate": float(np.mean(y)),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_squared_error, r2_score

    nz = y != 0
    return {
        "rmse": float(math.sqrt(mean_squared_error(y, pred))),
        "r2": float(r2_score(y, pred)) if len(y) > 1 else None,
        "direction_accuracy": float(np.mean(np.sign(pred[nz]) == np.sign(y[nz]))) if nz.any() else None,
        "ic": _spearman(pred, y),
    }


def _fold_table(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("fold").cast(pl.Int32), pl.col("n_train").cast(pl.Int64), pl.col("n_test").cast(pl.Int64)
    )


def _mean_metrics(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for n in names:
        vals = [r[n] for r in rows if r.get(n) is not None]
        out[n] = float(np.mean(vals)) if vals else None
    return out


def shuffle_within_dates(y: np.ndarray, dates: np.ndarray, seed: int) -> np.ndarray:
    """``y`` with its values permuted among the rows of each date (the link between features and
    labels destroyed, each date's label mix kept)."""
    rng = np.random.default_rng(seed)
    out = np.array(y, copy=True)
    order = np.argsort(dates, kind="stable")
    sorted_dates = dates[order]
    bounds = np.flatnonzero(sorted_dates[1:] != sorted_dates[:-1]) + 1
    for group in np.split(order, bounds):
        out[group] = y[group[rng.permutation(group.size)]]
    return out


BASELINES = ("constant", "shuffled")
# Metrics where lower is better; for the others a positive gap means the model beats the baseline.
LOWER_IS_BETTER = ("rmse", "log_loss")


def _run_folds(data: ModelData, folds: list[Fold], fit_predict, metric_fn) -> tuple[pl.DataFrame, dict[str, float | None]]:
    """Score ``fit_predict(X_train, y_train, X_test, train_dates)`` on every fold; it returns the
    predictions, or ``(predictions, extra fold columns)``.

    Beside every metric, two no-skill baselines on the same fold: ``constant_<metric>``, the
    training window's mean target predicted for every test row (the base rate for a
    classifier), and ``shuffled_<metric>``, the same model (tuning included) trained on the
    training labels permuted within each date. The mean metrics add ``gap_<metric>``: the model's
    mean minus the better baseline's, signed so that a positive gap is skill (for RMSE and log
    loss, the baseline minus the model)."""
    X = data.frame.select(data.features).cast(pl.Float64).to_numpy()
    y = data.frame["target"].to_numpy()
    dates = data.frame["date"].to_numpy()
    rows = []
    names: list[str] = []
    for f in folds:
        out = fit_predict(X[f.train], y[f.train], X[f.test], dates[f.train])
        pred, extra = out if isinstance(out, tuple) else (out, {})
        m = metric_fn(y[f.test], pred)
        names = list(m)
        constant = metric_fn(y[f.test], np.full(len(f.test), float(np.mean(y[f.train]))))
        shuffled_y = shuffle_within_dates(y[f.train], dates[f.train], seed=f.number)
        out = fit_predict(X[f.train], shuffled_y, X[f.test], dates[f.train])
        shuffled = metric_fn(y[f.test], out[0] if isinstance(out, tuple) else out)
        m = {**m, **{f"constant_{k}": v for k, v in constant.items()}, **{f"shuffled_{k}": v for k, v in shuffled.items()}}
        rows.append(
            {
                "fold": f.number,
                "train_start": f.train_dates[0],
                "train_end": f.train_dates[1],
                "test_start": f.test_dates[0],
                "test_end": f.test_dates[1],
                "n_train": len(f.train),
                "n_test": len(f.test),
                **m,
                **extra,
            }
        )
    all_names = [*names, *(f"{b}_{k}" for b in BASELINES for k in names)]
    means = _mean_metrics(rows, all_names)
    for k in names:
        if means[k] is None:
            means[f"gap_{k}"] = None
            continue
        base = [means[f"{b}_{k}"] for b in BASELINES if means[f"{b}_{k}"] is not None]
        if k == "base_rate" or not base:
            means[f"gap_{k}"] = None
        elif k in LOWER_IS_BETTER:
            means[f"gap_{k}"] = min(base) - means[k]
        else:
            means[f"gap_{k}"] = means[k] - max(base)
    return _fold_table(rows), means


def _folds_for(data: ModelData, n_splits: int, gap_days: int) -> list[Fold]:
    dates = data.frame["date"].to_numpy()
    folds = walk_forward_splits(dates, n_splits, gap_days)
    for f in folds:
        if len(np.unique(data.frame["target"].to_numpy()[f.train])) < 2 and data.frame["target"].dtype == pl.Int8:
            raise ModelingError(f"fold {f.number} trains on one class only; add history or lower n_splits")
    return folds


def _violations(data: ModelData, folds: list[Fold], gap_days: int) -> list[int]:
    return purge_violations(folds, data.frame["date"].to_numpy(), gap_days)


def _data_summary(data: ModelData) -> dict[str, Any]:
    return {
        "source": data.source,
        "target": data.target,
        "rows": data.frame.height,
        "tickers": int(data.frame["ticker"].n_unique()),
        "first_date": str(data.frame["date"].min()),
        "last_date": str(data.frame["date"].max()),
        "features": data.features,
        "dropped_features": data.dropped,
    }


# ---------------------------------------------------------------------------------------------
# LightGBM


@dataclasses.dataclass(frozen=True)
class LgbmParams:
    n_estimators: int = knob(200, "Boosting rounds.", ge=1)
    learning_rate: float = knob(0.05, "Shrinkage per round.", gt=0)
    num_leaves: int = knob(31, "Leaves per tree.", ge=2)
    min_child_samples: int = knob(50, "Minimum rows in a leaf.", ge=1)
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    random_state: int = 0
    # One thread by default: LightGBM's OpenMP threads spin while they wait, and on a busy
    # machine (or beside other Dagster steps) two threads ran 6x slower than one here.
    n_jobs: int = knob(
        1,
        "LightGBM threads. More help only on an idle machine: its threads spin while waiting, so on a busy "
        "one (or beside other steps) one thread is faster.",
        ge=1,
    )

    def __post_init__(self) -> None:
        check_knobs(self)

    def estimator(self, kind: str):
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if kind == "classifier" else lgb.LGBMRegressor
        return cls(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=self.colsample_bytree,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )


def train_lgbm(data: ModelData, kind: str, params: LgbmParams, n_splits: int, gap_days: int) -> ModelResult:
    """Walk-forward CV of a LightGBM classifier or regressor, then a final fit on every row.
    Nulls are LightGBM's missing values (it learns which side of a split they go)."""
    import lightgbm as lgb

    folds = _folds_for(data, n_splits, gap_days)

    def fit_predict(Xtr, ytr, Xte, _dates):
        est = params.estimator(kind)
        est.fit(Xtr, ytr)
        return est.predict_proba(Xte)[:, 1] if kind == "classifier" else est.predict(Xte)

    metric_fn = classification_metrics if kind == "classifier" else regression_metrics
    fold_table, means = _run_folds(data, folds, fit_predict, metric_fn)
    X = data.frame.select(data.features).cast(pl.Float64).to_numpy()
    y = data.frame["target"].to_numpy()
    final = params.estimator(kind)
    final.fit(X, y, feature_name=list(data.features))
    booster = final.booster_
    gain = booster.feature_importance(importance_type="gain")
    split = booster.feature_importance(importance_type="split")
    total = float(gain.sum()) or 1.0
    importance = pl.DataFrame(
        {
            "feature": list(data.features),
            "gain": gain.astype(float),
            "gain_share": gain.astype(float) / total,
            "splits": split.astype(np.int64),
        }
    ).sort("gain", descending=True)
    results = {
        "model": f"lightgbm_{kind}",
        "lightgbm_version": lgb.__version__,
        "params": dataclasses.asdict(params),
        "cv": {"scheme": "walk_forward_expanding", "n_splits": n_splits, "gap_days": gap_days},
        "data": _data_summary(data),
        "folds": fold_table.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts(),
        "mean_metrics": means,
        "feature_importance": importance.to_dicts(),
    }
    return ModelResult(fold_table, means, importance, results, booster.model_to_string(), _violations(data, folds, gap_days))


# ---------------------------------------------------------------------------------------------
# Linear and logistic models (standardised features; statistics on the final fit)


def _standardise(Xtr: np.ndarray, Xte: np.ndarray | None = None):
    mu = Xtr.mean(axis=0)
    sd = Xtr.std(axis=0)
    sd[sd == 0] = 1.0
    return (Xtr - mu) / sd, (None if Xte is None else (Xte - mu) / sd), mu, sd


def _linear_estimator(regularization: str, alpha: float, l1_ratio: float):
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

    if regularization == "none":
        return LinearRegression()
    if regularization == "ridge":
        return Ridge(alpha=alpha)
    if regularization == "lasso":
        return Lasso(alpha=alpha, max_iter=10_000)
    return ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=10_000)


def _ols_inference(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(coef with intercept first, standard errors, t, p, residual df) of OLS."""
    import statsmodels.api as sm

    res = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()
    return res.params, res.bse, res.tvalues, res.pvalues, int(res.df_resid)


def _ridge_inference(Xs: np.ndarray, y: np.ndarray, alpha: float, coef: np.ndarray, intercept: float):
    """Standard errors of ridge coefficients from the sandwich form
    Var(b) = s^2 (X'X + aI)^-1 X'X (X'X + aI)^-1 on centred data, with the residual variance on
    n - 1 - tr(H) degrees of freedom (H the ridge hat matrix)."""
    from scipy import stats

    Xc = Xs - Xs.mean(axis=0)
    n, k = Xc.shape
    xtx = Xc.T @ Xc
    inv = np.linalg.inv(xtx + alpha * np.eye(k))
    df_model = float(np.trace(xtx @ inv))
    resid = y - (Xs @ coef + intercept)
    df_resid = max(n - 1 - df_model, 1.0)
    s2 = float(resid @ resid) / df_resid
    cov = s2 * inv @ xtx @ inv
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    t = np.divide(coef, se, out=np.full_like(coef, np.nan), where=se > 0)
    p = 2 * stats.t.sf(np.abs(t), df_resid)
    return se, t, p, df_resid


def tune_alpha_walk_forward(
    X: np.ndarray, y: np.ndarray, dates: np.ndarray, make, score_fn, *, n_splits: int, gap_days: int
) -> tuple[float, list[dict[str, float]]]:
    """The alpha of ``ALPHA_GRID`` with the lowest mean score over ``n_splits`` walk-forward folds
    of ``(X, y, dates)`` (features standardised with each inner training window's statistics);
    ties go to the larger alpha (the simpler model). Uses nothing outside the rows given."""
    try:
        folds = walk_forward_splits(dates, n_splits, gap_days)
    except ModelingError as exc:
        raise ModelingError(f"alpha cannot be tuned inside this training window: {exc}") from None
    grid = []
    for a in ALPHA_GRID:
        scores = []
        for f in folds:
            Xtr, Xte, _, _ = _standardise(X[f.train], X[f.test])
            est = make(a)
            est.fit(Xtr, y[f.train])
            scores.append(score_fn(est, Xte, y[f.test]))
        grid.append({"alpha": a, "cv_score": float(np.mean(scores))})
    best = min(reversed(grid), key=lambda g: g["cv_score"])
    return best["alpha"], grid


def _nested(alpha: float, tuning: bool, make, score_fn, gap_days: int, predict):
    """``fit_predict`` for :func:`_run_folds`: alpha tuned inside the fold's training window
    when ``tuning`` (recorded as the fold's ``alpha``), else the given one."""

    def fit_predict(Xtr, ytr, Xte, dtr):
        a = alpha
        if tuning:
            a, _ = tune_alpha_walk_forward(Xtr, ytr, dtr, make, score_fn, n_splits=INNER_SPLITS, gap_days=gap_days)
        Xs, Xt, _, _ = _standardise(Xtr, Xte)
        est = make(a)
        est.fit(Xs, ytr)
        return (predict(est, Xt), {"alpha": a}) if tuning else predict(est, Xt)

    return fit_predict


@dataclasses.dataclass
class _PenalisedCV:
    """A penalised linear model's walk-forward evaluation and what its final fit needs."""

    data: ModelData
    folds: list[Fold]
    fold_table: pl.DataFrame
    means: dict[str, float | None]
    alpha: float
    grid: list[dict[str, float]]
    X: np.ndarray  # every complete row, standardised with the full sample's mean and std
    y: np.ndarray
    mu: np.ndarray
    sd: np.ndarray


def _penalised_cv(data: ModelData, *, make, score, predict, metrics, alpha: float, tuning: bool, n_splits: int, gap_days: int) -> _PenalisedCV:
    """Walk-forward folds (alpha nested inside each training window when ``tuning``), then the
    final model's alpha over every row and the standardised full sample."""
    data = complete_rows(data)
    folds = _folds_for(data, n_splits, gap_days)
    fit_predict = _nested(alpha, tuning, make, score, gap_days, predict)
    fold_table, means = _run_folds(data, folds, fit_predict, metrics)
    X = data.frame.select(data.features).cast(pl.Float64).to_numpy()
    y = data.frame["target"].to_numpy()
    grid: list[dict[str, float]] = []
    if tuning:
        alpha, grid = tune_alpha_walk_forward(X, y, data.frame["date"].to_numpy(), make, score, n_splits=n_splits, gap_days=gap_days)
    Xs, _, mu, sd = _standardise(X)
    return _PenalisedCV(data, folds, fold_table, means, alpha, grid, Xs, y, mu, sd)


def _penalised_result(cv: _PenalisedCV, table: pl.DataFrame, *, head: dict, fit: dict, tune_alpha: bool, tuning: bool, n_splits: int, gap_days: int) -> ModelResult:
    """The model's result: ``head`` (model, regularization, alpha, ...), the tuning record,
    ``fit`` (intercept, inference, standardisation), then the folds and coefficients."""
    results = {
        **head,
        "tune_alpha": tune_alpha,
        "tuning": _tuning_note(tuning, n_splits),
        "alpha_by_fold": cv.fold_table["alpha"].to_list() if tuning else None,
        "alpha_grid": cv.grid,
        **fit,
        "cv": {"scheme": "walk_forward_expanding", "n_splits": n_splits, "gap_days": gap_days},
        "data": _data_summary(cv.data),
        "folds": cv.fold_table.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts(),
        "mean_metrics": cv.means,
        "coefficients": table.to_dicts(),
    }
    return ModelResult(cv.fold_table, cv.means, table, results, None, _violations(cv.data, cv.folds, gap_days))


def train_linear(
    data: ModelData, *, regularization: str, alpha: float, tune_alpha: bool, l1_ratio: float, n_splits: int, gap_days: int
) -> ModelResult:
    """OLS / Ridge / Lasso / ElasticNet on z-scored features (scaled with the training fold's
    mean and std, so no test information leaks in).

    Inference on the final fit: OLS -- the usual standard errors, t and p; Ridge -- the sandwich
    standard errors of :func:`_ridge_inference`; Lasso / ElasticNet -- OLS refitted on the selected
    (non-zero) features ("post-selection" statistics that ignore the selection step); features the
    penalty set to zero get null statistics. ``tune_alpha`` picks alpha from a log grid by mean
    walk-forward RMSE.
    """
    if regularization not in LINEAR_REGULARIZATIONS:
        raise ModelingError(f"regularization must be one of {LINEAR_REGULARIZATIONS}, got {regularization!r}")
    tuning = tune_alpha and regularization != "none"

    def make(a):
        return _linear_estimator(regularization, a, l1_ratio)

    def rmse(est, Xte, yte):
        return float(np.sqrt(np.mean((est.predict(Xte) - yte) ** 2)))

    cv = _penalised_cv(
        data, make=make, score=rmse, predict=lambda est, Xt: est.predict(Xt), metrics=regression_metrics,
        alpha=alpha, tuning=tuning, n_splits=n_splits, gap_days=gap_days,
    )  # fmt: skip
    alpha, Xs, y = cv.alpha, cv.X, cv.y.astype(float)
    k = len(cv.data.features)
    se = np.full(k, np.nan)
    t = np.full(k, np.nan)
    p = np.full(k, np.nan)
    if regularization == "none":
        params, bse, tv, pv, df_resid = _ols_inference(Xs, y)
        intercept, coef = float(params[0]), np.asarray(params[1:])
        se, t, p = np.asarray(bse[1:]), np.asarray(tv[1:]), np.asarray(pv[1:])
        inference = "ols"
    else:
        est = _linear_estimator(regularization, alpha, l1_ratio)
        est.fit(Xs, y)
        coef, intercept = np.asarray(est.coef_, dtype=float), float(est.intercept_)
        if regularization == "ridge":
            se, t, p, df_resid = _ridge_inference(Xs, y, alpha, coef, intercept)
            inference = "ridge_sandwich"
        else:
            sel = np.flatnonzero(coef != 0)
            df_resid = None
            if sel.size:
                _, bse, tv, pv, df_resid = _ols_inference(Xs[:, sel], y)
                se[sel], t[sel], p[sel] = bse[1:], tv[1:], pv[1:]
            inference = "post_selection_ols"
    table = pl.DataFrame(
        {
            "feature": list(cv.data.features),
            "coef": coef,
            "std_err": se,
            "t_stat": t,
            "p_value": p,
            "feature_mean": cv.mu,
            "feature_std": cv.sd,
        }
    ).with_columns(pl.col("std_err", "t_stat", "p_value").fill_nan(None))
    head = {
        "model": f"linear_{regularization}",
        "regularization": regularization,
        "alpha": alpha if regularization != "none" else None,
        "l1_ratio": l1_ratio if regularization == "elasticnet" else None,
    }
    fit = {
        "intercept": intercept,
        "inference": inference,
        "residual_df": df_resid,
        "standardisation": "coefficients are per one standard deviation of each feature (feature_mean / feature_std)",
    }
    return _penalised_result(cv, table, head=head, fit=fit, tune_alpha=tune_alpha, tuning=tuning, n_splits=n_splits, gap_days=gap_days)


def _logistic_estimator(regularization: str, alpha: float):
    from sklearn.linear_model import LogisticRegression

    if regularization == "none":
        return LogisticRegression(C=np.inf, max_iter=2000)
    if regularization == "l1":
        # liblinear shuffles with numpy's global generator unless seeded: the same data gave a
        # different alpha and coefficients from one run to the next.
        return LogisticRegression(l1_ratio=1.0, C=1.0 / alpha, solver="liblinear", max_iter=2000, random_state=0)
    return LogisticRegression(C=1.0 / alpha, max_iter=2000)


def train_logistic(
    data: ModelData, *, regularization: str, alpha: float, tune_alpha: bool, n_splits: int, gap_days: int
) -> ModelResult:
    """Logistic regression for the direction / label on z-scored features; ``alpha`` is the
    penalty strength (sklearn's ``C = 1 / alpha``); ``tune_alpha`` picks it by walk-forward log loss."""
    if regularization not in LOGISTIC_REGULARIZATIONS:
        raise ModelingError(f"regularization must be one of {LOGISTIC_REGULARIZATIONS}, got {regularization!r}")
    from sklearn.metrics import log_loss

    tuning = tune_alpha and regularization != "none"

    def make(a):
        return _logistic_estimator(regularization, a)

    def loss(est, Xte, yte):
        return float(log_loss(yte, est.predict_proba(Xte)[:, 1], labels=[0, 1]))

    cv = _penalised_cv(
        data, make=make, score=loss, predict=lambda est, Xt: est.predict_proba(Xt)[:, 1], metrics=classification_metrics,
        alpha=alpha, tuning=tuning, n_splits=n_splits, gap_days=gap_days,
    )  # fmt: skip
    est = _logistic_estimator(regularization, cv.alpha)
    est.fit(cv.X, cv.y)
    coef = np.asarray(est.coef_[0], dtype=float)
    table = pl.DataFrame(
        {"feature": list(cv.data.features), "coef": coef, "odds_ratio": np.exp(coef), "feature_mean": cv.mu, "feature_std": cv.sd}
    )
    head = {"model": f"logistic_{regularization}", "regularization": regularization, "alpha": cv.alpha if regularization != "none" else None}
    fit = {"intercept": float(est.intercept_[0]), "standardisation": "coefficients are log-odds per one standard deviation of each feature"}
    return _penalised_result(cv, table, head=head, fit=fit, tune_alpha=tune_alpha, tuning=tuning, n_splits=n_splits, gap_days=gap_days)


def _tuning_note(tuning: bool, n_splits: int) -> str | None:
    if not tuning:
        return None
    return (
        f"nested: each outer fold's alpha chosen by {INNER_SPLITS} walk-forward folds inside its training window "
        f"(same purge gap); fold metrics are out of sample for alpha. The final model's alpha: {n_splits} walk-forward "
        "folds over every row (alpha_grid)."
    )


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars / NaN made JSON-safe (NaN and inf become null)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    return value


def leading_terms(table: pl.DataFrame, n: int = 20) -> tuple[list[str], list[float]]:
    """(features, values) of the ``n`` largest terms of a model's table, for its chart: gain
    shares as ranked (tree models), else the coefficients by absolute size."""
    if "gain_share" in table.columns:
        top = table.head(n)
        return top["feature"].to_list(), top["gain_share"].to_list()
    top = table.sort(pl.col("coef").abs(), descending=True).head(n)
    return top["feature"].to_list(), top["coef"].to_list()
