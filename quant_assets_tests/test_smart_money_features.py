"""The smart-money features, labels and sample dates: known answers on hand-built filings,
point-in-time (a record counts from its filing / disclosure day, never its transaction day),
and the vectorised features against a slow, obviously-correct reference on simulated data."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.lib.smart_money import dataset as ds
from quant_assets.lib.smart_money import features as fx
from quant_assets.lib.smart_money import raw as rw
from quant_assets.lib.smart_money.universe import FetchWindow, Schedule, latest_filed_quarter
from quant_assets.lib.sources import fmp

D = dt.date


def empty(table):
    return pl.DataFrame(schema=rw.RAW_SCHEMAS[table])


def insider_rows(rows):
    """rows: (known_from, transaction_date, cik, code, shares, price, owner)"""
    data = []
    for known, tx, cik, code, shares, price, owner in rows:
        data.append(
            {
                "symbol": "T", "filing_date": known, "known_from": known, "transaction_date": tx,
                "reporting_cik": cik, "reporting_name": cik, "type_of_owner": owner, "transaction_type": code,
                "acquisition_or_disposition": "D" if code[0] in "SGF" else "A", "direct_or_indirect": "D",
                "form_type": "4", "securities_transacted": float(shares), "securities_owned": 0.0,
                "price": float(price), "security_name": "Common Stock", "url": "",
            }
        )
    return pl.DataFrame(data, schema=fmp.INSIDER_TRADES_SCHEMA) if data else empty("insider_trades")


def holdings_rows(rows):
    """rows: (period, known_from, cik, ownership, last_ownership, weight, last_weight, market_value)"""
    data = []
    for period, known, cik, own, last, w, lw, mv in rows:
        data.append(
            {
                "symbol": "T", "period": period, "filing_date": known, "known_from": known, "cik": cik,
                "investor_name": cik, "shares": own * 1e9, "last_shares": last * 1e9, "ownership": own,
                "last_ownership": last, "market_value": mv, "last_market_value": mv * (last / own if own else 1.0),
                "weight": w, "last_weight": lw, "is_new": own > 0 and last == 0, "is_sold_out": own == 0 and last > 0,
            }
        )
    return pl.DataFrame(data, schema=fmp.HOLDINGS_SCHEMA) if data else empty("institutional_ownership")


def congress_rows(rows, chamber="senate"):
    """rows: (known_from, transaction_date, kind)"""
    data = [
        {
            "symbol": "T", "chamber": chamber, "disclosure_date": k, "known_from": k, "transaction_date": tx,
            "member": "M", "district": "CA", "owner": "Self", "asset_type": "Stock", "transaction": kind,
            "transaction_label": kind.title(), "amount": "$1,001 - $15,000", "amount_low": 1001.0,
            "amount_high": 15000.0, "link": "",
        }
        for k, tx, kind in rows
    ]
    return pl.DataFrame(data, schema=fmp.CONGRESS_SCHEMA) if data else empty("senate_trades")


def price_rows(start, end, close=100.0, split=None):
    """Daily bars (weekdays) at a constant split-adjusted close; ``split`` = (date, ratio)."""
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += dt.timedelta(days=1)
    factor = [split[1] if split and day < split[0] else 1.0 for day in days]
    first_after = min((day for day in days if split and day >= split[0]), default=None)
    return pl.DataFrame(
        {
            "symbol": "T", "date": days, "open": close, "high": close, "low": close, "close": close,
            "volume": 1e6, "vwap": close, "split_factor": factor, "close_as_traded": [close * f for f in factor],
            "split_ratio": [split[1] if day == first_after else 1.0 for day in days],
        },
        schema=fmp.PRICES_SCHEMA,
    )


def raw(**tables):
    out = {t: empty(t) for t in rw.RAW_TABLES}
    out["prices"] = price_rows(D(2022, 1, 1), D(2024, 3, 31))
    out.update(tables)
    return out


def feature(name, tables, dates, policy="static"):
    view = fx.build_view(tables, "T", policy)
    return fx.compute_features(view, dates)[name]


# ---- insider --------------------------------------------------------------------------


def test_insider_trade_counts_from_its_filing_day_never_its_transaction_day():
    # Bought on 1 March, filed on 20 March.
    tables = raw(insider_trades=insider_rows([(D(2023, 3, 20), D(2023, 3, 1), "1", "P-Purchase", 500, 100, "director")]))
    dates = [D(2023, 3, 2), D(2023, 3, 19), D(2023, 3, 20), D(2023, 4, 18), D(2023, 4, 19)]
    assert feature("insider_buy_volume_30d", tables, dates).tolist() == [0, 0, 500, 500, 0]
    assert feature("insider_buy_ratio_30d", tables, dates).tolist() == [0, 0, 1, 1, 0]
    # 90-day window: public from 20 March for 90 days.
    ninety = [D(2023, 3, 19), D(2023, 6, 17), D(2023, 6, 18)]
    assert feature("insider_ownership_change_90d", tables, ninety).tolist() == [0, 500, 0]


def test_insider_known_answers():
    rows = [
        (D(2023, 3, 2), D(2023, 3, 1), "1", "P-Purchase", 100, 101.0, "officer: Chief Executive Officer"),
        (D(2023, 3, 5), D(2023, 3, 3), "2", "P-Purchase", 300, 99.0, "director"),
        (D(2023, 3, 6), D(2023, 3, 6), "3", "S-Sale", 1000, 100.0, "officer: EVP and President, Americas"),
        (D(2023, 3, 7), D(2023, 3, 6), "1", "A-Award", 5000, 0.0, "officer: Chief Executive Officer"),
        (D(2023, 3, 8), D(2023, 3, 7), "4", "G-Gift", 50, 0.0, "director"),
    ]
    tables = raw(insider_trades=insider_rows(rows))
    t = [D(2023, 3, 10)]
    got = {name: feature(name, tables, t)[0] for name in fx.FEATURE_NAMES[:8]}
    assert got["insider_buy_ratio_30d"] == pytest.approx(2 / 3)
    assert got["insider_buy_volume_30d"] == 400
    assert got["insider_sell_volume_30d"] == 1000
    assert got["insider_net_flow_30d"] == -600
    # Awards add, gifts and sales subtract: 100 + 300 - 1000 + 5000 - 50.
    assert got["insider_ownership_change_90d"] == 4350
    # Premiums 101/100 - 1 and 99/100 - 1 average to 0.
    assert got["insider_avg_premium"] == pytest.approx(0.0)
    # Open-market trades: the CEO's purchase is C-suite; the director and the division president are not.
    assert got["c_suite_activity_ratio"] == pytest.approx(1 / 3)
    # Insiders 1 and 2 bought within one 7-day block (transaction days 1 and 3 March, t = 10 March).
    assert got["insider_cluster_score"] == 1


def test_cluster_needs_both_purchases_public():
    rows = [
        (D(2023, 3, 2), D(2023, 3, 1), "1", "P-Purchase", 100, 100, "director"),
        (D(2023, 3, 20), D(2023, 3, 2), "2", "P-Purchase", 100, 100, "director"),  # filed late
    ]
    tables = raw(insider_trades=insider_rows(rows))
    assert feature("insider_cluster_score", tables, [D(2023, 3, 10), D(2023, 3, 20)]).tolist() == [0, 1]
    # Same insider twice is no cluster.
    same = raw(insider_trades=insider_rows([(D(2023, 3, 2), D(2023, 3, 1), "1", "P-Purchase", 1, 100, "x")] * 2))
    assert feature("insider_cluster_score", same, [D(2023, 3, 10)]).tolist() == [0]


def test_split_adjusted_shares_and_as_traded_premium():
    # A 10:1 split on 2023-06-01: before it the stock traded at 1000 (100 split-adjusted).
    prices = price_rows(D(2023, 1, 1), D(2023, 12, 31), close=100.0, split=(D(2023, 6, 1), 10.0))
    rows = [(D(2023, 3, 2), D(2023, 3, 1), "1", "P-Purchase", 20, 1020.0, "director")]
    tables = raw(insider_trades=insider_rows(rows), prices=prices)
    t = [D(2023, 3, 10)]
    # On 2023-03-10 the split is three months away: 20 shares, as they were then.
    assert feature("insider_buy_volume_30d", tables, t)[0] == 20
    assert feature("insider_avg_premium", tables, t)[0] == pytest.approx(0.02)
    # A purchase before the split, seen after it: on the sample date's basis, 20 shares are 200.
    late = raw(insider_trades=insider_rows([(D(2023, 5, 26), D(2023, 5, 25), "1", "P-Purchase", 20, 1020.0, "director")]), prices=prices)
    got = [feature(name, late, [D(2023, 5, 30), D(2023, 6, 5)]).tolist() for name in ("insider_buy_volume_30d", "insider_ownership_change_90d")]
    assert got == [[20, 200], [20, 200]]


def test_a_split_after_the_sample_date_changes_nothing_at_it():
    rows = [
        (D(2023, 2, 2), D(2023, 2, 1), "1", "P-Purchase", 30, 100.0, "director"),
        (D(2023, 4, 5), D(2023, 4, 3), "2", "S-Sale", 12, 100.0, "officer: Chief Executive Officer"),
        (D(2023, 5, 2), D(2023, 5, 1), "3", "A-Award", 7, 0.0, "director"),
    ]
    dates = [D(2023, 2, 15), D(2023, 4, 20), D(2023, 5, 31)]
    plain = raw(insider_trades=insider_rows(rows), prices=price_rows(D(2022, 1, 1), D(2024, 3, 31)))
    split_later = raw(insider_trades=insider_rows(rows), prices=price_rows(D(2022, 1, 1), D(2024, 3, 31), split=(D(2023, 8, 1), 4.0)))
    for name in ("insider_buy_volume_30d", "insider_sell_volume_30d", "insider_net_flow_30d", "insider_ownership_change_90d"):
        a, b = feature(name, plain, dates), feature(name, split_later, dates)
        assert a.tolist() == b.tolist(), name  # exactly: the August split is not known in May
    assert feature("insider_ownership_change_90d", plain, dates).tolist() == [30, 18, -5]


@pytest.mark.parametrize(
    ("relation", "c_suite"),
    [
        ("officer: Chief Executive Officer", True),
        ("director, officer: Chief Financial Officer", True),
        ("officer: SVP, Chief Accounting Officer", True),
        ("officer: CEO", True),
        ("officer: President", True),
        ("President and CEO", True),
        ("officer: President, Chief Operating Officer", True),
        ("officer: EVP and President, Americas", False),
        ("officer: Vice President, Sales", False),
        ("officer: EVP, General Counsel", False),
        ("director", False),
        ("10 percent owner", False),
        ("", False),
    ],
)
def test_c_suite_matching(relation, c_suite):
    assert fx.is_c_suite(relation) is c_suite


# ---- 13F -------------------------------------------------------------------------------


def test_13f_reference_quarter_follows_the_filing_deadline():
    assert latest_filed_quarter(D(2023, 5, 14)) == D(2022, 12, 31)
    assert latest_filed_quarter(D(2023, 5, 15)) == D(2023, 3, 31)
    assert latest_filed_quarter(D(2023, 2, 14)) == D(2022, 12, 31)
    assert latest_filed_quarter(D(2023, 2, 13)) == D(2022, 9, 30)


def q_rows():
    q3, q4 = D(2022, 9, 30), D(2022, 12, 31)
    rows = [
        # period, known, cik, own, last, weight, last_weight, market value
        (q3, D(2022, 11, 1), "A", 0.10, 0.08, 0.02, 0.015, 2e9),
        (q3, D(2022, 11, 1), "B", 0.05, 0.05, 0.01, 0.01, 1e9),
        (q4, D(2023, 1, 20), "A", 0.12, 0.10, 0.03, 0.02, 3e9),
        (q4, D(2023, 2, 1), "B", 0.00, 0.05, 0.00, 0.01, 0.0),
        (q4, D(2023, 2, 10), "C", 0.02, 0.00, 0.005, 0.0, 5e8),
        # D files Q4 late: public only from 20 March.
        (q4, D(2023, 3, 20), "D", 0.30, 0.25, 0.10, 0.08, 7e9),
    ]
    return holdings_rows(rows)


def test_13f_known_answers_and_late_filers():
    tables = raw(institutional_ownership=q_rows(), hedge_fund_holdings=q_rows().filter(pl.col("cik") == "A"))
    # 10 Feb 2023: Q(t) = Q3 2022 (Q4's deadline is 14 Feb). 1 March: Q4, without D. 21 March: with D.
    dates = [D(2023, 2, 10), D(2023, 3, 1), D(2023, 3, 21)]
    f = lambda name: feature(name, tables, dates)  # noqa: E731
    assert f("inst_ownership_pct") == pytest.approx([0.15, 0.14, 0.44])
    assert f("inst_ownership_change_1q") == pytest.approx([0.02, 0.14 - 0.15, 0.44 - 0.40])
    assert f("inst_new_positions_count").tolist() == [0, 1, 1]
    assert f("inst_closed_positions_count").tolist() == [0, 1, 1]
    # Positions held at both ends: Q3 A (+25%), B (0%); Q4 A (+20%), then D (+20%).
    assert f("inst_avg_position_size_change") == pytest.approx([0.125, 0.2, 0.2])
    # Fewer than ten holders: the top ten hold everything.
    assert f("inst_concentration_top10") == pytest.approx([1.0, 1.0, 1.0])
    # 1 March: g(Q4) = 0.14 / 0.15 - 1, g(Q3) = 0.15 / 0.13 - 1, no Q2 -> weights 0.5, 0.3 rescaled.
    g4, g3 = 0.14 / 0.15 - 1, 0.15 / 0.13 - 1
    assert f("inst_momentum_score")[1] == pytest.approx((0.5 * g4 + 0.3 * g3) / 0.8)
    assert f("hedgefund_top20_exposure") == pytest.approx([0.10, 0.12, 0.12])
    assert f("hedgefund_net_change_1q") == pytest.approx([0.02, 0.02, 0.02])
    assert f("hedgefund_conviction_score") == pytest.approx([0.005, 0.01, 0.01])


def test_13f_features_missing_until_a_report_is_public_then_zero_for_absent_funds():
    tables = raw(institutional_ownership=q_rows(), hedge_fund_holdings=q_rows().filter(pl.col("cik") == "Z"))
    # Q3 becomes the reference quarter on its deadline, 14 Nov; before that Q(t) = Q2, unreported.
    dates = [D(2022, 11, 13), D(2022, 11, 14)]
    assert np.isnan(feature("inst_ownership_pct", tables, dates)[0])
    exposure = feature("hedgefund_top20_exposure", tables, dates)
    assert np.isnan(exposure[0]) and exposure[1] == 0.0
    assert feature("hedgefund_new_entry_count", tables, dates)[1] == 0


def test_concentration_of_the_ten_largest():
    q = D(2022, 12, 31)
    rows = [(q, D(2023, 1, 10), f"H{i}", 0.01 * (i + 1), 0.01 * (i + 1), 0.01, 0.01, 1e9) for i in range(12)]
    tables = raw(institutional_ownership=holdings_rows(rows))
    own = sorted((0.01 * (i + 1) for i in range(12)), reverse=True)
    assert feature("inst_concentration_top10", tables, [D(2023, 3, 1)])[0] == pytest.approx(sum(own[:10]) / sum(own))


# ---- congress and ETF ------------------------------------------------------------------


def test_congress_counts_by_disclosure_day():
    senate = congress_rows([(D(2023, 4, 1), D(2023, 2, 15), "purchase"), (D(2023, 4, 5), D(2023, 4, 1), "sale")])
    house = congress_rows([(D(2023, 4, 3), D(2023, 3, 30), "purchase"), (D(2023, 4, 4), D(2023, 4, 2), "exchange")], "house")
    tables = raw(senate_trades=senate, house_trades=house)
    dates = [D(2023, 3, 31), D(2023, 4, 3), D(2023, 4, 8), D(2023, 4, 12), D(2023, 6, 30)]
    assert feature("congress_buy_count_90d", tables, dates).tolist() == [0, 2, 2, 2, 1]
    assert feature("congress_sell_count_90d", tables, dates).tolist() == [0, 0, 1, 1, 1]
    assert feature("congress_net_sentiment", tables, dates).tolist() == [0, 2, 1, 1, 0]
    # An exchange is neither; the 7-day window after 5 April closes on 12 April.
    assert feature("congress_recent_activity_7d", tables, dates).tolist() == [0, 1, 1, 0, 0]


def test_etf_snapshot_policies():
    q = D(2023, 9, 30)
    # 5e8 shares held = 50% of shares outstanding: 1e9 shares outstanding.
    inst = holdings_rows([(q, D(2023, 10, 20), "A", 0.5, 0.5, 0.01, 0.01, 1e9)])
    etf = pl.DataFrame(
        {
            "symbol": "T", "etf_symbol": [f"E{i}" for i in range(7)], "shares": [1e8, 9e7, 5e7, 4e7, 1e7, 5e6, 5e6],
            "weight": 0.01, "market_value": 1.0, "as_of": D(2024, 1, 10),
        },
        schema=fmp.ETF_EXPOSURE_SCHEMA,
    )
    tables = raw(institutional_ownership=inst, etf_exposure=etf)
    dates = [D(2023, 12, 15), D(2024, 1, 10)]
    total = 3e8
    assert feature("etf_ownership_pct", tables, dates) == pytest.approx([total / 1e9] * 2)
    assert feature("etf_concentration", tables, dates) == pytest.approx([2.9e8 / total] * 2)
    assert feature("etf_flow_30d", tables, dates).tolist() == [0, 0]
    strict = feature("etf_ownership_pct", tables, dates, policy="strict")
    assert np.isnan(strict[0]) and strict[1] == pytest.approx(total / 1e9)


# ---- sample dates and labels -----------------------------------------------------------


def test_default_schedule_is_36_sessions_on_or_after_the_15th():
    dates = Schedule().sample_dates()
    assert len(dates) == 36 and dates[0] == D(2022, 1, 18) and dates[-1] == D(2024, 12, 16)
    nominal = Schedule().nominal_dates()
    assert all(n <= d <= n + dt.timedelta(days=4) for n, d in zip(nominal, dates, strict=True))
    # 15 Jan 2022 is a Saturday and 17 Jan is Martin Luther King day; 15 Mar 2022 is a Tuesday.
    assert D(2022, 3, 15) in dates


def test_fetch_window_covers_the_features_and_labels():
    w = FetchWindow.for_schedule(Schedule())
    assert w.start <= D(2022, 1, 18) - dt.timedelta(days=90) and w.end >= D(2024, 12, 30)
    assert w.quarters[0] == D(2021, 3, 31) and w.quarters[-1] == D(2024, 9, 30) and len(w.quarters) == 15


def test_labels_use_the_close_14_days_later_or_the_next_session():
    prices = price_rows(D(2022, 12, 1), D(2023, 2, 28))
    closes = {d: 100.0 + i for i, d in enumerate(prices["date"].to_list())}
    prices = prices.with_columns(pl.col("date").replace_strict(closes, return_dtype=pl.Float64).alias("close"))
    prices = prices.with_columns(pl.col("close").alias("close_as_traded"))
    # 2022-12-15 + 14 = 2022-12-29 (a session); 2023-01-03 + 14 = 2023-01-17 (session after MLK day
    # 16 Jan); 2022-12-16 + 14 = 2022-12-30; 2023-01-05 + 14 = 2023-01-19.
    dates = [D(2022, 12, 15), D(2023, 1, 3)]
    rows = ds.symbol_rows(raw(prices=prices), "T", dates)
    assert rows["price_at_sample"].to_list() == [closes[D(2022, 12, 15)], closes[D(2023, 1, 3)]]
    assert rows["price_after_14d"].to_list() == [closes[D(2022, 12, 29)], closes[D(2023, 1, 17)]]
    assert ds.label_dates([D(2023, 1, 2)]) == [D(2023, 1, 17)]  # 16 Jan is a holiday
    ret = rows["return_14d"].to_list()
    assert ret[0] == pytest.approx(closes[D(2022, 12, 29)] / closes[D(2022, 12, 15)] - 1)
    assert rows["label"].to_list() == [int(r > 0.05) for r in ret]
    assert list(rows.columns) == list(ds.DATASET_COLUMNS)


def test_missing_prices_leave_the_label_empty():
    prices = price_rows(D(2022, 12, 1), D(2022, 12, 20))
    rows = ds.symbol_rows(raw(prices=prices), "T", [D(2022, 12, 15), D(2022, 12, 17)])
    # No bar 14 days after the first; the second is a Saturday (no bar of its own).
    assert rows["label"].to_list() == [None, None]
    assert rows["price_at_sample"].to_list()[1] is None


# ---- point in time on simulated data, and a slow reference -----------------------------


@pytest.fixture(scope="module")
def simulated_raw(tmp_path_factory):
    from quant_assets.lib.http import PoliteClient, ResponseCache
    from quant_assets.simulate.fmp import SIM_BASE_URL, SimulatedFmp

    sim = SimulatedFmp()
    client = fmp.FmpClient(
        PoliteClient(SIM_BASE_URL, calls_per_minute=1e7, transport=sim.transport()),
        ResponseCache(tmp_path_factory.mktemp("cache"), "sim"),
    )
    window = FetchWindow.for_schedule(Schedule())
    return {sym: rw.fetch_raw(client, sym, window)[0] for sym in ("TSLA", "AMZN")}


def truncate(tables, cutoff):
    """What a researcher could have held on ``cutoff``: records public by then, bars up to then."""
    out = {}
    for name, frame in tables.items():
        if name == "prices":
            out[name] = frame.filter(pl.col("date") <= cutoff)
        elif "known_from" in frame.columns:
            out[name] = frame.filter(pl.col("known_from") <= cutoff)
        else:
            out[name] = frame
    return out


@pytest.mark.parametrize("cutoff", [D(2022, 6, 15), D(2023, 2, 15), D(2024, 5, 15)])
def test_features_never_use_what_was_not_public_yet(simulated_raw, cutoff):
    dates = [d for d in Schedule().sample_dates() if d <= cutoff]
    for sym, tables in simulated_raw.items():
        full = fx.compute_features(fx.build_view(tables, sym, "strict"), dates)
        held = fx.compute_features(fx.build_view(truncate(tables, cutoff), sym, "strict"), dates)
        for name in fx.FEATURE_NAMES:
            if name.startswith("etf_"):
                continue  # a present-day snapshot: excluded from the sample dates under `strict`
            np.testing.assert_allclose(full[name], held[name], equal_nan=True, err_msg=f"{sym} {name}")


def test_transaction_dates_would_leak(simulated_raw):
    """Had the features used transaction dates, they would see trades before they were public."""
    tables = simulated_raw["TSLA"]
    ins = tables["insider_trades"]
    late = ins.filter((pl.col("known_from") - pl.col("transaction_date")).dt.total_days() > 2)
    assert late.height > 0, "the simulator files some reports late"
    leaky = {**tables, "insider_trades": ins.with_columns(pl.col("transaction_date").alias("known_from"))}
    dates = Schedule().sample_dates()
    t = np.array([fx.to_days(d) for d in dates])
    honest = fx.insider_ownership_change_90d(fx.build_view(tables, "TSLA"), t)
    peeking = fx.insider_ownership_change_90d(fx.build_view(leaky, "TSLA"), t)
    assert np.abs(honest).sum() > 0 and not np.allclose(honest, peeking)


def reference_features(tables, dates):
    """Plain loops over records and dates, written from the definitions."""
    ins = tables["insider_trades"].to_dicts()
    prices = {r["date"]: r for r in tables["prices"].to_dicts()}
    congress = tables["senate_trades"].to_dicts() + tables["house_trades"].to_dicts()
    inst = tables["institutional_ownership"].to_dicts()
    out = {k: [] for k in ("insider_buy_ratio_30d", "insider_sell_volume_30d", "insider_avg_premium",
                            "c_suite_activity_ratio", "insider_cluster_score", "congress_net_sentiment",
                            "inst_ownership_pct", "inst_avg_position_size_change")}

    def factor(day):
        d = day
        while d not in prices:
            d -= dt.timedelta(days=1)
        return prices[d]

    def basis(tx, t):
        """Splits effective after the transaction and on or before the sample date."""
        out = 1.0
        for d, r in sorted(prices.items()):
            if tx < d <= t and r["split_ratio"] != 1.0:
                out *= r["split_ratio"]
        return out

    for t in dates:
        in30 = [r for r in ins if t - dt.timedelta(days=30) < r["known_from"] <= t]
        in90 = [r for r in ins if t - dt.timedelta(days=90) < r["known_from"] <= t]
        buys = [r for r in in30 if r["transaction_type"].startswith("P")]
        sells = [r for r in in30 if r["transaction_type"].startswith("S")]
        out["insider_buy_ratio_30d"].append(len(buys) / (len(buys) + len(sells)) if buys or sells else 0.0)
        out["insider_sell_volume_30d"].append(
            sum(r["securities_transacted"] * basis(r["transaction_date"], t) for r in sells)
        )
        prem = [r["price"] / factor(r["transaction_date"])["close_as_traded"] - 1
                for r in in90 if r["transaction_type"].startswith("P") and r["price"] > 0]
        out["insider_avg_premium"].append(sum(prem) / len(prem) if prem else 0.0)
        trades = [r for r in in90 if r["transaction_type"][0] in "PS"]
        out["c_suite_activity_ratio"].append(
            sum(fx.is_c_suite(r["type_of_owner"]) for r in trades) / len(trades) if trades else 0.0
        )
        blocks = {}
        for r in ins:
            if r["transaction_type"].startswith("P") and r["known_from"] <= t and t - dt.timedelta(days=91) < r["transaction_date"] <= t:
                blocks.setdefault((t - r["transaction_date"]).days // 7, set()).add(r["reporting_cik"])
        out["insider_cluster_score"].append(float(sum(len(v) >= 2 for v in blocks.values())))
        cg = [r for r in congress if t - dt.timedelta(days=90) < r["known_from"] <= t]
        out["congress_net_sentiment"].append(
            float(sum(r["transaction"] == "purchase" for r in cg) - sum(r["transaction"] == "sale" for r in cg))
        )
        q = latest_filed_quarter(t)
        rows = [r for r in inst if r["period"] == q and r["known_from"] <= t]
        out["inst_ownership_pct"].append(sum(r["ownership"] for r in rows) if rows else np.nan)
        both = [r["ownership"] / r["last_ownership"] - 1 for r in rows if r["ownership"] > 0 and r["last_ownership"] > 0]
        out["inst_avg_position_size_change"].append(float(np.mean(both)) if both else np.nan)
    return out


def test_vectorised_features_match_the_reference(simulated_raw):
    dates = Schedule().sample_dates()
    for sym, tables in simulated_raw.items():
        got = fx.compute_features(fx.build_view(tables, sym), dates)
        for name, values in reference_features(tables, dates).items():
            np.testing.assert_allclose(got[name], values, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{sym} {name}")


def test_every_feature_has_a_docstring_definition():
    docs = fx.feature_docs()
    assert list(docs) == list(ds.DATASET_COLUMNS[5:-1]) and len(docs) == 27
    assert all(len(text) > 60 for text in docs.values())
