"""Dated index membership for smart money: a membership file (symbol, start, end) decides which
symbols are sampled on each date; a static list is labelled as the survivorship-biased sample it
is; bad files fail naming the line."""

import datetime as dt

import pytest

from quant_assets.lib.smart_money import universe as u
from quant_assets.simulate.fmp import index_membership_csv

DATES = u.Schedule().sample_dates()


def write(tmp_path, text: str):
    path = tmp_path / "membership.csv"
    path.write_text(text)
    return path


def test_each_date_samples_the_members_of_that_date(tmp_path):
    path = write(
        tmp_path,
        "symbol,start,end,rank\n"
        "AAPL,2010-01-01,,1\n"
        "XOM,2010-01-01,2023-06-30,2\n"  # removed mid-sample
        "SMCI,2024-03-18,,3\n"  # added mid-sample
        "KO,2010-01-01,2022-12-31,4\n"
        "KO,2023-09-01,,4\n",  # removed, then re-added
    )
    sel = u.resolve_universe("top50", DATES, universe_file=path)
    assert sel.survivorship == u.SURVIVORSHIP_DATED
    assert sel.symbols == ["AAPL", "XOM", "KO", "SMCI"]
    assert all(d <= dt.date(2023, 6, 30) for d in sel.sample_dates_of("XOM"))
    assert sel.sample_dates_of("XOM")[-1] == dt.date(2023, 6, 15)
    assert sel.sample_dates_of("SMCI")[0] == dt.date(2024, 4, 15)
    ko = sel.sample_dates_of("KO")
    assert dt.date(2022, 12, 15) in ko and not [d for d in ko if dt.date(2023, 1, 1) <= d < dt.date(2023, 9, 1)]
    assert sel.examples == sum(len(sel.sample_dates_of(s)) for s in sel.symbols) < len(DATES) * 4
    # topN takes the first N members by rank on each date: a removal lets the next one in.
    spans = u.read_membership_file(path)
    assert u.members_on(spans, dt.date(2023, 1, 17), 2) == ["AAPL", "XOM"]
    assert u.members_on(spans, dt.date(2023, 7, 17), 2) == ["AAPL"]  # XOM out, KO out, SMCI not yet in
    assert u.members_on(spans, dt.date(2023, 10, 16), 2) == ["AAPL", "KO"]
    assert u.members_on(spans, dt.date(2024, 5, 15), 2) == ["AAPL", "SMCI"]


def test_a_static_list_is_labelled_static_and_samples_every_date(tmp_path):
    sel = u.resolve_universe("top50", DATES)  # the embedded end-of-2024 list
    assert sel.survivorship == u.SURVIVORSHIP_STATIC and len(sel.symbols) == 50
    assert all(v == sel.symbols for v in sel.sampled.values())
    test = u.resolve_universe("test", DATES)
    assert test.survivorship == u.SURVIVORSHIP_STATIC and test.examples == 3 * len(DATES)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("AAPL,2020-01-01,,1\nnot a ticker,2020-01-01,,2\n", ":3: 'not a ticker' is not a stock ticker"),
        ("AAPL,2020-13-01,,1\n", ":2: start '2020-13-01' is not a YYYY-MM-DD date"),
        ("AAPL,2020-01-01,soon,1\n", ":2: end 'soon' is not a YYYY-MM-DD date"),
        ("AAPL,2020-01-01,2019-01-01,1\n", ":2: AAPL ends (2019-01-01) before it starts (2020-01-01)"),
        ("AAPL,2020-01-01,,1\nAAPL,2021-01-01,,1\n", "lines 2 and 3: two membership spans of AAPL overlap"),
        ("AAPL,2020-01-01,,first\n", ":2: rank 'first' is not an integer"),
    ],
)
def test_a_bad_membership_file_fails_naming_the_line(tmp_path, body, message):
    path = write(tmp_path, "symbol,start,end,rank\n" + body)
    with pytest.raises(u.UniverseError) as err:
        u.resolve_universe("top50", DATES, universe_file=path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_no_member_on_a_sample_date_fails(tmp_path):
    path = write(tmp_path, "symbol,start,end\nAAPL,2023-01-01,\n")
    with pytest.raises(u.UniverseError, match="no member on sample date"):
        u.resolve_universe("top50", DATES, universe_file=path)


def test_the_simulated_membership_has_removals_a_readdition_and_an_addition(tmp_path):
    path = write(tmp_path, index_membership_csv(dt.date(2022, 1, 1), dt.date(2024, 12, 31)).decode())
    spans = u.read_membership_file(path)
    inside = lambda d: dt.date(2022, 1, 1) < d < dt.date(2024, 12, 31)  # noqa: E731
    removed = {s.symbol for s in spans if s.end is not None and inside(s.end)}
    added = {s.symbol for s in spans if inside(s.start)}
    assert len(removed) == 2 and len(added) == 2 and len(removed & added) == 1
    sel = u.resolve_universe("top50", DATES, universe_file=path)
    assert len({tuple(v) for v in sel.sampled.values()}) >= 4  # the membership changes several times
    assert index_membership_csv(dt.date(2022, 1, 1), dt.date(2024, 12, 31)) == path.read_bytes()  # deterministic
