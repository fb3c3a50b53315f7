"""Hostile Binance input, with real zip files in a landing zone and a loopback REST server in the
aggTrades shape: units per row, day bounds, conflicts held back and counted, truncated and thin
days refused, strict REST parsing, REST pages cached only once they validate -- for spot and
futures, with and without headers, in the spellings the real files use."""

import datetime as dt
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from quant_assets.lib.http import PoliteClient, ResponseCache, RetryPolicy
from quant_assets.lib.pump import signals as psig
from quant_assets.lib.sources import binance
from quant_assets.lib.storage import LocalStore
from quant_assets_tests.http_fake import Reply

DAY = dt.date(2025, 3, 4)
T0_MS = int(dt.datetime(2025, 3, 4, tzinfo=dt.UTC).timestamp() * 1000)
VARIANTS = [("futures", True), ("futures", False), ("spot", True), ("spot", False)]


def day_rows(n: int, *, start_ms: int = T0_MS, span_ms: int = 86_399_000, seed: int = 0) -> list[list]:
    """n aggregate trades spread over the day: [id, price, qty, first, last, ms, maker]."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(start_ms, start_ms + span_ms, n))
    times[-1] = start_ms + span_ms  # the day runs to its end
    return [[1000 + i, round(0.0163 + 1e-5 * (i % 50), 5), 4.5 + i % 7, 5000 + 2 * i, 5001 + 2 * i, int(t), i % 2 == 0] for i, t in enumerate(times)]


def csv_text(rows: list[list], market: str, header: bool, *, extra: str | None = None) -> str:
    true, false = ("True", "False") if market == "spot" else ("true", "false")
    names = list(binance.HEADER) + (["is_best_match"] if market == "spot" else []) + ([extra] if extra else [])
    lines = [",".join(names)] if header else []
    for r in rows:
        cells = [str(r[0]), f"{r[1]}", f"{r[2]}", str(r[3]), str(r[4]), str(r[5]), true if r[6] else false]
        if market == "spot":
            cells.append(true)
        if extra:
            cells.append("7")
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def land(tmp_path, text: str, market: str = "futures", symbol: str = "WIFUSDT", day: dt.date = DAY):
    """A zip and its matching .CHECKSUM in a landing zone laid out like data.binance.vision."""
    store = LocalStore(tmp_path / "landing")
    key = binance.agg_trades_key(market, symbol, day)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(key.rsplit("/", 1)[-1].replace(".zip", ".csv"), text)
    data = buf.getvalue()
    store.write_bytes(key, data)
    store.write_bytes(binance.checksum_key(key), f"{hashlib.sha256(data).hexdigest()}  {key.rsplit('/', 1)[-1]}\n".encode())
    return binance.StoreDayFiles(store)


@pytest.mark.parametrize(("market", "header"), VARIANTS)
def test_units_are_decided_per_row_and_mixed_units_drop_nothing(tmp_path, market, header):
    rows = day_rows(2_000)
    rows[700][5] *= 1000  # one microsecond row among milliseconds
    rows[900][5] *= 1_000_000  # and one nanosecond row
    df, report = binance.load_day_checked(land(tmp_path, csv_text(rows, market, header), market), market, "WIFUSDT", DAY)
    assert df.height == 2_000 and report.quarantined == 0  # the file's largest timestamp no longer decides
    want = [dt.datetime.fromtimestamp(r[5] / 1000, dt.UTC) for r in day_rows(2_000)]
    assert df["transact_time"].to_list() == want
    assert df["is_buyer_maker"].to_list() == [r[6] for r in rows]


@pytest.mark.parametrize(("market", "header"), VARIANTS)
def test_rows_outside_the_day_are_quarantined_and_another_days_file_fails(tmp_path, market, header):
    rows = day_rows(1_000)
    for r in rows[:30]:
        r[5] -= 86_400_000  # yesterday's trades
    df, report = binance.load_day_checked(land(tmp_path, csv_text(rows, market, header), market), market, "WIFUSDT", DAY)
    assert df.height == 970 and report.outside_day == 30 and report.share == pytest.approx(0.03)
    wrong = day_rows(1_000, start_ms=T0_MS + 86_400_000)  # checksum consistent, but the next day's trades
    with pytest.raises(binance.BinanceDataError, match=r"\[wrong_day\] 1,000 of 1,000 rows are not on 2025-03-04 \(most on 2025-03-05\)") as err:
        binance.load_day_checked(land(tmp_path / "w", csv_text(wrong, market, header), market), market, "WIFUSDT", DAY)
    assert "WIFUSDT-aggTrades-2025-03-04.zip" in str(err.value) and err.value.rule == "wrong_day"


def test_repeats_exact_copies_dropped_conflicting_ids_held_back_and_counted(tmp_path):
    rows = day_rows(500)
    rows.append(list(rows[10]))  # an exact copy
    rows.append([*rows[20][:1], rows[20][1] * 2, *rows[20][2:]])  # same id, another price
    df, report = binance.load_day_checked(land(tmp_path, csv_text(rows, "futures", True)), "futures", "WIFUSDT", DAY)
    assert report.duplicates_dropped == 1 and report.conflicting_duplicate == 2
    assert df.height == 499 and rows[20][0] not in df["agg_trade_id"].to_list()  # neither copy of id 1020 is trusted
    from quant_assets.defs.pump.ingest import _trade_quarantine

    outcome = _trade_quarantine([report], 0.001)
    assert not outcome.passed and outcome.metadata["quarantined/conflicting_duplicate"] == 2
    assert _trade_quarantine([report], 0.05).passed


@pytest.mark.parametrize(("market", "header"), VARIANTS)
def test_a_truncated_day_is_refused(tmp_path, market, header):
    rows = day_rows(5_000, span_ms=(9 * 3600 + 29 * 60) * 1000)  # stops at 09:29 UTC
    with pytest.raises(binance.BinanceDataError, match=r"\[truncated_day\] the last trade is at 09:29:00Z, 14\.5 h before the day's end"):
        binance.load_day_checked(land(tmp_path, csv_text(rows, market, header), market), market, "WIFUSDT", DAY)


def test_a_day_much_thinner_than_its_neighbours_is_refused(tmp_path):
    full = [binance.DayReport(f"d{i}", rows=n) for i, n in enumerate((40_000, 55_000, 1_000))]
    with pytest.raises(binance.BinanceDataError, match=r"d2: \[too_few_rows\] 1,000 trades, fewer than min_rows_ratio=0\.05 of the median 47,500"):
        binance.check_thin_days(full)
    binance.check_thin_days(full, 0.0)  # switched off
    binance.check_thin_days(full[:2])  # a quiet day after a pump day (x0.7) is normal


def test_unknown_columns_fail_naming_them(tmp_path):
    rows = day_rows(100)
    with pytest.raises(binance.BinanceDataError, match=r"\[unknown_columns\] column\(s\) \['fee'\]"):
        binance.load_day_checked(land(tmp_path, csv_text(rows, "futures", True, extra="fee")), "futures", "WIFUSDT", DAY)
    with pytest.raises(binance.BinanceDataError, match=r"\[unknown_columns\] line 1 has an eighth field"):
        binance.load_day_checked(land(tmp_path / "b", csv_text(rows, "futures", False, extra="x")), "futures", "WIFUSDT", DAY)
    # spot's documented eighth column is fine, with or without its header
    for header in (True, False):
        df, _ = binance.load_day_checked(land(tmp_path / f"s{header}", csv_text(rows, "spot", header), "spot"), "spot", "WIFUSDT", DAY)
        assert df.height == 100


def test_booleans_only_in_the_vendors_spellings(tmp_path):
    text = csv_text(day_rows(50), "futures", True).replace(",true\n", ",yes\n", 1)
    with pytest.raises(binance.BinanceDataError, match=r"is_buyer_maker is 'yes', expected true/false"):
        binance.load_day_checked(land(tmp_path, text), "futures", "WIFUSDT", DAY)


# --------------------------------------------------------------------------- REST


def rest_rows(n: int, t0_ms: int) -> list[dict]:
    return [{"a": a, "p": f"{1 + a / 1e6:.6f}", "q": "2.5", "f": 2 * a, "l": 2 * a + 1, "T": t0_ms + a * 1000, "m": a % 3 == 0} for a in range(1, n + 1)]


def rest_client(server, cache_dir=None):
    client = PoliteClient(server.url, calls_per_minute=60_000, retry=RetryPolicy(max_attempts=1), transport=binance.rest_transport("futures"))
    cache = ResponseCache(cache_dir, "binance") if cache_dir else None
    return binance.RestAggTrades(client, "futures", cache)


T_HOUR = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[3].update(m="false"), r"record 3: field 'm' \(is_buyer_maker\) is 'false', expected a JSON boolean"),
        (lambda r: r[4].update(p="-0.5"), r"record 4: field 'p' \(price\) is '-0.5', expected a positive number"),
        (lambda r: r[5].pop("T"), r"record 5: field\(s\) \['T'\] missing \(transact_time\)"),
        (lambda r: r[6].update(q="abc"), r"record 6: field 'q' \(quantity\) is 'abc', expected a positive number"),
    ],
    ids=["m_as_string", "negative_price", "missing_T", "garbled_quantity"],
)
def test_loose_rest_records_fail_naming_endpoint_and_field_and_are_never_cached(scripted_http, tmp_path, mutate, message):
    rows = rest_rows(10, T_HOUR)
    mutate(rows)
    scripted_http.script("/fapi/v1/aggTrades", [Reply(200, json.dumps(rows)), Reply(200, json.dumps(rest_rows(10, T_HOUR)))])
    rest = rest_client(scripted_http, tmp_path)
    with pytest.raises(binance.BinanceDataError, match=message) as err:
        rest.hour("WIFUSDT", T_HOUR, T_HOUR + 3_600_000)
    assert "/fapi/v1/aggTrades" in str(err.value) and err.value.rule == "unparseable_value"
    assert not list(tmp_path.rglob("*.json"))  # nothing cached
    healthy = rest.hour("WIFUSDT", T_HOUR, T_HOUR + 3_600_000)  # the next run, the server healthy
    clean = binance._rest_frame(rest_rows(10, T_HOUR), "clean")
    assert healthy.equals(clean) and healthy["is_buyer_maker"].to_list() == [a % 3 == 0 for a in range(1, 11)]


def test_a_cached_rest_page_that_fails_validation_is_fetched_again(scripted_http, tmp_path):
    scripted_http.script("/fapi/v1/aggTrades", [Reply(200, json.dumps(rest_rows(10, T_HOUR)))])
    rest = rest_client(scripted_http, tmp_path)
    first = rest.hour("WIFUSDT", T_HOUR, T_HOUR + 3_600_000)
    (entry,) = list(tmp_path.rglob("*.json"))
    garbled = json.loads(entry.read_bytes())
    garbled[2]["m"] = "true"
    entry.write_text(json.dumps(garbled))
    again = rest_client(scripted_http, tmp_path)
    assert again.hour("WIFUSDT", T_HOUR, T_HOUR + 3_600_000).equals(first)
    assert again.stats.cache_refetched == 1 and scripted_http.calls() == 2


def test_rest_conflicting_ids_are_held_back_and_counted(scripted_http):
    rows = rest_rows(10, T_HOUR)
    rows.append(dict(rows[4], p="9.0"))
    scripted_http.script("/fapi/v1/aggTrades", [Reply(200, json.dumps(rows))])
    rest = rest_client(scripted_http)
    start = dt.datetime.fromtimestamp(T_HOUR / 1000, dt.UTC)
    df = rest.window("WIFUSDT", start, start + dt.timedelta(hours=1))
    assert df.height == 9 and 5 not in df["agg_trade_id"].to_list() and rest.stats.conflicting_duplicate == 2


# --------------------------------------------------------------------------- signal files


def test_a_signal_file_of_another_day_fails_and_stray_rows_are_quarantined():
    head = "signal_id,symbol,timestamp,total_score,rsi,volume_zscore,oi_change_pct\n"
    mine = "".join(f"{i},WIFUSDT,2025-03-04T{10 + i:02d}:00:00Z,450,60,2.1,3.0\n" for i in range(5))
    stray = "9,WIFUSDT,2025-03-05T01:00:00Z,450,60,2.1,3.0\n"
    parsed = psig.read_signals_csv((head + mine + stray).encode(), "s.csv", DAY)
    assert parsed.rows.height == 5 and parsed.rule_counts["wrong_date"] == 1
    other = "".join(f"{i},WIFUSDT,2025-03-05T{10 + i:02d}:00:00Z,450,60,2.1,3.0\n" for i in range(5))
    with pytest.raises(psig.SignalFileError, match=r"s\.csv: \[wrong_day\] 5 of 5 signals are not on 2025-03-04 \(most on 2025-03-05\)"):
        psig.read_signals_csv((head + other).encode(), "s.csv", DAY)
