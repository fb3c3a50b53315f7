"""Landing-zone sensor (planning, local folder and S3 on loopback), schedules, and the S3 lake."""

import datetime as dt
import os
import shutil
import time

import polars as pl
import pytest
from dagster import AssetKey, build_schedule_context, build_sensor_context

from quant_assets.defs.market import landing as lz
from quant_assets.defs.market.automation import market_after_publish_schedule
from quant_assets.lib import calendar as cal
from quant_assets.lib.landing import LandingFile, decode_cursor, plan
from quant_assets.lib.sources import polygon

DAY_ASSETS = ["market/day_aggs", "market/daily_bars"]


def lf(day, kind="day", etag="e1"):
    d = cal.as_date(day)
    key = polygon.day_aggs_key(d) if kind == "day" else polygon.minute_aggs_key(d)
    return LandingFile(key, kind, d, etag)


class FakeInstance:
    """What the instance would answer: the ETag each partition was built from and last observed."""

    def __init__(self):
        self.materialized = {}
        self.observed = {}
        self.lookups = 0

    def lookup(self, files):
        self.lookups += 1
        keys = {(f.kind, f.partition) for f in files}
        return (
            {k: v for k, v in self.materialized.items() if k in keys},
            {k: v for k, v in self.observed.items() if k in keys},
        )


def run_plan(files, cursor, inst, exists=lambda d: d <= dt.date(2024, 4, 30)):
    return plan(files, cursor, partition_exists=exists, never_a_partition=lz.never_a_partition, lookup=inst.lookup)


def test_new_files_run_once_and_a_quiet_tick_asks_nothing():
    inst = FakeInstance()
    files = [lf("2024-01-02"), lf("2024-01-03"), lf("2024-01-03", "minute")]
    p = run_plan(files, None, inst)
    assert sorted((f.partition, f.kind) for f in p.new) == [("2024-01-02", "day"), ("2024-01-03", "day"), ("2024-01-03", "minute")]
    assert len(p.observe) == 3 and p.republished == []
    again = run_plan(files, p.cursor, inst)
    assert again.new == [] and again.examined == 0 and inst.lookups == 1


def test_rewritten_bytes_are_a_republish_whatever_the_timestamps():
    inst = FakeInstance()
    files = [lf("2024-01-02", etag="a"), lf("2024-01-03", etag="b")]
    p = run_plan(files, None, inst)
    inst.materialized = {("day", "2024-01-02"): "a", ("day", "2024-01-03"): "b"}
    inst.observed = dict(inst.materialized)
    p2 = run_plan([lf("2024-01-02", etag="a2"), lf("2024-01-03", etag="b")], p.cursor, inst)
    assert [f.partition for f in p2.republished] == ["2024-01-02"] and p2.new == []
    assert [f.etag for f in p2.observe] == ["a2"]


def test_a_publication_the_instance_already_built_is_not_rerun_even_without_cursor():
    inst = FakeInstance()
    inst.materialized = {("day", "2024-01-02"): "a", ("day", "2024-01-03"): "old"}
    p = run_plan([lf("2024-01-02", etag="a"), lf("2024-01-03", etag="new")], None, inst)
    assert p.new == [] and [f.partition for f in p.republished] == ["2024-01-03"]


def test_a_file_waits_for_its_partition_then_runs():
    inst = FakeInstance()
    files = [lf("2024-04-30"), lf("2024-05-01")]
    p = run_plan(files, None, inst)
    assert [f.partition for f in p.new] == ["2024-04-30"] and [f.partition for f in p.waiting] == ["2024-05-01"]
    # Still waiting on the next tick: looked at again, not forgotten, not run.
    p2 = run_plan(files, p.cursor, inst)
    assert p2.new == [] and [f.partition for f in p2.waiting] == ["2024-05-01"]
    inst.materialized[("day", "2024-04-30")] = "e1"
    p3 = run_plan(files, p2.cursor, inst, exists=lambda d: d <= dt.date(2024, 5, 31))
    assert [f.partition for f in p3.new] == ["2024-05-01"]


def test_weekend_and_pre_history_files_are_ignored_for_good():
    inst = FakeInstance()
    p = run_plan([lf("2024-01-06"), lf("2023-12-29")], None, inst)
    assert p.new == [] and p.waiting == [] and len(p.ignored) == 2
    assert run_plan([lf("2024-01-06"), lf("2023-12-29")], p.cursor, inst).examined == 0


def test_cursor_stays_small_for_ten_years_of_files():
    inst = FakeInstance()
    many = [lf(d, kind, etag=f"{kind}{i}") for i, d in enumerate(cal.weekdays("2015-01-01", "2024-12-31")) for kind in ("day", "minute")]
    assert len(many) > 5000
    p = plan(many, None, partition_exists=lambda d: True, never_a_partition=lambda d: None, lookup=inst.lookup)
    assert len(p.new) == len(many)
    assert len(p.cursor) < 6000
    # An unreadable or older cursor means: look at everything once.
    assert decode_cursor("not json") == {} and decode_cursor('{"hw": 1, "seen": {}}') == {}


def _tick(graph, cursor):
    """One tick as the daemon evaluates it (run and backfill requests validated against the
    sensor's selection)."""
    with build_sensor_context(
        instance=graph.instance, cursor=cursor, resources={"landing": graph.landing}, definitions=graph.defs
    ) as ctx:
        sensor = graph.defs.resolve_sensor_def("polygon_landing_sensor")
        return sensor.evaluate_tick(ctx)


LAUNCHED: set = set()


def _runs(result, launched=None):
    """The runs the daemon would launch: like Dagster, a run key already launched is skipped."""
    launched = LAUNCHED if launched is None else launched
    out = []
    jobs = {"market/day_aggs": "market_trading_day_job", "market/minute_aggs": "market_minute_job"}
    for r in result.run_requests or []:
        if r.asset_graph_subset is None and r.run_key not in launched:
            launched.add(r.run_key)
            (job,) = {jobs[k.to_user_string()] for k in r.asset_selection if k.to_user_string() in jobs}
            out.append((r.partition_key, job))
    return sorted(out)


def _backfill(result):
    subsets = [r.asset_graph_subset for r in (result.run_requests or []) if r.asset_graph_subset is not None]
    if not subsets:
        return None
    assert len(subsets) == 1
    return {(k.asset_key.to_user_string(), k.partition_key) for k in subsets[0].iterate_asset_partitions()}


def _move_to_landing(src, dst, day, kind="day"):
    key = polygon.day_aggs_key(day) if kind == "day" else polygon.minute_aggs_key(day)
    (dst / key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / key, dst / key)
    return dst / key


def test_sensor_local_timestamps_never_decide(local_graph, landing_copy, tmp_path):
    """A file stamped a year ahead, a late copy keeping an old stamp, same-size rewrites with the
    stamp put back: each publication runs exactly once."""
    vendor = landing_copy
    empty = tmp_path / "watched"
    empty.mkdir()
    from quant_assets.defs.resources import LandingZone

    local_graph.landing = LandingZone(url=str(empty), s3=local_graph.landing.s3)
    LAUNCHED.clear()
    future = _move_to_landing(vendor, empty, "2024-01-03")
    os.utime(future, (time.time() + 365 * 86400, time.time() + 365 * 86400))
    r1 = _tick(local_graph, None)
    assert _runs(r1) == [("2024-01-03", "market_trading_day_job")]
    later = _move_to_landing(vendor, empty, "2024-01-04")
    r2 = _tick(local_graph, r1.cursor)
    assert _runs(r2) == [("2024-01-04", "market_trading_day_job")]
    old = _move_to_landing(vendor, empty, "2024-01-02")
    os.utime(old, (1e9, 1e9))  # copied late, keeps a 2001 timestamp
    r3 = _tick(local_graph, r2.cursor)
    assert _runs(r3) == [("2024-01-02", "market_trading_day_job")]
    r4 = _tick(local_graph, r3.cursor)
    assert _runs(r4) == [] and r4.run_requests in (None, [])
    # New bytes, same size, same timestamp: still a new publication.
    st = later.stat()
    data = bytearray(later.read_bytes())
    later.write_bytes(bytes(data))
    os.utime(later, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert later.stat().st_size == st.st_size and later.stat().st_mtime_ns == st.st_mtime_ns
    r5 = _tick(local_graph, r4.cursor)
    assert _runs(r5) == [("2024-01-04", "market_trading_day_job")]
    assert len(r5.cursor) < 200


def test_sensor_republish_reaches_every_mapped_partition(local_graph, landing_copy):
    assert local_graph.run("market_trading_day_job", "2024-01-02", "2024-01-19", assets=DAY_ASSETS + ["market/daily_filtered"]).success
    assert local_graph.run("market_weekly_job", "2024-01-08", "2024-01-15").success
    # First tick after the history was built by hand: nothing was re-published, so nothing runs,
    # except the files whose partitions were never built.
    LAUNCHED.clear()
    r1 = _tick(local_graph, None)
    built = set(cal.weekdays("2024-01-02", "2024-01-19"))
    expected_new = sorted(
        {(p.name[:10], "market_trading_day_job") for p in (landing_copy / polygon.DAY_PREFIX).rglob("*.csv.gz") if cal.as_date(p.name[:10]) not in built}
        | {(p.name[:10], "market_minute_job") for p in (landing_copy / polygon.MINUTE_PREFIX).rglob("*.csv.gz")}
    )
    assert _runs(r1) == expected_new and _backfill(r1) is None
    # The vendor re-publishes 2024-01-10 (the sensor was off at the time: no cursor knows of it).
    path = landing_copy / polygon.day_aggs_key(dt.date(2024, 1, 10))
    path.write_bytes(path.read_bytes())
    r2 = _tick(local_graph, r1.cursor)
    assert _runs(r2) == []
    subset = _backfill(r2)
    assert ("market/day_aggs", "2024-01-10") in subset
    # daily_bars reads day_aggs five weekdays back: the sessions after it are reached too.
    assert {("market/daily_bars", d) for d in ("2024-01-10", "2024-01-11", "2024-01-12", "2024-01-16")} <= subset
    assert ("market/daily_bars", "2024-01-09") not in subset
    assert ("market/weekly_bars", "2024-01-08") in subset and ("market/weekly_bars", "2024-01-15") in subset
    assert ("market/daily_filtered", "2024-01-19") in subset
    assert ("market/daily_filtered", "2024-01-09") not in subset
    # Only partitions that were built: no new work is invented downstream.
    assert not any(k[0] == "market/warehouse_daily_bars" for k in subset)
    # The January files after it that were never built join the rebuild as roots (they read it).
    assert not any(k[1] > "2024-01-19" for k in subset if k[0] not in ("market/weekly_bars", "market/day_aggs"))
    # The re-publish was observed: the source partition carries the new data version.
    obs = [e for e in r2.asset_events if e.partition == "2024-01-10"]
    assert obs and obs[0].asset_key == AssetKey(["market", "polygon_day_files"])
    assert _backfill(_tick(local_graph, r2.cursor)) is None
    # Another file of the same month is re-published before that backfill ran: it gets its own
    # rebuild, and the first one is not requested a second time.
    other = landing_copy / polygon.day_aggs_key(dt.date(2024, 1, 17))
    other.write_bytes(other.read_bytes())
    r3 = _tick(local_graph, r2.cursor)
    again = _backfill(r3)
    assert ("market/day_aggs", "2024-01-17") in again and ("market/day_aggs", "2024-01-10") not in again


@pytest.fixture
def s3_graph(s3_bucket, simulated_landing, tmp_path, dagster_instance):
    from dagster_aws.s3 import S3Resource

    from quant_assets_tests.fixtures import GraphRunner

    endpoint, bucket, client = s3_bucket
    s3 = S3Resource(endpoint_url=endpoint, region_name="us-east-1")
    graph = GraphRunner(
        landing_url=f"s3://{bucket}/vendor/polygon",
        lake_url=f"s3://{bucket}/lake",
        warehouse_url=f"duckdb:///{tmp_path / 'wh.duckdb'}",
        instance=dagster_instance,
        s3=s3,
    )
    return graph, client, bucket


def _upload(client, bucket, landing, day, kind="day", body=None):
    key = polygon.day_aggs_key(day) if kind == "day" else polygon.minute_aggs_key(day)
    data = body if body is not None else (landing / key).read_bytes()
    client.put_object(Bucket=bucket, Key=f"vendor/polygon/{key}", Body=data)


def test_sensor_on_s3_runs_each_publication_once(s3_graph, simulated_landing):
    graph, client, bucket = s3_graph
    launched = set()
    for d in ("2024-01-02", "2024-01-03"):
        _upload(client, bucket, simulated_landing, d)
    r1 = _tick(graph, None)
    assert _runs(r1, launched) == [("2024-01-02", "market_trading_day_job"), ("2024-01-03", "market_trading_day_job")]
    # Same bytes uploaded again: the same publication (same ETag), nothing to do.
    _upload(client, bucket, simulated_landing, "2024-01-03")
    r2 = _tick(graph, r1.cursor)
    assert _runs(r2, launched) == []
    # A new day in the same second, then different bytes for a day that never ran yet.
    _upload(client, bucket, simulated_landing, "2024-01-04")
    _upload(client, bucket, simulated_landing, "2024-01-02", body=(simulated_landing / polygon.day_aggs_key("2024-01-05")).read_bytes())
    r3 = _tick(graph, r2.cursor)
    assert _runs(r3, launched) == [("2024-01-02", "market_trading_day_job"), ("2024-01-04", "market_trading_day_job")]
    assert _runs(_tick(graph, r3.cursor), launched) == []
    assert len(r3.cursor) < 200


def test_s3_landing_and_s3_lake_end_to_end(s3_graph, simulated_landing):
    graph, client, bucket = s3_graph
    days = cal.trading_days("2024-01-02", "2024-01-09")
    for d in days:
        _upload(client, bucket, simulated_landing, d)
    res = graph.run("market_trading_day_job", "2024-01-02", "2024-01-09", assets=["market/day_aggs", "market/daily_bars"])
    assert res.success
    listed = client.list_objects_v2(Bucket=bucket, Prefix="lake/market/daily_bars/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[-1] for o in listed) == [f"{d}.parquet" for d in cal.weekdays("2024-01-02", "2024-01-09")]
    got = graph.read("market/day_aggs", "2024-01-08")
    raw = pl.read_csv(simulated_landing / polygon.day_aggs_key("2024-01-08"))
    assert got.height == raw.height and got["volume"].sum() == raw["volume"].sum()
    # A corrupt re-publish on S3 fails naming the object.
    _upload(client, bucket, simulated_landing, "2024-01-09", body=b"\x1f\x8b\x08\x00garbage")
    res = graph.run("market_trading_day_job", "2024-01-09", "2024-01-09", assets=["market/day_aggs"], raise_on_error=False)
    assert not res.success
    err = " ".join(ev.event_specific_data.error.message for ev in res.all_events if ev.event_type_value == "STEP_FAILURE")
    assert f"s3://{bucket}/vendor/polygon/us_stocks_sip/day_aggs_v1/2024/01/2024-01-09.csv.gz" in err


def test_after_publish_schedule_targets_previous_weekday():
    ny = cal.NEW_YORK
    sat = dt.datetime(2024, 3, 2, 11, 0, tzinfo=ny)
    req = market_after_publish_schedule(build_schedule_context(scheduled_execution_time=sat))
    assert req.partition_key == "2024-03-01"
    tue = dt.datetime(2024, 1, 16, 11, 0, tzinfo=ny)  # after a Monday holiday the holiday itself is materialized (no data)
    assert market_after_publish_schedule(build_schedule_context(scheduled_execution_time=tue)).partition_key == "2024-01-15"
    late = dt.datetime(2024, 6, 4, 11, 0, tzinfo=ny)  # beyond QUANT_END_DATE
    assert not hasattr(market_after_publish_schedule(build_schedule_context(scheduled_execution_time=late)), "partition_key")


def test_house_schedules_are_stopped_in_their_timezone_and_select_whole_stages():
    from quant_assets.defs.pump import bars, ingest
    from quant_assets.defs.pump.jobs import DAILY_ASSETS, pump_daily_schedule
    from quant_assets.defs.research.automation import research_analysis_schedule, research_range_labels_schedule

    for s in (research_range_labels_schedule, research_analysis_schedule, market_after_publish_schedule):
        assert s.execution_timezone == cal.NY_TZ_NAME and s.default_status.value == "STOPPED"
    assert pump_daily_schedule.execution_timezone == "UTC"
    # Range labels need the next session: a Tuesday tick after the MLK holiday labels Friday.
    tue = dt.datetime(2024, 1, 16, 12, 30, tzinfo=cal.NEW_YORK)
    assert research_range_labels_schedule(build_schedule_context(scheduled_execution_time=tue)).partition_key == "2024-01-12"
    sat = dt.datetime(2024, 3, 2, 14, 0, tzinfo=cal.NEW_YORK)
    assert research_analysis_schedule(build_schedule_context(scheduled_execution_time=sat)).run_key == sat.isoformat()
    from quant_assets.defs.market.automation import market_completeness_schedule

    assert market_completeness_schedule.name == "market_completeness_schedule" and market_completeness_schedule.default_status.value == "STOPPED"
    assert market_completeness_schedule(build_schedule_context(scheduled_execution_time=sat)).run_key == sat.isoformat()
    # A stage's assets, never its checks.
    assert sorted(a.key.to_user_string() for a in DAILY_ASSETS) == sorted(
        a.key.to_user_string() for a in (ingest.signals, ingest.agg_trades, bars.delta_bars_1s, bars.minute_candles)
    )


def test_postgres_warehouse_load(local_graph, postgres_database):
    from quant_assets.defs.resources import WarehouseResource
    from quant_assets.lib.warehouse import Warehouse
    from quant_assets_tests.fixtures import GraphRunner

    graph = GraphRunner(
        landing_url=local_graph.landing.url,
        lake_url=local_graph.lake.url,
        warehouse_url=postgres_database,
        instance=local_graph.instance,
    )
    assets = ["market/day_aggs", "market/daily_bars", "market/warehouse_daily_bars"]
    assert graph.run("market_trading_day_job", "2024-01-02", "2024-01-10", assets=assets).success
    assert graph.run("market_trading_day_job", "2024-01-02", "2024-01-10", assets=assets).success
    wh = Warehouse(postgres_database)
    got = wh.query("SELECT date, count(*) AS n, sum(volume) AS v FROM market_daily_bars GROUP BY date ORDER BY date")
    lake = pl.concat([graph.read("market/daily_bars", d.isoformat()) for d in cal.weekdays("2024-01-02", "2024-01-10")])
    exp = lake.group_by("date").agg(pl.len().alias("n"), pl.col("volume").sum().alias("v")).sort("date")
    assert got["n"].to_list() == exp["n"].to_list() and [int(v) for v in got["v"]] == exp["v"].to_list()
    ret = wh.query(
        "SELECT ret_1d FROM market_daily_bars WHERE ticker = %s AND date = %s", ("SPY", dt.date(2024, 1, 10))
    )["ret_1d"][0]
    spy = lake.filter((pl.col("ticker") == "SPY") & (pl.col("date") == dt.date(2024, 1, 10)))["ret_1d"][0]
    assert ret == pytest.approx(spy)
    assert WarehouseResource  # resource class is importable for users wiring their own
    wh.close()


def test_backfills_run_at_most_a_year_of_sessions_per_run():
    """A run's memory is bounded by a year of the universe: the day-file assets take at most
    DAYS_PER_RUN sessions per run, the weekly bars WEEKS_PER_RUN weeks; the demo (and the
    scaling benchmark) launch a range in the slices a backfill would."""
    from quant_assets.defs.market import ingest, tables, warehouse
    from quant_assets.defs.market.keys import DAYS_PER_RUN
    from quant_assets.demo.launch import backfill_specs

    sizes = {name: a.backfill_policy.max_partitions_per_run for name, a in (
        ("day_aggs", ingest.day_aggs), ("daily_bars", tables.daily_bars), ("daily_filtered", tables.daily_filtered),
        ("warehouse_daily_bars", warehouse.warehouse_daily_bars), ("weekly_bars", tables.weekly_bars),
    )}
    assert sizes == {"day_aggs": 250, "daily_bars": 250, "daily_filtered": 250, "warehouse_daily_bars": 250, "weekly_bars": 52}

    keys = [f"k{i:03d}" for i in range(492)]
    specs = backfill_specs("trading-day assets", "market_trading_day_job", keys, DAYS_PER_RUN)
    assert [(s.label, s.first, s.last) for s in specs] == [
        ("trading-day assets 1/2", "k000", "k249"),
        ("trading-day assets 2/2", "k250", "k491"),
    ]
    assert [s.partition_tags() for s in backfill_specs("w", "j", keys[:3], None)] == [
        {"dagster/asset_partition_range_start": "k000", "dagster/asset_partition_range_end": "k002"}
    ]
    assert backfill_specs("w", "j", [], 5) == []
