"""Landing sensor tick with 1,000 new flat files on S3 (moto on loopback).

Target: a tick under a second for 1,000 new files. Baseline in the same run: listing the same
objects from S3 alone (the floor any sensor pays). Also prints the quiet tick (nothing new), the
tick after one new file, and the cursor's size.

    .venv/bin/python benchmarks/bench_landing_sensor.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QUANT_START_DATE", "2020-01-02")
os.environ.setdefault("QUANT_END_DATE", "2024-12-31")
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(var, None)
home = tempfile.mkdtemp(prefix="bench-sensor-home-")
Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
os.environ["DAGSTER_HOME"] = home

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from dagster import DagsterInstance, build_sensor_context  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from quant_assets.definitions import defs  # noqa: E402
from quant_assets.defs.market.automation import polygon_landing_sensor  # noqa: E402
from quant_assets.defs.resources import LandingZone  # noqa: E402
from quant_assets.lib import calendar as cal  # noqa: E402
from quant_assets.lib.sources import polygon  # noqa: E402

N_DAYS = 500
REPEATS = 5


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="vendor")
    days = cal.trading_days("2021-01-04", "2024-12-31")[:N_DAYS]
    for d in days:
        for key in (polygon.day_aggs_key(d), polygon.minute_aggs_key(d)):
            client.put_object(Bucket="vendor", Key=f"polygon/{key}", Body=f"{key}".encode())
    landing = LandingZone(url="s3://vendor/polygon", s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"))
    store = landing.store()

    def listing() -> float:
        t0 = time.perf_counter()
        n = len(list(store.list(polygon.DAY_PREFIX + "/"))) + len(list(store.list(polygon.MINUTE_PREFIX + "/")))
        assert n == 2 * N_DAYS
        return time.perf_counter() - t0

    instance = DagsterInstance.get()

    def tick(cursor):
        with build_sensor_context(instance=instance, cursor=cursor, resources={"landing": landing}, definitions=defs) as ctx:
            t0 = time.perf_counter()
            result = polygon_landing_sensor(ctx)
            return time.perf_counter() - t0, result

    tick(None)  # warm imports and the calendar
    floors, firsts, quiets = [], [], []
    for _ in range(REPEATS):
        floors.append(listing())
        seconds, first = tick(None)
        firsts.append(seconds)
        quiets.append(tick(first.cursor)[0])
    assert len(first.run_requests) == 2 * N_DAYS
    extra = cal.trading_days(days[-1], "2024-12-31")[1]
    client.put_object(Bucket="vendor", Key=f"polygon/{polygon.day_aggs_key(extra)}", Body=b"x")
    one_new, _ = tick(first.cursor)
    floor, best = min(floors), min(firsts)
    print(f"files listed                       {2 * N_DAYS}")
    print(f"listing alone (floor)              {floor:.3f} s")
    print(f"first tick, {2 * N_DAYS} new files          {best:.3f} s  (median {statistics.median(firsts):.3f} s)  "
          f"= {best / floor:.2f}x the listing; target < 1 s: {'met' if best < 1.0 else 'NOT met'}")
    print(f"quiet tick (nothing new)           {min(quiets):.3f} s  = {min(quiets) / floor:.2f}x the listing")
    print(f"tick after one new file            {one_new:.3f} s")
    print(f"cursor after the first tick        {len(first.cursor)} bytes")
    server.stop()


if __name__ == "__main__":
    main()
