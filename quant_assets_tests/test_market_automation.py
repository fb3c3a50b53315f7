"""Landing-zone sensor (local folder and S3 on loopback), schedules, and the S3 lake."""

import datetime as dt
import json
import os
import time

import polars as pl
import pytest
from dagster import build_schedule_context, build_sensor_context

from quant_assets.defs.market.automation import (
    CURSOR_OVERLAP_S,
    market_after_publish_schedule,
    plan_landing_runs,
    polygon_landing_sensor,
)
from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon
from quant_assets.lib.storage import ObjectInfo

VALID = {d.isoformat() for d in cal.weekdays("2024-01-02", "2024-04-30")}


def obj(day, kind="day", t=1000.0, etag="e1"):
    key = polygon.day_aggs_key(day) if kind == "day" else polygon.minute_aggs_key(day)
    return ObjectInfo(key, 10, t, etag)


def partitions(requests):
    return [r.partition_key for r in requests]


def test_plan_new_files_then_nothing_twice():
    listing = [obj("2024-01-02", t=100.0), obj("2024-01-03", t=101.0), obj("2024-01-03", "minute", t=101.0)]
    reqs, cursor, _ = plan_landing_runs(listing, None, VALID)
    assert partitions(reqs) == ["2024-01-02", "2024-01-03"]
    sel = {r.partition_key: {k.to_user_string() for k in r.asset_selection} for r in reqs}
    assert "market/minute_aggs" not in sel["2024-01-02"] and "market/daily_bars" in sel["2024-01-02"]
    assert {"market/minute_aggs", "market/minute_features", "market/day_aggs"} <= sel["2024-01-03"]
    again, cursor2, _ = plan_landing_runs(listing, cursor, VALID)
    assert again == [] and json.loads(cursor2)["hw"] == 101.0


def test_plan_same_second_upload_after_cursor_is_not_missed():
    first = [obj("2024-01-02", t=500.0)]
    _, cursor, _ = plan_landing_runs(first, None, VALID)
    # Written in the same second as the high-water mark, listed only on the next tick.
    later = first + [obj("2024-01-04", t=500.0)]
    reqs, _, _ = plan_landing_runs(later, cursor, VALID)
    assert partitions(reqs) == ["2024-01-04"]


def test_plan_republished_file_with_new_etag_runs_again_with_new_run_key():
    listing = [obj("2024-01-02", t=500.0, etag="a")]
    reqs1, cursor, _ = plan_landing_runs(listing, None, VALID)
    reqs2, _, _ = plan_landing_runs([obj("2024-01-02", t=900.0, etag="b")], cursor, VALID)
    assert partitions(reqs2) == ["2024-01-02"]
    assert reqs1[0].run_key != reqs2[0].run_key


def test_plan_a_thousand_files_in_one_tick_each_day_once():
    valid = {d.isoformat() for d in cal.weekdays("2021-01-01", "2024-12-31")}
    days = sorted(valid)[:500]
    # 500 days x (day file + minute file), all stamped within the same two seconds.
    listing = [obj(d, kind, t=2000.0 + (i % 2), etag=f"{kind}{i}") for i, d in enumerate(days) for kind in ("day", "minute")]
    assert len(listing) == 1000
    reqs, cursor, _ = plan_landing_runs(listing, None, valid)
    assert partitions(reqs) == days
    assert all(len(r.asset_selection) == 6 for r in reqs)
    assert len({r.run_key for r in reqs}) == len(reqs)
    again, _, _ = plan_landing_runs(listing, cursor, valid)
    assert again == []


def test_plan_skips_files_outside_partitions_and_old_files_after_overlap():
    reqs, cursor, skipped = plan_landing_runs([obj("2023-12-29", t=10.0)], None, VALID)
    assert reqs == [] and skipped and "2023-12-29" in skipped[0]
    _, cursor, _ = plan_landing_runs([obj("2024-01-02", t=10_000.0)], None, VALID)
    stale = [obj("2024-01-02", t=10_000.0), obj("2024-01-05", t=10_000.0 - CURSOR_OVERLAP_S - 5)]
    reqs, _, _ = plan_landing_runs(stale, cursor, VALID)
    assert reqs == []  # older than the overlap window: already handled by an earlier tick


def test_plan_first_tick_skips_materialized_partitions():
    listing = [obj("2024-01-02"), obj("2024-01-03"), obj("2024-01-03", "minute")]
    reqs, _, _ = plan_landing_runs(listing, None, VALID, {"day": {"2024-01-02", "2024-01-03"}, "minute": set()})
    assert partitions(reqs) == ["2024-01-03"]
    assert {k.to_user_string() for k in reqs[0].asset_selection} == {"market/minute_aggs", "market/minute_features"}


def _evaluate(graph, cursor):
    with build_sensor_context(
        instance=graph.instance, cursor=cursor, resources={"landing": graph.landing}, definitions=graph.defs
    ) as ctx:
        result = polygon_landing_sensor(ctx)
    return result.run_requests or [], result.cursor


def test_sensor_on_local_folder(local_graph, landing_copy):
    reqs, cursor = _evaluate(local_graph, None)
    n_days = len(list((landing_copy / polygon.DAY_PREFIX).rglob("*.csv.gz")))
    assert len(reqs) == n_days
    assert _evaluate(local_graph, cursor)[0] == []
    path = landing_copy / polygon.day_aggs_key(dt.date(2024, 2, 6))
    path.write_bytes(path.read_bytes())  # re-published: new mtime
    os.utime(path, (time.time() + 5, time.time() + 5))
    reqs, _ = _evaluate(local_graph, cursor)
    assert partitions(reqs) == ["2024-02-06"]


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


def test_sensor_on_s3_same_second_and_republish(s3_graph, simulated_landing):
    graph, client, bucket = s3_graph
    for d in ("2024-01-02", "2024-01-03", "2024-01-04"):
        _upload(client, bucket, simulated_landing, d)
    reqs, cursor = _evaluate(graph, None)
    assert partitions(reqs) == ["2024-01-02", "2024-01-03", "2024-01-04"]
    # Immediately (same LastModified second), another drop: seen on the next tick, alone.
    _upload(client, bucket, simulated_landing, "2024-01-05")
    reqs, cursor = _evaluate(graph, cursor)
    assert partitions(reqs) == ["2024-01-05"]
    assert _evaluate(graph, cursor)[0] == []
    # The vendor re-publishes a day with different content: a new ETag triggers exactly that day.
    _upload(client, bucket, simulated_landing, "2024-01-03", body=(simulated_landing / polygon.day_aggs_key("2024-01-04")).read_bytes())
    reqs, cursor = _evaluate(graph, cursor)
    assert partitions(reqs) == ["2024-01-03"]


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
