"""The client-intelligence world as plain Python: counts, determinism, behaviour, the book against
slow per-trade references, point-in-time evaluations, and checks that fail on broken tables."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.lib.client_intel import SEGMENTS, TABLES, WorldSpec, WorldSpecError, build_world, verify
from quant_assets.lib.client_intel import book as B
from quant_assets.lib.client_intel import classifier as K
from quant_assets.lib.client_intel import market as M
from quant_assets.lib.client_intel import quality as Q
from quant_assets.lib.client_intel import reference as ref
from quant_assets.lib.client_intel import regimes as R
from quant_assets.lib.client_intel import spec as S


@pytest.fixture(scope="module")
def world():
    return build_world(WorldSpec())


@pytest.fixture(scope="module")
def segments(world):
    return dict(world["clients"].select("client_id", "segment").iter_rows())


# --------------------------------------------------------------------------- the knobs


def test_defaults_are_the_old_scripts_defaults():
    spec = WorldSpec()
    assert (spec.n_clients, spec.months_history, spec.seed) == (50, 6, 42)
    assert (spec.start, spec.as_of, spec.days) == (dt.date(2024, 1, 1), dt.date(2024, 6, 30), 182)
    assert spec.segment_mix == {s: 0.25 for s in SEGMENTS}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_clients": 0}, "n_clients"),
        ({"n_clients": -5}, "n_clients"),
        ({"n_clients": 2.5}, "n_clients"),
        ({"months_history": -1}, "months_history"),
        ({"months_history": 0}, "months_history"),
        ({"months_history": 2}, "months_history"),
        ({"segment_mix": {"Scalper": 1.0}}, "segment_mix"),
        ({"segment_mix": {"Hedger": -1.0, "Trend Setter": 2.0}}, "segment_mix"),
        ({"segment_mix": {"Hedger": 0.0}}, "segment_mix"),
        ({"segment_mix": {}}, "segment_mix"),
        ({"seed": -1}, "seed"),
        ({"as_of": "2024-13-01"}, "as_of"),
    ],
)
def test_out_of_range_knobs_are_refused_naming_the_knob(kwargs, field):
    with pytest.raises(WorldSpecError, match=field):
        WorldSpec(**kwargs)


def test_unknown_segment_is_named():
    with pytest.raises(WorldSpecError, match="Scalper"):
        WorldSpec(segment_mix={"Scalper": 1.0, "Hedger": 1.0})


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2024, 3, 31), -1, dt.date(2024, 2, 29)),
        (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),
        (dt.date(2023, 12, 15), 1, dt.date(2024, 1, 15)),
        (dt.date(2024, 7, 1), -6, dt.date(2024, 1, 1)),
        (dt.date(2024, 7, 1), -18, dt.date(2023, 1, 1)),
    ],
)
def test_add_months(day, months, expected):
    assert S.add_months(day, months) == expected


def test_segment_mix_sets_the_number_of_clients_per_segment():
    w = build_world(WorldSpec(n_clients=40, segment_mix={"Trend Follower": 3, "Hedger": 1}, seed=3))
    counts = dict(w["clients"].group_by("segment").len().iter_rows())
    assert counts == {"Trend Follower": 30, "Hedger": 10}


# --------------------------------------------------------------------------- counts and determinism


def test_default_world_has_the_old_guides_sizes(world):
    sizes = {t: world[t].height for t in TABLES}
    assert sizes["market_bars"] == 6 * 182  # ~1,080
    assert sizes["clients"] == 50
    assert 8_000 <= sizes["trades"] <= 12_000  # ~10,000
    assert sizes["headlines"] == 500
    assert sizes["features"] == 50
    assert sizes["pnl_risk"] == 50 * 182
    assert 50 <= sizes["client_regimes"] <= 120  # ~75
    assert 50 * 10 <= sizes["switch_probability_history"] <= 50 * 15  # ~600
    assert 50 <= sizes["positions"] <= 250  # ~150
    assert "ACME_FX_023" in world["clients"]["client_id"].to_list()
    assert set(world["market_bars"]["instrument"].unique()) == {"EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "XAUUSD"}


def test_same_knobs_same_world_row_for_row(world):
    again = build_world(WorldSpec())
    for t in TABLES:
        assert_frame_equal(world[t], again[t])


def test_another_seed_is_another_world(world):
    other = build_world(WorldSpec(seed=7))
    assert not other["market_bars"]["close"].equals(world["market_bars"]["close"])
    assert other["trades"].height != world["trades"].height or not other["trades"].equals(world["trades"])


def test_tables_have_their_declared_schemas(world):
    from quant_assets.lib.client_intel import COLUMN_DOCS, SCHEMAS

    for t in TABLES:
        assert dict(world[t].schema) == SCHEMAS[t], t
        assert set(COLUMN_DOCS[t]) == set(SCHEMAS[t]), t


def test_client_ids_widen_beyond_999_clients():
    from quant_assets.lib.client_intel.clients import client_ids

    assert client_ids(50)[22] == "ACME_FX_023"
    assert client_ids(10_000)[22] == "ACME_FX_00023"
    assert len(set(client_ids(10_000))) == 10_000


# --------------------------------------------------------------------------- every rule, several worlds


@pytest.mark.parametrize(
    "spec",
    [
        WorldSpec(),
        WorldSpec(seed=1, n_clients=24),
        WorldSpec(seed=2, months_history=3, n_clients=24),
        WorldSpec(seed=3, months_history=12, n_clients=24, as_of=dt.date(2025, 2, 28)),
    ],
    ids=["default", "seed1", "3-months", "12-months"],
)
def test_every_rule_of_the_checklist_holds(spec):
    w = build_world(spec)
    failed = {(t, n): v.description for t, checks in verify(w).items() for n, v in checks.items() if not v.passed}
    assert not failed
    report = K.cross_validate(w["features"], w["clients"], spec.seed)
    assert report.accuracy >= 0.9


# --------------------------------------------------------------------------- behaviour, from the tables


def _lots(world, segments):
    closed, _ = ref.fifo_replay(world["trades"])
    df = pl.DataFrame(closed).with_columns(
        (pl.col("close_date") - pl.col("open_date")).dt.total_days().alias("days"),
        pl.col("client_id").replace_strict(segments).alias("segment"),
    )
    return df


def test_every_closed_lot_is_held_inside_its_segments_band(world, segments):
    lots = _lots(world, segments)
    for name, b in S.BEHAVIOURS.items():
        days = lots.filter(pl.col("segment") == name)["days"]
        assert days.len() > 0
        assert days.min() >= b.hold_min and days.max() <= b.hold_max, name


def test_trend_setters_enter_before_the_move(world, segments):
    """A closed Trend Setter lot: the close before the exit day is beyond the close before the
    entry, in the lot's direction (a dip that recovered, a rally that faded)."""
    lots = _lots(world, segments).filter(pl.col("segment") == S.TREND_SETTER)
    closes = dict(
        ((i, d), c) for i, d, c in world["market_bars"].select("instrument", "date", "close").iter_rows()
    )
    one = dt.timedelta(days=1)
    ok = [
        (closes[(r["instrument"], r["close_date"] - one)] - closes[(r["instrument"], r["open_date"] - one)]) * r["direction"] > 0
        for r in lots.iter_rows(named=True)
        if (r["instrument"], r["open_date"] - one) in closes
    ]
    assert len(ok) > 100 and all(ok)


def test_order_types_and_sides_per_segment(world, segments):
    t = world["trades"].with_columns(pl.col("client_id").replace_strict(segments).alias("segment"))
    share = dict(t.group_by("segment").agg((pl.col("order_type") == "MARKET").mean()).iter_rows())
    assert share[S.MEAN_REVERTER] == 0.0
    assert abs(share[S.TREND_FOLLOWER] - 0.70) < 0.05
    assert abs(share[S.TREND_SETTER] - 0.80) < 0.05
    hedgers = t.filter(pl.col("segment") == S.HEDGER)
    assert abs((hedgers["side"] == "SELL").mean() - 0.70) < 0.10
    per_hedger = hedgers.group_by("client_id").len()["len"]
    assert per_hedger.min() >= 5 and per_hedger.max() <= 15


def test_entry_rules_hold_for_every_rule_bound_trade(world):
    rules = Q._rule_shares(world["trades"], world["clients"], world.panel)
    for name, (followed, checked) in rules.items():
        assert checked > 500 and followed == checked, name


def test_trades_are_priced_inside_their_bar_on_the_tick(world):
    j = world["trades"].join(
        world["market_bars"], left_on=["instrument", "trade_date"], right_on=["instrument", "date"], how="left"
    )
    assert j.filter(pl.col("low").is_null() | (pl.col("price") < pl.col("low")) | (pl.col("price") > pl.col("high"))).height == 0
    for inst in S.INSTRUMENTS:
        prices = j.filter(pl.col("instrument") == inst.symbol)["price"].to_numpy()
        ticks = prices / inst.tick
        assert np.allclose(ticks, np.round(ticks), atol=1e-6), inst.symbol


def test_headlines_follow_the_moves(world):
    v = Q.headlines_valid(world["headlines"], world["market_bars"], world.spec)
    assert v.passed and v.metadata["sentiment_agreement_big_moves"] >= 0.9
    tags = [json.loads(x) for x in world["headlines"]["tags"]]
    assert all(inst in t for inst, t in zip(world["headlines"]["instrument"], tags, strict=True))


# --------------------------------------------------------------------------- the book against the slow references


def test_positions_are_the_fifo_replay_of_the_trades(world):
    expected = ref.positions(world["trades"])
    got = {(r["client_id"], r["instrument"]): (r["quantity"], r["avg_entry_price"]) for r in world["positions"].iter_rows(named=True)}
    assert set(got) == set(expected)
    for key, (qty, price) in expected.items():
        assert got[key][0] == qty
        assert got[key][1] == pytest.approx(price, rel=1e-12)


def test_daily_pnl_equals_the_day_by_day_loop(world):
    expected = ref.daily_pnl_usd(world["trades"], world["market_bars"])
    got = {(c, d): p for c, d, p in world["pnl_risk"].select("client_id", "date", "pnl_usd").iter_rows()}
    assert set(got) == set(expected)
    worst = max(abs(got[k] - v) / (1 + abs(v)) for k, v in expected.items())
    assert worst < 1e-9


def test_holding_turnover_aggressiveness_equal_the_per_trade_loops(world):
    hold = ref.holding_period_avg(world["trades"])
    basic = ref.trading_features(world["trades"], world.spec.days)
    for r in world["features"].iter_rows(named=True):
        c = r["client_id"]
        assert r["holding_period_avg"] == pytest.approx(hold[c], rel=1e-12)
        assert r["turnover"] == pytest.approx(basic[c]["turnover"], rel=1e-12)
        assert r["aggressiveness"] == pytest.approx(basic[c]["aggressiveness"], rel=1e-12)
        assert r["n_trades"] == basic[c]["n_trades"]


def test_last_day_book_equals_the_positions(world):
    assert Q.pnl_consistent(world["pnl_risk"], world["positions"], world["clients"], world.spec).passed


def test_cumulative_pnl_is_realized_plus_unrealized_for_usd_quoted_books(world):
    """For instruments quoted in USD no currency translation enters: total PnL to date equals
    realized + unrealized exactly (up to float rounding)."""
    usd_quoted = [i.symbol for i in S.INSTRUMENTS if i.quote == "USD"]
    trades = world["trades"].filter(pl.col("instrument").is_in(usd_quoted))
    bars = world["market_bars"]
    closed, open_lots = ref.fifo_replay(trades)
    last = dict(bars.filter(pl.col("date") == world.spec.as_of).select("instrument", "close").iter_rows())
    realized = sum(p["qty"] * p["direction"] * (p["close_price"] - p["open_price"]) for p in closed)
    unrealized = sum(q * (last[i] - p) for (_, i), lots in open_lots.items() for q, p, _ in lots)
    daily = sum(ref.daily_pnl_usd(trades, bars).values())
    assert daily == pytest.approx(realized + unrealized, rel=1e-9)


def test_historical_var_matches_the_reference_and_never_looks_ahead(world):
    panel = world.panel
    rng = np.random.default_rng(0)
    exposure = rng.normal(0, 1e6, size=(3, len(S.SYMBOLS), panel.days))
    rets = panel.log_returns()
    var = B._historical_var(exposure, rets, B.VAR_WINDOW, B.VAR_MIN_RETURNS, B.VAR_LEVEL)
    t = 100
    scenarios = [list(rets[:, s]) for s in range(t - B.VAR_WINDOW + 1, t + 1)]
    assert var[1, t] == pytest.approx(ref.historical_var(list(exposure[1, :, t]), scenarios), rel=1e-10)
    assert np.isnan(var[:, : B.VAR_MIN_RETURNS]).all() and np.isfinite(var[:, B.VAR_MIN_RETURNS :]).all()
    future = rets.copy()
    future[:, t + 1 :] *= 5.0
    again = B._historical_var(exposure, future, B.VAR_WINDOW, B.VAR_MIN_RETURNS, B.VAR_LEVEL)
    assert np.array_equal(var[:, : t + 1], again[:, : t + 1], equal_nan=True)


# --------------------------------------------------------------------------- features, regimes, switch probability


def test_features_are_in_range_and_tell_the_segments_apart(world, segments):
    f = world["features"].with_columns(pl.col("client_id").replace_strict(segments).alias("segment"))
    assert Q.features_complete(world["features"], world["clients"]).passed
    mean = {s: row for s, *row in f.group_by("segment").agg(
        pl.col("momentum_beta_5d").mean(), pl.col("lead_lag_alpha").mean(), pl.col("turnover").mean()
    ).iter_rows()}  # fmt: skip
    assert mean[S.TREND_FOLLOWER][0] > 0.3 > 0 > -0.3 > mean[S.MEAN_REVERTER][0]  # with / against momentum
    assert mean[S.TREND_SETTER][1] > 0 > mean[S.TREND_FOLLOWER][1]  # leads / lags
    assert mean[S.HEDGER][2] < 0.1 < 0.5 < mean[S.MEAN_REVERTER][2]  # passive / very active
    for raw in f["exposure_concentration"]:
        assert sum(json.loads(raw).values()) == pytest.approx(1.0, abs=1e-3)


def test_regimes_timeline(world):
    r = world["client_regimes"]
    assert Q.regimes_valid(r, world["clients"]).passed
    acme = r.filter(pl.col("client_id") == "ACME_FX_023").sort("start_date")
    assert 1 <= acme.height <= 4 and acme["end_date"][-1] is None
    onboarding = dict(world["clients"].select("client_id", "onboarding_date").iter_rows())
    first = r.sort("start_date").group_by("client_id", maintain_order=True).first()
    assert all(onboarding[c] == d for c, d in first.select("client_id", "start_date").iter_rows())
    current = r.filter(pl.col("end_date").is_null())
    assert (current["start_date"] <= world.spec.start).all()


def test_switch_probability_is_gradual_and_bounded(world):
    h = world["switch_probability_history"].sort("client_id", "computed_at")
    steps = h.with_columns(pl.col("switch_prob").diff().over("client_id").abs().alias("d"))["d"].drop_nulls()
    assert steps.max() <= R.MAX_STEP + 1e-12
    assert h["switch_prob"].min() >= 0.15 and h["switch_prob"].max() <= 0.85
    per_client = h.group_by("client_id").len()["len"]
    assert per_client.min() >= 10 and per_client.max() <= 15
    assert h.group_by("client_id").agg(pl.col("computed_at").max())["computed_at"].dt.date().unique().to_list() == [world.spec.as_of]


def test_drifting_clients_show_a_rising_switch_probability(world):
    """Clients whose behaviour drifts late in the history end with a higher probability than
    steady ones (the generator's drift is the ground truth the history must pick up)."""
    from quant_assets.lib.client_intel import trades as TR
    from quant_assets.lib.client_intel.clients import segment_codes

    params = TR.client_params(segment_codes(world["clients"]), world.spec.seed)
    drift = dict(zip(world["clients"]["client_id"], params.drift, strict=True))
    last = world["switch_probability_history"].sort("computed_at").group_by("client_id").agg(pl.col("switch_prob").last())
    drifting = [p for c, p in last.iter_rows() if drift[c] > 0]
    steady = [p for c, p in last.iter_rows() if drift[c] == 0]
    assert drifting and steady and np.mean(drifting) > np.mean(steady) + 0.05


def test_switch_probability_uses_only_data_up_to_its_evaluation(world):
    """Dropping every trade after an evaluation day leaves the evaluations up to that day unchanged."""
    cut = dt.date(2024, 4, 15)
    ids = world["clients"]["client_id"].to_list()
    from quant_assets.lib.client_intel.clients import segment_codes

    seg = segment_codes(world["clients"])

    def evaluate(trades):
        ledger = B.TradeArrays.from_frame(trades, ids, world.panel)
        fifo = B.fifo(ledger)
        daily = B.daily(ledger, fifo, world.panel, len(ids))
        pnl = B.pnl_risk_frame(daily, world.panel, ids)
        return R.switch_probability_frame(ledger, fifo, daily, pnl, world.panel, ids, seg, world.spec.seed)

    full = evaluate(world["trades"])
    assert_frame_equal(full, world["switch_probability_history"])
    truncated = evaluate(world["trades"].filter(pl.col("trade_date") <= cut))
    early = pl.col("computed_at").dt.date() <= cut
    assert_frame_equal(full.filter(early), truncated.filter(early))
    assert not full.filter(~early).equals(truncated.filter(~early))


def test_classifier_recovers_segments_and_fails_on_shuffled_labels(world):
    report = K.cross_validate(world["features"], world["clients"], 42)
    assert report.accuracy >= 0.9 and report.folds == 5
    assert sum(map(sum, report.confusion)) == 50
    verdict = Q.classifier_verdict(report)
    assert verdict.passed and "| Hedger |" in verdict.markdown["confusion"]
    rng = np.random.default_rng(1)
    shuffled = world["clients"].with_columns(pl.Series("segment", rng.permutation(world["clients"]["segment"].to_numpy())))
    bad = K.cross_validate(world["features"], shuffled, 42)
    assert bad.accuracy < 0.7 and not Q.classifier_verdict(bad).passed


def test_classifier_says_when_it_cannot_cross_validate():
    w = build_world(WorldSpec(n_clients=3, seed=5))
    report = K.cross_validate(w["features"], w["clients"], 5)
    verdict = Q.classifier_verdict(report)
    assert report.accuracy is None and not verdict.passed and "Not evaluated" in verdict.description


# --------------------------------------------------------------------------- broken tables fail loudly


def test_checks_fail_on_broken_tables(world):
    t, spec = world.tables, world.spec
    moved = t["positions"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.col("quantity") + 1000).otherwise(pl.col("quantity")).alias("quantity")
    )
    v = Q.positions_match_trades(moved, t["trades"])
    assert not v.passed and "differ from the trade replay" in v.description

    outside = t["trades"].with_columns(pl.when(pl.col("trade_id") == 5).then(pl.col("price") * 2).otherwise(pl.col("price")).alias("price"))
    assert "outside their day's [low, high]" in Q.trades_valid(outside, t["clients"], t["market_bars"]).description

    first = t["client_regimes"].sort("client_id", "start_date").group_by("client_id", maintain_order=True).first()
    overlapping = pl.concat([t["client_regimes"], first.with_columns(pl.col("start_date") + pl.duration(days=1), pl.lit(None, pl.Date).alias("end_date"))])
    assert not Q.regimes_valid(overlapping, t["clients"]).passed

    jumpy = t["switch_probability_history"].with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(0.85).otherwise(pl.col("switch_prob")).alias("switch_prob")
    )
    v = Q.switch_probability_gradual(jumpy, t["clients"], spec)
    assert not v.passed and "larger than 0.1" in v.description

    wide = t["features"].with_columns(pl.lit(1.5).alias("momentum_beta_5d"))
    assert "momentum_beta_5d value(s) outside [-1, 1]" in Q.features_complete(wide, t["clients"]).description

    slow_tf = t["features"].join(t["clients"].select("client_id", "segment"), on="client_id").with_columns(
        pl.when(pl.col("segment") == S.TREND_FOLLOWER).then(7.0).otherwise(pl.col("holding_period_avg")).alias("holding_period_avg")
    ).drop("segment")
    v = Q.holding_period_bands(slow_tf, t["clients"])
    assert not v.passed and "Trend Follower(s) hold outside 2-5 days" in v.description

    random_orders = t["trades"].with_columns(pl.lit("MARKET").alias("order_type"))
    v = Q.segment_patterns(random_orders, t["clients"], world.panel, spec)
    assert not v.passed and "Mean Reverter: market-order share 1.000" in v.description

    short = t["market_bars"].filter(pl.col("date") != dt.date(2024, 3, 1))
    assert "expected 1092" in Q.bars_complete(short, spec).description
    with pytest.raises(M.BarsError, match="not one row per instrument and calendar day"):
        M.panel_from_bars(short)


def test_trades_referencing_unknown_clients_or_days_are_refused(world):
    ids = world["clients"]["client_id"].to_list()
    stranger = world["trades"].with_columns(pl.lit("ACME_FX_999").alias("client_id"))
    with pytest.raises(B.TradesError, match="unknown client"):
        B.TradeArrays.from_frame(stranger, ids, world.panel)
    late = world["trades"].with_columns(pl.col("trade_date") + pl.duration(days=400))
    with pytest.raises(B.TradesError, match="outside the bars' days"):
        B.TradeArrays.from_frame(late, ids, world.panel)


def test_share_tolerance_widens_for_few_trades():
    assert Q.share_tolerance(0.7, 0.1, 10_000, 100) == 0.1
    assert Q.share_tolerance(0.7, 0.1, 10, 1) == pytest.approx(4 * math.sqrt(0.21 / 10 + 0.04**2) + 0.05)
