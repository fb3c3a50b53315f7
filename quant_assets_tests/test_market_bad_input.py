"""Files that parse but carry nothing, values that cannot be real, and quarantine limits, run
through the real market jobs: a failed run names the file and the rule and keeps the old data."""

import datetime as dt
import gzip

import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon
from quant_assets_tests.test_market_assets import JOB, failure_text, pl_key

HEADER = "ticker,volume,open,close,high,low,window_start,transactions"
DAY = dt.date(2024, 1, 10)


def _rewrite(path, transform):
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(transform(lines)) + "\n").encode()))


def _lake_bytes(graph, asset, day):
    return graph.lake.store().read_bytes(f"{asset}/{day}.parquet")


@pytest.mark.parametrize(
    "kind,rule,transform",
    [
        ("day", "empty_file", lambda lines: lines[:1]),
        ("minute", "empty_file", lambda lines: lines[:1]),
        ("day", "too_few_rows", lambda lines: lines[: max(2, len(lines) // 10)]),
    ],
)
def test_a_file_that_carries_nothing_fails_and_keeps_the_old_partition(local_graph, landing_copy, kind, rule, transform):
    minute_days = sorted(p.name[:10] for p in (landing_copy / polygon.MINUTE_PREFIX).rglob("*.csv.gz"))
    day = DAY if kind == "day" else dt.date.fromisoformat(minute_days[-1])
    job, asset = (JOB, "market/day_aggs") if kind == "day" else ("market_minute_job", "market/minute_aggs")
    first = (day - dt.timedelta(days=7)).isoformat()
    if kind == "day":
        assert local_graph.run(JOB, first, day.isoformat(), assets=["market/day_aggs"]).success
    else:
        assert local_graph.run(JOB, "2024-01-02", day.isoformat(), assets=["market/day_aggs", "market/daily_bars"]).success
        assert local_graph.run(job, minute_days[0], day.isoformat(), assets=[asset]).success
    before = _lake_bytes(local_graph, asset, day)
    key = polygon.day_aggs_key(day) if kind == "day" else polygon.minute_aggs_key(day)
    _rewrite(landing_copy / key, transform)
    res = local_graph.run(job, day.isoformat(), day.isoformat(), assets=[asset], raise_on_error=False)
    assert not res.success
    text = failure_text(res)
    assert f"[{rule}]" in text and key in text
    assert _lake_bytes(local_graph, asset, day) == before


def test_empty_file_on_s3_fails_naming_the_object(s3_bucket, simulated_landing, tmp_path, dagster_instance):
    from dagster_aws.s3 import S3Resource

    from quant_assets_tests.fixtures import GraphRunner

    endpoint, bucket, client = s3_bucket
    graph = GraphRunner(
        landing_url=f"s3://{bucket}/vendor",
        lake_url=f"s3://{bucket}/lake",
        warehouse_url=f"duckdb:///{tmp_path / 'wh.duckdb'}",
        instance=dagster_instance,
        s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
    )
    for d in cal.trading_days("2024-01-02", "2024-01-05"):
        client.put_object(Bucket=bucket, Key=f"vendor/{polygon.day_aggs_key(d)}", Body=(simulated_landing / polygon.day_aggs_key(d)).read_bytes())
    assert graph.run(JOB, "2024-01-02", "2024-01-05", assets=["market/day_aggs"]).success
    before = client.get_object(Bucket=bucket, Key="lake/market/day_aggs/2024-01-05.parquet")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"vendor/{polygon.day_aggs_key('2024-01-05')}", Body=gzip.compress((HEADER + "\n").encode()))
    res = graph.run(JOB, "2024-01-05", "2024-01-05", assets=["market/day_aggs"], raise_on_error=False)
    assert not res.success
    assert f"s3://{bucket}/vendor/{polygon.day_aggs_key('2024-01-05')}" in failure_text(res) and "[empty_file]" in failure_text(res)
    assert client.get_object(Bucket=bucket, Key="lake/market/day_aggs/2024-01-05.parquet")["Body"].read() == before


def test_implausible_volume_is_quarantined_and_weekly_sums_stay_right(local_graph, landing_copy):
    ns = cal.ny_midnight_ns(DAY)
    _rewrite(landing_copy / polygon.day_aggs_key(DAY), lambda lines: lines + [f"ZZHUGE,5000000000000000000,5.0,5.0,5.0,5.0,{ns},10"])
    assert local_graph.run(JOB, "2024-01-02", "2024-01-12", assets=["market/day_aggs", "market/daily_bars"]).success
    mat = local_graph.instance.fetch_materializations(pl_key("market/day_aggs"), limit=20).records
    by_pk = {r.partition_key: r.asset_materialization.metadata for r in mat}
    assert by_pk["2024-01-10"]["quarantined/implausible_value"].value == 1
    assert "quarantined/implausible_value" not in by_pk["2024-01-09"]
    assert by_pk["2024-01-09"]["rows_quarantined"].value == 0
    assert local_graph.run("market_weekly_job", "2024-01-08", "2024-01-08").success
    weekly = local_graph.read("market/weekly_bars", "2024-01-08")
    assert weekly["volume"].min() >= 0 and "ZZHUGE" not in weekly["ticker"].to_list()


def test_quarantine_share_over_the_limit_blocks_downstream(local_graph, landing_copy):
    assert local_graph.run(JOB, "2024-01-02", "2024-01-09", assets=["market/day_aggs", "market/daily_bars"]).success
    # A quarter of the rows broken (negative volume): parses, but the file is suspect.
    def damage(lines):
        body = lines[1:]
        cut = len(body) // 4
        broken = [",".join([r.split(",")[0], "-1", *r.split(",")[2:]]) for r in body[:cut]]
        return [lines[0], *broken, *body[cut:]]

    _rewrite(landing_copy / polygon.day_aggs_key(DAY), damage)
    res = local_graph.run(JOB, "2024-01-10", "2024-01-10", assets=["market/day_aggs", "market/daily_bars"], raise_on_error=False)
    evals = {(e.asset_key.to_user_string(), e.check_name): e for e in res.get_asset_check_evaluations()}
    q = evals[("market/day_aggs", "quarantine_share")]
    assert not q.passed and q.blocking
    assert "2024-01-10.csv.gz" in q.description
    # daily_bars did not run on the suspect data.
    assert "2024-01-10" not in local_graph.instance.get_materialized_partitions(pl_key("market/daily_bars"))
    assert local_graph.lake.read_frame("quarantine/market/day_aggs/2024-01-10.parquet")["rule"].unique().to_list() == ["negative_volume"]


def test_malformed_row_is_quarantined_with_line_and_raw_text(local_graph, landing_copy):
    ns = cal.ny_midnight_ns(DAY)
    _rewrite(landing_copy / polygon.day_aggs_key(DAY), lambda lines: lines[:3] + [f"AB,C,100,5.0,5.0,5.0,5.0,{ns},3"] + lines[3:])
    assert local_graph.run(JOB, "2024-01-10", "2024-01-10", assets=["market/day_aggs"]).success
    q = local_graph.lake.read_frame("quarantine/market/day_aggs/2024-01-10.parquet")
    row = q.filter(pl.col("rule") == "malformed_row").row(0, named=True)
    assert row["line"] == 4 and row["raw"].startswith("AB,C,100")
