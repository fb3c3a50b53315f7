"""Time-ordered splits, preprocessing fitted on train only, the metrics against scikit-learn, the
decision threshold, and that the model learns the simulator's planted relation."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib.smart_money import dataset as ds
from quant_assets.lib.smart_money import model as mdl
from quant_assets.lib.smart_money import splits as sp
from quant_assets.lib.smart_money.features import FEATURE_NAMES
from quant_assets.lib.smart_money.universe import Schedule


def synthetic(dates, symbols=("A", "B", "C", "D"), seed=0):
    rng = np.random.default_rng(seed)
    n = len(dates) * len(symbols)
    data = {
        "symbol": [s for _ in dates for s in symbols],
        "date": [d for d in dates for _ in symbols],
        "price_at_sample": 100.0,
        "price_after_14d": 100.0,
        "return_14d": 0.0,
        **{f: rng.normal(size=n) for f in FEATURE_NAMES},
    }
    frame = pl.DataFrame(data)
    signal = frame[FEATURE_NAMES[0]].to_numpy() + 0.5 * rng.normal(size=n)
    return frame.with_columns(pl.Series("label", (signal > 0.3).astype(np.int8)))


def test_split_is_ordered_by_date_with_whole_dates_and_nearest_fractions():
    dates = Schedule().sample_dates()
    data = synthetic(dates)
    out, report = sp.time_split(data)
    assert report.rows == {"train": 25 * 4, "val": 6 * 4, "test": 5 * 4}
    tr, va, te = (out.filter(pl.col("split") == s)["date"] for s in sp.SPLITS)
    assert tr.max() < va.min() and va.max() < te.min()
    # No date is split between two sets.
    assert out.group_by("date").agg(pl.col("split").n_unique())["split"].max() == 1
    assert report.purged == {"train": 0, "val": 0, "test": 0}


def test_dense_dates_are_purged_where_labels_overlap_the_next_split():
    # Weekly samples: a training label (14 days ahead) reaches into validation.
    dates = [dt.date(2023, 1, 3) + dt.timedelta(days=7 * i) for i in range(30)]
    out, report = sp.time_split(synthetic(dates))
    assert report.purged["train"] > 0 and report.purged["val"] > 0
    first_val = out.filter(pl.col("split") == "val")["date"].min()
    train = out.filter(pl.col("split") == "train")
    ends = ds.label_dates(train["date"].unique().to_list())
    assert max(ends) < first_val


def test_split_refuses_what_it_cannot_do():
    with pytest.raises(sp.SplitError, match="at least 3"):
        sp.time_split(synthetic(Schedule().sample_dates()[:2]))
    with pytest.raises(sp.SplitError, match="sum to 1"):
        sp.time_split(synthetic(Schedule().sample_dates()), 0.7, 0.2, 0.2)


def test_normalizer_is_fitted_on_train_only():
    train = pl.DataFrame({f: [1.0, 3.0, None, 5.0] for f in FEATURE_NAMES})
    test = pl.DataFrame({f: [1000.0, None] for f in FEATURE_NAMES})
    norm = mdl.Normalizer.fit(train)
    assert norm.medians[0] == 3.0
    filled = np.array([1.0, 3.0, 3.0, 5.0])
    assert norm.means[0] == pytest.approx(filled.mean()) and norm.stds[0] == pytest.approx(filled.std())
    x = norm.transform(test)
    assert x[1, 0] == pytest.approx((3.0 - filled.mean()) / filled.std())  # a missing test value gets the train median
    assert x[0, 0] == pytest.approx((1000.0 - filled.mean()) / filled.std())
    back = mdl.Normalizer.from_json(norm.to_json())
    assert back == norm


def test_metrics_match_scikit_learn_reference_values():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2, 0.55, 0.3])
    m = mdl.classification_metrics(y, p, 0.5)
    # pred: 0 1 1 0 1 0 1 0 -> tp 3, fp 1, fn 1, tn 3
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["accuracy"] == 0.75 and m["precision"] == 0.75 and m["recall"] == 0.75 and m["f1"] == 0.75
    # 16 positive/negative pairs, 14 ranked right (the negative at 0.6 beats the positives 0.4 and 0.55).
    assert m["roc_auc"] == pytest.approx(14 / 16)
    assert mdl.classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]), 0.5)["roc_auc"] is None


def test_best_threshold_maximises_f1():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.35, 0.8, 0.9])
    assert mdl.best_threshold(y, p) == pytest.approx(0.35)


def test_model_version_must_be_semver():
    assert mdl.model_dir("1.2.3") == "models/smart-money-flow/v1.2.3"
    with pytest.raises(ValueError, match="1.2.3"):
        mdl.model_dir("latest")


def test_training_learns_a_clear_signal_and_reports_importance():
    data = synthetic(Schedule().sample_dates(), symbols=tuple("ABCDEFGHIJKLMNOP"), seed=3)
    out, _ = sp.time_split(data)
    parts = {s: out.filter(pl.col("split") == s) for s in sp.SPLITS}
    trained = mdl.train(parts["train"], parts["val"])
    test = mdl.classification_metrics(parts["test"]["label"].to_numpy(), trained.predict(parts["test"]), trained.threshold)
    assert test["roc_auc"] > 0.85
    assert next(iter(trained.importance)) == FEATURE_NAMES[0]
    assert sum(v["gain_share"] for v in trained.importance.values()) == pytest.approx(1.0)
    # The booster round-trips through model.txt.
    booster = mdl.load_booster(trained.booster.model_to_string(num_iteration=trained.best_iteration))
    np.testing.assert_allclose(booster.predict(trained.normalizer.transform(parts["test"])), trained.predict(parts["test"]))


def test_precision_at_k_and_no_skill_baselines_beside_the_model():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.05, 0.0, 0.4, 0.6])
    assert mdl.precision_at_k(y, p) == (1.0, 1)  # top 10 %: one row, a positive
    assert mdl.precision_at_k(y, p, 0.3) == (pytest.approx(2 / 3), 3)
    data = synthetic(Schedule().sample_dates(), symbols=tuple("ABCDEFGHIJKLMNOP"), seed=3)
    out, _ = sp.time_split(data)
    parts = {s: out.filter(pl.col("split") == s) for s in sp.SPLITS}
    trained = mdl.train(parts["train"], parts["val"])
    test = mdl.classification_metrics(parts["test"]["label"].to_numpy(), trained.predict(parts["test"]), trained.threshold)
    base = mdl.no_skill_baselines(parts["train"], parts["val"], parts["test"], test)
    assert base["constant"]["roc_auc"] == 0.5
    assert base["constant"]["precision_at_k"] == pytest.approx(parts["test"]["label"].mean())
    assert abs(base["shuffled"]["roc_auc"] - 0.5) < 0.1  # shuffled within dates: no skill left
    assert base["gap"]["roc_auc"] == pytest.approx(test["roc_auc"] - max(0.5, base["shuffled"]["roc_auc"]))
    assert base["gap"]["roc_auc"] > 0.3 and base["gap"]["precision_at_k"] > 0.2
    # Without a signal the gap is noise around zero.
    noise = data.with_columns(pl.Series("label", np.random.default_rng(1).integers(0, 2, data.height).astype(np.int8)))
    out, _ = sp.time_split(noise)
    parts = {s: out.filter(pl.col("split") == s) for s in sp.SPLITS}
    trained = mdl.train(parts["train"], parts["val"])
    test = mdl.classification_metrics(parts["test"]["label"].to_numpy(), trained.predict(parts["test"]), trained.threshold)
    assert abs(mdl.no_skill_baselines(parts["train"], parts["val"], parts["test"], test)["gap"]["roc_auc"]) < 0.1
