"""Polygon flat-file reader: typing, bad-input rules, and the message naming file / line / rule."""

import datetime as dt
import gzip

import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon

DAY = dt.date(2024, 3, 5)
HEADER = "ticker,volume,open,close,high,low,window_start,transactions"
SRC = "landing/us_stocks_sip/day_aggs_v1/2024/03/2024-03-05.csv.gz"


def gz(lines: list[str], header: str = HEADER) -> bytes:
    return gzip.compress(("\n".join([header, *lines]) + "\n").encode(), mtime=0)


def row(ticker="AAPL", volume=1000, o=10.0, c=10.5, h=11.0, l=9.5, ts=None, n=10) -> str:
    ts = cal.ny_midnight_ns(DAY) if ts is None else ts
    return f"{ticker},{volume},{o},{c},{h},{l},{ts},{n}"


def test_clean_file_is_typed_and_sorted():
    data = gz([row("MSFT", o=400, c=401, h=402, l=399), row("AAPL")])
    v = polygon.load_aggs(data, SRC, DAY)
    assert v.rows["ticker"].to_list() == ["AAPL", "MSFT"]
    assert v.rows.schema["volume"] == pl.Int64 and v.rows.schema["open"] == pl.Float64
    assert v.rows["line"].to_list() == [3, 2]  # line numbers of the source file survive sorting
    assert v.rejected.height == 0 and sum(v.rule_counts.values()) == 0


def test_truncated_gzip_fails_naming_file():
    data = gz([row(t) for t in ("A", "B", "C")] * 200)
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(data[: len(data) // 2], SRC, DAY)
    assert err.value.rule == "corrupt_gzip"
    assert SRC in str(err.value)


def test_checksum_mismatch_fails():
    data = bytearray(gz([row()]))
    data[-6] ^= 0xFF
    with pytest.raises(polygon.PolygonFileError, match=r"\[corrupt_gzip\]"):
        polygon.load_aggs(bytes(data), SRC, DAY)


def test_missing_and_renamed_column_fails():
    header = HEADER.replace("transactions", "trades")
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(gz([row()], header=header), SRC, DAY)
    assert err.value.rule == "missing_columns" and "transactions" in str(err.value) and "trades" in str(err.value)


def test_extra_column_fails_unless_allowed():
    header = HEADER + ",vwap"
    data = gz([row() + ",10.2"], header=header)
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(data, SRC, DAY)
    assert err.value.rule == "extra_columns" and "vwap" in str(err.value)
    ok = polygon.load_aggs(data, SRC, DAY, allow_extra_columns=True)
    assert ok.rows.height == 1 and ok.ignored_columns == ["vwap"] and "vwap" not in ok.rows.columns


def test_unparseable_value_names_line_and_column():
    data = gz([row("A"), row("B"), "C,12x,1,1,1,1,%d,1" % cal.ny_midnight_ns(DAY)])
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(data, SRC, DAY)
    assert err.value.rule == "unparseable_value"
    assert err.value.line == 4
    assert "'volume'" in str(err.value) and "12x" in str(err.value)


def test_empty_file_fails():
    with pytest.raises(polygon.PolygonFileError, match="missing_header"):
        polygon.load_aggs(b"", SRC, DAY)


def _many_good(n=200):
    return [row(f"T{i:03d}".replace("0", "A").replace("1", "B")[:5] + chr(65 + i % 26)) for i in range(n)]


def test_bad_rows_are_quarantined_with_rule_and_line():
    good = _many_good()
    bad = [
        row("ZNAN", o=float("nan")),
        row("ZNEG", l=-1.0),
        row("ZHL", h=9.0, l=9.5, o=9.2, c=9.3),
        row("ZOUT", o=12.0),
        row("ZVOL", volume=-5),
        row("ZDATE", ts=cal.ny_midnight_ns(DAY + dt.timedelta(days=1))),
    ]
    lines = good + bad
    v = polygon.load_aggs(gz(lines), SRC, DAY, max_rejected_fraction=0.2)
    counts = {k: n for k, n in v.rule_counts.items() if n}
    assert counts == {
        "non_finite_price": 1,
        "non_positive_price": 1,
        "high_below_low": 1,
        "open_close_outside_range": 1,
        "negative_volume": 1,
        "wrong_date": 1,
    }
    assert v.rows.height == len(good)
    # Every input row is either kept or quarantined: nothing is silently dropped.
    assert v.rows.height + v.rejected.height == len(lines)
    by_ticker = dict(zip(v.rejected["ticker"], v.rejected["line"]))
    assert by_ticker["ZNAN"] == len(good) + 2  # header is line 1


def test_duplicates_exact_kept_once_conflicting_all_quarantined():
    good = _many_good()
    lines = good + [row("DUPE"), row("DUPE"), row("CONF", c=10.1), row("CONF", c=10.2)]
    v = polygon.load_aggs(gz(lines), SRC, DAY)
    assert v.rule_counts["duplicate_row"] == 1
    assert v.rule_counts["conflicting_duplicate"] == 2
    assert v.rows.filter(pl.col("ticker") == "DUPE").height == 1
    assert v.rows.filter(pl.col("ticker") == "CONF").height == 0
    assert v.rows.height + v.rejected.height == len(lines)


def test_too_many_rejected_fails_the_file():
    lines = [row(f"A{chr(65 + i)}") for i in range(10)] + [row(f"B{chr(65 + i)}", volume=-1) for i in range(5)]
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(gz(lines), SRC, DAY)
    assert err.value.rule == "too_many_rejected" and "negative_volume" in str(err.value)


def test_parse_key_round_trip_and_rejects_strays():
    assert polygon.parse_key(polygon.day_aggs_key(DAY)) == ("day", DAY)
    assert polygon.parse_key(polygon.minute_aggs_key(DAY)) == ("minute", DAY)
    assert polygon.parse_key("us_stocks_sip/day_aggs_v1/2024/04/2024-03-05.csv.gz") is None  # wrong folder
    assert polygon.parse_key("us_stocks_sip/day_aggs_v1/2024/03/notes.txt") is None
