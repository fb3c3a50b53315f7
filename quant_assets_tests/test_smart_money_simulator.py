"""The simulated FMP: deterministic per symbol, the vendor's shapes and paging, its key and rate
limit behaviour over real HTTP, and the planted relation between smart money and later returns."""

import datetime as dt
import json

import httpx
import numpy as np
import pytest

from quant_assets.simulate.fmp import INVALID_KEY_MESSAGE, LIMIT_MESSAGE, FmpSimServer, FmpSimSpec, SimulatedFmp


@pytest.fixture(scope="module")
def sim():
    return SimulatedFmp()


def get(sim, path, **params):
    reply = sim.respond(f"/stable/{path}", {k: str(v) for k, v in params.items()})
    return reply.status, json.loads(reply.body)


def test_same_symbol_same_history_in_any_order_and_instance(sim):
    other = SimulatedFmp()
    other.world("KO")  # a different symbol first
    for path, params in (
        ("insider-trading/search", {"symbol": "AAPL", "page": 0, "limit": 50}),
        ("institutional-ownership/extract-analytics/holder", {"symbol": "AAPL", "year": 2023, "quarter": 2, "page": 0, "limit": 100}),
        ("historical-price-eod/full", {"symbol": "AAPL", "from": "2023-01-01", "to": "2023-02-01"}),
    ):
        assert get(sim, path, **params) == get(other, path, **params)
    assert get(SimulatedFmp(FmpSimSpec(seed=8)), "senate-trades", symbol="AAPL") != get(sim, "senate-trades", symbol="AAPL")


def test_shapes_order_and_paging(sim):
    status, rows = get(sim, "insider-trading/search", symbol="MSFT", page=0, limit=1000)
    assert status == 200 and len(rows) > 20
    assert [r["filingDate"] for r in rows] == sorted((r["filingDate"] for r in rows), reverse=True)
    assert all(r["filingDate"] >= r["transactionDate"] for r in rows)
    _, first = get(sim, "insider-trading/search", symbol="MSFT", page=0, limit=10)
    _, second = get(sim, "insider-trading/search", symbol="MSFT", page=1, limit=10)
    assert first + second == rows[:20]
    _, holders = get(sim, "institutional-ownership/extract-analytics/holder", symbol="MSFT", year=2023, quarter=4, page=0, limit=1000)
    assert holders and {h["date"] for h in holders} == {"2023-12-31"}
    assert all(h["filingDate"] > "2023-12-31" for h in holders)
    assert {"isNew", "isSoldOut", "ownership", "lastOwnership", "weight", "cik", "investorName"} <= set(holders[0])
    _, bars = get(sim, "historical-price-eod/full", symbol="MSFT", **{"from": "2024-01-02", "to": "2024-01-31"})
    assert bars[0]["date"] == "2024-01-31" and bars[-1]["date"] == "2024-01-02"
    assert {"open", "high", "low", "close", "volume", "vwap", "change", "changePercent"} <= set(bars[0])
    _, etfs = get(sim, "etf/asset-exposure", symbol="MSFT")
    assert etfs and all(e["asset"] == "MSFT" and e["sharesNumber"] > 0 for e in etfs)
    assert get(sim, "senate-trades", symbol="not a symbol") == (200, [])
    assert get(sim, "no-such-endpoint", symbol="MSFT")[0] == 404


def test_nothing_is_public_before_it_was_filed(sim):
    today = sim.spec.today.isoformat()
    _, ins = get(sim, "insider-trading/search", symbol="GE", page=0, limit=1000)
    _, congress = get(sim, "house-trades", symbol="GE")
    assert all(r["filingDate"] <= today for r in ins) and all(r["disclosureDate"] <= today for r in congress)
    assert all(r["disclosureDate"] > r["transactionDate"] for r in congress)


def test_key_and_rate_limit_over_http():
    with FmpSimServer(SimulatedFmp(FmpSimSpec(api_key="right")), calls_per_minute=60, burst=2, retry_after_s=1) as server:
        with httpx.Client(base_url=server.url) as client:
            wrong = client.get("/senate-trades", params={"symbol": "AAPL", "apikey": "wrong"})
            assert wrong.status_code == 401 and wrong.json()["Error Message"] == INVALID_KEY_MESSAGE
            ok = client.get("/senate-trades", params={"symbol": "AAPL", "apikey": "right"})
            assert ok.status_code == 200
            refused = client.get("/senate-trades", params={"symbol": "AAPL", "apikey": "right"})
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert refused.json()["Error Message"] == LIMIT_MESSAGE
        assert server.served == 2 and server.refused == 1
    with FmpSimServer(calls_per_minute=60, burst=1, limit_in_200=True) as server:
        with httpx.Client(base_url=server.url) as client:
            client.get("/splits", params={"symbol": "AAPL"})
            assert client.get("/splits", params={"symbol": "AAPL"}).json() == {"Error Message": LIMIT_MESSAGE}


def test_the_planted_relation_runs_from_filings_to_later_returns(sim):
    """Insider purchases cluster where the hidden state is high, and so do the returns after it."""
    buys, fwd = [], []
    for symbol in ("AAPL", "MSFT", "AMZN", "JPM", "XOM", "KO"):
        days, fast, slow = sim.hidden_state(symbol)
        _, rows = get(sim, "insider-trading/search", symbol=symbol, page=0, limit=1000)
        _, bars = get(sim, "historical-price-eod/full", symbol=symbol)
        close = {b["date"]: b["close"] for b in bars}
        index = {d.isoformat(): i for i, d in enumerate(days)}
        for r in rows:
            if r["transactionType"] != "P-Purchase":
                continue
            i = index[r["transactionDate"]]
            assert fast[i] + slow[i] > -10
            buys.append(fast[i] + 0.6 * slow[i])
        dates = [d.isoformat() for d in days]
        for i in range(0, len(days) - 10, 10):
            fwd.append((fast[i] + 0.6 * slow[i], close[dates[i + 10]] / close[dates[i]] - 1))
    assert np.mean(buys) > 0.3  # purchases happen when the hidden state is high (its mean is 0)
    state, ret = np.array(fwd).T
    assert np.corrcoef(state, ret)[0, 1] > 0.15
    assert dt.date(2020, 7, 1) == sim.spec.start
