"""The Polygon simulator writes the vendor's flat files, deterministically and realistically."""

from __future__ import annotations

import datetime as dt
import gzip
import re

import polars as pl
import pytest

from quant_assets.lib import calendar
from quant_assets.lib.storage import LocalStore
from quant_assets.simulate import (
    HEADER,
    KINDS,
    PolygonSimSpec,
    day_aggs_key,
    encode_polygon_csv_gz,
    minute_aggs_key,
    polygon_universe,
    simulate_minute_day,
    simulate_polygon,
)

# Juneteenth (06-19) and Independence Day (07-04) fall inside; 07-03 closes early.
SPEC = PolygonSimSpec(dt.date(2024, 6, 17), dt.date(2024, 7, 5), tickers=120, minute_days=3, seed=7)
MINUTE_DAYS = [dt.date(2024, 7, 2), dt.date(2024, 7, 3), dt.date(2024, 7, 5)]
PRICE_SCHEMA = {c: pl.Float64 for c in ("open", "close", "high", "low")}
NS_PER_MINUTE = 60 * 1_000_000_000


def read(store: LocalStore, key: str) -> pl.DataFrame:
    return pl.read_csv(gzip.decompress(store.read_bytes(key)), schema_overrides=PRICE_SCHEMA)


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("landing"))
    calls: list[tuple[int, int, str]] = []
    report = simulate_polygon(store, SPEC, progress=lambda done, total, key: calls.append((done, total, key)))
    return store, report, calls


@pytest.fixture(scope="module")
def day_bars(landing) -> pl.DataFrame:
    store, _, _ = landing
    return pl.concat(
        [read(store, day_aggs_key(d)).with_columns(pl.lit(d).alias("date")) for d in SPEC.sessions]
    )


@pytest.fixture(scope="module")
def universe() -> pl.DataFrame:
    return polygon_universe(SPEC)


def test_one_day_file_per_session_and_minute_files_for_the_last_sessions(landing):
    store, report, calls = landing
    sessions = calendar.trading_days(SPEC.start, SPEC.end)
    assert len(sessions) == 13
    assert SPEC.minute_sessions == MINUTE_DAYS

    day = day_aggs_key(dt.date(2024, 7, 5))
    assert day == "us_stocks_sip/day_aggs_v1/2024/07/2024-07-05.csv.gz"
    assert minute_aggs_key("2024-07-05") == "us_stocks_sip/minute_aggs_v1/2024/07/2024-07-05.csv.gz"

    written = sorted(o.key for o in store.list("us_stocks_sip/"))
    expected = sorted([day_aggs_key(d) for d in sessions] + [minute_aggs_key(d) for d in MINUTE_DAYS])
    assert written == expected == sorted(report.keys)
    for closed in ("2024-06-19", "2024-06-22", "2024-06-23", "2024-07-04", "2024-07-06"):
        assert not store.exists(day_aggs_key(closed))
        assert not store.exists(minute_aggs_key(closed))

    assert (report.day_files, report.minute_files) == (13, 3)
    assert [c[0] for c in calls] == list(range(1, 17)) and {c[1] for c in calls} == {16}
    assert report.day_rows == sum(read(store, day_aggs_key(d)).height for d in sessions)
    assert report.minute_rows == sum(read(store, minute_aggs_key(d)).height for d in MINUTE_DAYS)


def test_no_file_on_thanksgiving_and_winter_stamps_are_est(tmp_path):
    store = LocalStore(tmp_path)
    spec = PolygonSimSpec("2024-11-25", "2024-12-02", tickers=20, minute_days=0)
    report = simulate_polygon(store, spec)
    open_days = ("2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02")
    assert report.keys == [day_aggs_key(d) for d in open_days]
    assert report.minute_files == 0 and not list(store.list("us_stocks_sip/minute_aggs_v1/"))
    # 00:00 EST on 2024-11-29 is 05:00 UTC.
    stamps = read(store, day_aggs_key("2024-11-29"))["window_start"].unique().to_list()
    assert stamps == [int(dt.datetime(2024, 11, 29, 5, tzinfo=dt.UTC).timestamp()) * 1_000_000_000]


def test_files_are_vendor_gzip_csv(landing):
    store, _, _ = landing
    for key in (day_aggs_key(SPEC.end), minute_aggs_key(SPEC.end)):
        raw = store.read_bytes(key)
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip, no mtime
        text = gzip.decompress(raw).decode("ascii")
        assert text.split("\n", 1)[0] == "ticker,volume,open,close,high,low,window_start,transactions"
        assert "\r" not in text and '"' not in text and text.endswith("\n")
        first_row = text.split("\n")[1].split(",")
        assert len(first_row) == len(HEADER) and re.fullmatch(r"\d+", first_row[6])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = PolygonSimSpec("2024-03-04", "2024-03-08", tickers=30, minute_days=1, seed=11)
    a, b, c = (LocalStore(tmp_path / name) for name in "abc")
    keys = simulate_polygon(a, spec).keys
    assert simulate_polygon(b, spec).keys == keys
    simulate_polygon(c, PolygonSimSpec("2024-03-04", "2024-03-08", tickers=30, minute_days=1, seed=12))
    for key in keys:
        assert a.read_bytes(key) == b.read_bytes(key)
        assert a.read_bytes(key) != c.read_bytes(key)
    assert polygon_universe(spec).equals(polygon_universe(spec))


def test_sessions_keep_their_bars_when_the_range_grows(tmp_path):
    """A session's draws depend on (seed, date), not on how far the range reaches."""
    short, long = LocalStore(tmp_path / "short"), LocalStore(tmp_path / "long")
    simulate_polygon(short, PolygonSimSpec(SPEC.start, "2024-06-28", tickers=SPEC.tickers, minute_days=0))
    simulate_polygon(long, PolygonSimSpec(SPEC.start, SPEC.end, tickers=SPEC.tickers, minute_days=0))
    key = day_aggs_key("2024-06-24")
    a, b = read(short, key), read(long, key)
    both = a.join(b, on="ticker", suffix="_long")
    assert "SPY" in set(both["ticker"]) and both.height > 0.8 * a.height
    for col in HEADER[1:]:
        assert (both[col] == both[f"{col}_long"]).all(), col


def test_day_bars_are_stamped_at_new_york_midnight(day_bars):
    stamps = day_bars.group_by("date").agg(pl.col("window_start").unique())
    for day, values in stamps.iter_rows():
        assert values == [calendar.ny_midnight_ns(day)]
    # 00:00 EDT on 2024-07-05 is 04:00 UTC.
    edt_midnight = 1_720_152_000 * 1_000_000_000
    assert day_bars.filter(pl.col("date") == dt.date(2024, 7, 5))["window_start"][0] == edt_midnight


@pytest.mark.parametrize("day", MINUTE_DAYS)
def test_minute_rows_within_extended_hours_unique_and_sorted(landing, day):
    store, _, _ = landing
    m = read(store, minute_aggs_key(day))
    offset = m["window_start"] - calendar.ny_midnight_ns(day)
    assert (offset % NS_PER_MINUTE == 0).all()
    minute = offset // NS_PER_MINUTE
    assert minute.min() >= calendar.PRE_OPEN_MINUTE
    # The early close (13:00) ends post-market at 17:00; other sessions at 20:00.
    last = 17 * 60 if day == dt.date(2024, 7, 3) else calendar.POST_CLOSE_MINUTE
    assert minute.max() < last
    assert m.select(pl.struct("ticker", "window_start").is_duplicated().any()).item() is False
    assert m.equals(m.sort("ticker", "window_start"))
    # Pre- and post-market trade, and a liquid name is dense in regular hours.
    rth_close = 13 * 60 if day == dt.date(2024, 7, 3) else calendar.RTH_CLOSE_MINUTE
    assert (minute < calendar.RTH_OPEN_MINUTE).any() and (minute >= rth_close).any()
    in_rth = (minute >= calendar.RTH_OPEN_MINUTE) & (minute < rth_close)
    assert m.filter((pl.col("ticker") == "SPY") & in_rth).height == rth_close - calendar.RTH_OPEN_MINUTE
    # Illiquid names skip minutes: some ticker has far fewer rows than there are minutes.
    assert m.group_by("ticker").len()["len"].min() < 100


def _check_bars(bars: pl.DataFrame) -> None:
    assert bars.height > 0
    assert (bars["low"] > 0).all()
    assert (bars["low"] <= bars["open"]).all() and (bars["low"] <= bars["close"]).all()
    assert (bars["high"] >= bars["open"]).all() and (bars["high"] >= bars["close"]).all()
    assert (bars["transactions"] >= 1).all() and (bars["transactions"] <= bars["volume"]).all()
    for col in ("open", "close", "high", "low"):
        x = bars[col]
        decimals = pl.when(x >= 1).then(100).otherwise(10_000)
        scaled = bars.select(x * decimals).to_series()
        assert ((scaled - scaled.round()).abs() < 1e-6).all(), col


def test_ohlc_consistent_and_rounded_like_the_vendor(landing, day_bars):
    store, _, _ = landing
    _check_bars(day_bars)
    for day in MINUTE_DAYS:
        _check_bars(read(store, minute_aggs_key(day)))
    assert day_bars["close"].min() < 1.0 and day_bars["close"].max() > 100.0


@pytest.mark.parametrize("day", MINUTE_DAYS)
def test_day_bar_is_the_aggregate_of_its_minutes(landing, day):
    store, _, _ = landing
    m = read(store, minute_aggs_key(day))
    agg = m.group_by("ticker", maintain_order=True).agg(
        pl.col("volume").sum(),
        pl.col("open").first(),
        pl.col("close").last(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("transactions").sum(),
    )
    d = read(store, day_aggs_key(day))
    assert d["ticker"].to_list() == agg["ticker"].to_list()
    for col in ("volume", "open", "close", "high", "low", "transactions"):
        assert (d[col] == agg[col]).all(), col


def test_minute_day_function_reproduces_the_written_file(landing):
    store, _, _ = landing
    frame = simulate_minute_day(SPEC, MINUTE_DAYS[0])
    assert frame.columns == list(HEADER)
    assert encode_polygon_csv_gz(frame) == store.read_bytes(minute_aggs_key(MINUTE_DAYS[0]))
    # Any session of the range can be asked for, not only the written ones.
    assert simulate_minute_day(SPEC, "2024-06-20").height > 0
    with pytest.raises(ValueError):
        simulate_minute_day(SPEC, "2024-07-04")


def test_universe_has_every_kind_in_polygon_spelling(universe):
    u = universe
    assert set(u["kind"]) == set(KINDS)
    assert u["ticker"].is_unique().all()
    assert u.filter(pl.col("kind") == "common").height == SPEC.tickers
    assert u["tradable"].to_list() == [k in ("common", "etf") for k in u["kind"]]
    listed = set(u.filter(pl.col("tradable"))["ticker"])
    by_kind = {k: set(u.filter(pl.col("kind") == k)["ticker"]) for k in KINDS}

    def has(kind: str, pattern: str, root_len: int | None = None) -> None:
        found = [t for t in by_kind[kind] if re.fullmatch(pattern, t)]
        assert found, (kind, pattern)
        for t in found:
            root = re.match(r"[A-Z]+?(?=(W|U|R|\.WS|\.U|\.RT|p[A-Z])$)", t).group(0)
            assert root in listed, t
            if root_len:
                assert len(root) == root_len, t

    has("warrant", r"[A-Z]{4}W", 4)
    has("warrant", r"[A-Z]{3}W", 3)
    has("warrant", r"[A-Z]+\.WS")
    has("unit", r"[A-Z]{4}U", 4)
    has("unit", r"[A-Z]+\.U")
    has("right", r"[A-Z]{4}R", 4)
    has("right", r"[A-Z]+\.RT")
    has("preferred", r"[A-Z]+pA")
    has("preferred", r"[A-Z]+pB")
    assert by_kind["test"] == {"ZVZZT", "ZWZZT", "ZXZZT", "NTEST"}
    assert {"SPY", "QQQ"} <= by_kind["etf"] and len(by_kind["etf"]) >= 4

    commons = by_kind["common"]
    lookalikes = {t for t in commons if re.fullmatch(r"[A-Z]{3}[WUR]", t)}
    assert {"SNOW", "PLTR"} <= lookalikes
    assert all(t[:3] not in set(u["ticker"]) for t in lookalikes)
    assert {"BRK.A", "BF.B"} <= commons and "BRK" not in listed and "BF" not in listed
    plain = commons - {t for t in commons if "." in t}
    assert all(re.fullmatch(r"[A-Z]{1,5}", t) for t in plain)
    derivative_kinds = u.filter(pl.col("root").is_not_null())["kind"]
    assert derivative_kinds.is_in(["warrant", "unit", "right", "preferred"]).all()


def test_derivatives_trade_only_alongside_their_listed_root(universe, day_bars):
    roots = universe.filter(pl.col("root").is_not_null())
    present = day_bars.group_by("date").agg(pl.col("ticker"))
    for _, tickers in present.iter_rows():
        names = set(tickers)
        for sym, root in roots.select("ticker", "root").iter_rows():
            if sym in names:
                assert root in names, (sym, root)
    non_tradable = set(universe.filter(~pl.col("tradable"))["ticker"])
    assert non_tradable <= set(day_bars["ticker"])


def test_listings_and_delistings_happen_on_their_days(universe, day_bars):
    sessions = SPEC.sessions
    days_of = dict(day_bars.group_by("ticker").agg(pl.col("date").sort()).iter_rows())
    late = universe.filter(pl.col("list_date") > SPEC.start)
    gone = universe.filter(pl.col("delist_date").is_not_null())
    assert late.height >= 1 and gone.height >= 1
    for ticker, first, last in universe.select("ticker", "list_date", "delist_date").iter_rows():
        expected = [d for d in sessions if d >= first and (last is None or d <= last)]
        assert days_of.get(ticker, []) == expected, ticker
    assert (late["list_date"] <= SPEC.end).all() and (gone["delist_date"] < SPEC.end).all()


def test_one_of_the_most_traded_names_delists_late_in_the_range():
    spec = PolygonSimSpec(dt.date(2025, 1, 2), dt.date(2025, 12, 31), tickers=500, minute_days=0, seed=7)
    u = polygon_universe(spec).filter(pl.col("kind") == "common").with_columns((pl.col("ref_price") * pl.col("typical_volume")).alias("dv"))
    top = u.sort("dv", descending=True).head(4)
    gone = top.filter(pl.col("delist_date").is_not_null())
    assert gone.height >= 1  # a liquid universe has a member that stops trading
    sessions = spec.sessions
    assert all(0.55 * len(sessions) <= sessions.index(d) <= 0.86 * len(sessions) for d in gone["delist_date"])


def test_spy_every_day_with_its_price_and_volume(landing, day_bars):
    store, _, _ = landing
    spy = day_bars.filter(pl.col("ticker") == "SPY")
    assert spy["date"].to_list() == SPEC.sessions
    assert spy["close"].is_between(400, 540).all()
    assert (spy["volume"] > 10_000_000).all()
    for day in MINUTE_DAYS:
        assert "SPY" in set(read(store, minute_aggs_key(day))["ticker"])


def test_cross_section_is_realistic(day_bars, universe):
    commons = day_bars.join(universe.select("ticker", "kind"), on="ticker").filter(pl.col("kind") == "common")
    for _, closes in commons.group_by("date").agg(pl.col("close")).iter_rows():
        closes = pl.Series(closes)
        assert closes.is_between(1.0, 9.99).mean() >= 0.25
    per_name = commons.group_by("ticker").agg(pl.col("close").mean(), pl.col("volume").mean())
    cheap = per_name.filter(pl.col("close").is_between(1.0, 9.99))
    heavy = (cheap["volume"] > 750_000).sum()
    assert 0 < heavy < cheap.height  # some cheap names are liquid, many are not
    assert commons["close"].min() < 1.0 and commons["close"].max() > 100.0


def test_encoder_writes_vendor_column_order_and_shortest_floats():
    df = pl.DataFrame(
        {
            "window_start": [1_720_152_000_000_000_000],
            "ticker": ["BRK.A"],
            "transactions": [3],
            "low": [142.5],
            "high": [143.0],
            "close": [0.0512],
            "open": [142.99],
            "volume": [100],
        }
    )
    text = gzip.decompress(encode_polygon_csv_gz(df)).decode()
    assert text == (
        "ticker,volume,open,close,high,low,window_start,transactions\n"
        "BRK.A,100,142.99,0.0512,143,142.5,1720152000000000000,3\n"
    )
    assert encode_polygon_csv_gz(df) == encode_polygon_csv_gz(df.clone())
    # Anything but the vendor's columns is written as given, for crafting bad files.
    bad = gzip.decompress(encode_polygon_csv_gz(df.select("ticker", "volume"))).decode()
    assert bad == "ticker,volume\nBRK.A,100\n"


def test_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        PolygonSimSpec("2024-07-05", "2024-07-01")
    with pytest.raises(ValueError):
        PolygonSimSpec("2024-07-01", "2024-07-05", tickers=5)
