"""Binance aggregate trades: the daily zip reader, checksums, bad files, data.binance.vision over
HTTP and the REST endpoint (pagination, weights, 429/418) against a loopback server."""

import datetime as dt
import hashlib
import io
import json
import zipfile

import polars as pl
import pytest

from quant_assets.lib.http import PoliteClient, RateLimited, ResponseCache, RetryPolicy
from quant_assets.lib.sources import binance
from quant_assets.lib.storage import LocalStore
from quant_assets.simulate.binance import encode_agg_trades_zip
from quant_assets_tests.http_fake import Reply

DAY = dt.date(2025, 3, 4)


def trades(n=5, start_us=None):
    start_us = start_us or int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1_000_000)
    return pl.DataFrame(
        {
            "agg_trade_id": list(range(1000, 1000 + n)),
            "price": [0.01633 + i * 0.00001 for i in range(n)],
            "quantity": [4.5 + i for i in range(n)],
            "first_trade_id": [5000 + 2 * i for i in range(n)],
            "last_trade_id": [5001 + 2 * i for i in range(n)],
            "transact_time_us": [start_us + i * 1_500_123 for i in range(n)],
            "is_buyer_maker": [i % 2 == 0 for i in range(n)],
        }
    )


def zip_of(text: str, name="X-aggTrades-2025-03-04.csv") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
    return buf.getvalue()


def test_futures_zip_with_header_lowercase_booleans_milliseconds():
    data, checksum = encode_agg_trades_zip(trades(), "futures", "WIFUSDT", DAY, price_decimals=5, qty_decimals=1)
    text = zipfile.ZipFile(io.BytesIO(data)).read("WIFUSDT-aggTrades-2025-03-04.csv").decode()
    assert text.splitlines()[0] == ",".join(binance.HEADER)
    assert text.splitlines()[1].endswith(",true") and len(text.splitlines()[1].split(",")[5]) == 13  # ms
    assert checksum.decode().endswith("  WIFUSDT-aggTrades-2025-03-04.zip\n")
    df = binance.read_agg_trades_zip(data, "f.zip", checksum)
    assert df.schema == pl.Schema(binance.SCHEMA)
    assert df["agg_trade_id"].to_list() == list(range(1000, 1005))
    assert df["is_buyer_maker"].to_list() == [True, False, True, False, True]
    # Milliseconds: the sub-millisecond part of the source times is gone, the rest is exact.
    want = [dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC) + dt.timedelta(microseconds=(i * 1_500_123) // 1000 * 1000) for i in range(5)]
    assert df["transact_time"].to_list() == want
    assert df["price"].to_list() == [0.01633, 0.01634, 0.01635, 0.01636, 0.01637]


def test_spot_zip_without_header_capitalised_booleans_microseconds():
    data, checksum = encode_agg_trades_zip(trades(), "spot", "WIFUSDT", DAY, price_decimals=5, qty_decimals=1)
    line = zipfile.ZipFile(io.BytesIO(data)).read("WIFUSDT-aggTrades-2025-03-04.csv").decode().splitlines()[0]
    assert line[0].isdigit() and line.endswith(",True,True") and len(line.split(",")[5]) == 16  # us, is_best_match
    df = binance.read_agg_trades_zip(data, "s.zip", checksum)
    want = [dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC) + dt.timedelta(microseconds=i * 1_500_123) for i in range(5)]
    assert df["transact_time"].to_list() == want
    assert df["is_buyer_maker"].to_list() == [True, False, True, False, True]


def test_spot_2024_is_milliseconds_and_header_variants_read_alike():
    old = dt.date(2024, 6, 1)
    data, _ = encode_agg_trades_zip(trades(), "spot", "WIFUSDT", old, header=True)
    a = binance.read_agg_trades_zip(data, "a.zip", None)
    data, _ = encode_agg_trades_zip(trades(), "spot", "WIFUSDT", old, header=False)
    b = binance.read_agg_trades_zip(data, "b.zip", None)
    assert a.equals(b)
    assert a["transact_time"][1] == dt.datetime(2025, 3, 4, 12, 0, 1, 500000, tzinfo=dt.UTC)


def test_bad_checksum_names_file_and_both_digests():
    data, checksum = encode_agg_trades_zip(trades(), "futures", "WIFUSDT", DAY)
    damaged = data[:-10] + bytes(10)
    with pytest.raises(binance.BinanceDataError) as err:
        binance.read_agg_trades_zip(damaged, "landing/WIFUSDT-aggTrades-2025-03-04.zip", checksum)
    assert err.value.rule == "bad_checksum"
    assert "landing/WIFUSDT-aggTrades-2025-03-04.zip" in str(err.value)
    assert hashlib.sha256(damaged).hexdigest() in str(err.value) and checksum.decode()[:64] in str(err.value)
    with pytest.raises(binance.BinanceDataError, match=r"\[bad_checksum\] the .CHECKSUM file does not hold"):
        binance.read_agg_trades_zip(data, "x.zip", b"not a digest")


def test_truncated_zip_is_corrupt():
    data, _ = encode_agg_trades_zip(trades(200), "futures", "WIFUSDT", DAY)
    with pytest.raises(binance.BinanceDataError, match=r"x.zip: \[corrupt_zip\] not a readable zip archive") as err:
        binance.read_agg_trades_zip(data[: len(data) // 2], "x.zip", None)
    assert err.value.rule == "corrupt_zip"


def test_member_with_bad_crc_is_corrupt():
    data = bytearray(zip_of("1,0.5,1,1,1,1700000000000,true\n" * 50))
    # Flip a byte inside the compressed member (after the local header).
    data[60] ^= 0xFF
    with pytest.raises(binance.BinanceDataError) as err:
        binance.read_agg_trades_zip(bytes(data), "y.zip", None)
    assert err.value.rule == "corrupt_zip"


@pytest.mark.parametrize(
    ("text", "rule", "fragment"),
    [
        ("", "empty_file", "the CSV is empty"),
        ("agg_trade_id,price,qty,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n1,1,1,1,1,1,true\n", "bad_columns", "is not the aggTrades header"),
        ("1,0.5,1,1,1,1700000000000\n", "bad_columns", "6 fields"),
        ("1,0.5,1,1,1,1700000000000,true\n2,abc,1,2,2,1700000000001,false\n", "unparseable_value", "line 2: price is 'abc'"),
        ("1,0.5,1,1,1,1700000000000,yes\n", "unparseable_value", "line 1: is_buyer_maker is 'yes'"),
        ("1,-0.5,1,1,1,1700000000000,true\n", "unparseable_value", "expected a positive number"),
        (",".join(binance.HEADER) + "\n", "empty_file", "holds no trades"),
    ],
)
def test_malformed_csv_rules(text, rule, fragment):
    with pytest.raises(binance.BinanceDataError) as err:
        binance.read_agg_trades_zip(zip_of(text), "m.zip", None)
    assert err.value.rule == rule and fragment in str(err.value) and "m.zip" in str(err.value)


def test_zip_with_two_members_is_bad_layout():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.csv", "1,1,1,1,1,1,true\n")
        zf.writestr("b.csv", "1,1,1,1,1,1,true\n")
    with pytest.raises(binance.BinanceDataError, match="bad_layout"):
        binance.read_agg_trades_zip(buf.getvalue(), "two.zip", None)


def test_load_day_missing_file_and_missing_checksum(tmp_path):
    store = LocalStore(tmp_path)
    files = binance.StoreDayFiles(store)
    with pytest.raises(binance.BinanceDataError) as err:
        binance.load_day(files, "futures", "WIFUSDT", DAY)
    assert err.value.rule == "missing_file" and "WIFUSDT-aggTrades-2025-03-04.zip" in str(err.value)
    data, _ = encode_agg_trades_zip(trades(), "futures", "WIFUSDT", DAY)
    store.write_bytes(binance.agg_trades_key("futures", "WIFUSDT", DAY), data)
    with pytest.raises(binance.BinanceDataError, match="missing_checksum"):
        binance.load_day(files, "futures", "WIFUSDT", DAY)
    assert binance.load_day(files, "futures", "WIFUSDT", DAY, require_checksum=False).height == 5


def test_keys_and_spans():
    assert binance.agg_trades_key("futures", "WIFUSDT", DAY) == "data/futures/um/daily/aggTrades/WIFUSDT/WIFUSDT-aggTrades-2025-03-04.zip"
    assert binance.agg_trades_key("spot", "WIFUSDT", DAY) == "data/spot/daily/aggTrades/WIFUSDT/WIFUSDT-aggTrades-2025-03-04.zip"
    with pytest.raises(ValueError, match="invalid Binance symbol"):
        binance.agg_trades_key("futures", "../etc", DAY)
    lo = dt.datetime(2025, 3, 4, 23, tzinfo=dt.UTC)
    assert binance.days_covering(lo, lo + dt.timedelta(hours=26)) == [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    assert binance.days_covering(lo, lo + dt.timedelta(hours=25)) == [DAY, DAY + dt.timedelta(days=1)]
    assert binance.days_covering(lo, dt.datetime(2025, 3, 5, tzinfo=dt.UTC)) == [DAY]


def test_clean_trades_deduplicates_by_id_and_sorts():
    df = binance.parse_agg_trades_csv(b"3,1,1,3,3,1700000000300,true\n1,1,1,1,1,1700000000100,true\n3,1,1,3,3,1700000000300,true\n2,1,1,2,2,1700000000200,false\n", "d")
    assert binance.clean_trades(df)["agg_trade_id"].to_list() == [1, 2, 3]


# --------------------------------------------------------------------------- HTTP


def test_vision_download_verified_and_mirrored(scripted_http, tmp_path):
    data, checksum = encode_agg_trades_zip(trades(), "futures", "WIFUSDT", DAY)
    key = binance.agg_trades_key("futures", "WIFUSDT", DAY)
    scripted_http.script("/" + key, [Reply(200, data, content_type="application/zip")])
    scripted_http.script("/" + key + ".CHECKSUM", [Reply(200, checksum, content_type="text/plain")])
    mirror = LocalStore(tmp_path)
    files = binance.VisionDayFiles(PoliteClient(scripted_http.url, calls_per_minute=6000), mirror)
    assert binance.load_day(files, "futures", "WIFUSDT", DAY).height == 5
    assert mirror.read_bytes(key) == data and mirror.exists(key + ".CHECKSUM")
    calls = scripted_http.calls()
    assert binance.load_day(files, "futures", "WIFUSDT", DAY).height == 5
    assert scripted_http.calls() == calls  # read back from the mirror
    other = binance.agg_trades_key("futures", "BOMEUSDT", DAY)
    with pytest.raises(binance.BinanceDataError, match="missing_file"):
        binance.load_day(files, "futures", "BOMEUSDT", DAY)
    assert scripted_http.calls("/" + other) == 1


def test_vision_download_with_bad_checksum_fails(scripted_http):
    data, checksum = encode_agg_trades_zip(trades(), "futures", "WIFUSDT", DAY)
    key = binance.agg_trades_key("futures", "WIFUSDT", DAY)
    scripted_http.script("/" + key, [Reply(200, data[:-1] + bytes([data[-1] ^ 0xFF]), content_type="application/zip")])
    scripted_http.script("/" + key + ".CHECKSUM", [Reply(200, checksum)])
    files = binance.VisionDayFiles(PoliteClient(scripted_http.url, calls_per_minute=6000), None)
    with pytest.raises(binance.BinanceDataError, match="bad_checksum"):
        binance.load_day(files, "futures", "WIFUSDT", DAY)


class FakeTime:
    """A clock that a sleep moves forward (the client's limiter sleeps on it too)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        # At least a microsecond: a sleep too short to move a float clock would never end a wait.
        self.now += max(s, 1e-6)


def rest_rows(ids, t0_ms, step_ms=1000):
    return [
        {"a": a, "p": f"{1 + a / 1e6:.6f}", "q": "2.5", "f": a * 2, "l": a * 2 + 1, "T": t0_ms + (a - ids[0]) * step_ms, "m": a % 3 == 0}
        for a in ids
    ]


def test_rest_pages_by_from_id_within_the_hour(scripted_http):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    page1 = rest_rows(list(range(1, 1001)), t0, 1)
    page2 = rest_rows(list(range(1001, 1501)), t0 + 1000, 1)
    # The second page runs past the hour: those trades are dropped.
    page2[-1]["T"] = t0 + 3_600_000 + 5
    scripted_http.script("/fapi/v1/aggTrades", [Reply(200, json.dumps(page1), headers={"X-MBX-USED-WEIGHT-1M": "20"}), Reply(200, json.dumps(page2))])
    client = PoliteClient(scripted_http.url, calls_per_minute=6000, transport=binance.rest_transport("futures"))
    rest = binance.RestAggTrades(client, "futures")
    df = rest.hour("WIFUSDT", t0, t0 + 3_600_000)
    assert df.height == 1499 and df["agg_trade_id"].to_list() == list(range(1, 1500))
    (p1, q1, _), (p2, q2, _) = scripted_http.requests
    assert q1 == {"symbol": "WIFUSDT", "startTime": str(t0), "endTime": str(t0 + 3_599_999), "limit": "1000"}
    assert q2 == {"symbol": "WIFUSDT", "fromId": "1001", "limit": "1000"}
    assert rest.stats.pages_by_id == 1


def test_rest_window_reads_hour_by_hour_and_caches_complete_hours(scripted_http, tmp_path):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    hours = [Reply(200, json.dumps(rest_rows([10 * h + 1, 10 * h + 2], t0 + h * 3_600_000))) for h in range(3)]
    scripted_http.script("/fapi/v1/aggTrades", hours)
    cache = ResponseCache(tmp_path, "binance")
    client = PoliteClient(scripted_http.url, calls_per_minute=6000, transport=binance.rest_transport("futures"))
    rest = binance.RestAggTrades(client, "futures", cache)
    start = dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC)
    df = rest.window("WIFUSDT", start, start + dt.timedelta(hours=2, minutes=30))
    assert df["agg_trade_id"].to_list() == [1, 2, 11, 12, 21, 22]
    assert [q.get("startTime") for _, q, _ in scripted_http.requests] == [str(t0), str(t0 + 3_600_000), str(t0 + 7_200_000)]
    assert scripted_http.requests[-1][1]["endTime"] == str(t0 + 9_000_000 - 1)
    again = binance.RestAggTrades(client, "futures", cache).window("WIFUSDT", start, start + dt.timedelta(hours=2, minutes=30))
    assert again.equals(df) and scripted_http.calls() == 3


def test_rest_429_retry_after_is_honoured(scripted_http):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    fake = FakeTime()
    scripted_http.script(
        "/fapi/v1/aggTrades",
        [Reply(429, '{"code":-1003}', headers={"Retry-After": "7"}), Reply(200, json.dumps(rest_rows([5], t0)))],
    )
    client = PoliteClient(
        scripted_http.url, calls_per_minute=6000, sleep=fake.sleep, clock=fake.clock, transport=binance.rest_transport("futures")
    )
    df = binance.RestAggTrades(client, "futures").hour("WIFUSDT", t0, t0 + 3_600_000)
    assert df.height == 1 and 7.0 in fake.sleeps and client.stats.throttled == 1


def test_rest_418_short_ban_waited_long_ban_refused(scripted_http):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    fake = FakeTime()
    scripted_http.script(
        "/fapi/v1/aggTrades",
        [Reply(418, '{"code":-1003,"msg":"banned"}', headers={"Retry-After": "30"}), Reply(200, json.dumps(rest_rows([5], t0)))],
    )
    guard = binance.rest_transport("futures", max_ban_wait_s=60)
    client = PoliteClient(scripted_http.url, calls_per_minute=6000, sleep=fake.sleep, clock=fake.clock, transport=guard)
    assert binance.RestAggTrades(client, "futures").hour("WIFUSDT", t0, t0 + 3_600_000).height == 1
    assert 30.0 in fake.sleeps and guard.bans == 1
    scripted_http.script("/fapi/v1/aggTrades", [Reply(418, "{}", headers={"Retry-After": "7200"})])
    with pytest.raises(binance.BinanceBanned, match="banned this IP .* for 7,200 s") as err:
        binance.RestAggTrades(client, "futures").hour("WIFUSDT", t0, t0 + 3_600_000)
    assert "/fapi/v1/aggTrades" in str(err.value) and "symbol" not in str(err.value)


def test_rest_persistent_429_gives_up_with_rate_limited(scripted_http):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    scripted_http.script("/fapi/v1/aggTrades", [Reply(429, "{}", headers={"Retry-After": "1"})])
    fake = FakeTime()
    client = PoliteClient(
        scripted_http.url,
        calls_per_minute=6000,
        sleep=fake.sleep,
        clock=fake.clock,
        retry=RetryPolicy(max_attempts=3),
        transport=binance.rest_transport("futures"),
    )
    with pytest.raises(RateLimited, match="WIFUSDT 2025-03-04 12:00Z: GET .*aggTrades.* failed after 3 attempts"):
        binance.RestAggTrades(client, "futures").hour("WIFUSDT", t0, t0 + 3_600_000)


def test_weight_guard_waits_for_the_next_minute():
    class Clock:
        now = 120.0

    sleeps = []

    def sleep(s):
        sleeps.append(s)
        Clock.now += s

    class Inner:
        def handle_request(self, request):
            import httpx

            return httpx.Response(200, headers={binance.WEIGHT_HEADER: "2390"}, content=b"[]", request=request)

    import httpx

    guard = binance.WeightGuard(Inner(), weight=20, limit=2400, sleep=sleep, clock=lambda: Clock.now)
    guard.handle_request(httpx.Request("GET", "http://x/fapi/v1/aggTrades"))
    assert guard.used == 2390 and not sleeps
    guard.handle_request(httpx.Request("GET", "http://x/fapi/v1/aggTrades"))
    assert len(sleeps) == 1 and 59.9 < sleeps[0] < 60.2  # waited for minute 3 to start


def test_rest_payload_that_is_not_a_list(scripted_http):
    t0 = int(dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC).timestamp() * 1000)
    scripted_http.script("/api/v3/aggTrades", [Reply(200, '{"code": -1121, "msg": "Invalid symbol."}')])
    client = PoliteClient(scripted_http.url, calls_per_minute=6000, transport=binance.rest_transport("spot"))
    with pytest.raises(binance.BinanceDataError, match="expected a JSON list of trades"):
        binance.RestAggTrades(client, "spot").hour("WIFUSDT", t0, t0 + 3_600_000)
