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
    v = polygon.load_aggs(gz(lines), SRC, DAY)
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


def test_header_only_file_fails_as_empty():
    v = polygon.load_aggs(gz([]), SRC, DAY)
    assert v.rows.height == 0 and v.rows_read == 0
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.require_rows(v, SRC, reference_rows=None, min_ratio=0.5)
    assert err.value.rule == "empty_file" and SRC in str(err.value)


def test_every_row_quarantined_is_an_empty_file():
    v = polygon.load_aggs(gz([row(f"A{chr(65 + i)}", volume=-1) for i in range(5)]), SRC, DAY)
    with pytest.raises(polygon.PolygonFileError, match=r"\[empty_file\] all 5 rows were quarantined"):
        polygon.require_rows(v, SRC, reference_rows=None, min_ratio=0.5)


def test_too_few_rows_against_previous_sessions():
    v = polygon.load_aggs(gz(_many_good(40)), SRC, DAY)
    polygon.require_rows(v, SRC, reference_rows=80, min_ratio=0.5)  # exactly half: accepted
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.require_rows(v, SRC, reference_rows=81, min_ratio=0.5)
    assert err.value.rule == "too_few_rows" and "81" in str(err.value)
    polygon.require_rows(v, SRC, reference_rows=10_000, min_ratio=0.0)  # rule switched off


def test_values_that_parse_but_cannot_be_real_are_quarantined():
    good = _many_good()
    lines = good + [
        row("ZHUGE", volume=5 * 10**18),  # fits Int64, cannot be real
        row("ZPRICE", o=2e7, c=2e7, h=2e7, l=2e7),
        row("ZTRADES", n=2 * 10**9),
    ]
    v = polygon.load_aggs(gz(lines), SRC, DAY)
    assert v.rule_counts["implausible_value"] == 3
    assert v.rows["volume"].max() < 10**11
    looser = polygon.load_aggs(gz(lines), SRC, DAY, bounds=polygon.Bounds(max_price=1e8, max_volume=10**19 - 1, max_transactions=10**10))
    assert looser.rule_counts["implausible_value"] == 0


def test_unquoted_comma_in_ticker_is_quarantined_with_its_physical_line():
    good = _many_good(50)
    ns = cal.ny_midnight_ns(DAY)
    lines = good[:10] + [f"AB,C,100,10.0,10.5,11.0,9.5,{ns},3"] + good[10:]
    v = polygon.load_aggs(gz(lines), SRC, DAY)
    assert v.rule_counts["malformed_row"] == 1
    bad = v.rejected.filter(pl.col("rule") == "malformed_row")
    assert bad["line"].to_list() == [12]  # header is line 1, ten good rows, then the bad one
    assert bad["raw"][0].startswith("AB,C,100")
    assert v.rows.height == 50
    # Line numbers of the rows after the bad one are still physical lines.
    assert v.rows.sort("line")["line"].to_list()[10] == 13


def test_stray_quote_and_quoted_newline_name_physical_lines():
    good = _many_good(50)
    ns = cal.ny_midnight_ns(DAY)
    lines = good[:5] + [f'"QT,100,10.0,10.5,11.0,9.5,{ns},3'] + good[5:20] + ['"MULTI', f'LINE",100,10.0,10.5,11.0,9.5,{ns},3'] + good[20:]
    v = polygon.load_aggs(gz(lines), SRC, DAY)
    rejected = dict(zip(v.rejected["line"].to_list(), v.rejected["rule"].to_list()))
    # A short line reads as empty trailing fields (null_value); a long one cannot be read (malformed_row).
    assert rejected == {7: "invalid_ticker", 23: "null_value", 24: "invalid_ticker"}
    assert v.rows.height == 50
    assert v.rows.height + v.rejected.height == v.rows_read == len(lines)


def test_unparseable_value_after_a_malformed_line_names_the_physical_line():
    good = _many_good(20)
    ns = cal.ny_midnight_ns(DAY)
    lines = good[:3] + [f"X,Y,1,1,1,1,1,{ns},1"] + good[3:8] + [f"BADV,12x,1,1,1,1,{ns},1"] + good[8:]
    with pytest.raises(polygon.PolygonFileError) as err:
        polygon.load_aggs(gz(lines), SRC, DAY)
    assert err.value.rule == "unparseable_value" and err.value.line == 11 and SRC in str(err.value)


def test_parse_key_round_trip_and_rejects_strays():
    assert polygon.parse_key(polygon.day_aggs_key(DAY)) == ("day", DAY)
    assert polygon.parse_key(polygon.minute_aggs_key(DAY)) == ("minute", DAY)
    assert polygon.parse_key("us_stocks_sip/day_aggs_v1/2024/04/2024-03-05.csv.gz") is None  # wrong folder
    assert polygon.parse_key("us_stocks_sip/day_aggs_v1/2024/03/notes.txt") is None


class _Stat:
    def __init__(self, etag):
        self.etag = etag


def _ingest(files: dict, payloads: dict, **kwargs):
    from quant_assets.lib import market

    return polygon.ingest_days(
        files,
        payloads.__getitem__,
        lambda key: f"landing/{key}",
        key_of=polygon.day_aggs_key,
        to_table=market.to_day_aggs,
        empty=market.empty_frame(market.DAY_AGGS_SCHEMA),
        reference_rows=kwargs.pop("reference_rows", lambda day, known: None),
        **kwargs,
    )


def test_ingest_days_reports_each_file_and_lists_holidays():
    good = gz(_many_good(30) + ["AAPL,-5,10,10.5,11,9.5,%d,10" % cal.ny_midnight_ns(DAY)])
    holiday = dt.date(2024, 3, 29)  # Good Friday
    run = _ingest({DAY: _Stat("e1"), holiday: None}, {polygon.day_aggs_key(DAY): good})
    assert run.holidays == [holiday] and run.table.height == 30 and run.table["date"].unique().to_list() == [DAY]
    (report,) = run.reports
    assert (report.day, report.etag, report.rows_read, report.rows, report.tickers) == (DAY, "e1", 31, 30, 30)
    figures = report.figures()
    assert figures["rows_quarantined"] == 1 and figures["quarantine_share"] == round(1 / 31, 6)
    assert [k for k in figures if k.startswith("quarantined/")] == [f"quarantined/{r}" for r, n in report.quarantined.items() if n]
    assert run.rejected[DAY].height == 1


def test_ingest_days_refuses_the_whole_run_on_one_bad_file():
    nxt = dt.date(2024, 3, 6)
    with pytest.raises(polygon.PolygonFileError, match=r"landing/.*2024-03-06.*\[missing_file\]"):
        _ingest({DAY: _Stat("e1"), nxt: None}, {polygon.day_aggs_key(DAY): gz(_many_good(30))})
    seen = []

    def reference(day, known):
        seen.append(dict(known))
        return 100

    with pytest.raises(polygon.PolygonFileError, match=r"\[too_few_rows\]"):
        _ingest({DAY: _Stat("e1")}, {polygon.day_aggs_key(DAY): gz(_many_good(30))}, reference_rows=reference)
    assert seen == [{}]


def test_over_limit_names_the_worst_file():
    from quant_assets.lib import quarantine

    class R:
        def __init__(self, source, share):
            self.source, self.share = source, share

    over, worst, verdict = quarantine.over_limit([R("a", 0.01), R("b", 0.2), R("c", 0.1)], 0.05)
    assert [r.source for r in over] == ["b", "c"] and worst.source == "b"
    assert verdict == "2 file(s) had more than 5.0% of their rows quarantined; worst b at 20.0%"
    assert quarantine.over_limit([R("a", 0.01)], 0.05)[2] == "Every file within the 5.0% quarantine limit (worst 1.00%)."
    assert quarantine.over_limit([], 0.05)[2] == "Every file within the 5.0% quarantine limit."
