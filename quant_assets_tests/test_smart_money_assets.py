"""The smart_money graph end to end against the simulated FMP on a real loopback HTTP server: the
universe registers partitions, every symbol is a checkpoint (a run that fails part-way resumes with
only the symbols not done, and done work costs no HTTP call), a second run makes zero HTTP calls,
the dataset's checks block training, the artifacts land in the lake, and the API key never shows."""

import json

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, build_sensor_context
from dagster_aws.s3 import S3Resource

from quant_assets.defs.partitions import smart_money_symbols
from quant_assets.defs.resources import Lake, LakeIOManager, partition_file
from quant_assets.defs.vendors import FmpResource, HttpClientResource
from quant_assets.defs.smart_money import defs as smart_money_defs
from quant_assets.defs.smart_money.keys import KEYS, RAW_KEYS
from quant_assets.defs.smart_money.automation import smart_money_backfill_sensor
from quant_assets.lib.smart_money import dataset as ds
from quant_assets.lib.smart_money.universe import FetchWindow, Schedule
from quant_assets.lib.sources import fmp
from quant_assets.simulate.fmp import FmpSimServer, FmpSimSpec, SimResponse, SimulatedFmp

KEY = "sm-t3st-KEY/42+xyz"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
FAST = {"calls_per_minute": 60_000, "max_concurrency": 4}
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
WINDOW = FetchWindow.for_schedule(Schedule())
REQUESTS_PER_SYMBOL = (len(fmp.DATA_TYPES) - 1) + len(WINDOW.quarters)  # 6 dated types + one per 13F quarter


@pytest.fixture(scope="module")
def world():
    """One simulated vendor for the module (its histories are built once per symbol)."""
    return SimulatedFmp(FmpSimSpec(api_key=KEY))


class Graph:
    def __init__(self, tmp_path, server, api_key=KEY):
        self.lake = Lake(url=str(tmp_path / "lake"), s3=S3Resource())
        fmp_resource = FmpResource(
            http=HttpClientResource(cache_dir=str(tmp_path / "cache"), max_attempts=2, timeout_s=10),
            base_url=server.url,
            api_key=api_key,
        )
        self.defs = Definitions(
            assets=list(smart_money_defs.assets),
            jobs=list(smart_money_defs.jobs),
            sensors=list(smart_money_defs.sensors),
            resources={"lake": self.lake, "io_manager": LakeIOManager(lake=self.lake), "fmp": fmp_resource},
        )
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.instance = DagsterInstance.from_config(str(home))

    def run(self, job, first=None, last=None, config=None, raise_on_error=True):
        tags = {RANGE_START: first, RANGE_END: last or first} if first else {}
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, tags=tags, run_config={**QUIET, **(config or {})}, raise_on_error=raise_on_error
        )

    def fetch_config(self, **extra):
        return {"ops": {"raw_fmp_sources": {"config": {**FAST, **extra}}}}

    def universe(self, **cfg):
        return self.run("smart_money_universe_job", config={"ops": {"smart_money__universe": {"config": cfg}}})

    def latest(self, key, partition=None):
        from dagster import AssetRecordsFilter

        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
        ).records
        return records[0].asset_materialization if records else None

    def all_text(self) -> str:
        """Every event of every run (messages, metadata, errors) as text."""
        out = []
        for run in self.instance.get_runs():
            for rec in self.instance.all_logs(run.run_id):
                out.append(repr(rec))
        return "\n".join(out)


def checks(result):
    return {
        e.event_specific_data.check_name + "@" + e.event_specific_data.asset_key.path[-1]: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_full_path_over_http_then_a_rerun_makes_no_http_call(tmp_path, world):
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="test")
        assert g.instance.get_dynamic_partitions(smart_money_symbols.name) == ["TSLA", "NVDA", "AAPL"]
        first = g.run("smart_money_symbols_job", "TSLA", "AAPL", g.fetch_config())
        # The cache principle: one request per symbol and data type (13F: per quarter), none per sample date.
        assert server.served == 3 * REQUESTS_PER_SYMBOL
        assert all(checks(first).values())
        meta = g.latest(RAW_KEYS["insider_trades"], "NVDA").metadata
        assert meta["cache_misses"].value == 1 and meta["cache_hits"].value == 0 and meta["http_calls"].value == 1
        assert meta["cache_entries"].value == 3 * REQUESTS_PER_SYMBOL and meta["cache_bytes"].value > 0

        served = server.served
        g.run("smart_money_symbols_job", "TSLA", "AAPL", g.fetch_config())
        assert server.served == served  # zero HTTP calls
        for key in RAW_KEYS.values():
            rerun = g.latest(key, "AAPL").metadata
            assert rerun["cache_hit_rate"].value == 1.0 and rerun["http_calls"].value == 0, key

        training = g.run("smart_money_training_job")
        assert all(checks(training).values()), checks(training)

    csv = g.lake.store().read_bytes("smart_money/dataset/smart-money-flow-test.csv").decode()
    header = csv.splitlines()[0].split(",")
    assert header == list(ds.DATASET_COLUMNS)
    assert header == (
        "symbol,date,price_at_sample,price_after_14d,return_14d,insider_buy_ratio_30d,insider_buy_volume_30d,"
        "insider_sell_volume_30d,insider_net_flow_30d,insider_cluster_score,insider_ownership_change_90d,"
        "insider_avg_premium,c_suite_activity_ratio,inst_ownership_pct,inst_ownership_change_1q,"
        "inst_new_positions_count,inst_closed_positions_count,inst_avg_position_size_change,inst_concentration_top10,"
        "inst_momentum_score,congress_buy_count_90d,congress_sell_count_90d,congress_net_sentiment,"
        "congress_recent_activity_7d,hedgefund_top20_exposure,hedgefund_net_change_1q,hedgefund_new_entry_count,"
        "hedgefund_exit_count,hedgefund_conviction_score,etf_ownership_pct,etf_flow_30d,etf_concentration,label"
    ).split(",")
    data = pl.read_csv(csv.encode(), try_parse_dates=True)
    assert data.height == 108 and data["date"].n_unique() == 36
    assert ((data["return_14d"] > 0.05).cast(pl.Int64) == data["label"]).all()

    for name in ("train", "val", "test"):
        split_csv = pl.read_csv(g.lake.store().read_bytes(f"smart_money/splits/{name}.csv"), try_parse_dates=True)
        assert list(split_csv.columns) == list(ds.DATASET_COLUMNS)
    store = g.lake.store()
    meta = json.loads(store.read_bytes("models/smart-money-flow/v1.0.0/metadata.json"))
    assert meta["features"] == list(ds.DATASET_COLUMNS[5:-1])
    assert {"parameters", "data_window", "metrics", "feature_importance", "decision_threshold"} <= set(meta)
    assert meta["data_window"]["train"]["last_date"] < meta["data_window"]["val"]["first_date"]
    norm = json.loads(store.read_bytes("models/smart-money-flow/v1.0.0/normalizer.json"))
    assert set(norm["median"]) == set(meta["features"])
    assert store.read_bytes("models/smart-money-flow/v1.0.0/model.txt").startswith(b"tree")
    ev = g.latest(KEYS["evaluation"]).metadata
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "precision_at_k", "baselines", "gap_roc_auc", "confusion_matrix", "feature_importance"):
        assert name in ev, name
    base = ev["no_skill_baselines"].value
    assert base["constant"]["roc_auc"] == 0.5 and set(base["gap"]) == {"roc_auc", "precision_at_k", "f1"}
    assert json.loads(store.read_bytes("models/smart-money-flow/v1.0.0/evaluation.json"))["no_skill_baselines"] == base
    cm = ev["metrics"].value["confusion_matrix"]
    assert sum(cm.values()) == ev["test_rows"].value

    text = g.all_text()
    assert KEY not in text
    assert KEY not in csv and KEY not in json.dumps(meta)


def test_the_dataset_checks_block_training(tmp_path, world):
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["MSFT", "KO"])
        g.run("smart_money_symbols_job", "MSFT", "KO", g.fetch_config())
        result = g.run(
            "smart_money_training_job",
            config={"ops": {"smart_money__dataset": {"config": {"min_bullish_share": 0.9}}}},
            raise_on_error=False,
        )
    assert checks(result)["label_balance@dataset"] is False
    assert checks(result)["completeness@dataset"] is True
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    assert KEYS["dataset"] in done
    assert not done & {KEYS["splits"], KEYS["model"], KEYS["evaluation"]}
    assert not g.lake.store().exists("models/smart-money-flow/v1.0.0/model.txt")


def test_a_backfill_that_fails_part_way_resumes_with_only_the_missing_symbol(tmp_path, world):
    respond = world.respond
    broken = {"on": True}

    def flaky(path, params):
        if broken["on"] and params.get("symbol") == "NVDA" and path.endswith("house-trades"):
            return SimResponse(500, b'{"Error Message": "internal error"}')
        return respond(path, params)

    with FmpSimServer(world) as server:
        world.respond = flaky
        try:
            g = Graph(tmp_path, server)
            g.universe(universe="test")
            # A backfill runs one symbol per run; NVDA's house-trades endpoint fails throughout.
            outcomes = {
                sym: g.run("smart_money_symbols_job", sym, config=g.fetch_config(), raise_on_error=False).success
                for sym in ("TSLA", "NVDA", "AAPL")
            }
            assert outcomes == {"TSLA": True, "NVDA": False, "AAPL": True}
            failure = next(
                rec.dagster_event.event_specific_data.error.message
                for run in g.instance.get_runs()
                for rec in g.instance.all_logs(run.run_id)
                if rec.dagster_event is not None and rec.dagster_event.event_type_value == "STEP_FAILURE"
            )
            assert "NVDA house_trades" in failure and "house-trades" in failure and "HTTP 500" in failure
            assert KEY not in failure
            done = g.instance.get_materialized_partitions(KEYS["features"])
            assert done == {"TSLA", "AAPL"}

            # Resuming asks for the missing symbol only...
            sensor = smart_money_backfill_sensor(build_sensor_context(instance=g.instance, definitions=g.defs))
            assert [r.partition_key for r in sensor.run_requests] == ["NVDA"]
            broken["on"] = False
            served = server.served
            assert g.run("smart_money_symbols_job", "NVDA", config=g.fetch_config()).success
            # ...and of it, only the request that failed: the others were cached when they arrived.
            assert server.served - served == 1
            assert g.instance.get_materialized_partitions(KEYS["features"]) == {"TSLA", "NVDA", "AAPL"}
            after = smart_money_backfill_sensor(build_sensor_context(instance=g.instance, definitions=g.defs))
            assert [r.job_name for r in after.run_requests] == ["smart_money_training_job"]
        finally:
            world.respond = respond


def test_a_wrong_key_fails_clearly_without_showing_it(tmp_path, world):
    wrong = "WRONG-key-0001"
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server, api_key=wrong)
        g.universe(universe="custom", symbols=["IBM"])
        result = g.run("smart_money_symbols_job", "IBM", config=g.fetch_config(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message
    assert "401" in failure and "FMP_API_KEY" in failure and "IBM" in failure
    text = g.all_text()
    assert wrong not in text and KEY not in text
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_universe_choices_and_bad_symbols(tmp_path, world):
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="top50")
        keys = g.instance.get_dynamic_partitions(smart_money_symbols.name)
        assert len(keys) == 50 and keys[:3] == ["AAPL", "NVDA", "MSFT"]
        universe = g.lake.read_frame(partition_file(KEYS["universe"], None))
        assert universe.height == 50 and universe["rank"].to_list()[:2] == [1, 2]
        bad = g.defs.resolve_job_def("smart_money_universe_job").execute_in_process(
            instance=g.instance,
            run_config={**QUIET, "ops": {"smart_money__universe": {"config": {"universe": "custom", "symbols": ["AAPL", "not a ticker"]}}}},
            raise_on_error=False,
        )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message
    assert "'not a ticker' is not a stock ticker" in failure
    assert server.served == 0
    assert AssetKey(["smart_money", "universe"]) == KEYS["universe"]


def test_a_dated_membership_file_decides_which_symbols_each_date_samples(tmp_path, world):
    membership = tmp_path / "membership.csv"
    membership.write_text("symbol,start,end,rank\nTSLA,2015-01-01,,1\nNVDA,2015-01-01,2023-06-30,2\nAAPL,2023-03-01,,3\n")
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="top50", universe_file=str(membership))
        meta = g.latest(KEYS["universe"]).metadata
        assert meta["survivorship"].value == "dated_membership" and meta["membership_changes"].value == 2
        g.run("smart_money_symbols_job", "TSLA", "AAPL", g.fetch_config())
        result = g.run("smart_money_training_job", raise_on_error=False)
    data = g.lake.read_frame(partition_file(KEYS["dataset"], None))
    nvda, aapl = data.filter(pl.col("symbol") == "NVDA")["date"], data.filter(pl.col("symbol") == "AAPL")["date"]
    assert str(nvda.max()) == "2023-06-15"
    assert str(aapl.min()) == "2023-03-15" and data.filter(pl.col("symbol") == "TSLA").height == 36
    expected = 36 + 18 + 22  # TSLA every month, NVDA Jan 2022..Jun 2023, AAPL Mar 2023..Dec 2024
    dataset_meta = g.latest(KEYS["dataset"]).metadata
    assert dataset_meta["expected_examples"].value == expected and dataset_meta["survivorship"].value == "dated_membership"
    assert checks(result)["completeness@dataset"] is True


def test_a_static_list_says_so_in_the_dataset_metadata(tmp_path, world):
    with FmpSimServer(world) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["KO"])
        assert g.latest(KEYS["universe"]).metadata["survivorship"].value == "static_universe"
        g.run("smart_money_symbols_job", "KO", "KO", g.fetch_config())
        g.run("smart_money_training_job", raise_on_error=False)
    assert g.latest(KEYS["dataset"]).metadata["survivorship"].value == "static_universe"


class EchoingFmp(SimulatedFmp):
    """A vendor whose 401 body echoes the key it was sent, in three spellings."""

    def respond(self, path, params):
        import urllib.parse

        sent = params.get("apikey", "")
        if sent != KEY:
            echo = f"key {urllib.parse.quote(sent, safe='').lower()} / {urllib.parse.quote_plus(sent)} / {sent} is not valid"
            return SimResponse(401, json.dumps({"Error Message": echo}).encode(), {})
        return super().respond(path, params)


def test_a_rejected_key_echoed_in_any_spelling_reaches_no_message_log_or_path(tmp_path, capfd):
    from quant_assets.lib.http import secret_spellings

    wrong = "wr0ng/k+y=%x?&z"  # every URL-special character a key may hold
    with FmpSimServer(EchoingFmp(FmpSimSpec(api_key=KEY))) as server:
        g = Graph(tmp_path, server, api_key=wrong)
        g.universe(universe="custom", symbols=["IBM"])
        result = g.run("smart_money_symbols_job", "IBM", config=g.fetch_config(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message
    assert "401" in failure and "FMP_API_KEY" in failure and "is not valid" in failure
    out, err = capfd.readouterr()
    paths = "\n".join(str(p) for p in tmp_path.rglob("*"))
    for text in (g.all_text(), failure, out, err, paths):
        for form in secret_spellings(wrong):
            assert form not in text, form
