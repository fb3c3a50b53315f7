"""The market graph run by Dagster on a simulated landing zone, checked against the raw files."""

import datetime as dt
import gzip
import os

import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.sources import polygon

JOB = "market_trading_day_job"
DAY_ASSETS = ["market/day_aggs", "market/daily_bars"]


def raw_day(landing, day) -> pl.DataFrame:
    return pl.read_csv(landing / polygon.day_aggs_key(day))


def tradable(df: pl.DataFrame) -> pl.DataFrame:
    reasons = market.classify_tickers(df["ticker"])
    return df.join(reasons, on="ticker").filter(pl.col("reason").is_null()).drop("reason")


def test_range_run_materializes_every_weekday_holidays_empty(local_graph, landing_copy):
    res = local_graph.run(JOB, "2024-01-02", "2024-01-19", assets=DAY_ASSETS)
    assert res.success
    for day in cal.weekdays("2024-01-02", "2024-01-19"):
        got = local_graph.read("market/day_aggs", day.isoformat())
        if day == dt.date(2024, 1, 15):  # Martin Luther King Jr. Day: no file, no data, no failure
            assert got.height == 0 and not (landing_copy / polygon.day_aggs_key(day)).exists()
            continue
        raw = raw_day(landing_copy, day)
        assert got.height == raw.height
        assert got.sort("ticker")["close"].to_list() == raw.sort("ticker")["close"].to_list()
        assert got["date"].unique().to_list() == [day]
    mats = local_graph.instance.get_materialized_partitions(pl_key("market/day_aggs"))
    assert len(mats) == len(cal.weekdays("2024-01-02", "2024-01-19"))


def failure_text(res) -> str:
    parts = []
    for ev in res.all_events:
        if ev.is_failure:
            parts.append(ev.message or "")
            err = getattr(ev.event_specific_data, "error", None)
            if err is not None:
                parts.append(err.message)
    return " ".join(parts)


def pl_key(name):
    from dagster import AssetKey

    return AssetKey(name.split("/"))


def test_daily_bars_returns_by_hand_across_runs_and_holiday(local_graph, landing_copy):
    assert local_graph.run(JOB, "2024-01-02", "2024-01-12", assets=DAY_ASSETS).success
    before = {
        d: os.stat(local_graph.lake.store().local_path(f"market/daily_bars/{d}.parquet")).st_mtime_ns
        for d in ("2024-01-02", "2024-01-10", "2024-01-12")
    }
    # One new day after a holiday weekend: its returns use Friday's close from the earlier run.
    assert local_graph.run(JOB, "2024-01-15", "2024-01-16", assets=DAY_ASSETS).success
    got = local_graph.read("market/daily_bars", "2024-01-16").sort("ticker")
    prev = tradable(raw_day(landing_copy, dt.date(2024, 1, 12))).select("ticker", pl.col("close").alias("pc"))
    today = tradable(raw_day(landing_copy, dt.date(2024, 1, 16)))
    expected = today.join(prev, on="ticker", how="left").sort("ticker")
    assert got["ticker"].to_list() == expected["ticker"].to_list()
    for g, e in zip(got.iter_rows(named=True), expected.iter_rows(named=True)):
        if e["pc"] is None:
            assert g["ret_1d"] is None
        else:
            assert g["prev_close"] == e["pc"]
            assert g["ret_1d"] == pytest.approx(e["close"] / e["pc"] - 1, rel=1e-12)
    assert got["ret_1d"].null_count() < got.height  # most names traded both days
    # The history was not rewritten.
    for d, mtime in before.items():
        assert os.stat(local_graph.lake.store().local_path(f"market/daily_bars/{d}.parquet")).st_mtime_ns == mtime
    # Non-tradables are gone and counted.
    raw = raw_day(landing_copy, dt.date(2024, 1, 16))
    removed = raw.height - tradable(raw).height
    assert removed > 0 and got.height == raw.height - removed


def test_rerun_of_a_range_is_idempotent(local_graph):
    assert local_graph.run(JOB, "2024-01-02", "2024-02-09", assets=DAY_ASSETS).success
    first = {d: local_graph.read("market/daily_bars", d) for d in ("2024-02-05", "2024-02-09")}
    assert local_graph.run(JOB, "2024-02-05", "2024-02-09", assets=DAY_ASSETS).success
    for d, df in first.items():
        assert local_graph.read("market/daily_bars", d).equals(df)


def test_daily_bars_refuses_missing_previous_session(local_graph):
    assert local_graph.run(JOB, "2024-01-02", "2024-01-05", assets=DAY_ASSETS).success
    res = local_graph.run(JOB, "2024-01-09", "2024-01-09", assets=["market/daily_bars"], raise_on_error=False)
    assert not res.success
    assert "2024-01-08" in failure_text(res)


def test_truncated_file_fails_the_run_and_writes_nothing(local_graph, landing_copy):
    bad_day = dt.date(2024, 1, 4)
    path = landing_copy / polygon.day_aggs_key(bad_day)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    res = local_graph.run(JOB, "2024-01-02", "2024-01-05", assets=DAY_ASSETS, raise_on_error=False)
    assert not res.success
    text = failure_text(res)
    assert "2024-01-04.csv.gz" in text and "corrupt_gzip" in text
    # No partition of the run was written, not even the good days before the bad file.
    market_dir = local_graph.lake.store().local_path("market")
    assert not market_dir.exists() or not list(market_dir.rglob("*.parquet"))
    assert local_graph.instance.get_materialized_partitions(pl_key("market/day_aggs")) == set()


def test_bad_rows_are_quarantined_with_counts(local_graph, landing_copy):
    day = dt.date(2024, 1, 10)
    path = landing_copy / polygon.day_aggs_key(day)
    text = gzip.decompress(path.read_bytes()).decode().splitlines()
    ns = cal.ny_midnight_ns(day)
    text += [f"QBADA,100,NaN,1.0,1.2,0.9,{ns},3", f"QBADB,100,1.0,1.0,0.8,0.9,{ns},3", text[1]]
    path.write_bytes(gzip.compress(("\n".join(text) + "\n").encode()))
    res = local_graph.run(JOB, "2024-01-10", "2024-01-10", assets=["market/day_aggs"])
    assert res.success
    mat = res.asset_materializations_for_node("market__day_aggs")[0]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["quarantined/non_finite_price"] == 1
    assert md["quarantined/high_below_low"] == 1
    assert md["quarantined/duplicate_row"] == 1
    assert md["rows_quarantined"] == 3
    q = local_graph.lake.read_frame("quarantine/market/day_aggs/2024-01-10.parquet")
    assert sorted(q["rule"].to_list()) == ["duplicate_row", "high_below_low", "non_finite_price"]
    assert local_graph.read("market/day_aggs", "2024-01-10").height == len(text) - 1 - 3


def test_weekly_bars_match_daily_by_hand(local_graph):
    assert local_graph.run(JOB, "2024-01-02", "2024-01-19", assets=DAY_ASSETS).success
    assert local_graph.run("market_weekly_job", "2024-01-08", "2024-01-15").success
    daily = pl.concat([local_graph.read("market/daily_bars", d.isoformat()) for d in cal.weekdays("2024-01-15", "2024-01-19")])
    weekly = local_graph.read("market/weekly_bars", "2024-01-15")
    t = daily.group_by("ticker").len().sort(["len", "ticker"], descending=True)["ticker"][0]
    d = daily.filter(pl.col("ticker") == t).sort("date")
    w = weekly.filter(pl.col("ticker") == t).to_dicts()[0]
    assert w["open"] == d["open"][0] and w["close"] == d["close"][-1]
    assert w["high"] == d["high"].max() and w["low"] == d["low"].min()
    assert w["volume"] == d["volume"].sum() and w["trading_days"] == d.height == 4  # Monday was a holiday
    assert w["week_ending"] == dt.date(2024, 1, 19)


def test_minute_assets_and_features_against_raw_minutes(local_graph, landing_copy):
    minute_days = sorted(p.name[:10] for p in (landing_copy / polygon.MINUTE_PREFIX).rglob("*.csv.gz"))
    assert len(minute_days) == 2
    assert local_graph.run(JOB, "2024-01-02", minute_days[-1], assets=DAY_ASSETS).success
    assert local_graph.run(JOB, minute_days[0], minute_days[-1], assets=["market/minute_aggs", "market/minute_features"]).success
    day = minute_days[-1]
    raw = pl.read_csv(landing_copy / polygon.minute_aggs_key(day))
    aggs = local_graph.read("market/minute_aggs", day)
    assert aggs.height == raw.height
    assert set(aggs["session"].cast(pl.String).unique()) == {"pre", "rth", "post"}
    feats = local_graph.read("market/minute_features", day)
    ref = tradable(raw).group_by("ticker").agg(pl.col("volume").sum().alias("v")).sort("ticker")
    assert feats.sort("ticker")["ticker"].to_list() == ref["ticker"].to_list()
    assert feats.sort("ticker")["volume_total"].to_list() == ref["v"].to_list()
    # Baseline volume = mean daily volume of the 20 sessions before the day (hand computation).
    sessions = cal.trading_days("2024-01-02", day)
    prev20 = sessions[-21:-1]
    daily = pl.concat([local_graph.read("market/daily_bars", d.isoformat()) for d in prev20])
    spy_base = daily.filter(pl.col("ticker") == "SPY")["volume"].mean()
    spy = feats.filter(pl.col("ticker") == "SPY").to_dicts()[0]
    assert spy["baseline_volume"] == pytest.approx(spy_base)
    assert spy["volume_spike_ratio"] == pytest.approx(spy["volume_total"] / spy_base)


def test_daily_filtered_defaults_and_point_in_time(local_graph):
    assert local_graph.run(JOB, "2024-01-02", "2024-04-30", assets=DAY_ASSETS + ["market/daily_filtered"]).success
    # Fewer than 60 sessions of history: nobody qualifies yet.
    assert local_graph.read("market/daily_filtered", "2024-03-01").height == 0
    late = local_graph.read("market/daily_filtered", "2024-04-30")
    assert late.height > 0
    assert late["close"].min() >= 1.0 and late["close"].max() <= 9.99
    assert late["avg_volume"].min() >= 750_000 and late["days_observed"].min() >= 60


def test_check_missing_flags_unmaterialized_stale_and_vanished_files(local_graph, landing_copy):
    assert local_graph.run(JOB, "2024-01-02", "2024-01-05", assets=DAY_ASSETS).success
    (landing_copy / polygon.day_aggs_key(dt.date(2024, 1, 3))).unlink()
    republished = landing_copy / polygon.day_aggs_key(dt.date(2024, 1, 4))
    republished.write_bytes(republished.read_bytes())  # new bytes while nothing watched
    res = local_graph.run("market_completeness_job")
    evals = {e.asset_key.to_user_string(): e for e in res.get_asset_check_evaluations() if e.check_name == "check_missing"}
    day = evals["market/day_aggs"]
    assert not day.passed and day.severity.value == "ERROR"
    md = {k: v.value for k, v in day.metadata.items()}
    assert md["file_disappeared"] == ["2024-01-03"]
    assert md["stale"] == ["2024-01-04"]
    files = len(list((landing_copy / polygon.DAY_PREFIX).rglob("*.csv.gz")))
    assert md["unmaterialized_count"] == files - 3
    # The new bytes were observed: the file's partition now carries its data version.
    from dagster import AssetRecordsFilter

    obs = local_graph.instance.fetch_observations(
        AssetRecordsFilter(asset_key=pl_key("market/polygon_day_files"), asset_partitions=["2024-01-04"]), limit=1
    ).records
    assert obs and obs[0].asset_observation.tags["dagster/data_version"] != ""
    # Dagster itself now sees the partition built from the old bytes as stale, and the one
    # built from the unchanged file as fresh.
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    resolver = CachingStaleStatusResolver(
        local_graph.instance, local_graph.defs.resolve_asset_graph(), LoadingContextForTest(local_graph.instance)
    )
    assert resolver.get_status(pl_key("market/day_aggs"), "2024-01-04") == StaleStatus.STALE
    assert resolver.get_status(pl_key("market/day_aggs"), "2024-01-05") == StaleStatus.FRESH
    # Rebuilt from the current bytes, the partition is no longer stale; what read the old one is,
    # until it is rebuilt in turn: that day's and the next session's daily bars.
    assert local_graph.run(JOB, "2024-01-04", "2024-01-04", assets=["market/day_aggs"]).success

    def status(asset, pk):
        return CachingStaleStatusResolver(
            local_graph.instance, local_graph.defs.resolve_asset_graph(), LoadingContextForTest(local_graph.instance)
        ).get_status(pl_key(asset), pk)

    assert status("market/day_aggs", "2024-01-04") == StaleStatus.FRESH
    assert status("market/daily_bars", "2024-01-04") == StaleStatus.STALE
    assert status("market/daily_bars", "2024-01-05") == StaleStatus.STALE
    assert status("market/daily_bars", "2024-01-02") == StaleStatus.FRESH
    assert local_graph.run(JOB, "2024-01-04", "2024-01-05", assets=["market/daily_bars"]).success
    assert status("market/daily_bars", "2024-01-05") == StaleStatus.FRESH
    again = {
        e.asset_key.to_user_string(): e
        for e in local_graph.run("market_completeness_job").get_asset_check_evaluations()
        if e.check_name == "check_missing"
    }
    assert {k: v.value for k, v in again["market/day_aggs"].metadata.items()}["stale"] == []


def test_warehouse_load_is_idempotent_duckdb(local_graph, tmp_path):
    assets = DAY_ASSETS + ["market/warehouse_daily_bars"]
    assert local_graph.run(JOB, "2024-01-02", "2024-01-12", assets=assets).success
    assert local_graph.run(JOB, "2024-01-08", "2024-01-12", assets=assets).success
    from quant_assets.lib.warehouse import Warehouse

    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    n = wh.query("SELECT count(*) AS n FROM market_daily_bars")["n"][0]
    lake_rows = sum(local_graph.read("market/daily_bars", d.isoformat()).height for d in cal.weekdays("2024-01-02", "2024-01-12"))
    assert n == lake_rows
    wh.close()


def test_freshness_check_names_the_overdue_partition(local_graph):
    def evaluate():
        res = local_graph.run("market_completeness_job")
        (ev,) = [
            e
            for e in res.get_asset_check_evaluations()
            if e.check_name == "partition_freshness" and e.asset_key.to_user_string() == "market/day_aggs"
        ]
        return ev

    # The last partition (QUANT_END_DATE in the tests) never arrived: overdue, and it says which.
    ev = evaluate()
    assert not ev.passed and "Partition 2024-04-30 is overdue" in ev.description
    assert local_graph.run(JOB, "2024-04-30", "2024-04-30", assets=["market/day_aggs"]).success
    assert evaluate().passed


def test_expected_partition_follows_the_deadline():
    import datetime as dt

    from quant_assets.defs.market.checks import expected_partition
    from quant_assets.defs.partitions import trading_days, trading_weeks
    from quant_assets.lib.calendar import NEW_YORK

    sat = dt.datetime(2024, 3, 2, 12, 0, tzinfo=NEW_YORK)
    assert expected_partition(trading_days, sat, weekly=False) == "2024-03-01"
    tue = dt.datetime(2024, 1, 16, 12, 0, tzinfo=NEW_YORK)
    assert expected_partition(trading_days, tue, weekly=False) == "2024-01-15"  # a holiday, built as no data
    mon = dt.datetime(2024, 3, 11, 14, 0, tzinfo=NEW_YORK)
    assert expected_partition(trading_weeks, mon, weekly=True) == "2024-03-04"
