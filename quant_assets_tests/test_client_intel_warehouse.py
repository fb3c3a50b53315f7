"""The client_intel tables in the warehouse: JSONB columns on both backends, and the old seed
guide's verification queries, as written, against a real PostgreSQL server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_assets.lib.client_intel import TABLES
from quant_assets.lib.warehouse import SchemaMigrationError, Warehouse
from quant_assets_tests.fixtures import GraphRunner

REPO_SQL = Path(__file__).resolve().parents[1] / "sql"

JSON_DDL = """
CREATE TABLE IF NOT EXISTS docs (
    id    BIGINT PRIMARY KEY,
    body  JSONB NOT NULL,
    tags  JSONB
);
"""


@pytest.fixture(params=["duckdb", "duckdb_memory", "postgres"])
def wh(request, tmp_path):
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path}/wh.duckdb"
    elif request.param == "duckdb_memory":
        url = "duckdb:///:memory:"
    else:
        url = request.getfixturevalue("postgres_database")
    warehouse = Warehouse(url)
    yield warehouse
    warehouse.close()


def _ddl(tmp_path, text=JSON_DDL, name="001_docs.sql"):
    folder = tmp_path / "sql"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_jsonb_ddl_runs_on_both_backends_and_json_comes_back_as_text(wh, tmp_path):
    import polars as pl

    assert wh.apply_ddl(_ddl(tmp_path)) == ["001_docs.sql"]
    assert wh.apply_ddl(_ddl(tmp_path)) == []
    frame = pl.DataFrame(
        {"id": [1, 2, 3], "body": ['{"EURUSD": 0.75, "XAUUSD": 0.25}', "[]", '["a", "b"]'], "tags": [None, '{"x": [1, 2]}', "null"]}
    )
    assert wh.replace_table("docs", frame) == 3
    got = wh.query("SELECT id, body, tags FROM docs ORDER BY id")
    assert got.schema["body"] == pl.String and got.schema["tags"] == pl.String
    assert [json.loads(x) for x in got["body"]] == [{"EURUSD": 0.75, "XAUUSD": 0.25}, [], ["a", "b"]]
    assert got["tags"][0] is None and json.loads(got["tags"][1]) == {"x": [1, 2]} and got["tags"][2] == "null"
    # The same JSON operator works on both backends.
    share = wh.query("SELECT body ->> 'EURUSD' AS s FROM docs WHERE id = 1")["s"][0]
    assert float(share) == 0.75
    empty = wh.query("SELECT id FROM docs WHERE body IS NULL")
    assert empty.height == 0 and empty.schema["id"] == pl.Int64


def test_malformed_json_is_refused_and_the_table_keeps_its_rows(wh, tmp_path):
    import polars as pl

    wh.apply_ddl(_ddl(tmp_path))
    wh.replace_table("docs", pl.DataFrame({"id": [1], "body": ['{"ok": true}'], "tags": [None]}, schema_overrides={"tags": pl.String}))
    with pytest.raises(Exception, match=r"(?i)json"):
        wh.replace_table("docs", pl.DataFrame({"id": [2], "body": ["{broken"], "tags": [None]}, schema_overrides={"tags": pl.String}))
    assert wh.query("SELECT id FROM docs")["id"].to_list() == [1]


def test_duckdb_alias_survives_reopening_the_file_and_a_later_file(tmp_path):
    url = f"duckdb:///{tmp_path}/wh.duckdb"
    folder = _ddl(tmp_path)
    with Warehouse(url) as wh:
        wh.apply_ddl(folder)
    (folder / "002_more.sql").write_text("CREATE TABLE IF NOT EXISTS more_docs (id BIGINT, body JSONB);")
    with Warehouse(url) as wh:
        assert wh.apply_ddl(folder) == ["002_more.sql"]
        wh.execute("INSERT INTO more_docs VALUES (1, '{\"a\": 1}')")
        assert wh.query("SELECT body FROM more_docs")["body"][0] == '{"a": 1}'


def test_a_failing_jsonb_file_leaves_nothing_behind_on_duckdb(tmp_path):
    folder = _ddl(tmp_path, "CREATE TABLE broken (id BIGINT, body JSONB); SELECT * FROM no_such_table;")
    with Warehouse(f"duckdb:///{tmp_path}/wh.duckdb") as wh:
        with pytest.raises(SchemaMigrationError, match="001_docs.sql"):
            wh.apply_ddl(folder)
        assert wh.query("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'broken'")["n"][0] == 0


def test_repository_ddl_creates_every_client_intel_table(wh):
    wh.apply_ddl(REPO_SQL)
    for table in TABLES:
        assert wh.query(f"SELECT COUNT(*) AS n FROM {table}")["n"][0] == 0


def test_old_verification_queries_on_postgres(postgres_database, tmp_path, dagster_instance):
    """The client_intel job loads a real PostgreSQL database; the seed guide's queries, verbatim."""
    graph = GraphRunner(
        landing_url=str(tmp_path / "landing"),
        lake_url=str(tmp_path / "lake"),
        warehouse_url=postgres_database,
        instance=dagster_instance,
    )
    assert graph.run("client_intel_job").success
    with Warehouse(postgres_database) as wh:
        counts = {t: wh.query(f"SELECT COUNT(*) AS n FROM {t}")["n"][0] for t in TABLES}
        assert counts["clients"] == 50 and counts["features"] == 50 and counts["market_bars"] == 1092

        # Verify Features
        acme = wh.query("SELECT * FROM features WHERE client_id = 'ACME_FX_023';")
        assert acme.height == 1
        row = acme.row(0, named=True)
        for col in ("momentum_beta_1d", "momentum_beta_5d", "momentum_beta_20d"):
            assert -1 <= row[col] <= 1
        assert abs(sum(json.loads(row["exposure_concentration"]).values()) - 1) < 1e-3

        # Verify Regimes
        regimes = wh.query("SELECT * FROM client_regimes WHERE client_id = 'ACME_FX_023' ORDER BY start_date;")
        assert 1 <= regimes.height <= 4 and regimes["end_date"][-1] is None
        assert regimes["end_date"].null_count() == 1

        # Verify Switch Prob
        history = wh.query(
            "SELECT * FROM switch_probability_history \nWHERE client_id = 'ACME_FX_023' \nORDER BY computed_at DESC LIMIT 10;"
        )
        assert history.height == 10
        assert history["switch_prob"].is_between(0.15, 0.85).all()
        assert history["switch_prob"].diff().abs().drop_nulls().max() <= 0.10 + 1e-12
        assert all(isinstance(json.loads(x), list) for x in history["drivers"])

        # Verify Segment Patterns
        trend = wh.query(
            "SELECT client_id, AVG(holding_period_avg) \nFROM features \nJOIN clients USING (client_id)\n"
            "WHERE segment = 'Trend Follower'\nGROUP BY client_id;"
        )
        assert trend.height > 0 and trend["avg"].is_between(2, 5).all()
        hedger = wh.query(
            "SELECT client_id, AVG(holding_period_avg) \nFROM features \nJOIN clients USING (client_id)\n"
            "WHERE segment = 'Hedger'\nGROUP BY client_id;"
        )
        assert hedger.height > 0 and hedger["avg"].is_between(30, 90).all()

        # JSONB is real JSONB on PostgreSQL.
        typed = wh.query(
            "SELECT jsonb_typeof(exposure_concentration) AS t, jsonb_array_length(drivers) AS n "
            "FROM features JOIN switch_probability_history USING (client_id) LIMIT 1"
        )
        assert typed["t"][0] == "object" and typed["n"][0] >= 0

    # Re-materializing replaces: the counts do not change.
    assert graph.run("client_intel_job").success
    with Warehouse(postgres_database) as wh:
        assert {t: wh.query(f"SELECT COUNT(*) AS n FROM {t}")["n"][0] for t in TABLES} == counts
