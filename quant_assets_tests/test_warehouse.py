"""The warehouse on both backends: a DuckDB file and a fresh PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.lib.warehouse import (
    SchemaMigrationError,
    Warehouse,
    WarehouseError,
    _to_duckdb,
    mask_url,
    quote_identifier,
)

REPO_SQL = Path(__file__).resolve().parents[1] / "sql"
BARS = "market_daily_bars"
BAR_COLUMNS = [
    "ticker", "date", "open", "high", "low", "close", "volume", "transactions",
    "prev_close", "ret_1d", "log_ret_1d",
]  # fmt: skip
D1, D2, D3, D4, D5 = (dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8))


@pytest.fixture(params=["duckdb", "duckdb_memory", "postgres"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        # Four slashes: an absolute path; the folder does not exist yet.
        return f"duckdb:///{tmp_path}/not/yet/warehouse.duckdb"
    if request.param == "duckdb_memory":
        # One connection for the Warehouse's lifetime, unlike a file: failures must not poison it.
        return "duckdb:///:memory:"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def wh(warehouse_url):
    warehouse = Warehouse(warehouse_url)
    yield warehouse
    warehouse.close()


@pytest.fixture
def bars_wh(wh):
    wh.apply_ddl(REPO_SQL)
    return wh


def bars(day: dt.date, tickers: list[str], base: float = 100.0) -> pl.DataFrame:
    n = len(tickers)
    closes = [base + i for i in range(n)]
    return pl.DataFrame(
        {
            "ticker": tickers,
            "date": [day] * n,
            "open": [c - 0.5 for c in closes],
            "high": [c + 1.25 for c in closes],
            "low": [c - 1.75 for c in closes],
            "close": closes,
            "volume": [1_000_000 * (i + 1) for i in range(n)],
            "transactions": [1_000 + i for i in range(n)],
            "prev_close": [c - 1.0 for c in closes],
            "ret_1d": [1.0 / (c - 1.0) for c in closes],
            "log_ret_1d": [math.log(c / (c - 1.0)) for c in closes],
        },
        schema_overrides={"volume": pl.Int64, "transactions": pl.Int64},
    )


def all_bars(wh: Warehouse) -> pl.DataFrame:
    return wh.query(f"SELECT {', '.join(BAR_COLUMNS)} FROM {BARS} ORDER BY date, ticker")


def sql_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.sql"))


# --------------------------------------------------------------------------- DDL


def test_apply_ddl_twice_applies_nothing_the_second_time(wh):
    expected = sql_files(REPO_SQL)
    assert "001_market.sql" in expected

    assert wh.apply_ddl(REPO_SQL) == expected
    assert wh.apply_ddl(REPO_SQL) == []

    recorded = wh.query("SELECT filename, checksum FROM schema_migrations ORDER BY filename")
    assert recorded["filename"].to_list() == expected
    assert recorded["checksum"].to_list() == [
        hashlib.sha256((REPO_SQL / name).read_bytes().replace(b"\r\n", b"\n")).hexdigest() for name in expected
    ]

    empty = wh.query(f"SELECT * FROM {BARS}")
    assert empty.height == 0
    assert empty.columns == BAR_COLUMNS
    assert dict(empty.schema) == {
        "ticker": pl.String,
        "date": pl.Date,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Int64,
        "transactions": pl.Int64,
        "prev_close": pl.Float64,
        "ret_1d": pl.Float64,
        "log_ret_1d": pl.Float64,
    }


def test_apply_ddl_defaults_to_the_repository_sql_folder(wh, monkeypatch):
    monkeypatch.delenv("QUANT_SQL_DIR", raising=False)
    assert wh.apply_ddl() == sql_files(REPO_SQL)


def test_apply_ddl_honours_quant_sql_dir(wh, tmp_path, monkeypatch):
    own = tmp_path / "own_sql"
    own.mkdir()
    (own / "001_only.sql").write_text("CREATE TABLE IF NOT EXISTS only_here (x BIGINT);\n")
    monkeypatch.setenv("QUANT_SQL_DIR", str(own))
    assert wh.apply_ddl() == ["001_only.sql"]
    assert wh.query("SELECT count(*) AS n FROM only_here")["n"].to_list() == [0]


def test_apply_ddl_runs_new_files_in_name_order(wh, tmp_path):
    ddl = tmp_path / "sql"
    ddl.mkdir()
    (ddl / "001_first.sql").write_text("CREATE TABLE IF NOT EXISTS first_t (x BIGINT PRIMARY KEY);\n")
    assert wh.apply_ddl(ddl) == ["001_first.sql"]

    # 010 depends on 002: only name order makes this work.
    (ddl / "010_fill.sql").write_text("INSERT INTO second_t (x, label) VALUES (1, 'one');\n")
    (ddl / "002_second.sql").write_text(
        "-- a comment with a ; and a % sign\n"
        "CREATE TABLE IF NOT EXISTS second_t (x BIGINT PRIMARY KEY, label TEXT);\n"
        "CREATE INDEX IF NOT EXISTS second_t_label_idx ON second_t (label);\n"
    )
    (ddl / "README.md").write_text("not DDL")
    assert wh.apply_ddl(ddl) == ["002_second.sql", "010_fill.sql"]
    assert wh.apply_ddl(ddl) == []
    assert wh.query("SELECT x, label FROM second_t").rows() == [(1, "one")]


def test_changed_checksum_raises_naming_the_file(wh, tmp_path):
    ddl = tmp_path / "sql"
    ddl.mkdir()
    (ddl / "001_a.sql").write_text("CREATE TABLE IF NOT EXISTS a_t (x BIGINT);\n")
    assert wh.apply_ddl(ddl) == ["001_a.sql"]

    (ddl / "001_a.sql").write_text("CREATE TABLE IF NOT EXISTS a_t (x BIGINT, y TEXT);\n")
    (ddl / "002_b.sql").write_text("CREATE TABLE IF NOT EXISTS b_t (x BIGINT);\n")
    with pytest.raises(SchemaMigrationError, match=r"001_a\.sql"):
        wh.apply_ddl(ddl)
    # Nothing after the edited file ran either.
    assert wh.query("SELECT filename FROM schema_migrations")["filename"].to_list() == ["001_a.sql"]

    (ddl / "001_a.sql").write_text("CREATE TABLE IF NOT EXISTS a_t (x BIGINT);\r\n")  # CRLF alone is no edit
    assert wh.apply_ddl(ddl) == ["002_b.sql"]


def test_failing_ddl_file_leaves_nothing_behind(wh, tmp_path):
    ddl = tmp_path / "sql"
    ddl.mkdir()
    (ddl / "001_bad.sql").write_text(
        "CREATE TABLE IF NOT EXISTS half_t (x BIGINT);\nCREATE TABLE broken_t (x NO_SUCH_TYPE);\n"
    )
    with pytest.raises(SchemaMigrationError, match=r"001_bad\.sql"):
        wh.apply_ddl(ddl)
    assert wh.query("SELECT count(*) AS n FROM schema_migrations")["n"].to_list() == [0]
    with pytest.raises(Exception, match="half_t"):  # noqa: B017  (DuckDB and psycopg raise different types)
        wh.query("SELECT * FROM half_t")

    (ddl / "001_bad.sql").write_text("CREATE TABLE IF NOT EXISTS half_t (x BIGINT);\n")
    assert wh.apply_ddl(ddl) == ["001_bad.sql"]


def test_missing_sql_folder_is_a_clear_error(wh, tmp_path):
    with pytest.raises(WarehouseError, match="does not exist"):
        wh.apply_ddl(tmp_path / "nowhere")


# --------------------------------------------------------------------------- loads


def test_replace_rows_is_idempotent_and_leaves_other_partitions_alone(bars_wh):
    wh = bars_wh
    day1, day2, day3 = bars(D1, ["AAPL", "MSFT"]), bars(D2, ["AAPL", "MSFT", "NVDA"]), bars(D3, ["AAPL"])
    for day, frame in ((D1, day1), (D2, day2), (D3, day3)):
        assert wh.replace_rows(BARS, frame, {"date": day}) == frame.height
    before = all_bars(wh)
    assert before.height == 6
    assert_frame_equal(before, pl.concat([day1, day2, day3]))

    assert wh.replace_rows(BARS, day2, {"date": D2}) == 3  # the same load again
    assert_frame_equal(all_bars(wh), before)

    corrected = bars(D2, ["AAPL", "NVDA"], base=200.0)  # MSFT dropped, prices revised
    assert wh.replace_rows(BARS, corrected, {"date": D2}) == 2
    assert_frame_equal(all_bars(wh), pl.concat([day1, corrected, day3]))


def test_replace_rows_with_two_columns(bars_wh):
    wh = bars_wh
    wh.replace_rows(BARS, bars(D1, ["AAPL", "MSFT"]), {"date": D1})
    wh.replace_rows(BARS, bars(D1, ["MSFT"], base=50.0), {"date": D1, "ticker": "MSFT"})
    result = wh.query(f"SELECT ticker, close FROM {BARS} ORDER BY ticker")
    assert result.rows() == [("AAPL", 100.0), ("MSFT", 50.0)]


def test_replace_rows_with_an_empty_frame_clears_the_partition(bars_wh):
    wh = bars_wh
    wh.replace_rows(BARS, bars(D1, ["AAPL"]), {"date": D1})
    wh.replace_rows(BARS, bars(D2, ["AAPL"]), {"date": D2})
    assert wh.replace_rows(BARS, bars(D1, []), {"date": D1}) == 0
    assert wh.query(f"SELECT date FROM {BARS}")["date"].to_list() == [D2]


def test_replace_rows_refuses_rows_outside_the_partition(bars_wh):
    wh = bars_wh
    wh.replace_rows(BARS, bars(D1, ["AAPL"]), {"date": D1})
    mixed = pl.concat([bars(D1, ["MSFT"]), bars(D2, ["MSFT"])])
    with pytest.raises(ValueError, match=r"1 row\(s\) of the DataFrame have date != "):
        wh.replace_rows(BARS, mixed, {"date": D1})
    with pytest.raises(ValueError, match="missing from the DataFrame"):
        wh.replace_rows(BARS, bars(D1, ["MSFT"]).drop("date"), {"date": D1})
    with pytest.raises(ValueError, match="at least one column"):
        wh.replace_rows(BARS, bars(D1, ["MSFT"]), {})
    assert wh.query(f"SELECT ticker FROM {BARS}")["ticker"].to_list() == ["AAPL"]


def test_failed_load_rolls_back_the_delete(bars_wh):
    wh = bars_wh
    original = bars(D1, ["AAPL", "MSFT"])
    wh.replace_rows(BARS, original, {"date": D1})
    duplicated = pl.concat([bars(D1, ["NVDA"]), bars(D1, ["NVDA"])])  # violates the primary key
    with pytest.raises(Exception, match="(?i)duplicate key") as err:  # noqa: B017
        wh.replace_rows(BARS, duplicated, {"date": D1})
    assert not isinstance(err.value, ValueError)  # the database refused it, not our checks
    assert_frame_equal(all_bars(wh), original)
    # The connection is still usable afterwards.
    assert wh.replace_rows(BARS, bars(D1, ["NVDA"]), {"date": D1}) == 1


def test_replace_range(bars_wh):
    wh = bars_wh
    days = [D1, D2, D3, D4, D5]
    for day in days:
        wh.replace_rows(BARS, bars(day, ["AAPL", "MSFT"]), {"date": day})

    # D3 turns out to be a holiday: the backfill of D2..D4 has no rows for it.
    window = pl.concat([bars(D2, ["AAPL"], base=300.0), bars(D4, ["AAPL", "MSFT", "NVDA"], base=400.0)])
    assert wh.replace_range(BARS, window, "date", D2, D4) == 4
    expected = pl.concat([bars(D1, ["AAPL", "MSFT"]), window, bars(D5, ["AAPL", "MSFT"])])
    assert_frame_equal(all_bars(wh), expected)

    assert wh.replace_range(BARS, window, "date", D2, D4) == 4  # idempotent
    assert_frame_equal(all_bars(wh), expected)

    with pytest.raises(ValueError, match="outside"):
        wh.replace_range(BARS, bars(D5, ["AAPL"]), "date", D2, D4)
    with pytest.raises(ValueError, match="empty range"):
        wh.replace_range(BARS, window, "date", D4, D2)
    assert_frame_equal(all_bars(wh), expected)


def test_replace_table(bars_wh):
    wh = bars_wh
    wh.replace_rows(BARS, bars(D1, ["AAPL", "MSFT"]), {"date": D1})
    assert wh.replace_table(BARS, bars(D2, ["NVDA"])) == 1
    assert_frame_equal(all_bars(wh), bars(D2, ["NVDA"]))


def test_nulls_nan_and_infinities_round_trip(bars_wh):
    wh = bars_wh
    frame = pl.DataFrame(
        {
            "ticker": ["NEW", "ODD"],
            "date": [D1, D1],
            "open": [float("inf"), float("-inf")],
            "close": [float("nan"), 12.5],
            "volume": [None, 7],
            "prev_close": [None, float("nan")],
            "ret_1d": [None, None],
        },
        schema_overrides={"volume": pl.Int64, "ret_1d": pl.Float64},
    )
    wh.replace_rows(BARS, frame, {"date": D1})
    got = wh.query(f"SELECT ticker, open, high, close, volume, prev_close, ret_1d FROM {BARS} ORDER BY ticker")
    assert got["ticker"].to_list() == ["NEW", "ODD"]
    assert got["open"].to_list() == [float("inf"), float("-inf")]
    assert got["high"].to_list() == [None, None]  # columns not loaded are NULL
    assert got["close"].is_nan().to_list() == [True, False]
    assert got["close"].is_null().to_list() == [False, False]  # NaN stays NaN, not NULL
    assert got["close"][1] == 12.5
    assert got["volume"].to_list() == [None, 7]
    assert got["prev_close"].is_null().to_list() == [True, False]
    assert got["prev_close"].is_nan().to_list() == [None, True]
    assert got["ret_1d"].to_list() == [None, None]

    nulls = wh.query(f"SELECT count(*) AS n FROM {BARS} WHERE close IS NULL OR volume IS NULL")
    assert nulls["n"].to_list() == [1]


def test_text_and_types_round_trip_exactly(wh):
    wh.execute(
        "CREATE TABLE typed (id BIGINT PRIMARY KEY, label TEXT, flag BOOLEAN, ts TIMESTAMP,"
        " day DATE, x DOUBLE PRECISION, n BIGINT)"
    )
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "label": ["", None, "\\N", 'a,b"c\nd\te', "naïve – ünïcode ✓", "NULL"],
            "flag": [True, False, None, True, False, True],
            "ts": [
                dt.datetime(2024, 1, 2, 9, 30, 0, 123456),
                None,
                dt.datetime(1999, 12, 31, 23, 59, 59),
                dt.datetime(2024, 1, 2),
                dt.datetime(2024, 6, 30, 16, 0),
                dt.datetime(1970, 1, 1),
            ],
            "day": [D1, None, dt.date(1999, 12, 31), dt.date(2000, 2, 29), D5, dt.date(1970, 1, 1)],
            "x": [0.1 + 0.2, 1 / 3, 1e-300, -0.0, 2.0**60, -123456.789012345],
            "n": [2**62, -(2**62), 0, None, -1, 1],
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )
    wh.replace_table("typed", frame)
    assert_frame_equal(wh.query("SELECT * FROM typed ORDER BY id"), frame)


def test_query_parameters(bars_wh):
    wh = bars_wh
    wh.replace_rows(BARS, bars(D1, ["AAPL", "AMD", "MSFT"]), {"date": D1})
    wh.replace_rows(BARS, bars(D2, ["AAPL", "AMD"]), {"date": D2})

    positional = wh.query(
        f"SELECT ticker, close FROM {BARS} WHERE date = %s AND ticker LIKE 'A%%' ORDER BY ticker", [D1]
    )
    assert positional.rows() == [("AAPL", 100.0), ("AMD", 101.0)]

    named = wh.query(
        f"SELECT count(*) AS n FROM {BARS} WHERE ticker = %(t)s AND date BETWEEN %(lo)s AND %(hi)s",
        {"t": "AAPL", "lo": D1, "hi": D2, "unused": 1},
    )
    assert named["n"].to_list() == [2]

    # A value that looks like SQL is only ever a value.
    hostile = wh.query(f"SELECT count(*) AS n FROM {BARS} WHERE ticker = %s", ["x'; DROP TABLE market_daily_bars; --"])
    assert hostile["n"].to_list() == [0]
    assert wh.query(f"SELECT count(*) AS n FROM {BARS}")["n"].to_list() == [5]

    # Without parameters a percent sign is just a percent sign.
    assert wh.query(f"SELECT count(*) AS n FROM {BARS} WHERE ticker LIKE 'M%'")["n"].to_list() == [1]


def test_empty_query_result_keeps_its_schema(bars_wh):
    got = bars_wh.query(f"SELECT ticker, date, close, volume FROM {BARS} WHERE ticker = %s", ["NONE"])
    assert got.height == 0
    assert dict(got.schema) == {"ticker": pl.String, "date": pl.Date, "close": pl.Float64, "volume": pl.Int64}


def test_execute_runs_several_statements_and_parameters(wh):
    wh.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT); INSERT INTO kv VALUES ('a', 1);")
    wh.execute("INSERT INTO kv (k, v) VALUES (%s, %s)", ["b", 2])
    wh.execute("INSERT INTO kv (k, v) VALUES (%(k)s, %(v)s)", {"k": "c", "v": None})
    assert wh.query("SELECT k, v FROM kv ORDER BY k").rows() == [("a", 1), ("b", 2), ("c", None)]


# --------------------------------------------------------------------------- identifiers

BAD_IDENTIFIERS = ["x; DROP TABLE y", "market_daily_bars; --", "a.b.c", "1abc", "", 'quo"te', "a-b", "date ", None]


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS)
def test_bad_identifiers_raise_before_touching_the_database(bars_wh, bad):
    wh = bars_wh
    good = bars(D1, ["AAPL"])
    wh.replace_rows(BARS, good, {"date": D1})

    with pytest.raises(ValueError, match="invalid SQL identifier"):
        wh.replace_rows(bad, good, {"date": D1})
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        wh.replace_range(bad, good, "date", D1, D2)
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        wh.replace_table(bad, good)
    if bad is not None:
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            wh.replace_rows(BARS, good.with_columns(pl.lit(D1).alias(bad)), {bad: D1})
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            wh.replace_range(BARS, good, bad, D1, D2)
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            wh.replace_rows(BARS, good.with_columns(pl.lit(1).alias(bad)), {"date": D1})

    assert_frame_equal(all_bars(wh), good)


def test_quote_identifier():
    assert quote_identifier("market_daily_bars") == '"market_daily_bars"'
    assert quote_identifier("research.Labels_2") == '"research"."Labels_2"'
    with pytest.raises(ValueError):
        quote_identifier("research.")


# --------------------------------------------------------------------------- URLs and secrets


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:S3cr3t-pw@127.0.0.1:{port}/research",
        "postgres://alice:S3cr3t-pw@127.0.0.1:{port}/research",
        "postgresql+psycopg2://alice:S3cr3t-pw@127.0.0.1:{port}/research",
        "postgresql://alice@127.0.0.1:{port}/research?password=S3cr3t-pw",
    ],
)
def test_password_never_shown(url):
    wh = Warehouse(url.format(port=_closed_port()))
    assert wh.dialect == "postgres"
    for text in (repr(wh), wh.url, str(wh)):
        assert "S3cr3t-pw" not in text
        assert "***" in text
    with pytest.raises(WarehouseError) as err:
        wh.query("SELECT 1")
    assert "S3cr3t-pw" not in str(err.value)
    assert "S3cr3t-pw" not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "cannot connect to postgres" in str(err.value)


def test_mask_url_leaves_urls_without_secrets_alone():
    assert mask_url("duckdb:///:memory:") == "duckdb:///:memory:"
    assert mask_url("postgresql://bob@db:5432/x") == "postgresql://bob@db:5432/x"
    assert mask_url("postgresql://bob:pw@db:5432/x") == "postgresql://bob:***@db:5432/x"


def test_real_connection_repr_is_masked(postgres_server):
    url = postgres_server.url.replace("postgres@", "postgres:trusted-anyway@", 1)
    with Warehouse(url) as wh:
        assert wh.query("SELECT 41 + 1 AS answer")["answer"].to_list() == [42]
        assert "trusted-anyway" not in repr(wh)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "duckdb://relative.duckdb", "duckdb:///", "", "sqlite:///x.db"])
def test_unsupported_urls(url):
    with pytest.raises(ValueError):
        Warehouse(url)


def test_duckdb_relative_path_and_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Warehouse("duckdb:///rel/dir/w.duckdb") as wh:
        wh.execute("CREATE TABLE t (x BIGINT)")
    assert (tmp_path / "rel" / "dir" / "w.duckdb").is_file()

    with Warehouse("duckdb:///:memory:") as mem:
        mem.execute("CREATE TABLE t (x BIGINT)")
        mem.execute("INSERT INTO t VALUES (%s)", [5])
        assert mem.query("SELECT x FROM t").rows() == [(5,)]  # the same database across calls
    assert not (tmp_path / ":memory:").exists()


_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held (x BIGINT)")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def test_duckdb_waits_for_another_process_to_release_the_file(tmp_path):
    path = tmp_path / "shared.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        impatient = Warehouse(f"duckdb:///{path}", lock_timeout=0.2)
        with pytest.raises(WarehouseError, match="locked by another process"):
            impatient.execute("SELECT 1")
        started = time.monotonic()
        patient = Warehouse(f"duckdb:///{path}", lock_timeout=30)
        assert patient.query("SELECT count(*) AS n FROM held")["n"].to_list() == [0]
        assert time.monotonic() - started > 0.3  # it did have to wait
    finally:
        holder.wait(timeout=30)


# --------------------------------------------------------------------------- placeholder translation


def test_duckdb_placeholder_translation():
    assert _to_duckdb("SELECT %s, %s", [1, 2]) == ("SELECT ?, ?", [1, 2])
    assert _to_duckdb("SELECT %(a)s + %(a)s, %(b)s", {"a": 1, "b": 2, "c": 3}) == (
        "SELECT $a + $a, $b",
        {"a": 1, "b": 2},
    )
    assert _to_duckdb("SELECT '100%%', %s", ["x"]) == ("SELECT '100%', ?", ["x"])
    assert _to_duckdb("SELECT '100%'", None) == ("SELECT '100%'", None)
    with pytest.raises(TypeError, match="2 placeholders but 1"):
        _to_duckdb("SELECT %s, %s", [1])
    with pytest.raises(TypeError):
        _to_duckdb("SELECT %(a)s", [1])
    with pytest.raises(TypeError):
        _to_duckdb("SELECT %s", {"a": 1})
    with pytest.raises(KeyError, match="b"):
        _to_duckdb("SELECT %(a)s, %(b)s", {"a": 1})
    with pytest.raises(ValueError, match="stray"):
        _to_duckdb("SELECT '5%' , %s", [1])
    with pytest.raises(TypeError):
        _to_duckdb("SELECT %s", "x")
