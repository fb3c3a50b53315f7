"""The FMP client against real HTTP servers on loopback: the vendor's throttling (429 with and
without Retry-After, "Limit Reach" inside a 200), server errors, timeouts, malformed and
unexpectedly shaped payloads (clear error naming symbol and endpoint, nothing cached), missing
and wrong API keys (clear error, key never shown), paging and the permanent cache."""

import datetime as dt
import json
import logging

import pytest

from quant_assets.lib import http
from quant_assets.lib.sources import fmp
from quant_assets.simulate.fmp import LIMIT_MESSAGE, FmpSimServer, FmpSimSpec, SimulatedFmp
from quant_assets_tests.http_fake import Reply

KEY = "k3y-VERY/secret+value"
START, END = dt.date(2022, 1, 1), dt.date(2022, 12, 31)
FAST = http.RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05)
SENATE_ROW = {
    "symbol": "AAPL",
    "disclosureDate": "2022-03-01",
    "transactionDate": "2022-02-10",
    "firstName": "Jane",
    "lastName": "Doe",
    "office": "Jane Doe",
    "district": "CA",
    "owner": "Self",
    "assetDescription": "Apple Inc",
    "assetType": "Stock",
    "type": "Purchase",
    "amount": "$15,001 - $50,000",
    "link": "https://efdsearch.senate.gov/x",
}


def make_client(base_url, tmp_path, *, sleeps=None, api_key=KEY, require_key=False, retry=FAST, timeout_s=5.0, page_sizes=None):
    # A fake clock that sleeping advances: waits are recorded, never spent.
    now = [0.0]

    def sleep(seconds):
        if sleeps is not None:
            sleeps.append(seconds)
        now[0] += seconds

    client = http.PoliteClient(
        base_url,
        calls_per_minute=60_000,
        retry=retry,
        timeout_s=timeout_s,
        secret_params=fmp.SECRET_PARAMS,
        throttled=fmp.is_limit_message,
        sleep=sleep,
        clock=lambda: now[0],
    )
    cache = http.ResponseCache(tmp_path / "cache", "fmp")
    return fmp.FmpClient(client, cache, api_key=api_key, require_key=require_key, max_workers=1, page_sizes=page_sizes)


def senate(client):
    return client.fetch("senate_trades", "AAPL", START, END)


def test_429_with_retry_after_is_honoured(scripted_http, tmp_path):
    scripted_http.script(
        "/senate-trades",
        [Reply(429, json.dumps({"Error Message": LIMIT_MESSAGE}), {"Retry-After": "3"}), Reply(200, json.dumps([SENATE_ROW]))],
    )
    sleeps = []
    got = senate(make_client(scripted_http.url, tmp_path, sleeps=sleeps))
    assert got.frame.height == 1 and got.report.http_calls == 2
    # The retry waits what the server asked, and the shared limiter holds every caller back as long.
    assert sleeps[0] == pytest.approx(3.0) and sum(sleeps) == pytest.approx(3.0, abs=0.01)


def test_429_without_retry_after_backs_off_exponentially(scripted_http, tmp_path):
    scripted_http.script("/senate-trades", [Reply(429, "{}"), Reply(429, "{}"), Reply(200, json.dumps([SENATE_ROW]))])
    sleeps = []
    got = senate(make_client(scripted_http.url, tmp_path, sleeps=sleeps))
    assert got.frame.height == 1 and scripted_http.calls("/senate-trades") == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_limit_message_inside_a_200_is_retried_not_cached(scripted_http, tmp_path):
    scripted_http.script(
        "/senate-trades", [Reply(200, json.dumps({"Error Message": LIMIT_MESSAGE})), Reply(200, json.dumps([SENATE_ROW]))]
    )
    client = make_client(scripted_http.url, tmp_path)
    got = senate(client)
    assert got.frame["type"].to_list() == ["Purchase"]
    assert client.http.stats.throttled == 1
    # The refusal was never mistaken for (or cached as) data.
    header, frame = fmp.decode_entry("senate_trades", client.cache.get(("senate_trades", "AAPL", "2022-01-01", "2022-12-31")), context="x")
    assert frame.height == 1 and header["requests"] == 2


def test_limit_message_that_never_clears_is_a_rate_limit_error(scripted_http, tmp_path):
    scripted_http.script("/senate-trades", [Reply(200, json.dumps({"Error Message": LIMIT_MESSAGE}))])
    client = make_client(scripted_http.url, tmp_path)
    with pytest.raises(http.RateLimited, match="AAPL senate_trades") as err:
        senate(client)
    assert KEY not in str(err.value)
    assert client.cache.entries() == (0, 0)


def test_500_then_success(scripted_http, tmp_path):
    scripted_http.script("/senate-trades", [Reply(500, "boom"), Reply(502, "bad gateway"), Reply(200, json.dumps([SENATE_ROW]))])
    client = make_client(scripted_http.url, tmp_path)
    assert senate(client).frame.height == 1
    assert client.http.stats.retries == 2


def test_timeout_names_symbol_and_endpoint_and_caches_nothing(scripted_http, tmp_path):
    scripted_http.script("/senate-trades", [Reply(200, json.dumps([SENATE_ROW]), delay_s=0.6)])
    client = make_client(scripted_http.url, tmp_path, timeout_s=0.15, retry=http.RetryPolicy(max_attempts=2, backoff_s=0.01))
    with pytest.raises(http.HttpError) as err:
        senate(client)
    msg = str(err.value)
    assert "AAPL senate_trades" in msg and "/senate-trades" in msg and "timed out" in msg
    assert KEY not in msg and "apikey=***" in msg
    assert client.cache.entries() == (0, 0)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html>502 Bad Gateway</html>", "not JSON"),
        ('[{"symbol": "AAPL", "disclosureDate": "2022-03-01"', "not JSON"),
        (json.dumps({"data": [SENATE_ROW]}), "where an array of records was expected"),
        (json.dumps([["AAPL", "2022-03-01"]]), "record 0 as a JSON list"),
        (json.dumps([{k: v for k, v in SENATE_ROW.items() if k != "disclosureDate"}]), "required field(s) ['disclosureDate']"),
        (json.dumps([{**SENATE_ROW, "disclosureDate": "03/01/2022"}]), "not a YYYY-MM-DD date"),
        (json.dumps({"Error Message": "Exclusive Endpoint : This endpoint is not available under your plan."}), "error message"),
    ],
)
def test_bad_payloads_name_symbol_and_endpoint_and_are_not_cached(scripted_http, tmp_path, body, problem):
    scripted_http.script("/senate-trades", [Reply(200, body)])
    client = make_client(scripted_http.url, tmp_path)
    with pytest.raises(http.BadPayload) as err:
        senate(client)
    msg = str(err.value)
    assert problem in msg
    assert "AAPL senate_trades" in msg and "/senate-trades" in msg and "symbol=AAPL" in msg
    assert KEY not in msg
    assert client.cache.entries() == (0, 0)
    # Not retried: a bad payload is not a transient failure.
    assert scripted_http.calls("/senate-trades") == 1


def test_unparseable_number_is_a_bad_payload(scripted_http, tmp_path):
    row = {"date": "2022-03-01", "open": 1, "high": 1, "low": 1, "close": "n/a", "volume": 5, "vwap": 1, "symbol": "AAPL"}
    scripted_http.script("/historical-price-eod/full", [Reply(200, json.dumps([row]))])
    client = make_client(scripted_http.url, tmp_path)
    with pytest.raises(http.BadPayload, match=r"AAPL prices.*close='n/a', not a number"):
        client.fetch("prices", "AAPL", START, END)
    assert client.cache.entries() == (0, 0)


def test_missing_key_for_the_real_vendor_fails_before_any_call(scripted_http, tmp_path):
    client = make_client(scripted_http.url, tmp_path, api_key=None, require_key=True)
    with pytest.raises(fmp.FmpAuthError, match="FMP_API_KEY is not set"):
        senate(client)
    assert scripted_http.calls() == 0


def test_wrong_key_is_a_clear_error_without_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with FmpSimServer(SimulatedFmp(FmpSimSpec(api_key="the-right-key"))) as server:
        client = make_client(server.url, tmp_path, api_key=KEY)
        with pytest.raises(fmp.FmpAuthError) as err:
            senate(client)
        assert server.served == 1
    msg = str(err.value)
    assert "401" in msg and "FMP_API_KEY" in msg and "AAPL senate_trades" in msg
    assert KEY not in msg and "apikey=***" in msg
    assert KEY not in caplog.text
    assert client.cache.entries() == (0, 0)


def test_invalid_key_message_in_a_200_is_an_auth_error(scripted_http, tmp_path):
    scripted_http.script("/senate-trades", [Reply(200, json.dumps({"Error Message": f"Invalid API KEY {KEY}."}))])
    with pytest.raises(fmp.FmpAuthError, match="check FMP_API_KEY") as err:
        senate(make_client(scripted_http.url, tmp_path))
    assert KEY not in str(err.value)


def test_insider_trades_page_until_a_short_page_and_keep_the_window(scripted_http, tmp_path):
    def row(filed):
        return {
            "symbol": "AAPL", "filingDate": filed, "transactionDate": filed, "reportingCik": 1234,
            "transactionType": "P-Purchase", "securitiesTransacted": 100, "acquisitionOrDisposition": "A",
            "price": 10.0, "typeOfOwner": "director",
        }

    page0 = [row("2023-02-01"), row("2022-11-01")]
    page1 = [row("2022-06-01"), row("2022-03-01")]
    page2 = [row("2021-12-30")]
    scripted_http.script("/insider-trading/search", [Reply(200, json.dumps(p)) for p in (page0, page1, page2)])
    client = make_client(scripted_http.url, tmp_path, page_sizes={"insider_trades": 2})
    got = client.fetch("insider_trades", "AAPL", START, END)
    pages = [q for p, q, _ in scripted_http.requests if p == "/insider-trading/search"]
    assert [q["page"] for q in pages] == ["0", "1", "2"] and all(q["limit"] == "2" for q in pages)
    # Rows outside the window (filed 2023 and 2021) are not kept; the CIK number became text.
    assert sorted(got.frame["filingDate"].to_list()) == ["2022-03-01", "2022-06-01", "2022-11-01"]
    assert got.frame["reportingCik"].to_list()[0] == "1234"
    assert got.report.http_calls == 3 and got.report.cache_misses == 1


def test_a_pager_that_ignores_page_is_refused(scripted_http, tmp_path):
    rows = [{"symbol": "AAPL", "filingDate": "2022-05-01", "transactionDate": "2022-05-01", "reportingCik": "1",
             "transactionType": "S-Sale", "securitiesTransacted": 1, "acquisitionOrDisposition": "D"}] * 2
    scripted_http.script("/insider-trading/search", [Reply(200, json.dumps(rows))])
    client = make_client(scripted_http.url, tmp_path, page_sizes={"insider_trades": 2})
    with pytest.raises(http.BadPayload, match="ignores `page`"):
        client.fetch("insider_trades", "AAPL", START, END)
    assert client.cache.entries() == (0, 0)


def test_13f_is_one_cache_entry_per_quarter_and_a_rerun_makes_no_call(tmp_path):
    quarters = [dt.date(2022, 3, 31), dt.date(2022, 6, 30)]
    with FmpSimServer() as server:
        client = make_client(server.url, tmp_path)
        first = client.fetch("institutional_ownership", "MSFT", START, END, quarters)
        assert first.report.entries == 2 and first.report.http_calls == 2 and first.report.cache_misses == 2
        assert set(first.frame["date"].unique().to_list()) == {"2022-03-31", "2022-06-30"}
        served = server.served
        again = make_client(server.url, tmp_path).fetch("institutional_ownership", "MSFT", START, END, quarters)
        assert server.served == served
        assert again.report.cache_hits == 2 and again.report.http_calls == 0
        assert again.frame.equals(first.frame)
    keys = {p.parent.name for p in (tmp_path / "cache" / "fmp").rglob("*.json")}
    assert keys == {"institutional_ownership"}


def test_every_data_type_parses_the_simulated_vendor(tmp_path):
    with FmpSimServer() as server:
        client = make_client(server.url, tmp_path)
        got = client.fetch_symbol("NVDA", dt.date(2022, 1, 1), dt.date(2022, 6, 30), [dt.date(2022, 3, 31)])
    assert set(got) == set(fmp.DATA_TYPES)
    for data_type, fetched in got.items():
        assert fetched.report.http_calls == 1, data_type
        missing = [f for f in fmp.ENDPOINTS[data_type].required if fetched.frame[f].null_count()]
        assert not missing, (data_type, missing)
    insider = fmp.normalize_insider_trades(got["insider_trades"].frame, "NVDA")
    assert insider["filing_date"].min() >= dt.date(2022, 1, 1) and insider["filing_date"].max() <= dt.date(2022, 6, 30)
    assert (insider["known_from"] == insider["filing_date"]).all()


def test_known_from_moves_after_close_filings_to_the_next_day():
    import polars as pl

    frame = pl.DataFrame(
        {
            "symbol": ["A"] * 3,
            "filingDate": ["2022-03-01", "2022-03-01 15:59:00", "2022-03-01 17:30:12"],
            "transactionDate": ["2022-02-27"] * 3,
            "reportingCik": ["1", "2", "3"],
            "companyCik": ["9"] * 3,
            "transactionType": ["P-Purchase"] * 3,
            "securitiesOwned": [1.0] * 3,
            "reportingName": ["x"] * 3,
            "typeOfOwner": ["director"] * 3,
            "acquisitionOrDisposition": ["A"] * 3,
            "directOrIndirect": ["D"] * 3,
            "formType": ["4"] * 3,
            "securitiesTransacted": [10.0] * 3,
            "price": [1.0] * 3,
            "securityName": ["Common Stock"] * 3,
            "url": [""] * 3,
        }
    )
    out = fmp.normalize_insider_trades(frame, "A").sort("reporting_cik")
    assert out["known_from"].to_list() == [dt.date(2022, 3, 1), dt.date(2022, 3, 1), dt.date(2022, 3, 2)]


def test_congress_amounts_and_kinds():
    import polars as pl

    rows = [
        {**SENATE_ROW, "type": "Sale (Partial)", "amount": "$1,001 - $15,000"},
        {**SENATE_ROW, "type": "Purchase", "amount": "Over $50,000,000"},
        {**SENATE_ROW, "type": "Exchange", "amount": "$250,001 - $500,000"},
    ]
    frame = fmp.read_rows("senate_trades", "\n".join(json.dumps(r) for r in rows).encode(), context="t")
    out = fmp.normalize_congress(frame, "AAPL", "senate")
    got = {r["transaction_label"]: (r["transaction"], r["amount_low"], r["amount_high"]) for r in out.iter_rows(named=True)}
    assert got == {
        "Sale (Partial)": ("sale", 1001.0, 15000.0),
        "Purchase": ("purchase", 50_000_000.0, 50_000_000.0),
        "Exchange": ("exchange", 250001.0, 500000.0),
    }
    assert pl.Series(out["member"]).to_list() == ["Jane Doe"] * 3


def test_split_ratio_marks_the_bar_a_split_takes_effect():
    import datetime as dt

    import polars as pl

    from quant_assets.lib.sources import fmp

    days = [dt.date(2024, 6, d) for d in (6, 7, 10, 11, 12)]  # Thu, Fri, Mon, Tue, Wed
    prices = pl.DataFrame(
        {"date": [d.isoformat() for d in days], "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0, "vwap": 1.0}
    )
    # A 10-for-1 dated on a Saturday takes effect with Monday's bar; a 3-for-2 on Wednesday itself.
    splits = pl.DataFrame({"date": ["2024-06-08", "2024-06-12"], "numerator": [10.0, 3.0], "denominator": [1.0, 2.0]})
    out = fmp.normalize_prices(prices, splits, symbol="X")
    assert out["split_ratio"].to_list() == [1.0, 1.0, 10.0, 1.0, 1.5]
    assert out["split_factor"].to_list() == [15.0, 15.0, 1.5, 1.5, 1.0]
