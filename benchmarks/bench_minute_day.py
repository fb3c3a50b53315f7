"""One full-universe minute day through ``market/minute_aggs`` and ``market/minute_features``.

    .venv/bin/python benchmarks/bench_minute_day.py [--tickers 5000] [--repeat 3] [--day 2024-06-03]

Three things are timed on the same simulated vendor file, interleaved run by run so that a noisy
shared machine slows all of them alike (the ratios are the result; absolute seconds are not):

* floor  -- ``gzip -dc FILE > /dev/null``: nothing that reads the file can beat decompressing it;
* ours   -- the two assets' work with the library functions they call (vendor bytes -> validated,
            session-tagged rows -> zstd Parquet -> read back -> tradable tickers -> features ->
            volume spike -> zstd Parquet);
* pandas -- the same work written in idiomatic, vectorised pandas (no row loops), checked to give
            the same feature values, so "N x faster" compares like with like.

Targets (from the issue): ours >= 10x the pandas baseline, and ours <= 2x the gzip floor.
The script always exits 0: it is a report, not a gate.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from dagster_aws.s3 import S3Resource

from quant_assets.defs.resources import Lake
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.sources import polygon
from quant_assets.simulate import polygon as sim

# minute_features filters with ``is_in(<Series>)``, which polars 2 deprecates (same call is
# silent inside the library, where Python hides DeprecationWarnings); keep the call, drop the noise.
warnings.filterwarnings("ignore", message="`is_in` with a collection", category=DeprecationWarning)

DATA_DIR = Path(__file__).resolve().parent / ".data"
# The baseline the asset computes unless told (the vol_spike_lookback knob's default).
SPIKE_LOOKBACK = market.SpikeBaseline.vol_spike_lookback
# Calendar days of simulated history before the minute day; prices are compounded from the start.
HISTORY_DAYS = 35

STAGES = (
    "parse csv (gzip)",
    "validate",
    "session tag",
    "write minute parquet",
    "read minute parquet",
    "classify + filter",
    "day features",
    "volume spike",
    "write features parquet",
)


# ---------------------------------------------------------------------------------------------
# Input


def vendor_file(day: dt.date, tickers: int, seed: int) -> Path:
    """The simulated minute file, generated once per parameters (it takes longer than a run).

    The simulator's source hash is part of the key so an edit to the simulator cannot leave a
    stale file behind that no longer matches what the simulator writes.
    """
    sim_hash = hashlib.sha256(Path(sim.__file__).read_bytes()).hexdigest()[:10]
    path = DATA_DIR / f"minute_{day.isoformat()}_t{tickers}_s{seed}_h{HISTORY_DAYS}_{sim_hash}.csv.gz"
    if not path.exists():
        start = day - dt.timedelta(days=HISTORY_DAYS)
        spec = sim.PolygonSimSpec(start=start, end=day, tickers=tickers, minute_days=1, seed=seed)
        print(f"generating {path.name} with the simulator (once) ...", flush=True)
        data = sim.encode_polygon_csv_gz(sim.simulate_minute_day(spec, day))
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def synthetic_daily(tickers: list[str], day: dt.date, seed: int) -> pl.DataFrame:
    """Daily volumes of the ``SPIKE_LOOKBACK`` sessions before ``day`` (what ``market/daily_bars``
    supplies to ``add_volume_spike``). ~5 % of ticker-days are missing so that both the ratio and
    the "null unless traded every session" path are exercised."""
    sessions = cal.trading_days(day - dt.timedelta(days=3 * SPIKE_LOOKBACK), cal.previous_trading_day(day))
    sessions = sessions[-SPIKE_LOOKBACK:]
    rng = np.random.default_rng(seed)
    n_t, n_d = len(tickers), len(sessions)
    frame = pl.DataFrame(
        {
            "ticker": np.repeat(np.array(tickers, dtype=object), n_d),
            "date": np.tile(np.array(sessions, dtype="datetime64[D]"), n_t),
            "volume": np.round(np.exp(rng.normal(12.0, 2.0, n_t * n_d))).astype(np.int64),
        },
        schema={"ticker": pl.String, "date": pl.Date, "volume": pl.Int64},
    )
    return frame.filter(pl.Series(rng.random(frame.height) >= 0.05))


# ---------------------------------------------------------------------------------------------
# Timing


class Laps:
    """Stage timings of one run; a stage is the time since the previous lap."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t0 = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.times[stage] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return self._last - self._t0


def time_floor(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["gzip", "-dc", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Ours: what the two assets do, with the functions they call


def run_ours(path: Path, day: dt.date, daily: pl.DataFrame, lake: Lake) -> tuple[Laps, pl.DataFrame]:
    laps = Laps()
    source = str(path)
    data = path.read_bytes()  # the landing store's read_bytes
    # load_aggs is exactly these two calls (default options); split to see which half costs.
    df, extra, malformed = polygon.read_aggs_csv(data, source)
    laps.lap("parse csv (gzip)")
    parsed = polygon.validate_aggs(df, source, day, ignored_columns=extra, malformed=malformed)
    laps.lap("validate")
    minute = market.to_minute_aggs(parsed.rows, day)
    minute["ticker"].n_unique()  # minute_aggs reports it in its metadata: a full pass over 2M strings
    laps.lap("session tag")
    if parsed.rejected.height:  # the quarantine table, as _ingest writes it
        rejected = parsed.rejected.with_columns(pl.lit(day).alias("date"))
        lake.write_frame(f"quarantine/market/minute_aggs/{day}.parquet", rejected)
    lake.write_frame(f"market/minute_aggs/{day}.parquet", minute)  # the IO manager's write
    laps.lap("write minute parquet")

    minute = lake.read_frame(f"market/minute_aggs/{day}.parquet")  # the IO manager's load_input
    laps.lap("read minute parquet")
    reasons = market.classify_tickers(minute["ticker"].unique())
    keep = reasons.filter(pl.col("reason").is_null())["ticker"]
    minute = minute.filter(pl.col("ticker").is_in(keep))
    laps.lap("classify + filter")
    feats = market.minute_day_features(minute)
    laps.lap("day features")
    feats = market.add_volume_spike(feats, daily, SPIKE_LOOKBACK)
    laps.lap("volume spike")
    lake.write_frame(f"market/minute_features/{day}.parquet", feats)
    laps.lap("write features parquet")
    return laps, feats


# ---------------------------------------------------------------------------------------------
# Pandas baseline: the same work, written the way a careful pandas user would


PD_DTYPES = {
    "ticker": "str",
    "volume": "int64",
    "open": "float64",
    "close": "float64",
    "high": "float64",
    "low": "float64",
    "window_start": "int64",
    "transactions": "int64",
}
PD_NULLABLE_INTS = {c: "Int64" for c, t in PD_DTYPES.items() if t == "int64"}
NS_PER_DAY = 86_400 * cal.NS_PER_SECOND
NS_PER_MINUTE = 60 * cal.NS_PER_SECOND


def pd_read(data: bytes, engine: str) -> pd.DataFrame:
    def read(dtypes):
        return pd.read_csv(io.BytesIO(data), compression="gzip", dtype=dtypes, engine=engine)

    try:
        df = read(PD_DTYPES)
    except ValueError:
        # numpy int64 cannot hold a missing value: re-read with nullable ints so the null rule
        # can see it (the fast path stays numpy, as it would in real pandas code).
        df = read({**PD_DTYPES, **PD_NULLABLE_INTS})
    found = list(df.columns)
    if set(found) != set(polygon.COLUMNS):
        raise ValueError(f"columns {found}, expected {list(polygon.COLUMNS)}")
    return df[list(polygon.COLUMNS)]


def _flags(s) -> np.ndarray:
    """A rule's mask as numpy bools; a missing comparison counts as broken, like fill_null(True)."""
    if isinstance(s, (pd.Series, pd.DataFrame)):
        return s.to_numpy(dtype=bool, na_value=True)
    return np.asarray(s, dtype=bool)


def pd_validate(df: pd.DataFrame, day: dt.date):
    """The quarantine rules of ``polygon.validate_aggs``; returns (clean, rejected, counts).

    Pandas reads the text ``NaN`` as missing, so such a price lands in ``null_value`` rather than
    ``non_finite_price``; every other rule matches row for row (checked in ``check_validation``).
    """
    n = len(df)
    df = df.assign(line=np.arange(2, n + 2))  # 1-based file line; the header is line 1
    lo, hi = cal.ny_midnight_ns(day), cal.ny_midnight_ns(day + dt.timedelta(days=1))

    def neighbours(frame):
        t, ws = frame["ticker"], frame["window_start"]
        return t, ws, t.shift(1), ws.shift(1)

    t, ws, t_prev, ws_prev = neighbours(df)
    in_order = _flags((t > t_prev) | ((t == t_prev) & (ws >= ws_prev)))
    if n > 1 and not in_order[1:].all():
        df = df.sort_values(["ticker", "window_start", "line"], kind="stable", ignore_index=True)
        t, ws, t_prev, ws_prev = neighbours(df)

    prices = df[list(polygon.PRICE_COLUMNS)]
    o, h, l, c = df["open"], df["high"], df["low"], df["close"]
    bounds = polygon.DEFAULT_BOUNDS
    rules = {
        "malformed_row": np.zeros(len(df), dtype=bool),  # a pandas read fails on such a line
        "null_value": _flags(df[list(polygon.COLUMNS)].isna().any(axis=1)),
        "invalid_ticker": ~_flags(df["ticker"].astype("string").str.match(polygon.TICKER_PATTERN)),
        "non_finite_price": ~np.isfinite(prices.to_numpy(dtype=float, na_value=np.nan)).all(axis=1),
        "non_positive_price": _flags((prices <= 0).any(axis=1)),
        "implausible_value": _flags(
            (prices > bounds.max_price).any(axis=1)
            | (df["volume"] > bounds.max_volume)
            | (df["transactions"] > bounds.max_transactions)
        ),
        "high_below_low": _flags(h < l),
        "open_close_outside_range": _flags((o < l) | (c < l) | (o > h) | (c > h)),
        "negative_volume": _flags((df["volume"] < 0) | (df["transactions"] < 0)),
        "wrong_date": _flags((ws < lo) | (ws >= hi)),
    }
    dup_key = _flags((t == t_prev) & (ws == ws_prev)).copy()
    dup_key[:1] = False  # the first row has no neighbour
    if dup_key.any():  # rare: only then pay for the full-row comparisons
        keys = ["ticker", "window_start"]
        values = df[list(polygon.COLUMNS)]
        exact_later_copy = values.duplicated(keep="first").to_numpy()
        distinct = values.drop_duplicates()
        conflict_keys = distinct.loc[distinct.duplicated(keys, keep=False), keys].drop_duplicates()
        conflicting = pd.MultiIndex.from_frame(df[keys]).isin(pd.MultiIndex.from_frame(conflict_keys))
        rules["duplicate_row"] = exact_later_copy & ~conflicting
        rules["conflicting_duplicate"] = conflicting
    else:
        rules["duplicate_row"] = rules["conflicting_duplicate"] = np.zeros(len(df), dtype=bool)

    masks = [rules[r] for r in polygon.QUARANTINE_RULES]
    bad = np.logical_or.reduce(masks)
    counts = {r: 0 for r in polygon.QUARANTINE_RULES}
    if bad.any():
        # First failing rule in QUARANTINE_RULES order names the row, as in the library.
        reason = np.select(masks, list(polygon.QUARANTINE_RULES), default="")
        rejected = df[bad].assign(rule=reason[bad])
        counts.update(rejected["rule"].value_counts().to_dict())
        clean = df[~bad]
    else:
        rejected = df.iloc[:0].assign(rule=pd.Series(dtype="str"))
        clean = df
    return clean.drop(columns="line"), rejected, counts


def pd_session_tag(rows: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    ws = rows["window_start"].to_numpy()
    minute = (ws + cal.ny_utc_offset_seconds(day) * cal.NS_PER_SECOND) % NS_PER_DAY // NS_PER_MINUTE
    codes = np.select([minute < cal.RTH_OPEN_MINUTE, minute < cal.RTH_CLOSE_MINUTE], [0, 1], 2)
    return pd.DataFrame(
        {
            "ticker": rows["ticker"].to_numpy(),
            "date": np.full(len(rows), np.datetime64(day, "D")),
            "window_start": pd.to_datetime(ws, unit="ns", utc=True).tz_convert(cal.NY_TZ_NAME),
            "session": pd.Categorical.from_codes(codes, categories=["pre", "rth", "post"]),
            **{c: rows[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "transactions")},
        }
    )


def pd_classify(tickers: pd.Series) -> pd.Series:
    """``market.classify_tickers`` in pandas: the reason per distinct ticker (None = tradable)."""
    t = pd.Series(tickers.unique(), dtype="str")
    n = t.str.len()
    root, last = t.str[:-1], t.str[-1]
    root_listed = root.isin(set(t))
    plain = t.str.contains(r"^[A-Z]{1,5}$")

    def suffix_rule(letter: str, dotted: str) -> pd.Series:
        return t.str.contains(dotted) | (plain & (last == letter) & ((n == 5) | (root_listed & (n >= 2))))

    conds = [
        t.isin(sorted(market.TEST_SYMBOLS)) | t.str.contains("TEST"),
        t.str.contains(r"^[A-Z]+p[A-Z]?$") | t.str.contains(r"\.PR"),
        suffix_rule("W", r"\.WS(?:\.[A-Z])?$|\.W$"),
        suffix_rule("U", r"\.U$"),
        suffix_rule("R", r"\.RT$|\.R$"),
        ~t.str.contains(r"^[A-Z]{1,5}(?:\.[A-Z])?$"),
    ]
    reason = np.select([_flags(c) for c in conds], list(market.NON_TRADABLE_RULES), default=None)
    return pd.Series(reason, index=pd.Index(t, name="ticker"), name="reason")


def _log_returns_within_ticker(frame: pd.DataFrame) -> np.ndarray:
    """Log-return to the previous row of the same ticker (rows sorted by ticker, time); NaN at a
    ticker's first row. Equivalent to ``groupby('ticker').diff()`` on log(close), but one pass."""
    lc = np.log(frame["close"].to_numpy())
    t = frame["ticker"]
    same = _flags(t == t.shift(1))
    out = np.full(len(lc), np.nan)
    out[1:] = lc[1:] - lc[:-1]
    out[~same] = np.nan
    return out


def pd_day_features(m: pd.DataFrame) -> pd.DataFrame:
    vol = m["volume"]
    session = m["session"]
    frame = pd.DataFrame(
        {
            "ticker": m["ticker"],
            "date": m["date"],
            "open": m["open"],
            "high": m["high"],
            "low": m["low"],
            "close": m["close"],
            "volume": vol,
            "lr2": _log_returns_within_ticker(m) ** 2,
            "pv": (m["high"] + m["low"] + m["close"]) / 3.0 * vol,
            "vol_pre": vol.where(session == "pre", 0),
            "vol_post": vol.where(session == "post", 0),
        }
    )
    keys = ["ticker", "date"]
    all_ = frame.groupby(keys).agg(
        bars=("close", "size"),
        high=("high", "max"),
        low=("low", "min"),
        open=("open", "first"),
        lr2=("lr2", "sum"),
        volume_pre=("vol_pre", "sum"),
        volume_post=("vol_post", "sum"),
        volume_total=("volume", "sum"),
        pv=("pv", "sum"),
    )
    all_["range_pct"] = (all_["high"] - all_["low"]) / all_["open"]
    all_["realized_vol"] = np.sqrt(all_["lr2"])
    all_["vwap"] = all_["pv"] / all_["volume_total"]

    # Regular-hours returns link consecutive RTH bars only, as in the library.
    rth = frame[(session == "rth").to_numpy()]
    rth = rth.assign(lr2=_log_returns_within_ticker(rth) ** 2)
    r = rth.groupby(keys).agg(
        bars_rth=("close", "size"),
        open_rth=("open", "first"),
        high_rth=("high", "max"),
        low_rth=("low", "min"),
        close_rth=("close", "last"),
        lr2=("lr2", "sum"),
        volume_rth=("volume", "sum"),
        pv=("pv", "sum"),
    )
    r["realized_vol_rth"] = np.sqrt(r["lr2"])
    r["vwap_rth"] = r["pv"] / r["volume_rth"]
    r["range_pct_rth"] = (r["high_rth"] - r["low_rth"]) / r["open_rth"]

    out = all_.join(r.drop(columns=["lr2", "pv"]), how="left")
    out["bars_rth"] = out["bars_rth"].fillna(0).astype("int64")
    out["volume_rth"] = out["volume_rth"].fillna(0).astype("int64")
    skip = ("ticker", "date", "baseline_volume", "volume_spike_ratio")
    cols = [c for c in market.MINUTE_FEATURES_SCHEMA if c not in skip]
    return out[cols].reset_index().sort_values(["date", "ticker"], ignore_index=True)


def pd_volume_spike(feats: pd.DataFrame, daily: pd.DataFrame, day: dt.date, lookback: int) -> pd.DataFrame:
    prev_end = cal.previous_trading_day(day)
    start = cal.trading_days(prev_end - dt.timedelta(days=3 * lookback + 20), prev_end)[-lookback]
    window = daily[(daily["date"] >= pd.Timestamp(start)) & (daily["date"] <= pd.Timestamp(prev_end))]
    base = window.groupby("ticker")["volume"].agg(["mean", "size"])
    base = base.loc[base["size"] >= lookback, "mean"].rename("baseline_volume")
    out = feats.join(base, on="ticker")
    out["volume_spike_ratio"] = out["volume_total"] / out["baseline_volume"]
    return out


def run_pandas(path: Path, day: dt.date, daily: pd.DataFrame, workdir: Path, engine: str) -> tuple[Laps, pd.DataFrame]:
    laps = Laps()
    df = pd_read(path.read_bytes(), engine)
    laps.lap("parse csv (gzip)")
    clean, rejected, _ = pd_validate(df, day)
    laps.lap("validate")
    minute = pd_session_tag(clean, day)
    minute["ticker"].nunique()  # the same metadata pass as ours
    laps.lap("session tag")
    if len(rejected):
        rejected.to_parquet(workdir / "pd_quarantine.parquet", compression="zstd", index=False)
    minute.to_parquet(workdir / "pd_minute.parquet", compression="zstd", index=False)
    laps.lap("write minute parquet")

    minute = pd.read_parquet(workdir / "pd_minute.parquet")
    laps.lap("read minute parquet")
    reason = pd_classify(minute["ticker"])
    minute = minute[minute["ticker"].isin(reason.index[reason.isna()])]
    laps.lap("classify + filter")
    feats = pd_day_features(minute)
    laps.lap("day features")
    feats = pd_volume_spike(feats, daily, day, SPIKE_LOOKBACK)
    laps.lap("volume spike")
    feats.to_parquet(workdir / "pd_features.parquet", compression="zstd", index=False)
    laps.lap("write features parquet")
    return laps, feats


# ---------------------------------------------------------------------------------------------
# Honesty checks (untimed)


def check_features(ours: pl.DataFrame, theirs: pd.DataFrame) -> int:
    """Every feature column agrees for every ticker; returns the number of tickers compared."""
    a = ours.sort("ticker")
    b = theirs.sort_values("ticker", ignore_index=True)
    assert a["ticker"].to_list() == b["ticker"].tolist(), "the two implementations kept different tickers"
    for col in market.MINUTE_FEATURES_SCHEMA:
        if col in ("ticker", "date"):
            continue
        x = a[col].cast(pl.Float64).to_numpy()
        y = b[col].to_numpy(dtype=float, na_value=np.nan)
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=0, equal_nan=True, err_msg=col)
    return a.height


def check_validation(clean: pl.DataFrame, day: dt.date, engine: str) -> dict[str, int]:
    """Break a slice of the file with one row per quarantine rule (plus a shuffle, so the sort
    path runs) and require the pandas validator to reject the same lines for the same reasons."""
    sample = clean.head(20_000).with_row_index("i")
    rng = np.random.default_rng(0)
    rows = rng.choice(sample.height - 10, 9, replace=False)
    idx = pl.col("i")
    broken = sample.with_columns(
        pl.when(idx == rows[0]).then(None).otherwise(pl.col("volume")).alias("volume"),
        pl.when(idx == rows[1])
        .then(float("inf"))
        .when(idx == rows[2])
        .then(-1.0)
        .otherwise(pl.col("open"))
        .alias("open"),
        pl.when(idx == rows[3]).then(pl.col("low") - 1.0).otherwise(pl.col("high")).alias("high"),
        pl.when(idx == rows[4]).then(pl.col("high") + 1.0).otherwise(pl.col("close")).alias("close"),
        pl.when(idx == rows[5]).then(-5).otherwise(pl.col("transactions")).alias("transactions"),
        (pl.col("window_start") + pl.when(idx == rows[6]).then(NS_PER_DAY).otherwise(0)).alias("window_start"),
    )
    exact_copy = broken.filter(idx == rows[7])
    conflict = broken.filter(idx == rows[8]).with_columns(pl.col("volume") + 1)
    broken = pl.concat([broken, exact_copy, conflict]).sample(fraction=1.0, shuffle=True, seed=1).drop("i")
    data = sim.encode_polygon_csv_gz(broken.select(polygon.COLUMNS))

    ours = polygon.load_aggs(data, "check", day)
    _, rejected, counts = pd_validate(pd_read(data, engine), day)
    mine = sorted(zip(ours.rejected[polygon.LINE].to_list(), ours.rejected["rule"].to_list()))
    theirs = sorted(zip(rejected["line"].tolist(), rejected["rule"].tolist()))
    assert mine == theirs, f"validators disagree:\n ours   {mine}\n pandas {theirs}"
    assert counts == ours.rule_counts
    return {k: v for k, v in counts.items() if v}


# ---------------------------------------------------------------------------------------------
# Report


@dataclasses.dataclass
class Best:
    """Best (smallest) time per stage and of the totals, over the repeats."""

    stages: dict[str, float] = dataclasses.field(default_factory=dict)
    totals: list[float] = dataclasses.field(default_factory=list)

    def add(self, laps: Laps) -> None:
        for k, v in laps.times.items():
            self.stages[k] = min(v, self.stages.get(k, float("inf")))
        self.totals.append(laps.total)

    @property
    def total(self) -> float:
        return min(self.totals)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickers", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 6, 3))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--pandas-engine",
        choices=("c", "pyarrow"),
        default="c",
        help="read_csv engine of the baseline: 'c' (pandas' default) or 'pyarrow' (its multithreaded reader)",
    )
    args = ap.parse_args(argv)
    if not cal.is_trading_day(args.day):
        ap.error(f"{args.day} is not an NYSE session")

    path = vendor_file(args.day, args.tickers, args.seed)
    probe = polygon.load_aggs(path.read_bytes(), str(path), args.day)
    tickers = probe.rows["ticker"].unique().sort().to_list()
    rows = probe.rows_read
    daily = synthetic_daily(tickers, args.day, args.seed)
    daily_pd = daily.to_pandas()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(
        f"minute day {args.day}: {rows:,} rows, {len(tickers):,} tickers, "
        f"{path.stat().st_size / 1e6:.1f} MB gzip CSV  ({shown})"
    )
    print(
        f"polars {pl.__version__}, pandas {pd.__version__} (read_csv engine={args.pandas_engine}), "
        f"{os.cpu_count()} CPUs; best of {args.repeat}, runs interleaved floor/ours/pandas",
        flush=True,
    )

    floor: list[float] = []
    ours, theirs = Best(), Best()
    workdir = Path(tempfile.mkdtemp(prefix="bench_minute_day_"))
    try:
        lake = Lake(url=str(workdir / "lake"), s3=S3Resource())
        for i in range(args.repeat):
            gc.collect()
            floor.append(time_floor(path))
            gc.collect()
            laps, feats = run_ours(path, args.day, daily, lake)
            ours.add(laps)
            gc.collect()
            laps_pd, feats_pd = run_pandas(path, args.day, daily_pd, workdir, args.pandas_engine)
            theirs.add(laps_pd)
            print(
                f"  run {i + 1}: floor {floor[-1]:.3f}s  ours {laps.total:.3f}s  pandas {laps_pd.total:.3f}s",
                flush=True,
            )
        # A report, not a gate: a failed check is printed (and voids the speedup), never raised.
        try:
            n_compared = check_features(feats, feats_pd)
            broken = check_validation(probe.rows, args.day, args.pandas_engine)
            checks = (
                f"checks: features equal for all {n_compared:,} tickers (every column, rtol 1e-9); "
                f"validators agree on a broken sample {broken}"
            )
        except AssertionError as exc:
            checks = f"CHECK FAILED -- the pandas baseline does not do the same work, ignore the speedup:\n{exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    gz = min(floor)
    speedup = theirs.total / ours.total
    to_floor = ours.total / gz
    print()
    print(f"{'stage (best of each)':<26}{'ours s':>9}{'pandas s':>10}{'pandas/ours':>13}")
    for stage in STAGES:
        a, b = ours.stages[stage], theirs.stages[stage]
        print(f"{stage:<26}{a:>9.3f}{b:>10.3f}{b / a:>12.1f}x")
    print(f"{'total (best run)':<26}{ours.total:>9.3f}{theirs.total:>10.3f}{speedup:>12.1f}x")
    print(f"{'floor: gzip -dc':<26}{gz:>9.3f}")
    print()
    mrows = [rows / t / 1e6 for t in (ours.total, theirs.total, gz)]
    print("ours: {:.2f}M rows/s   pandas: {:.2f}M rows/s   gzip -dc: {:.2f}M rows/s".format(*mrows))
    print(f"speedup vs pandas = pandas_total / ours_total = {speedup:5.1f}x   target >= 10   {verdict(speedup >= 10)}")
    print(f"ratio to floor    = ours_total / gzip_dc      = {to_floor:5.2f}x   target <= 2.0  {verdict(to_floor <= 2.0)}")
    # The two targets only fit together when pandas is slow enough: say so when it is not.
    print(
        f"(10x pandas would need ours <= {theirs.total / 10:.3f}s = {theirs.total / 10 / gz:.2f}x the gzip floor; "
        f"polars' csv parse alone took {ours.stages['parse csv (gzip)']:.3f}s)"
    )
    print(checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
