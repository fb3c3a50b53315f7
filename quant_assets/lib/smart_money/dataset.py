"""Labels, the per-symbol feature rows and the dataset CSV.

Label: ``return_14d = price_after_14d / price_at_sample - 1`` where ``price_at_sample`` is the
split-adjusted close on the sample date and ``price_after_14d`` the close 14 calendar days later
(the next session's close when that day is not a session); ``label = 1`` when ``return_14d`` is
above 0.05, else 0. The label looks forward by construction; nothing else does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
import polars as pl

from quant_assets.lib.smart_money import features
from quant_assets.lib.smart_money.universe import next_session

HORIZON_DAYS = 14
LABEL_THRESHOLD = 0.05
# A session whose bar the vendor lacks is looked for this many days further.
MAX_BAR_GAP_DAYS = 7

META_COLUMNS = ("symbol", "date", "price_at_sample", "price_after_14d", "return_14d")
DATASET_COLUMNS: tuple[str, ...] = (*META_COLUMNS, *features.FEATURE_NAMES, "label")

DATASET_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "date": pl.Date,
    "price_at_sample": pl.Float64,
    "price_after_14d": pl.Float64,
    "return_14d": pl.Float64,
    **{name: (pl.Int64 if name in features.COUNT_FEATURES else pl.Float64) for name in features.FEATURE_NAMES},
    "label": pl.Int8,
}

COLUMN_DOCS: dict[str, str] = {
    "symbol": "Stock ticker.",
    "date": "Sample date: the 15th of the month, or the next NYSE session when the 15th is not one.",
    "price_at_sample": "Close on the sample date as traded that day, USD (the sample date's share basis: a later "
    "split never changes it).",
    "price_after_14d": "Close 14 calendar days after the sample date (the next session's close when that day "
    "is not a session), USD on the sample date's share basis (a split in between is divided out).",
    "return_14d": "price_after_14d / price_at_sample - 1 (fraction; 0.07 = 7%). Looks forward: the label's input, "
    "never a feature.",
    **features.feature_docs(),
    "label": "1 (bullish) when return_14d > 0.05, else 0 (bearish).",
}


def label_dates(dates: list[dt.date], horizon_days: int = HORIZON_DAYS) -> list[dt.date]:
    """The day whose close ends each sample's label window."""
    return [next_session(d + dt.timedelta(days=horizon_days)) for d in dates]


def _close_on_or_after(bar_days: np.ndarray, close: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The close of the first bar on or after each day (within MAX_BAR_GAP_DAYS), else NaN."""
    if len(bar_days) == 0:
        return np.full(len(days), np.nan)
    idx = np.searchsorted(bar_days, days, side="left")
    safe = np.clip(idx, 0, len(bar_days) - 1)
    ok = (idx < len(bar_days)) & (bar_days[safe] - days <= MAX_BAR_GAP_DAYS)
    return np.where(ok, close[safe], np.nan)


def dataset_rows(
    raw: dict[str, pl.DataFrame],
    symbols: list[str],
    dates: list[dt.date],
    *,
    etf_policy: str = "static",
    horizon_days: int = HORIZON_DAYS,
    threshold: float = LABEL_THRESHOLD,
) -> pl.DataFrame:
    """One row per symbol and sample date (DATASET_COLUMNS): prices, the forward return and
    label (null when a price is missing), and the 27 features as known on the date. ``raw``
    holds the raw tables of any number of symbols (a ``symbol`` column tells them apart)."""
    views = features.build_views(raw, symbols, etf_policy)
    prices = features.SymbolTable(
        raw["prices"], {"date": features.day_number("date"), "close": pl.col("close"), "basis": pl.col("split_factor")}, ("date",)
    )
    t = np.array([features.to_days(d) for d in dates], dtype=np.int64)
    after_days = np.array([features.to_days(d) for d in label_dates(dates, horizon_days)], dtype=np.int64)
    columns: dict[str, list[np.ndarray]] = {c: [] for c in DATASET_COLUMNS if c not in ("symbol", "date")}
    for symbol in symbols:
        px = prices.of(symbol)
        bar_days, close = px["date"].astype(np.int64), px["close"].astype(float)
        # The vendor's closes are adjusted to today's share basis; times the sample day's factor
        # (splits after it) they are on the sample date's basis, which no later split changes.
        basis = _close_on_or_after(bar_days, px["basis"].astype(float), t)
        # The sample's own close must be that day's bar: a later one would be a look-ahead.
        at = np.where(np.isin(t, bar_days), _close_on_or_after(bar_days, close, t), np.nan) * basis
        after = _close_on_or_after(bar_days, close, after_days) * basis
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = after / at - 1.0
        columns["price_at_sample"].append(at)
        columns["price_after_14d"].append(after)
        columns["return_14d"].append(ret)
        columns["label"].append(np.where(np.isfinite(ret), (ret > threshold).astype(float), np.nan))
        for name, values in features.compute_features(views[symbol], dates).items():
            columns[name].append(values)
    n = len(symbols) * len(dates)
    data = {
        "symbol": pl.Series("symbol", [s for s in symbols for _ in dates], dtype=pl.String),
        "date": pl.Series("date", list(dates) * len(symbols), dtype=pl.Date),
    }
    for name, parts in columns.items():
        values = np.concatenate(parts) if parts else np.zeros(n)
        series = pl.Series(name, values, dtype=pl.Float64, nan_to_null=True)
        data[name] = series.cast(DATASET_SCHEMA[name], strict=False) if DATASET_SCHEMA[name] != pl.Float64 else series
    return pl.DataFrame(data).select(list(DATASET_COLUMNS))


def symbol_rows(
    raw: dict[str, pl.DataFrame],
    symbol: str,
    dates: list[dt.date],
    *,
    etf_policy: str = "static",
    horizon_days: int = HORIZON_DAYS,
    threshold: float = LABEL_THRESHOLD,
) -> pl.DataFrame:
    """The rows of one symbol (see :func:`dataset_rows`)."""
    return dataset_rows(raw, [symbol], dates, etf_policy=etf_policy, horizon_days=horizon_days, threshold=threshold)


@dataclasses.dataclass
class Quality:
    """The dataset's figures the blocking checks read."""

    expected: int
    rows: int
    completeness: float
    bullish_share: float
    rows_missing_features: int
    missing_share: float
    missing_by_feature: dict[str, int]


def sampled_rows(rows: pl.DataFrame, sample_dates: list[dt.date]) -> pl.DataFrame:
    """A symbol's feature rows on the dates it is in the universe (its membership spans)."""
    return rows.filter(pl.col("date").is_in(sample_dates))


def assemble(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Every symbol's labelled rows in (date, symbol) order; rows without a label are dropped
    (they are counted by the completeness check)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=DATASET_SCHEMA)
    return pl.concat(frames, how="vertical").filter(pl.col("label").is_not_null()).sort("date", "symbol")


def quality(dataset: pl.DataFrame, expected: int) -> Quality:
    rows = dataset.height
    feats = list(features.FEATURE_NAMES)
    missing_by = {c: int(dataset[c].null_count()) for c in feats} if rows else {c: 0 for c in feats}
    rows_missing = int(dataset.select(pl.any_horizontal([pl.col(c).is_null() for c in feats])).to_series().sum()) if rows else 0
    return Quality(
        expected=expected,
        rows=rows,
        completeness=rows / expected if expected else 0.0,
        bullish_share=float(dataset["label"].mean()) if rows else 0.0,
        rows_missing_features=rows_missing,
        missing_share=rows_missing / rows if rows else 0.0,
        missing_by_feature={k: v for k, v in missing_by.items() if v},
    )


def to_csv(dataset: pl.DataFrame) -> bytes:
    """The dataset as CSV, exactly DATASET_COLUMNS in that order, dates as YYYY-MM-DD."""
    buf = io.BytesIO()
    dataset.select(list(DATASET_COLUMNS)).write_csv(buf, date_format="%Y-%m-%d", float_precision=None)
    return buf.getvalue()


def symbol_figures(frame: pl.DataFrame, symbols: list[str]) -> dict[str, dict]:
    """Per symbol of a features frame: sample dates, labelled rows, bullish share (of labelled
    rows, 0 without any) and rows missing at least one feature."""
    feature_cols = list(DATASET_COLUMNS[5:-1])
    stats = (
        frame.group_by("symbol")
        .agg(
            pl.len().alias("sample_dates"),
            pl.col("label").is_not_null().sum().alias("labelled_rows"),
            pl.col("label").mean().alias("bullish_share"),
            pl.any_horizontal([pl.col(c).is_null() for c in feature_cols]).sum().alias("rows_missing_features"),
        )
        .rows_by_key("symbol", named=True, unique=True)
    )
    empty = {"sample_dates": 0, "labelled_rows": 0, "bullish_share": None, "rows_missing_features": 0}
    return {
        s: {
            "sample_dates": int(stats.get(s, empty)["sample_dates"]),
            "labelled_rows": int(stats.get(s, empty)["labelled_rows"]),
            "bullish_share": round(float(stats.get(s, empty)["bullish_share"] or 0.0), 4),
            "rows_missing_features": int(stats.get(s, empty)["rows_missing_features"]),
        }
        for s in symbols
    }
