"""Walk-forward CV with a purge gap, model statistics against statsmodels / closed forms, the
LightGBM text artifact, and clear failures on unusable data."""

import datetime as dt

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from quant_assets.lib.research import modeling


def panel(n_days=120, n_tickers=40, seed=0, signal=0.5) -> pl.DataFrame:
    """Technical-feature-like rows whose next-session return depends on x1."""
    rng = np.random.default_rng(seed)
    days = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(n_days * 2) if (dt.date(2024, 1, 2) + dt.timedelta(days=i)).weekday() < 5]
    from quant_assets.lib import calendar as cal

    days = cal.trading_days(days[0], days[-1])[:n_days]
    rows = []
    for t in range(n_tickers):
        price = 20.0
        x1 = rng.normal(size=n_days)
        for i, d in enumerate(days):
            rows.append((f"T{t:02d}", d, price, x1[i], rng.normal(), None if i % 7 == 0 else rng.normal()))
            ret = 0.01 * (signal * x1[i] + rng.normal())
            price *= 1 + ret
    return pl.DataFrame(rows, schema=["ticker", "date", "close", "rsi_14", "roc_10", "adx_14"], orient="row")


def test_walk_forward_splits_purge_and_order():
    dates = np.repeat(np.arange(60), 3)
    folds = modeling.walk_forward_splits(dates, n_splits=4, gap_days=3)
    assert len(folds) == 4
    for f in folds:
        tr, te = np.unique(dates[f.train]), np.unique(dates[f.test])
        assert tr.max() + 3 < te.min()  # three whole dates purged
        assert len(te) == 12
    assert [int(np.unique(dates[f.test]).min()) for f in folds] == [12, 24, 36, 48]
    assert modeling.purge_violations(folds, dates, 3) == []
    with pytest.raises(modeling.ModelingError, match="cannot make 5 walk-forward folds"):
        modeling.walk_forward_splits(np.arange(6), n_splits=5, gap_days=2)


def test_technical_dataset_target_is_next_session_return():
    df = panel(n_days=30, n_tickers=2)
    data = modeling.model_data("technical_features", df, kind="regressor")
    t0 = df.filter(pl.col("ticker") == "T00").sort("date")
    first = data.frame.filter(pl.col("ticker") == "T00").sort("date").row(0, named=True)
    assert first["target"] == pytest.approx(t0["close"][1] / t0["close"][0] - 1)
    assert data.frame["date"].max() < df["date"].max()  # the last day has no next session
    assert "roc_10" in data.features and "sma_20_50_cross" in data.dropped


def test_zero_rows_and_null_features_fail_clearly():
    with pytest.raises(modeling.ModelingError, match="asked to train on zero rows: research/technical_features holds no rows"):
        modeling.model_data("technical_features", pl.DataFrame(), kind="classifier")
    one_day = panel(n_days=1)
    with pytest.raises(modeling.ModelingError, match="zero rows: none of the 40 rows"):
        modeling.model_data("technical_features", one_day, kind="classifier")
    df = panel(n_days=40).with_columns(pl.lit(None, dtype=pl.Float64).alias("rsi_14"), pl.lit(None, dtype=pl.Float64).alias("roc_10"))
    data = modeling.model_data("technical_features", df, kind="regressor", features=["rsi_14", "roc_10", "adx_14"])
    assert data.features == ["adx_14"] and data.dropped == {"rsi_14": "all null", "roc_10": "all null"}
    with pytest.raises(modeling.ModelingError, match="no usable feature"):
        modeling.model_data("technical_features", df, kind="regressor", features=["rsi_14"])
    with pytest.raises(modeling.ModelingError, match="data_source must be one of"):
        modeling.model_data("weekly_bars", df, kind="regressor")


def test_lightgbm_learns_and_its_text_model_reproduces_predictions():
    df = panel(signal=1.0)
    data = modeling.model_data("technical_features", df, kind="classifier", features=["rsi_14", "roc_10", "adx_14"])
    res = modeling.train_lgbm(data, "classifier", modeling.LgbmParams(n_estimators=40, min_child_samples=20), n_splits=3, gap_days=2)
    assert res.folds.height == 3 and set(res.folds.columns) >= {"accuracy", "roc_auc", "f1", "train_end", "test_start"}
    assert res.mean_metrics["roc_auc"] > 0.6  # x1 (rsi_14 here) carries the signal
    assert res.table["feature"][0] == "rsi_14"
    booster = lgb.Booster(model_str=res.model_text)  # the stored artifact, no pickle involved
    X = data.frame.select(data.features).to_numpy()
    final = modeling.LgbmParams(n_estimators=40, min_child_samples=20).estimator("classifier")
    final.fit(X, data.frame["target"].to_numpy())
    np.testing.assert_allclose(booster.predict(X), final.predict_proba(X)[:, 1], rtol=1e-12)
    reg = modeling.train_lgbm(
        modeling.model_data("technical_features", df, kind="regressor", features=["rsi_14", "roc_10"]),
        "regressor",
        modeling.LgbmParams(n_estimators=30, min_child_samples=20),
        n_splits=2,
        gap_days=1,
    )
    assert {"rmse", "r2", "direction_accuracy", "ic"} <= set(reg.mean_metrics)
    assert reg.mean_metrics["direction_accuracy"] > 0.55


def test_ols_statistics_equal_statsmodels_and_ridge_matches_its_closed_form():
    df = panel(signal=0.8)
    data = modeling.model_data("technical_features", df, kind="regressor", features=["rsi_14", "roc_10", "adx_14"])
    res = modeling.train_linear(data, regularization="none", alpha=1.0, tune_alpha=False, l1_ratio=0.5, n_splits=3, gap_days=2)
    full = modeling.complete_rows(data).frame
    X = full.select(data.features).to_numpy()
    Xs = (X - X.mean(0)) / X.std(0)
    ref = sm.OLS(full["target"].to_numpy(), sm.add_constant(Xs)).fit()
    np.testing.assert_allclose(res.table["coef"].to_numpy(), ref.params[1:], rtol=1e-9)
    np.testing.assert_allclose(res.table["std_err"].to_numpy(), ref.bse[1:], rtol=1e-9)
    np.testing.assert_allclose(res.table["p_value"].to_numpy(), ref.pvalues[1:], rtol=1e-7)
    assert res.table.filter(pl.col("feature") == "rsi_14")["p_value"][0] < 1e-6
    ridge = modeling.train_linear(data, regularization="ridge", alpha=5.0, tune_alpha=False, l1_ratio=0.5, n_splits=3, gap_days=2)
    y = full["target"].to_numpy()
    Xc, yc = Xs - Xs.mean(0), y - y.mean()
    beta = np.linalg.solve(Xc.T @ Xc + 5.0 * np.eye(3), Xc.T @ yc)
    np.testing.assert_allclose(ridge.table["coef"].to_numpy(), beta, rtol=1e-8)
    assert (ridge.table["std_err"].to_numpy() > 0).all()
    lasso = modeling.train_linear(data, regularization="lasso", alpha=0.01, tune_alpha=True, l1_ratio=0.5, n_splits=3, gap_days=2)
    assert lasso.results["alpha_grid"] and lasso.results["inference"] == "post_selection_ols"
    zero = lasso.table.filter(pl.col("coef") == 0)
    assert zero["std_err"].null_count() == zero.height  # dropped by the penalty: no statistics
    with pytest.raises(modeling.ModelingError, match="regularization must be one of"):
        modeling.train_linear(data, regularization="l3", alpha=1.0, tune_alpha=False, l1_ratio=0.5, n_splits=3, gap_days=2)


def test_l1_logistic_is_reproducible_whatever_numpys_global_generator_holds():
    df = panel(signal=0.3)
    data = modeling.model_data("technical_features", df, kind="classifier", features=["rsi_14", "adx_14", "roc_10"])
    runs = []
    for seed in (1, 2):
        np.random.seed(seed)  # liblinear draws from numpy's global generator unless seeded
        res = modeling.train_logistic(data, regularization="l1", alpha=0.01, tune_alpha=True, n_splits=3, gap_days=2)
        runs.append((res.results["alpha_by_fold"], res.table["coef"].to_list(), res.mean_metrics))
    assert runs[0] == runs[1]


def test_default_features_are_the_scale_free_indicators_in_documentation_order():
    from quant_assets.lib.research import indicators

    assert modeling.DEFAULT_TECHNICAL_FEATURES == (
        "rsi_14", "stoch_k", "stoch_d", "roc_10", "adx_14", "plus_di_14", "minus_di_14", "sma_20_50_cross", "sma_50_200_cross",
        "hv_20", "bb_width", "rsi_overbought", "rsi_oversold", "bb_breakout_up", "bb_breakout_down", "strong_trend",
    )  # fmt: skip
    assert indicators.TECHNICAL_COLUMNS[:4] == ("ticker", "date", "close", "bars_history")
    assert indicators.TECHNICAL_COLUMNS.index("bb_width") == indicators.TECHNICAL_COLUMNS.index("bb_lower") + 1
    assert {c for c, t in indicators.TECHNICAL_SCHEMA.items() if t == pl.Int8()} == {
        "sma_20_50_cross", "sma_50_200_cross", "rsi_overbought", "rsi_oversold", "bb_breakout_up", "bb_breakout_down", "strong_trend",
    }  # fmt: skip


def test_logistic_and_all_null_rows_for_linear_models():
    df = panel(signal=1.0)
    data = modeling.model_data("technical_features", df, kind="classifier", features=["rsi_14", "adx_14"])
    res = modeling.train_logistic(data, regularization="l2", alpha=1.0, tune_alpha=True, n_splits=3, gap_days=2)
    assert res.mean_metrics["roc_auc"] > 0.6 and res.table["odds_ratio"][0] > 1
    # Every row misses one of the two features: nothing is complete.
    even = pl.col("date").rank("dense") % 2 == 0
    sparse = df.with_columns(
        pl.when(even).then(None).otherwise(pl.col("rsi_14")).alias("rsi_14"),
        pl.when(even).then(pl.col("roc_10")).otherwise(None).alias("adx_14"),
    )
    sparse_data = modeling.model_data("technical_features", sparse, kind="classifier", features=["rsi_14", "adx_14"])
    with pytest.raises(modeling.ModelingError, match="asked to train on zero rows: none of the .* has every feature"):
        modeling.train_logistic(sparse_data, regularization="l2", alpha=1.0, tune_alpha=False, n_splits=3, gap_days=2)


def _plant_after(data, date, kind):
    """The same data with a strong signal in rsi_14 planted only on dates after ``date``."""
    rng = np.random.default_rng(9)
    late = pl.col("date") > date
    if kind == "regressor":
        planted = pl.when(late).then(0.05 * pl.col("rsi_14") + pl.Series(rng.normal(0, 0.002, data.frame.height))).otherwise(pl.col("target"))
    else:
        planted = pl.when(late).then((pl.col("rsi_14") > 0).cast(pl.Int8)).otherwise(pl.col("target"))
    return modeling.ModelData(data.frame.with_columns(planted.cast(data.frame["target"].dtype).alias("target")), data.features, data.target, data.dropped, data.source)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_nested_tuning_keeps_early_folds_blind_to_later_data(kind):
    df = panel(n_days=200, n_tickers=30, signal=0.0, seed=4)
    data = modeling.complete_rows(modeling.model_data("technical_features", df, kind=kind, features=["rsi_14", "roc_10", "adx_14"]))

    def train(d):
        if kind == "regressor":
            return modeling.train_linear(d, regularization="lasso", alpha=1.0, tune_alpha=True, l1_ratio=0.5, n_splits=4, gap_days=2)
        return modeling.train_logistic(d, regularization="l1", alpha=1.0, tune_alpha=True, n_splits=4, gap_days=2)

    before = train(data)
    k = 2
    cut = before.folds.filter(pl.col("fold") == k)["test_end"][0]
    after = train(_plant_after(data, cut, kind))
    early = pl.col("fold") <= k
    # Folds 1..k saw nothing after their test block: the same alpha, the same figures, exactly.
    assert before.folds.filter(early).equals(after.folds.filter(early))
    assert not before.folds.filter(~early).equals(after.folds.filter(~early))
    assert "alpha" in before.folds.columns and before.results["alpha_by_fold"] == before.folds["alpha"].to_list()
    assert before.results["tuning"].startswith("nested")
    # The last fold trains on planted dates and finds the signal with its own tuning.
    metric = "ic" if kind == "regressor" else "roc_auc"
    assert after.folds.filter(pl.col("fold") == 4)[metric][0] > 0.9


def test_every_model_reports_no_skill_baselines_from_the_same_folds():
    signal = modeling.model_data("technical_features", panel(signal=1.0, seed=2), kind="classifier", features=["rsi_14", "roc_10"])
    noise = modeling.model_data("technical_features", panel(signal=0.0, seed=3), kind="classifier", features=["rsi_14", "roc_10"])
    params = modeling.LgbmParams(n_estimators=30)
    for data, skilled in ((signal, True), (noise, False)):
        res = modeling.train_lgbm(data, "classifier", params, 3, 2)
        f = res.folds
        assert (f["constant_roc_auc"] == 0.5).all()  # a constant score ranks nothing
        # The constant predictor's log loss is the cross-entropy of the training base rate.
        full = data.frame
        y = full["target"].to_numpy()
        fold = modeling.walk_forward_splits(full["date"].to_numpy(), 3, 2)[0]
        p = y[fold.train].mean()
        yt = y[fold.test]
        want = -np.mean(yt * np.log(p) + (1 - yt) * np.log(1 - p))
        assert f["constant_log_loss"][0] == pytest.approx(want, rel=1e-12)
        m = res.mean_metrics
        assert m["gap_roc_auc"] == pytest.approx(m["roc_auc"] - max(m["constant_roc_auc"], m["shuffled_roc_auc"]))
        assert abs(m["shuffled_roc_auc"] - 0.5) < 0.05  # shuffled within dates: no skill left
        if skilled:
            assert m["gap_roc_auc"] > 0.1 and m["gap_log_loss"] > 0
        else:
            assert abs(m["gap_roc_auc"]) < 0.05
    reg = modeling.train_linear(
        modeling.model_data("technical_features", panel(signal=1.0), kind="regressor", features=["rsi_14", "roc_10", "adx_14"]),
        regularization="none", alpha=1.0, tune_alpha=False, l1_ratio=0.5, n_splits=3, gap_days=2,
    )
    m = reg.mean_metrics
    assert reg.folds["constant_ic"].null_count() == 3  # a constant prediction has no rank correlation
    assert m["gap_rmse"] == pytest.approx(min(m["constant_rmse"], m["shuffled_rmse"]) - m["rmse"]) and m["gap_rmse"] > 0
    assert m["ic"] > m["shuffled_ic"] + 0.1


def test_docs_name_each_statistic_and_its_sample():
    from pathlib import Path

    from quant_assets.lib.research import factors

    text = (Path(__file__).resolve().parents[1] / "docs" / "research.md").read_text()
    parts = text.split("## In sample, out of sample, and known biases", 1)
    assert len(parts) == 2, "docs/research.md lacks its in-sample / out-of-sample section"
    body = parts[1].split("\n## ", 1)[0]
    for word in ("Newey-West", "nested", "shuffled", "walk-forward", "in sample", "out of sample", "Biases that remain", "liquid universe"):
        assert word in body, word
    for column in factors.FACTOR_EVALUATION_COLUMNS:
        assert column in text or column in ("q2_return", "q3_return", "q4_return"), column  # "q1_return .. q5_return"
    for prefix in ("constant_", "shuffled_", "gap_"):
        assert f"`{prefix}" in body
