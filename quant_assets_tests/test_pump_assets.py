"""The pump group run by Dagster on a simulated landing zone: signal days through the research
stage, the outputs checked against the raw zips and each other, and the bad-input rules."""

import datetime as dt
import hashlib
import json
import shutil

import polars as pl
import pytest
from dagster import AssetKey, AssetRecordsFilter, Definitions

from quant_assets.lib.pump import bars as pbars
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump.signals import signals_key
from quant_assets.lib.pump.trades import window_start
from quant_assets.lib.sources import binance
from quant_assets.lib.storage import LocalStore
from quant_assets_tests.fixtures import QUIET, RANGE_END, RANGE_START

FIRST = dt.date(2024, 3, 4)
DAYS = 3
LAST = FIRST + dt.timedelta(days=DAYS - 1)
DAILY = "pump_daily_job"
RESEARCH = "pump_research_job"

SMALL_RESEARCH = {
    "ops": {
        "pump__strategy_matrix": {
            "config": {"sl_levels": [0.02, 0.1], "profiles": ["SCALPING", "BALANCED"], "timeouts_s": [3600, 86400], "entry_delays_s": [0, 60]}
        },
        "pump__optimization_results": {
            "config": {"rsi_cuts": [60], "volume_zscore_cuts": [1], "oi_change_cuts": [], "min_trades": 1, "train_days": 2, "test_days": 1, "step_days": 1}
        },
        "pump__composite_strategy": {"config": {"min_trades": 1}},
    }
}


@pytest.fixture(scope="session")
def pump_landing(tmp_path_factory):
    from quant_assets.simulate import PumpSimSpec, simulate_pump

    root = tmp_path_factory.mktemp("pump-landing")
    spec = PumpSimSpec(start=FIRST, days=DAYS, signals_per_day=3, symbols=6, seed=5, base_trades_per_s=0.05)
    simulate_pump(LocalStore(root), spec)
    return root


@pytest.fixture
def pump_landing_copy(pump_landing, tmp_path):
    dst = tmp_path / "landing"
    shutil.copytree(pump_landing, dst)
    return dst


class PumpGraph:
    def __init__(self, landing, lake, instance, warehouse_url):
        from quant_assets.definitions import defs as production
        from quant_assets.defs.resources import (
            Lake,
            LakeIOManager,
            LandingZone,
            WarehouseResource,
            default_resources,
        )
        from quant_assets.defs.vendors import HttpClientResource
        from dagster_aws.s3 import S3Resource

        s3 = S3Resource()
        self.lake = Lake(url=str(lake), s3=s3)
        self.landing = landing
        self.instance = instance
        self.defs = Definitions(
            assets=list(production.assets),
            asset_checks=list(production.asset_checks),
            jobs=list(production.jobs),
            resources={
                # Every other domain's resources at their defaults, so that the production assets load.
                **default_resources(),
                "landing": LandingZone(url=str(landing), s3=s3),
                "lake": self.lake,
                "io_manager": LakeIOManager(lake=self.lake),
                "warehouse": WarehouseResource(url=warehouse_url),
                "http": HttpClientResource(cache_dir=str(lake) + "-http"),
            },
        )

    def run(self, job, first=None, last=None, run_config=None, assets=None, raise_on_error=False):
        tags = {RANGE_START: first, RANGE_END: last or first} if first else {}
        kwargs = {"asset_selection": [AssetKey(a.split("/")) for a in assets]} if assets else {}
        config = {**QUIET, **(run_config or {})}
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, tags=tags, run_config=config, raise_on_error=raise_on_error, **kwargs
        )

    def read(self, asset, partition=None):
        from quant_assets.defs.resources import partition_file

        return self.lake.read_frame(partition_file(AssetKey(asset.split("/")), partition))

    def latest(self, asset, partition=None):
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset.split("/")), asset_partitions=[partition] if partition else None), limit=1
        ).records
        return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture
def graph(pump_landing_copy, tmp_path, dagster_instance):
    return PumpGraph(pump_landing_copy, tmp_path / "lake", dagster_instance, f"duckdb:///{tmp_path / 'wh.duckdb'}")


def checks(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            out[f"{data.asset_key.to_user_string()}:{data.check_name}"] = (data.passed, data.severity.value)
    return out


def failure_text(result) -> str:
    parts = []
    for ev in result.all_events:
        if ev.is_failure:
            parts.append(ev.message or "")
            err = getattr(ev.event_specific_data, "error", None)
            if err is not None:
                parts.append(err.message)
    return " ".join(parts)


def test_signal_days_then_research_end_to_end(graph, pump_landing_copy):
    res = graph.run(DAILY, FIRST.isoformat(), LAST.isoformat())
    assert res.success, failure_text(res)
    ran = checks(res)
    assert all(passed for passed, _ in ran.values()), ran
    store = LocalStore(pump_landing_copy)
    for i in range(DAYS):
        day = (FIRST + dt.timedelta(days=i)).isoformat()
        sig = graph.read("pump/signals", day)
        assert sig.height == 3 and (sig["signal_ts"].dt.date() == FIRST + dt.timedelta(days=i)).all()
        bars = graph.read("pump/delta_bars_1s", day)
        assert bars.group_by("signal_id").len()["len"].to_list() == [86_400] * 3
        assert graph.latest("pump/delta_bars_1s", day)["dagster/row_count"] == 3 * 86_400
        assert graph.latest("pump/agg_trades", day)["signals_with_trades"] == 3
        candles = graph.read("pump/minute_candles", day)
        assert candles.group_by("signal_id").len()["len"].min() >= 1440
    # One signal's bars equal bars built straight from the raw zips.
    sig = graph.read("pump/signals", FIRST.isoformat()).row(0, named=True)
    start = window_start(sig["signal_ts"])
    files = binance.StoreDayFiles(store)
    days = binance.days_covering(dt.datetime.fromtimestamp(start - 3600, dt.UTC), dt.datetime.fromtimestamp(start + 86_400, dt.UTC))
    raw = pl.concat([binance.load_day(files, "futures", sig["symbol"], d) for d in days])
    want = pbars.delta_bars(raw, sig["signal_id"], start, 86_400).bars
    got = graph.read("pump/delta_bars_1s", FIRST.isoformat()).filter(pl.col("signal_id") == sig["signal_id"])
    assert got.equals(want)
    trades = graph.read("pump/agg_trades", FIRST.isoformat()).filter(pl.col("signal_id") == sig["signal_id"])
    assert trades["agg_trade_id"].is_sorted() and trades["agg_trade_id"].n_unique() == trades.height

    res = graph.run(RESEARCH, run_config=SMALL_RESEARCH)
    assert res.success, failure_text(res)
    ran = checks(res)
    assert ran["pump/strategy_matrix:matches_bar_by_bar"][0]
    assert ran["pump/backtest_trades:agrees_with_optimizer"][0]
    assert ran["pump/portfolio_backtest:equity_consistent"][0]
    assert "pump/composite_strategy:not_overfit" in ran
    research = graph.read("pump/signal_analysis")
    assert research.height == graph.latest("pump/signal_analysis")["dagster/row_count"] > 0
    assert research["max_drawdown_pct"].max() <= 0 <= research["max_growth_pct"].min()
    matrix = graph.read("pump/strategy_matrix")
    assert matrix.height == 16 * research.height
    doc = json.loads(graph.lake.store().read_bytes("pump/composite_strategy.json"))
    assert set(doc["score_ranges"]) == {f"{lo}-{lo + 100}" for lo in range(100, 900, 100)}
    assert doc["signals"] == research.height
    csv = pl.read_csv(graph.lake.store().read_bytes("pump/backtest_trades.csv"))
    trades = graph.read("pump/backtest_trades")
    assert csv.height == trades.height and csv["pnl"].to_list() == trades["pnl"].to_list()
    # Walk-forward (the default): every trade is out of sample, on a signal its fold's champion
    # was not chosen on, and the JSON's out-of-sample figures are the replay's.
    assert doc["selection"] == "walk_forward" and set(trades["sample"].to_list()) <= {"out_of_sample"}
    assert set(csv["sample"].to_list()) <= {"out_of_sample"}
    champions = graph.read("pump/composite_strategy")
    windows = {r["fold"]: r for r in champions.iter_rows(named=True)}
    for t in trades.iter_rows(named=True):
        fold = windows[t["fold"]]
        assert fold["selection_end"] <= fold["evaluation_start"] <= t["signal_ts"] < fold["evaluation_end"]
    for band, entry in doc["score_ranges"].items():
        if entry is None:
            continue
        assert entry["selection"] == "walk_forward" and entry["configurations_tried"] == 3 * 3 * 1 * 16
        if entry["strategy"] is not None:
            assert entry["overfitting"]["sharpe_trials"] >= 0 and "pbo" in entry["overfitting"]
        assert entry["evaluation_window"]["start"] >= entry["by_fold"][0]["selection_window"]["end"]
        mine = trades.filter(pl.col("score_range") == band)
        assert mine.height == entry["out_of_sample"]["trades"]
        if mine.height:
            assert mine["cumulative_pnl"][-1] == entry["out_of_sample"]["total_pnl"]
    meta = graph.latest("pump/backtest_trades")
    assert meta["sample"] == "out_of_sample" and meta["evaluation_start"] == doc["score_ranges"]["100-200"]["evaluation_window"]["start"] if doc["score_ranges"]["100-200"] else True
    assert graph.latest("pump/portfolio_backtest")["sample"] == "out_of_sample"
    equity = graph.read("pump/portfolio_backtest")
    meta = graph.latest("pump/portfolio_backtest")
    assert equity.height > 0 and "equity_chart" in meta and meta["trades"] > 0
    assert meta["signals_traded_from"] == research.filter(pl.col("signal_date") == LAST).height
    # The optimizer's top row of a range equals a bar-by-bar evaluation of its strategy.
    best = graph.read("pump/optimization_results").row(0, named=True)
    assert best["rank"] == 1 and best["trades"] >= 1


def test_in_sample_selection_is_labelled_in_sample_everywhere(graph):
    assert graph.run(DAILY, FIRST.isoformat(), LAST.isoformat()).success
    config = json.loads(json.dumps(SMALL_RESEARCH))
    config["ops"]["pump__optimization_results"]["config"]["selection"] = "in_sample"
    res = graph.run(RESEARCH, run_config=config)
    assert res.success, failure_text(res)
    assert checks(res)["pump/backtest_trades:agrees_with_optimizer"][0]
    doc = json.loads(graph.lake.store().read_bytes("pump/composite_strategy.json"))
    assert doc["selection"] == "in_sample"
    entries = [e for e in doc["score_ranges"].values() if e is not None]
    assert entries and all(e["selection"] == "in_sample" and e["out_of_sample"] is None and e["evaluation_window"] is None for e in entries)
    csv = pl.read_csv(graph.lake.store().read_bytes("pump/backtest_trades.csv"))
    assert csv.height and set(csv["sample"].to_list()) == {"in_sample"}
    assert graph.latest("pump/backtest_trades")["sample"] == "in_sample"
    assert graph.latest("pump/optimization_results")["selection"] == "in_sample"
    assert graph.latest("pump/composite_strategy")["selection"] == "in_sample"
    assert graph.latest("pump/portfolio_backtest")["sample"] == "in_sample"
    research = graph.read("pump/signal_analysis")
    assert graph.latest("pump/portfolio_backtest")["signals_traded_from"] == research.height


def test_walk_forward_needs_an_evaluation_day(graph):
    assert graph.run(DAILY, FIRST.isoformat(), LAST.isoformat()).success
    config = json.loads(json.dumps(SMALL_RESEARCH))
    config["ops"]["pump__optimization_results"]["config"]["train_days"] = DAYS
    res = graph.run(RESEARCH, run_config=config)
    assert not res.success
    assert "train_days=3" in failure_text(res) and "in_sample" in failure_text(res)


def test_bad_checksum_fails_naming_the_zip(graph, pump_landing_copy):
    sig = pl.read_csv(pump_landing_copy / signals_key(FIRST)).row(0, named=True)
    key = binance.agg_trades_key("futures", sig["symbol"], FIRST)
    path = pump_landing_copy / key
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat())
    assert not res.success
    text = failure_text(res)
    assert "[bad_checksum]" in text and key in text


def test_truncated_zip_fails_as_corrupt(graph, pump_landing_copy):
    sig = pl.read_csv(pump_landing_copy / signals_key(FIRST)).row(0, named=True)
    key = binance.agg_trades_key("futures", sig["symbol"], FIRST)
    path = pump_landing_copy / key
    cut = path.read_bytes()[:-200]
    path.write_bytes(cut)
    # The checksum file matches the truncated copy: the zip itself must be refused.
    (pump_landing_copy / (key + ".CHECKSUM")).write_text(f"{hashlib.sha256(cut).hexdigest()}  {path.name}\n")
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat())
    assert not res.success and "[corrupt_zip]" in failure_text(res) and key in failure_text(res)


def test_missing_day_file_fails_or_is_skipped_and_counted(graph, pump_landing_copy):
    sig = pl.read_csv(pump_landing_copy / signals_key(FIRST)).row(0, named=True)
    next_day = FIRST + dt.timedelta(days=1)
    key = binance.agg_trades_key("futures", sig["symbol"], next_day)
    (pump_landing_copy / key).unlink()
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat())
    assert not res.success
    text = failure_text(res)
    assert "[missing_file]" in text and key in text and f"signal {sig['signal_id']}" in text
    skip = {"ops": {"pump__agg_trades": {"config": {"skip_missing_days": True}}}}
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), run_config=skip)
    assert res.success, failure_text(res)
    meta = graph.latest("pump/agg_trades", FIRST.isoformat())
    affected = pl.read_csv(pump_landing_copy / signals_key(FIRST)).filter(pl.col("symbol") == sig["symbol"]).height
    assert meta["skipped/missing_day_file"] >= 1 and meta["signals_with_trades"] == 3 - meta["skipped/missing_day_file"]
    assert str(sig["signal_id"]) in meta["skipped_signals"]
    assert affected >= meta["skipped/missing_day_file"]
    passed, severity = checks(res)["pump/agg_trades:windows_covered"]
    assert not passed and severity == "WARN"
    bars = graph.read("pump/delta_bars_1s", FIRST.isoformat())
    assert sig["signal_id"] not in bars["signal_id"].unique().to_list()


def test_signal_without_trades_in_its_window_is_skipped_and_counted(graph, pump_landing_copy):
    from quant_assets.simulate.binance import write_day

    store = LocalStore(pump_landing_copy)
    day0 = dt.datetime.combine(FIRST, dt.time(), dt.UTC)

    def one_trade_at(when):
        us = int(when.timestamp() * 1_000_000)
        return pl.DataFrame(
            {
                "agg_trade_id": [int(us // 1_000_000)],
                "price": [1.25],
                "quantity": [10.0],
                "first_trade_id": [1],
                "last_trade_id": [1],
                "transact_time_us": [us],
                "is_buyer_maker": [False],
            }
        )

    # Trades only before the pre-window and after the window end.
    write_day(store, "futures", "QUIETUSDT", FIRST, one_trade_at(day0 + dt.timedelta(hours=1)))
    write_day(store, "futures", "QUIETUSDT", FIRST + dt.timedelta(days=1), one_trade_at(day0 + dt.timedelta(days=1, hours=23)))
    path = pump_landing_copy / signals_key(FIRST)
    path.write_text(path.read_text() + "999,QUIETUSDT,2024-03-04T20:00:00.000Z,500,55.0,1.0,2.0\n")
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat())
    assert res.success, failure_text(res)
    meta = graph.latest("pump/agg_trades", FIRST.isoformat())
    assert meta["signals"] == 4 and meta["skipped/no_trades"] == 1 and "999" in meta["skipped_signals"]
    assert graph.latest("pump/delta_bars_1s", FIRST.isoformat())["skipped/no_trades_upstream"] == 1
    assert not checks(res)["pump/agg_trades:windows_covered"][0]


def test_signals_from_the_warehouse_equal_the_landing_files(graph, pump_landing_copy, tmp_path):
    from quant_assets.lib.warehouse import Warehouse

    raw = pl.read_csv(pump_landing_copy / signals_key(FIRST))
    table = raw.with_columns(pl.col("timestamp").str.to_datetime(time_unit="us", time_zone="UTC").dt.replace_time_zone(None))
    with Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        wh.execute(
            'CREATE TABLE pump_signals (signal_id BIGINT, symbol TEXT, "timestamp" TIMESTAMP, total_score INTEGER, '
            "rsi DOUBLE PRECISION, volume_zscore DOUBLE PRECISION, oi_change_pct DOUBLE PRECISION)"
        )
        wh.replace_table("pump_signals", table)
    from_landing = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals"])
    assert from_landing.success
    a = graph.read("pump/signals", FIRST.isoformat())
    cfg = {"ops": {"pump__signals": {"config": {"source": "warehouse"}}}}
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals"], run_config=cfg)
    assert res.success, failure_text(res)
    assert graph.read("pump/signals", FIRST.isoformat()).equals(a)
    cfg = {"ops": {"pump__signals": {"config": {"source": "warehouse", "warehouse_table": "nope"}}}}
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals"], run_config=cfg)
    assert not res.success and "warehouse table nope" in failure_text(res)


def test_quarantined_signal_rows_are_counted_and_kept_aside(graph, pump_landing_copy):
    path = pump_landing_copy / signals_key(FIRST)
    path.write_text(path.read_text() + "77,WIFUSDT,2024-03-04T05:00:00Z,1200,50,1,1\n")
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals"])
    assert not res.success  # one bad row of four is above the 5 % limit: the blocking check fails
    assert checks(res)["pump/signals:quarantine_share"] == (False, "ERROR")
    meta = graph.latest("pump/signals", FIRST.isoformat())
    assert meta["quarantined/score_out_of_range"] == 1 and meta["signals"] == 3
    rejected = graph.lake.read_frame(f"quarantine/pump/signals/{FIRST.isoformat()}.parquet")
    assert rejected["rule"].to_list() == ["score_out_of_range"] and rejected["line"].to_list() == [5]


def test_landing_zone_on_s3(s3_bucket, pump_landing, tmp_path, dagster_instance):
    from dagster_aws.s3 import S3Resource

    from quant_assets.defs.resources import (
        Lake,
        LakeIOManager,
        LandingZone,
        WarehouseResource,
        default_resources,
    )
    from quant_assets.defs.vendors import HttpClientResource

    endpoint, bucket, client = s3_bucket
    for path in pump_landing.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"binance/{path.relative_to(pump_landing).as_posix()}", Body=path.read_bytes())
    s3 = S3Resource(endpoint_url=endpoint, region_name="us-east-1")
    graph = PumpGraph(pump_landing, tmp_path / "lake", dagster_instance, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    lake = Lake(url=str(tmp_path / "lake"), s3=S3Resource())
    graph.defs = Definitions(
        assets=graph.defs.assets,
        asset_checks=graph.defs.asset_checks,
        jobs=graph.defs.jobs,
        resources={
            **default_resources(),
            "landing": LandingZone(url=f"s3://{bucket}/binance", s3=s3),
            "lake": lake,
            "io_manager": LakeIOManager(lake=lake),
            "warehouse": WarehouseResource(url=f"duckdb:///{tmp_path / 'wh.duckdb'}"),
            "http": HttpClientResource(cache_dir=str(tmp_path / "http")),
        },
    )
    res = graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals", "pump/agg_trades"])
    assert res.success, failure_text(res)
    meta = graph.latest("pump/agg_trades", FIRST.isoformat())
    assert meta["signals_with_trades"] == 3


def test_strategy_grid_config_is_validated(graph):
    assert graph.run(DAILY, FIRST.isoformat(), LAST.isoformat()).success
    bad = {"ops": {"pump__strategy_matrix": {"config": {"profiles": ["YOLO"]}}}}
    res = graph.run(RESEARCH, run_config=bad, assets=["pump/signal_analysis", "pump/strategy_matrix"])
    assert not res.success and "unknown trailing profile" in failure_text(res)


def test_default_grid_matches_the_documented_size():
    from quant_assets.defs.pump.research import StrategyMatrixConfig
    from quant_assets.defs.pump.strategy import OptimizationConfig

    assert opt.strategy_grid(StrategyMatrixConfig().grid()).height == 5_400
    assert OptimizationConfig().grid().size == 194_040


def test_research_refuses_a_day_with_signals_but_no_bars(graph):
    assert graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat()).success
    second = (FIRST + dt.timedelta(days=1)).isoformat()
    assert graph.run(DAILY, second, second, assets=["pump/signals"]).success
    res = graph.run(RESEARCH, run_config=SMALL_RESEARCH, assets=["pump/signal_analysis"])
    assert not res.success
    assert f"pump/delta_bars_1s is not for {second}" in failure_text(res)


def test_check_missing_flags_unmaterialized_and_vanished_signal_files(graph, pump_landing_copy):
    from quant_assets.defs.pump.checks import signal_file_days

    assert signal_file_days(["pump/signals/2024/03/2024-03-04.csv", "pump/signals/2024/03/notes.txt", "other/2024-03-05.csv"]) == {"2024-03-04"}
    assert graph.run(DAILY, FIRST.isoformat(), FIRST.isoformat(), assets=["pump/signals"]).success
    (pump_landing_copy / signals_key(FIRST)).unlink()
    res = graph.defs.resolve_job_def("pump_completeness_job").execute_in_process(instance=graph.instance, run_config=QUIET)
    ev = res.get_asset_check_evaluations()[0]
    assert not ev.passed and ev.severity.value == "ERROR"
    meta = {k: getattr(v, "value", v) for k, v in ev.metadata.items()}
    assert meta["file_disappeared"] == [FIRST.isoformat()]
    assert meta["unmaterialized"] == [(FIRST + dt.timedelta(days=i)).isoformat() for i in (1, 2)]
