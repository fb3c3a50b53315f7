"""A hostile FMP on a real loopback server: responses that parse but carry nothing, repeat,
contradict themselves or lie about their time are refused before they are cached (or held back
and counted), a cache entry that fails the rules is fetched again, and a rerun against the healthy
vendor equals a clean run."""

import json

import polars as pl
import pytest

from quant_assets.defs.resources import partition_file
from quant_assets.defs.smart_money.keys import KEYS, QUARANTINE_CHECK, RAW_KEYS
from quant_assets.simulate.fmp import FmpSimServer, FmpSimSpec, SimResponse, SimulatedFmp
from quant_assets_tests.test_smart_money_assets import KEY, Graph, checks

PRICES = "historical-price-eod/full"


class Hostile(SimulatedFmp):
    """The simulated vendor with one endpoint's answer rewritten by ``mutate(rows)``."""

    def __init__(self, endpoint: str, mutate):
        super().__init__(FmpSimSpec(api_key=KEY))
        self.endpoint, self.mutate = endpoint, mutate

    def respond(self, path, params):
        reply = super().respond(path, params)
        if path.strip("/").removeprefix("stable/") != self.endpoint or reply.status != 200:
            return reply
        rows = self.mutate(json.loads(reply.body))
        return SimResponse(200, json.dumps(rows).encode(), {})


def zero_close(rows):
    rows[3]["close"] = 0.0
    return rows


def conflicting_day(rows):
    twin = dict(rows[5], close=rows[5]["close"] * 1.5)
    return rows[:6] + [twin] + rows[6:]


def repeated_day(rows):
    return rows[:6] + [dict(rows[5])] + rows[6:]


def future_filing(rows):
    rows[0]["filingDate"] = "2031-01-02 00:00:00"
    return rows


def failure_of(result) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message


def prices_of(g) -> pl.DataFrame:
    return g.lake.read_frame(partition_file(RAW_KEYS["prices"], "KO"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """KO's raw tables from a healthy vendor, for the reruns to equal."""
    tmp = tmp_path_factory.mktemp("clean")
    with FmpSimServer(SimulatedFmp(FmpSimSpec(api_key=KEY))) as server:
        g = Graph(tmp, server)
        g.universe(universe="custom", symbols=["KO"])
        assert g.run("smart_money_symbols_job", "KO", config=g.fetch_config()).success
    return prices_of(g)


@pytest.mark.parametrize(
    ("endpoint", "mutate", "field", "problem"),
    [
        (PRICES, zero_close, "'close'", "at or below zero"),
        (PRICES, lambda rows: [], "", "no price bar between"),
        ("insider-trading/search", future_filing, "'filingDate'", "dated after the day they were fetched"),
    ],
    ids=["close_zero", "empty_history", "future_filing"],
)
def test_a_bad_response_fails_naming_endpoint_and_field_caches_nothing_and_a_rerun_equals_a_clean_run(
    tmp_path, clean, endpoint, mutate, field, problem
):
    with FmpSimServer(Hostile(endpoint, mutate)) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["KO"])
        bad = g.run("smart_money_symbols_job", "KO", config=g.fetch_config(), raise_on_error=False)
        assert not bad.success
        text = failure_of(bad)
        assert "KO" in text and endpoint in text and field in text and problem in text and "nothing was cached" in text
        cached = {p.parent.name for p in (tmp_path / "cache").rglob("*.json")}
        bad_type = "prices" if endpoint == PRICES else "insider_trades"
        assert bad_type not in cached  # the other data types' good answers stay cached
        served = server.served
        server.sim = SimulatedFmp(FmpSimSpec(api_key=KEY))  # the vendor heals
        assert g.run("smart_money_symbols_job", "KO", config=g.fetch_config()).success
        assert server.served - served < served  # only what had failed is asked again
    assert prices_of(g).equals(clean)


def test_a_conflicting_day_is_held_back_counted_and_blocks_the_features(tmp_path, clean):
    with FmpSimServer(Hostile(PRICES, conflicting_day)) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["KO"])
        result = g.run("smart_money_symbols_job", "KO", config=g.fetch_config(max_conflict_share=0.0), raise_on_error=False)
    meta = g.latest(RAW_KEYS["prices"], "KO").metadata
    assert meta["conflicts_quarantined"].value == 2 and meta["duplicates_dropped"].value == 0
    assert checks(result)[f"{QUARANTINE_CHECK}@raw_prices"] is False
    assert g.latest(KEYS["features"], "KO") is None  # blocked
    held = set(clean["date"].to_list()) - set(prices_of(g)["date"].to_list())
    assert len(held) == 1 and prices_of(g).height == clean.height - 1  # that day's two closes both held back


def test_an_exact_repeat_is_dropped_and_counted(tmp_path, clean):
    with FmpSimServer(Hostile(PRICES, repeated_day)) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["KO"])
        result = g.run("smart_money_symbols_job", "KO", config=g.fetch_config())
    meta = g.latest(RAW_KEYS["prices"], "KO").metadata
    assert meta["duplicates_dropped"].value == 1 and meta["conflicts_quarantined"].value == 0
    assert checks(result)[f"{QUARANTINE_CHECK}@raw_prices"] is True
    assert prices_of(g).equals(clean)


def test_a_cache_entry_that_fails_the_rules_is_discarded_and_fetched_again(tmp_path, clean):
    with FmpSimServer(SimulatedFmp(FmpSimSpec(api_key=KEY))) as server:
        g = Graph(tmp_path, server)
        g.universe(universe="custom", symbols=["KO"])
        assert g.run("smart_money_symbols_job", "KO", config=g.fetch_config()).success
        # Poison the cached price entry the way an older version could have cached it.
        entry = next(p for p in (tmp_path / "cache").rglob("*.json") if p.parent.name == "prices")
        lines = entry.read_bytes().splitlines()
        row = json.loads(lines[3])
        row["close"] = -1.0
        lines[3] = json.dumps(row).encode()
        entry.write_bytes(b"\n".join(lines) + b"\n")
        served = server.served
        assert g.run("smart_money_symbols_job", "KO", config=g.fetch_config()).success
        assert server.served == served + 1  # that one entry, fetched again
    meta = g.latest(RAW_KEYS["prices"], "KO").metadata
    assert meta["cache_refetched"].value == 1 and meta["http_calls"].value == 1
    assert prices_of(g).equals(clean)
