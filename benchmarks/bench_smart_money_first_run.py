"""First run of the smart-money sources against a rate-limited fake FMP: how many HTTP calls, and
how close to the allowed rate they go.

    .venv/bin/python benchmarks/bench_smart_money_first_run.py [--symbols 25] [--calls-per-minute 300]
                                                              [--latency 0.05] [--concurrency 4]

The fake vendor is the simulated FMP on a real loopback HTTP server that answers every request
after ``--latency`` seconds and enforces ``--calls-per-minute`` itself (a request beyond it gets
HTTP 429 and FMP's "Limit Reach" message). The client is the one ``smart_money/raw_*`` use, with
the asset's defaults (300 calls/minute, 4 in flight) and an empty response cache; it fetches every
source of ``--symbols`` symbols over the default study window (36 monthly samples, 2022-2024).

Figures (from the issue):

* HTTP calls = symbols x requests per symbol, exactly -- one request per (symbol, data type), the
  13F data type one per quarter as FMP's stable API serves it -- never one per sample date.
  Baseline in the same run: the calls the old generator would make without its cache (one per
  sample date and data type), and with it (symbols x 5 data types).
* Throughput >= 90% of the allowed rate: served calls / seconds from the first request to the last
  answer, against calls_per_minute / 60.

The default size (25 symbols, ~525 calls) takes about two minutes at 300 calls/minute; the rate
is what is measured, so a larger universe only takes longer. A rerun on the same cache is timed
too: it must make no call at all. The script always exits 0: it reports, it does not gate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from quant_assets.lib.http import PoliteClient, ResponseCache
from quant_assets.lib.smart_money import raw as rw
from quant_assets.lib.smart_money.universe import FetchWindow, Schedule, select_universe
from quant_assets.lib.sources import fmp
from quant_assets.simulate.fmp import FmpSimServer, SimulatedFmp

OLD_DATA_TYPES = 5  # insider, institutional, congressional, hedge fund, ETF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=25)
    ap.add_argument("--calls-per-minute", type=float, default=300)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    schedule = Schedule()
    window = FetchWindow.for_schedule(schedule)
    symbols = select_universe("top500")[: args.symbols]
    per_symbol = (len(fmp.DATA_TYPES) - 1) + len(window.quarters)
    sim = SimulatedFmp()
    # Histories are generated ahead so that the server's answer time is the latency alone.
    for s in symbols:
        sim.world(s)

    with tempfile.TemporaryDirectory() as tmp, FmpSimServer(sim, latency_s=args.latency, calls_per_minute=args.calls_per_minute) as server:
        cache = ResponseCache(Path(tmp), "fmp")
        http = PoliteClient(
            server.url,
            calls_per_minute=args.calls_per_minute,
            max_concurrency=args.concurrency,
            secret_params=fmp.SECRET_PARAMS,
            throttled=fmp.is_limit_message,
        )
        client = fmp.FmpClient(http, cache, max_workers=args.concurrency)
        print(
            f"first run: {len(symbols)} symbols x {per_symbol} requests ({len(fmp.DATA_TYPES) - 1} dated data types + "
            f"{len(window.quarters)} 13F quarters) against a fake FMP at {args.calls_per_minute:g} calls/minute, "
            f"{args.latency * 1000:.0f} ms latency ...",
            flush=True,
        )
        t0 = time.perf_counter()
        tables, _ = rw.fetch_raw_many(client, symbols, window)
        elapsed = time.perf_counter() - t0
        served, refused = server.served, server.refused
        times = server.request_times
        span = (times[-1] - times[0]) if len(times) > 1 else elapsed
        retries = http.stats.retries

        t1 = time.perf_counter()
        again = fmp.FmpClient(PoliteClient(server.url, calls_per_minute=args.calls_per_minute), cache)
        rw.fetch_raw_many(again, symbols, window)
        rerun_s = time.perf_counter() - t1
        rerun_calls = server.served - served
        http.close()

    expected = len(symbols) * per_symbol
    allowed = args.calls_per_minute / 60.0
    # Rate over the span the limiter governs: the first answer to the last, one call per interval;
    # "steady" leaves out the few calls the client's token bucket lets through at once at the start.
    throughput = (served - 1) / span if span > 0 else float("nan")
    steady = (served - 1 - http.limiter.capacity) / span if span > 0 else float("nan")
    rows = sum(f.height for f in tables.values())
    samples = len(schedule.sample_dates())
    print()
    print(f"HTTP calls, first run        {served:>10,}   expected symbols x requests = {expected:,} "
          f"({'exact' if served == expected else 'MISMATCH'}); refused by the server: {refused}; client retries: {retries}")
    print(f"  baseline, no cache         {len(symbols) * samples * OLD_DATA_TYPES:>10,}   (one call per sample date and data type: "
          f"{len(symbols)} x {samples} x {OLD_DATA_TYPES}); ours is {len(symbols) * samples * OLD_DATA_TYPES / served:.1f}x fewer")
    print(f"  old tool with its cache    {len(symbols) * OLD_DATA_TYPES:>10,}   (symbols x 5 data types; FMP's stable API serves "
          f"13F one quarter per request: {len(window.quarters)} of our {per_symbol} requests per symbol)")
    print(f"throughput                   {throughput:>10.2f} calls/s over {span:.1f} s; allowed {allowed:.2f}/s -> "
          f"{throughput / allowed:.1%} of the allowed rate; {steady / allowed:.1%} without the initial burst of "
          f"{http.limiter.capacity:g} (target >= 90%: {'met' if steady >= 0.9 * allowed else 'NOT met'})")
    print(f"wall time, first run         {elapsed:>10.1f} s for {rows:,} raw rows")
    print(f"rerun on the same cache      {rerun_calls:>10,} HTTP calls, {rerun_s:.2f} s "
          f"({'zero calls: met' if rerun_calls == 0 else 'NOT zero'})")
    print(f"for 500 symbols              {500 * per_symbol:>10,} calls at this rate: {500 * per_symbol / allowed / 3600:.1f} h "
          f"(vs {500 * samples * OLD_DATA_TYPES:,} without a cache)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
