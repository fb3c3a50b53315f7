"""A warehouse password never reaches a message, a log or the event log, however it is written."""

import pytest

from quant_assets.lib.warehouse import Warehouse, WarehouseError, mask_url, normalize_url

PASSWORDS = ["pa/ss", "p@ss?w#rd/x", "50%off", "pa:ss"]


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://postgres:{password}@{rest.split('@', 1)[1]}"


@pytest.mark.parametrize("password", PASSWORDS)
def test_mask_and_normalize_whatever_characters_the_password_has(password):
    url = f"postgresql://bob:{password}@db.internal:5432/research?sslmode=require"
    masked = mask_url(url)
    assert masked == "postgresql://bob:***@db.internal:5432/research?sslmode=require"
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(normalize_url(url))
    assert parts.hostname == "db.internal" and parts.port == 5432 and parts.path == "/research"
    assert unquote(parts.password) == password


def test_failed_connection_names_the_server_not_the_password():
    w = Warehouse("postgresql://bob:pa/ss@w0rd@127.0.0.1:9/x")
    with pytest.raises(WarehouseError) as err:
        w.query("SELECT 1")
    text = str(err.value)
    assert "127.0.0.1" in text and "pa/ss" not in text and "w0rd" not in text and "pa%2Fss" not in text
    assert "pa/ss" not in repr(w) and "w0rd" not in w.url


def test_run_with_such_a_url_leaks_it_nowhere(local_graph, postgres_server, postgres_database, capfd):
    from quant_assets_tests.fixtures import GraphRunner

    password = "s3/cr@t?#x"
    url = _with_password(postgres_database, password)
    graph = GraphRunner(local_graph.landing.url, local_graph.lake.url, url, local_graph.instance)
    assets = ["market/day_aggs", "market/daily_bars", "market/warehouse_daily_bars"]
    assert graph.run("market_trading_day_job", "2024-01-02", "2024-01-03", assets=assets).success
    # And a run that fails to connect (a database that does not exist).
    bad = GraphRunner(local_graph.landing.url, local_graph.lake.url, url.rsplit("/", 1)[0] + "/nope", local_graph.instance)
    res = bad.run("market_trading_day_job", "2024-01-03", "2024-01-03", assets=["market/warehouse_daily_bars"], raise_on_error=False)
    assert not res.success
    out, err = capfd.readouterr()
    records = [r for run in graph.instance.get_runs() for r in graph.instance.all_logs(run.run_id)]
    texts = [out, err] + [r.message or "" for r in records] + [
        str(r.dagster_event.event_specific_data) for r in records if r.dagster_event is not None
    ]
    for spelling in ("s3/cr@t?#x", "s3%2Fcr%40t%3F%23x", "cr@t"):
        assert not any(spelling in t for t in texts), spelling
    assert any("does not exist" in t for t in texts)
