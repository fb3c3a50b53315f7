"""The research group run by Dagster on the simulated market: every asset materializes with its
figures, one day equals the backfill, and bad inputs fail with their cause."""

import datetime as dt
import json
import shutil

import lightgbm as lgb
import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance

from quant_assets.lib import calendar as cal
from quant_assets.lib.research import indicators
from quant_assets.lib.sources import kenfrench
from quant_assets.lib.storage import LocalStore
from quant_assets.simulate import simulate_kenfrench
from quant_assets_tests.fixtures import QUIET, RANGE_END, RANGE_START, SIM_END, SIM_START, GraphRunner

FIRST, LAST = SIM_START.isoformat(), SIM_END.isoformat()
# The daily research tables cover the last five weeks (Good Friday included); their indicators
# still read the market history from the first partition on.
RESEARCH_FIRST = "2024-03-25"
MINUTE_DAYS = ("2024-04-29", "2024-04-30")
ANALYSIS_CONFIG = {
    "ops": {
        **{
            f"research__{m}": {"config": {"n_splits": 3, "gap_days": 2, **({"n_estimators": 30} if m.startswith("lgbm") else {})}}
            for m in ("lgbm_classifier", "lgbm_regressor", "linear_model", "logistic_model")
        },
        # Four months of bars: a shorter ranking window, re-ranked weekly, so the names are held for weeks.
        "research__liquid_universe": {"config": {"window": 20, "min_history": 15, "rebalance": "weekly"}},
        "research__backtests": {"config": {"n_liquid": 2}},
        "research__factor_models": {"config": {"n_liquid": 3, "min_obs": 30}},
        "research__performance_report": {"config": {"n_liquid": 3}},
    }
}


def run(runner: GraphRunner, job: str, first=None, last=None, config=None, assets=None, raise_on_error=True):
    tags = {RANGE_START: first, RANGE_END: last or first} if first else {}
    kwargs = {"asset_selection": [AssetKey(a.split("/")) for a in assets]} if assets else {}
    return runner.defs.resolve_job_def(job).execute_in_process(
        instance=runner.instance,
        tags=tags,
        run_config={**QUIET, **(config or {})},
        raise_on_error=raise_on_error,
        **kwargs,
    )


def failure_text(res) -> str:
    parts = []
    for ev in res.all_events:
        if ev.is_failure:
            err = getattr(ev.event_specific_data, "error", None)
            parts.append((err.message if err is not None else "") + " " + (ev.message or ""))
    return " ".join(parts)


@pytest.fixture(scope="module")
def graph(simulated_landing, tmp_path_factory):
    root = tmp_path_factory.mktemp("research_graph")
    landing = root / "landing"
    shutil.copytree(simulated_landing, landing)
    simulate_kenfrench(LocalStore(landing), SIM_START, SIM_END, seed=11)
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        runner = GraphRunner(str(landing), str(root / "lake"), f"duckdb:///{root / 'wh.duckdb'}", instance)
        assert run(runner, "market_trading_day_job", FIRST, LAST).success
        assert run(runner, "market_minute_job", *MINUTE_DAYS).success
        assert run(runner, "research_technical_job", RESEARCH_FIRST, LAST).success
        assert run(runner, "research_range_labels_job", RESEARCH_FIRST, LAST).success
        bar_level = {"ops": {"research__macd_day_features": {"config": {"write_bar_level": True}}}}
        assert run(runner, "research_minute_job", *MINUTE_DAYS, config=bar_level).success
        assert run(runner, "research_analysis_job", config=ANALYSIS_CONFIG).success
        yield runner, root


def latest_meta(runner: GraphRunner, name: str, partition: str | None = None) -> dict:
    filt = AssetRecordsFilter(asset_key=AssetKey(["research", name]), asset_partitions=[partition] if partition else None)
    rec = runner.instance.fetch_materializations(filt, limit=1).records
    assert rec, name
    return dict(rec[0].asset_materialization.metadata)


def test_every_research_asset_shows_rows_schema_preview_and_figures(graph):
    runner, _ = graph
    partitioned = {
        "technical_features": LAST,
        "range_expansion_labels": "2024-04-29",
        "macd_day_features": MINUTE_DAYS[1],
        "minute_features_plus_macd": MINUTE_DAYS[1],
        "macd_event_labels": MINUTE_DAYS[1],
        "training_dataset": MINUTE_DAYS[1],
    }
    for name, pk in partitioned.items():
        meta = latest_meta(runner, name, pk)
        assert meta["dagster/row_count"].value > 0, name
        assert {"dagster/column_schema", "preview", "dagster/uri"} <= set(meta), name
    for name in ("lgbm_classifier", "lgbm_regressor", "linear_model", "logistic_model", "factor_evaluation", "backtests", "performance_report"):
        meta = latest_meta(runner, name)
        assert "chart" in meta and meta["chart"].value.startswith("![chart](data:image/png;base64,"), name
        assert len(meta["chart (inline)"].value) < 1000, name  # the UI shows shorter Markdown inline
        assert meta["dagster/row_count"].value > 0, name
    assert "cv/roc_auc" in latest_meta(runner, "lgbm_classifier")
    assert "ic_table" in latest_meta(runner, "factor_evaluation")
    assert "comparison" in latest_meta(runner, "factor_models")
    assert "stats" in latest_meta(runner, "backtests")
    universe = latest_meta(runner, "liquid_universe")
    assert universe["rebalance_dates"].value >= 1 and universe["distinct_members"].value >= 1


def test_technical_features_equal_the_library_on_the_lakes_daily_bars(graph):
    runner, _ = graph
    days = [d.isoformat() for d in cal.trading_days(SIM_START, SIM_END)]
    daily = pl.concat([runner.read("market/daily_bars", d) for d in days])
    expected = indicators.technical_features(daily, keep_dates=[SIM_END]).sort("ticker")
    got = runner.read("research/technical_features", LAST).sort("ticker")
    assert got.equals(expected)
    assert got["rsi_14"].null_count() < got.height and got["sma_200"].null_count() == got.height  # 84 sessions < 200
    holiday = runner.read("research/technical_features", "2024-03-29")  # Good Friday
    assert holiday.height == 0


def test_one_day_runs_equal_the_backfill(graph, tmp_path):
    runner, root = graph
    lake = tmp_path / "lake"
    shutil.copytree(root / "lake" / "market", lake / "market")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        fresh = GraphRunner(str(root / "landing"), str(lake), f"duckdb:///{tmp_path / 'w.duckdb'}", instance)
        assert run(fresh, "research_technical_job", "2024-04-22", "2024-04-25").success
        for day in ("2024-04-26", "2024-04-29", "2024-04-30"):
            assert run(fresh, "research_technical_job", day).success
            assert fresh.read("research/technical_features", day).equals(runner.read("research/technical_features", day)), day
        # A gap in the history the indicators need is a clear failure, not silently shorter series.
        (lake / "market" / "daily_bars" / "2024-02-14.parquet").unlink()
        res = run(fresh, "research_technical_job", "2024-04-30", raise_on_error=False)
        assert not res.success
        assert "market/daily_bars is not materialized for 1 session(s)" in failure_text(res) and "2024-02-14" in failure_text(res)


def test_bar_level_macd_is_written_when_asked(graph):
    runner, root = graph
    bars = pl.read_parquet(root / "lake" / "research" / "macd_bars" / f"{MINUTE_DAYS[1]}.parquet")
    minutes = runner.read("market/minute_aggs", MINUTE_DAYS[1])
    assert bars.filter(pl.col("mode") == "all").height == minutes.height
    assert "bar_level_file" in latest_meta(runner, "macd_day_features", MINUTE_DAYS[1])


def test_training_rows_use_the_previous_session_only(graph):
    runner, _ = graph
    ds = runner.read("research/training_dataset", MINUTE_DAYS[1])
    assert ds.height > 0 and (ds["feature_date"] == dt.date(2024, 4, 29)).all()
    assert ds["hist_last__1m"].null_count() < ds.height  # the previous minute day's MACD summary joined
    first = runner.read("research/training_dataset", MINUTE_DAYS[0])
    assert first["hist_last__1m"].null_count() == first.height  # no minute file the session before: nulls
    prev_tech = runner.read("research/technical_features", "2024-04-29").select("ticker", pl.col("rsi_14").alias("prev"))
    joined = ds.select("ticker", "rsi_14").unique().join(prev_tech, on="ticker")
    assert joined.filter(pl.col("rsi_14").ne_missing(pl.col("prev"))).height == 0
    key = AssetCheckKey(AssetKey(["research", "training_dataset"]), "point_in_time")
    record = runner.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert record.status.value == "SUCCEEDED"


def test_model_artifacts_are_lightgbm_text_and_json(graph):
    runner, root = graph
    base = root / "lake" / "research" / "models"
    booster = lgb.Booster(model_file=str(base / "lgbm_classifier" / "model.txt"))
    results = json.loads((base / "lgbm_classifier" / "results.json").read_text())
    assert booster.feature_name() == results["data"]["features"]
    assert results["cv"] == {"scheme": "walk_forward_expanding", "n_splits": 3, "gap_days": 2}
    assert 0 <= results["mean_metrics"]["accuracy"] <= 1
    coefs = pl.read_parquet(base / "linear_model" / "coefficients.parquet")
    assert {"coef", "std_err", "t_stat", "p_value"} <= set(coefs.columns)
    assert not list(base.rglob("*.pkl")) and not list(base.rglob("*.joblib"))


def test_factor_models_read_the_simulated_ken_french_files(graph):
    runner, _ = graph
    table = runner.read("research/factor_models", None)
    spy = table.filter((pl.col("ticker") == "SPY") & (pl.col("model") == "capm")).row(0, named=True)
    assert spy["beta_mkt_rf"] == pytest.approx(1.0, abs=0.05) and spy["r_squared"] > 0.95
    assert set(table["model"]) == {"capm", "ff3", "ff5"}
    perf = runner.read("research/performance_report", None)
    assert "portfolio" in perf["name"].to_list()


def test_backtests_and_reports_take_their_names_from_the_dated_universe(graph):
    runner, _ = graph
    members = runner.read("research/liquid_universe", None)
    top = lambda n: set(members.filter(pl.col("rank") <= n)["ticker"])  # noqa: E731
    stats = runner.read("research/backtests", None)
    assert set(stats["ticker"]) <= top(2) and stats.height > 0
    first_held = members.filter(pl.col("rank") <= 2).group_by("ticker").agg(pl.col("rebalance_date").min())
    for ticker, rebalance in first_held.iter_rows():
        if ticker in set(stats["ticker"]):
            assert stats.filter(pl.col("ticker") == ticker)["start"].min() > rebalance  # held from the next session
    assert "research/liquid_universe" in latest_meta(runner, "backtests")["universe"].value
    perf = runner.read("research/performance_report", None)
    assert set(perf["name"]) - {"portfolio"} == top(3)
    fm = runner.read("research/factor_models", None)
    assert set(fm["ticker"]) <= top(3) | {"SPY"}
    meta = latest_meta(runner, "performance_report")
    assert meta["portfolio_exits"].value >= 0 and "research/liquid_universe" in meta["names_from"].value


def test_bad_inputs_fail_with_their_cause(graph, tmp_path):
    runner, root = graph
    landing = root / "landing"
    key = landing / kenfrench.landing_key(kenfrench.THREE_FACTOR)
    original = key.read_bytes()
    only_fm = ["research/factor_models"]
    try:
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(kenfrench.THREE_FACTOR.csv_name, "Some note\r\n\r\n,Mkt,SMB,HML,RF\r\n20240102,1,1,1,1\r\n")
        key.write_bytes(buf.getvalue())
        res = run(runner, "research_analysis_job", assets=only_fm, config={"ops": {"research__factor_models": {"config": {"n_liquid": 2, "min_obs": 30}}}}, raise_on_error=False)
        assert not res.success
        text = failure_text(res)
        assert "changed Ken French layout" in text and "F-F_Research_Data_Factors_daily_CSV.zip line 3" in text and "header columns" in text
        key.unlink()
        res = run(runner, "research_analysis_job", assets=only_fm, raise_on_error=False)
        assert "no Ken French file at" in failure_text(res) and "factor_source='http'" in failure_text(res)
        # A file that skips a trading day inside the span it covers.
        text = kenfrench.csv_text(original, "ff3", kenfrench.THREE_FACTOR)
        gone = "20240306"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(kenfrench.THREE_FACTOR.csv_name, "\r\n".join(line for line in text.splitlines() if not line.startswith(gone)))
        key.write_bytes(buf.getvalue())
        res = run(runner, "research_analysis_job", assets=only_fm, raise_on_error=False)
        assert not res.success and "has no row for 1 NYSE session(s) it covers, first 2024-03-06" in failure_text(res)
    finally:
        key.write_bytes(original)
    # A model asked to train on a source with no rows.
    res = run(
        runner,
        "research_analysis_job",
        assets=["research/lgbm_classifier"],
        config={"ops": {"research__lgbm_classifier": {"config": {"data_source": "training_dataset", "features": ["no_such_column"]}}}},
        raise_on_error=False,
    )
    assert not res.success and "no usable feature in research/training_dataset" in failure_text(res)
    res = run(runner, "research_analysis_job", assets=["research/factor_evaluation"], config={"ops": {"research__factor_evaluation": {"config": {"factor_column": "close,rsi_14"}}}}, raise_on_error=False)
    assert "factor_column names ['close']" in failure_text(res)
