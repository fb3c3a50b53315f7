"""The client_intel group in Dagster: one run builds the nine tables with their checks, writes the
lake and loads the DuckDB warehouse; bad Config fails before anything is written; a failing
blocking check keeps the data out of the warehouse."""

from __future__ import annotations

import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType

from quant_assets.defs.client_intel import assets as ci
from quant_assets.defs.resources import partition_file
from quant_assets.lib.client_intel import TABLES, quality
from quant_assets.lib.warehouse import Warehouse
from quant_assets_tests.fixtures import QUIET, GraphRunner

JOB = "client_intel_job"
WORLD_OP = "client_intel_world"


def _graph(root, instance) -> GraphRunner:
    return GraphRunner(
        landing_url=str(root / "landing"),
        lake_url=str(root / "lake"),
        warehouse_url=f"duckdb:///{root / 'wh.duckdb'}",
        instance=instance,
    )


@pytest.fixture
def graph(tmp_path, dagster_instance) -> GraphRunner:
    return _graph(tmp_path, dagster_instance)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """The default world materialized twice on one instance (the second run must replace the first)."""
    from dagster import DagsterInstance

    root = tmp_path_factory.mktemp("client_intel")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        g = _graph(root, instance)
        first = run(g)
        second = run(g)
        yield g, first, second


def run(graph: GraphRunner, config: dict | None = None, raise_on_error: bool = True):
    job = graph.defs.resolve_job_def(JOB)
    run_config = {**QUIET, "ops": {WORLD_OP: {"config": config}}} if config else QUIET
    return job.execute_in_process(instance=graph.instance, run_config=run_config, raise_on_error=raise_on_error)


def latest(instance, key: AssetKey):
    from dagster import AssetRecordsFilter

    (rec,) = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    return rec.asset_materialization


def test_graph_shape():
    from quant_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] == "client_intel"}
    assert keys == {f"client_intel/{t}" for t in TABLES} | {"client_intel/warehouse_tables"}
    for t in TABLES:
        node = graph.get(ci.KEYS[t])
        assert node.group_name == "client_intel"
        assert node.partitions_def is None
        assert "Not partitioned: one coherent world per seed" in node.description
    assert graph.get(ci.KEYS["trades"]).parent_keys == {ci.KEYS["market_bars"], ci.KEYS["clients"]}
    assert graph.get(ci.KEYS["features"]).parent_keys == {ci.KEYS["trades"], ci.KEYS["positions"], ci.KEYS["market_bars"]}
    assert graph.get(ci.WAREHOUSE_KEY).parent_keys == set(ci.KEYS.values())
    fields = ci.ClientWorldConfig.model_fields
    assert (fields["n_clients"].default, fields["months_history"].default, fields["seed"].default) == (50, 6, 42)
    checks = {(k.asset_key.path[-1], k.name) for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key.path[0] == "client_intel"}
    assert ("features", "segment_classifier") in checks and ("trades", "segment_patterns") in checks
    assert ("client_regimes", "regimes_valid") in checks and ("switch_probability_history", "switch_probability_gradual") in checks


def test_job_builds_checks_stores_and_loads_the_world(materialized):
    graph, result, again = materialized
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == sum(len(v) + 1 for v in ci.CHECKS.values()) + 1
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    classifier = next(e for e in evaluations if e.check_name == "segment_classifier")
    assert classifier.metadata["accuracy"].value >= 0.9
    assert "| Trend Follower |" in classifier.metadata["confusion"].value
    assert sum(map(sum, classifier.metadata["confusion_matrix"].value)) == 50

    counts = {}
    for t in TABLES:
        mat = latest(graph.instance, ci.KEYS[t])
        lake = graph.lake.read_frame(partition_file(ci.KEYS[t], None))
        assert mat.metadata["dagster/row_count"].value == lake.height > 0
        columns = mat.metadata["dagster/column_schema"].value.columns
        assert [c.name for c in columns] == lake.columns and all(c.description for c in columns)
        assert "preview" in mat.metadata and mat.metadata["seed"].value == 42
        counts[t] = lake.height
    assert counts["market_bars"] == 1092 and counts["clients"] == 50 and counts["headlines"] == 500

    wh_mat = latest(graph.instance, ci.WAREHOUSE_KEY)
    assert wh_mat.metadata["table_rows"].value == counts
    holding = wh_mat.metadata["holding_period_by_segment"].value
    assert 2 <= holding["Trend Follower"]["avg"] <= 5 and 30 <= holding["Hedger"]["avg"] <= 90

    # The second run replaced every table: nothing is duplicated, and its checks (the column
    # schema against the first run's included) pass.
    assert again.success
    assert all(e.passed for e in again.get_asset_check_evaluations())
    with Warehouse(graph.defs.resources["warehouse"].url) as wh:
        for t in TABLES:
            assert wh.query(f"SELECT COUNT(*) AS n FROM {t}")["n"][0] == counts[t]
        acme = wh.query("SELECT * FROM features WHERE client_id = 'ACME_FX_023'")
        assert acme.height == 1 and acme["exposure_concentration"][0].startswith("{")
        per_client = wh.query(
            "SELECT client_id, AVG(holding_period_avg) AS h FROM features JOIN clients USING (client_id) "
            "WHERE segment = 'Trend Follower' GROUP BY client_id"
        )
        assert per_client.height > 0 and per_client["h"].is_between(2, 5).all()
        json_ok = wh.query("SELECT json_array_length(drivers) AS n FROM switch_probability_history LIMIT 5")
        assert json_ok.height == 5


def test_a_different_config_replaces_the_world_in_the_warehouse(graph):
    assert run(graph, {"n_clients": 12, "months_history": 4, "seed": 7}).success
    small = run(graph, {"n_clients": 8, "months_history": 3, "seed": 7})
    assert small.success
    with Warehouse(graph.defs.resources["warehouse"].url) as wh:
        assert wh.query("SELECT COUNT(*) AS n FROM clients")["n"][0] == 8
        assert wh.query("SELECT COUNT(*) AS n FROM features")["n"][0] == 8
        assert wh.query("SELECT MIN(date) AS d FROM market_bars")["d"][0].isoformat() == "2024-04-01"
    assert latest(graph.instance, ci.KEYS["clients"]).metadata["n_clients"].value == 8


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"n_clients": 0}, "n_clients"),
        ({"n_clients": 100_001}, "n_clients"),
        ({"months_history": -1}, "months_history"),
        ({"segment_mix": {"Scalper": 1.0}}, "segment_mix"),
        ({"segment_mix": {"Hedger": 0.0}}, "segment_mix"),
        ({"as_of": "last friday"}, "as_of"),
    ],
)
def test_out_of_range_config_names_the_field(config, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        ci.ClientWorldConfig(**config)


def test_a_run_with_out_of_range_config_fails_before_anything_is_written(graph, tmp_path):
    result = run(graph, {"n_clients": 0}, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert failures and "n_clients" in failures[0].event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


def test_a_failing_blocking_check_keeps_the_world_out_of_the_warehouse(graph, monkeypatch, tmp_path):
    real = quality.holding_period_bands

    def broken(features, clients):
        verdict = real(features, clients)
        verdict.passed = False
        verdict.description = "2 Hedger(s) hold outside 30-90 days"
        return verdict

    monkeypatch.setattr(quality, "holding_period_bands", broken)
    result = run(graph, raise_on_error=False)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["holding_period_bands"]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert ci.KEYS["features"] in materialized and ci.WAREHOUSE_KEY not in materialized
    assert not (tmp_path / "wh.duckdb").exists()


def test_demo_report_prints_the_verification_figures(materialized):
    from quant_assets.demo import client_intel as demo

    graph = materialized[0]
    lines = demo.report(graph.instance, None)
    text = "\n".join(lines)
    assert "trades" in text and "features" in text and "Hedger" in text
    assert "accuracy 100.0%" in text or "accuracy 9" in text
    assert [s.job_name for s in demo.runs(None)] == [JOB]


def test_lake_tables_round_trip_as_written(materialized):
    graph = materialized[0]
    trades = graph.lake.read_frame(partition_file(ci.KEYS["trades"], None))
    positions = graph.lake.read_frame(partition_file(ci.KEYS["positions"], None))
    assert quality.positions_match_trades(positions, trades).passed
    assert trades.schema["executed_at"] == pl.Datetime("us")


def test_a_single_client_book_loads_with_the_classifier_check_warning(graph):
    """n_clients=1 is documented as valid: the segment classifier cannot be cross-validated on it,
    which warns instead of keeping the world out of the warehouse."""
    result = run(graph, {"n_clients": 1})
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    classifier = evaluations[ci.CLASSIFIER_CHECK]
    assert not classifier.passed and classifier.severity.value == "WARN"
    assert "Not evaluated (warning only)" in classifier.description
    assert ci.WAREHOUSE_KEY in {e.asset_key for e in result.get_asset_materialization_events()}
    with Warehouse(graph.defs.resources["warehouse"].url) as wh:
        assert wh.query("SELECT COUNT(*) AS n FROM clients")["n"][0] == 1


def test_an_as_of_in_the_future_warns(graph):
    result = run(graph, {"n_clients": 8, "as_of": "2031-06-30"})
    assert result.success
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}[ci.AS_OF_CHECK]
    assert not check.passed and check.severity.value == "WARN" and "2031-06-30" in check.description
    assert "after today" in check.description
    past = run(graph, {"n_clients": 8})
    assert {e.check_name: e for e in past.get_asset_check_evaluations()}[ci.AS_OF_CHECK].passed
