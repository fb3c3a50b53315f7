"""``research/macd_day_features`` for one full-universe minute day (5,000 tickers, ~2.3M bars).

    .venv/bin/python benchmarks/bench_research_macd_day.py [--tickers 5000] [--repeat 3] [--day 2024-06-03]

The day's minute bars come from the Polygon simulator (``simulate_minute_day``), typed as
``market/minute_aggs`` stores them, and are cached under ``benchmarks/.data/``. Three
implementations of the same table (modes all and rth x 1- and 5-minute closes: last / min / max
histogram and zero-cross counts) are timed, interleaved run by run; best of ``--repeat``:

* ours   -- ``quant_assets.lib.research.macd.macd_day_features`` (one numba pass per ticker-day);
* talib  -- a per-ticker loop: numpy slicing and 5-minute closes, ``talib.MACD`` per series,
            numpy summaries; checked to agree with ours;
* pandas -- ``groupby().ewm()`` EMAs (adjust=False), 5-minute closes by ``groupby + Grouper``,
            summaries by ``groupby().agg``.

Targets (from the issue): ours faster than the TA-Lib loop, >= 20x faster than pandas.
The script always exits 0: it is a report, not a gate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import talib

from _timing import interleaved_best  # benchmarks/_timing.py (the script's folder is on sys.path)

from quant_assets.lib import market
from quant_assets.lib.research import macd
from quant_assets.simulate import PolygonSimSpec, simulate_minute_day
from quant_assets.simulate import polygon as sim

DATA_DIR = Path(__file__).resolve().parent / ".data"
HISTORY_DAYS = 35


def minute_day(day: dt.date, tickers: int, seed: int) -> pl.DataFrame:
    sim_hash = hashlib.sha256(Path(sim.__file__).read_bytes()).hexdigest()[:10]
    path = DATA_DIR / f"minute_aggs_{day}_{tickers}_{seed}_{sim_hash}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        spec = PolygonSimSpec(start=day - dt.timedelta(days=HISTORY_DAYS), end=day, tickers=tickers, minute_days=1, seed=seed)
        t = time.perf_counter()
        frame = market.to_minute_aggs(simulate_minute_day(spec, day), day)
        tmp = path.with_suffix(".tmp")
        frame.write_parquet(tmp)
        tmp.rename(path)
        print(f"simulated {frame.height:,} minute bars in {time.perf_counter() - t:.1f}s -> {path}")
    return pl.read_parquet(path)


def run_ours(df: pl.DataFrame) -> pl.DataFrame:
    return macd.macd_day_features(df)


def _summary(closes: np.ndarray) -> tuple:
    if closes.size < macd.MACD_MIN_BARS:
        return (np.nan,) * 5
    _, _, h = talib.MACD(closes, 12, 26, 9)
    h = h[33:]
    s = np.sign(h)
    nz = s[s != 0]
    up = int(np.count_nonzero((nz[1:] == 1) & (nz[:-1] == -1)))
    down = int(np.count_nonzero((nz[1:] == -1) & (nz[:-1] == 1)))
    return float(h[-1]), float(h.min()), float(h.max()), float(up), float(down)


def run_talib(df: pl.DataFrame) -> pl.DataFrame:
    t = df["ticker"].to_numpy()
    c = df["close"].to_numpy()
    bucket = df["window_start"].to_physical().to_numpy() // (300 * 10**9)
    rth = (df["session"] == "rth").to_numpy()
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], len(t)]
    rows = []
    for s, e in zip(starts, ends):
        for mode in ("all", "rth"):
            sel = slice(s, e) if mode == "all" else np.flatnonzero(rth[s:e]) + s
            closes, b = c[sel], bucket[sel]
            last5 = np.flatnonzero(np.r_[b[1:] != b[:-1], True]) if b.size else np.array([], dtype=int)
            rows.append((t[s], mode, closes.size, last5.size, *_summary(closes), *_summary(closes[last5])))
    names = ["ticker", "mode", "bars__1m", "bars__5m"] + [f"{n}__{tf}" for tf in ("1m", "5m") for n in macd._SUMMARY]
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def run_pandas(df: pl.DataFrame) -> pd.DataFrame:
    p = df.select("ticker", "window_start", "session", "close").to_pandas()
    frames = {"all": p, "rth": p[p["session"] == "rth"]}
    out = []
    for mode, f in frames.items():
        series = {"1m": f[["ticker", "window_start", "close"]]}
        series["5m"] = (
            f.groupby(["ticker", pd.Grouper(key="window_start", freq="5min")])["close"].last().dropna().reset_index()
        )
        for tf, s in series.items():
            g = s.groupby("ticker", sort=False)["close"]
            fast = g.ewm(span=12, adjust=False).mean().reset_index(level=0, drop=True)
            slow = g.ewm(span=26, adjust=False).mean().reset_index(level=0, drop=True)
            line = fast - slow
            signal = line.groupby(s["ticker"]).ewm(span=9, adjust=False).mean().reset_index(level=0, drop=True)
            frame = pd.DataFrame({"ticker": s["ticker"], "hist": line - signal})
            frame["n"] = frame.groupby("ticker").cumcount()
            frame = frame[frame["n"] >= macd.MACD_MIN_BARS - 1]
            sign = np.sign(frame["hist"]).replace(0, np.nan)
            prev = sign.groupby(frame["ticker"]).ffill().groupby(frame["ticker"]).shift(1)
            frame["up"] = (sign == 1) & (prev == -1)
            frame["down"] = (sign == -1) & (prev == 1)
            agg = frame.groupby("ticker").agg(
                hist_last=("hist", "last"), hist_min=("hist", "min"), hist_max=("hist", "max"), up=("up", "sum"), down=("down", "sum")
            )
            agg["mode"], agg["tf"] = mode, tf
            out.append(agg)
    return pd.concat(out)


def agree(ours: pl.DataFrame, ref: pl.DataFrame) -> tuple[float, int]:
    """(largest relative difference of the histogram figures, rows whose counts differ)."""
    j = ours.with_columns(pl.col("mode").cast(pl.String)).join(ref, on=["ticker", "mode"], suffix="_r")
    worst, bad = 0.0, 0
    for tf in ("1m", "5m"):
        for n in ("hist_last", "hist_min", "hist_max"):
            a = j[f"{n}__{tf}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            b = j[f"{n}__{tf}_r"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            assert np.array_equal(np.isnan(a), np.isnan(b))
            ok = ~np.isnan(b) & (b != 0)
            if ok.any():
                worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))))
        for n in ("hist_zero_cross_up_count", "hist_zero_cross_down_count"):
            a = j[f"{n}__{tf}"].cast(pl.Float64).fill_nan(None).fill_null(-1).to_numpy()
            b = j[f"{n}__{tf}_r"].cast(pl.Float64).fill_nan(None).fill_null(-1).to_numpy()
            bad += int(np.count_nonzero(a != b))
    return worst, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickers", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--day", default="2024-06-03")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    df = minute_day(dt.date.fromisoformat(args.day), args.tickers, args.seed)
    print(f"input: {df.height:,} minute bars, {df['ticker'].n_unique():,} tickers on {args.day}")
    t0 = time.perf_counter()
    ours = run_ours(df)
    print(f"warm-up (numba cache load/compile): {time.perf_counter() - t0:.2f}s")
    worst, bad = agree(ours, run_talib(df))
    print(f"ours vs TA-Lib loop: largest relative difference {worst:.2e}; cross counts differing in {bad} row(s)")
    best = interleaved_best({"ours": run_ours, "talib": run_talib, "pandas": run_pandas}, df, args.repeat)
    vs_talib = best["talib"] / best["ours"]
    vs_pandas = best["pandas"] / best["ours"]
    print()
    print(f"MACD day features, {df.height:,} minute bars (best of {args.repeat}):")
    print(f"  ours (numba)          {best['ours']:8.3f}s")
    print(f"  TA-Lib loop           {best['talib']:8.3f}s   -> ours {vs_talib:5.1f}x faster  (target > 1x: {'met' if vs_talib > 1 else 'NOT met'})")
    print(f"  pandas groupby().ewm  {best['pandas']:8.3f}s   -> ours {vs_pandas:5.1f}x faster  (target >= 20x: {'met' if vs_pandas >= 20 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
