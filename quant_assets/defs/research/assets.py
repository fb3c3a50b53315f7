"""Equity research: technical and MACD features, labels, the training dataset, models, factor
IC, factor models, backtests and performance, built on the market group's tables."""


import datetime as dt
import math

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetCheckSeverity,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.market.assets import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import history_start, partition_dates, trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.resources import Lake, LandingZone
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.research import (
    backtests,
    charts,
    datasets,
    factors,
    indicators,
    labels,
    macd,
    modeling,
    performance,
    universe,
)
from quant_assets.lib.sources import kenfrench

DOMAIN = "research"
# Minute days are ~2M rows each: range backfills of the minute-fed assets run a few days per run.
MINUTE_DAYS_PER_RUN = 5
# Weekday partitions scanned backwards for "the previous session" (covers holiday runs).
PREVIOUS_WINDOW = 5
# Weekday partitions scanned forwards for "the next session".
NEXT_WINDOW = 5
BENCHMARK = "SPY"
HOLIDAY = "NYSE holiday: no session"

KEYS = {
    name: AssetKey([DOMAIN, name])
    for name in (
        "technical_features",
        "macd_day_features",
        "minute_features_plus_macd",
        "macd_event_labels",
        "range_expansion_labels",
        "training_dataset",
        "lgbm_classifier",
        "lgbm_regressor",
        "linear_model",
        "logistic_model",
        "factor_evaluation",
        "factor_models",
        "backtests",
        "performance_report",
        "liquid_universe",
    )
}

RANGE_CHECK = "values_in_range"
BALANCE_CHECK = "label_balance"
PIT_CHECK = "point_in_time"
PURGE_CHECK = "purge_gap_respected"
COVERAGE_CHECK = "feature_coverage"
FACTOR_COVERAGE_CHECK = "factor_coverage"
MODE_CHECK = "one_row_per_mode"
JOIN_CHECK = "macd_join_coverage"
TRADES_CHECK = "strategies_traded"

# Label shares outside this band make a classifier trivial; the check warns.
BALANCE_BAND = (0.01, 0.99)


def _table_meta(schema: dict, docs: dict, partitioned: bool = True) -> dict:
    return md.table_definition_metadata(schema, docs, partition_column="date" if partitioned else None)


def _window(start: int, end: int) -> TimeWindowPartitionMapping:
    return TimeWindowPartitionMapping(start_offset=start, end_offset=end, allow_nonexistent_upstream_partitions=True)


def _typed(df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema) if df.width == 0 else df


def _key_table(df: pl.DataFrame, n: int = 30) -> MetadataValue:
    """A table of key figures, shown inline on the asset page (first ``n`` rows; floats to six
    significant digits)."""
    head = df.head(n)

    def cell(v):
        if isinstance(v, float):
            return float(f"{v:.6g}") if math.isfinite(v) else None
        if isinstance(v, (int, bool, str)) or v is None:
            return v
        return str(v)

    return MetadataValue.table(
        records=[TableRecord({c: cell(v) for c, v in row.items()}) for row in head.iter_rows(named=True)],
        schema=TableSchema(columns=[TableColumn(c, md.dtype_name(t)) for c, t in head.schema.items()]),
    )


def _rounded(values: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items() if v is not None}


def _schema_check(key: AssetKey):
    return qc.schema_spec(key)


def _all_daily(lake: Lake, columns=None) -> pl.DataFrame:
    """Every materialized partition of market/daily_bars (holidays and gaps are simply absent)."""
    keys = trading_days.get_partition_keys()
    frame, _ = lakeio.read_partitions(lake, MARKET_KEYS["daily_bars"], keys, columns)
    if frame.is_empty():
        raise Failure(description="market/daily_bars has no materialized partition in the lake; materialize it first")
    return frame


def _require_bars(daily: pl.DataFrame, tickers: list[str]) -> None:
    absent = sorted(set(tickers) - set(daily["ticker"].unique().to_list()))
    if absent:
        raise Failure(description=f"ticker(s) {absent} have no bar in market/daily_bars")


def _dated_returns(
    daily: pl.DataFrame, members: pl.DataFrame, tickers: list[str], n_liquid: int, delisting_return: float = universe.DELISTING_RETURN
) -> tuple[pl.DataFrame, list[str]]:
    """(ticker, date, ret_1d) and the names: the configured tickers over their whole history,
    or the first ``n_liquid`` members of the dated universe over the sessions each was held."""
    if tickers:
        _require_bars(daily, list(tickers))
        return daily.filter(pl.col("ticker").is_in(list(tickers))).select("ticker", "date", "ret_1d"), list(tickers)
    names, membership = universe.selection(members, n_liquid, daily["date"].unique().to_list())
    held = universe.held_returns(daily, membership, delisting_return=delisting_return)
    return held.select("ticker", "date", "ret_1d"), names


# ---------------------------------------------------------------------------------------------
# Features


@asset(
    key=KEYS["technical_features"],
    **md.asset_kwargs(DOMAIN, layer="features", kinds={"polars", "numba", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata=_table_meta(indicators.TECHNICAL_SCHEMA, indicators.COLUMN_DOCS),
    ins={"daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"])},
    check_specs=[
        qc.spec(
            KEYS["technical_features"],
            RANGE_CHECK,
            "Oscillators within 0-100, Bollinger bands ordered, ATR and volatility non-negative.",
        ),
        _schema_check(KEYS["technical_features"]),
    ],
)
def technical_features(context: AssetExecutionContext, daily_bars: pl.DataFrame, lake: Lake):
    """TA-Lib-exact technical indicators: one row per ticker and trading day with a bar.

    Source: ``market/daily_bars``. The value on day D is the indicator over the ticker's own bars
    from the first trading-day partition through D (a session without a bar is skipped, not
    filled), so a one-day run -- which reads the earlier partitions it needs from the lake -- and
    a full backfill write identical numbers. Indicators are null for the first bars of a ticker's
    history (its lookback; ``bars_history`` says how many bars it had). Units: prices USD, RSI /
    stochastic / ADX / DI 0-100, ROC percent, hv_20 annualised fraction, OBV shares.
    """
    targets = partition_dates(context.partition_keys)
    first = min(targets)
    history_keys = lakeio.weekday_keys(history_start(), first - dt.timedelta(days=1)) if first > history_start() else []
    cols = ["ticker", "date", "high", "low", "close", "volume"]
    history, missing = lakeio.read_partitions(lake, MARKET_KEYS["daily_bars"], history_keys, cols)
    gaps = lakeio.missing_sessions(missing)
    if gaps:
        raise Failure(
            description=f"market/daily_bars is not materialized for {len(gaps)} session(s) of the history the "
            f"indicators need (first: {', '.join(gaps[:5])}); materialize them first",
            metadata={"missing_sessions": MetadataValue.json(gaps[:100])},
        )
    current = _typed(daily_bars, market.DAILY_BARS_SCHEMA).select(cols)
    frames = [f for f in (history, current) if f.height]
    full = pl.concat(frames, how="vertical_relaxed") if frames else current
    try:
        out = indicators.technical_features(full, keep_dates=targets) if full.height else indicators.empty_technical()
    except ValueError as exc:
        raise Failure(description=f"market/daily_bars: {exc}") from None
    per_day = (
        {d: (n, r) for d, n, r in out.group_by("date").agg(pl.len(), pl.col("rsi_14").is_not_null().sum()).iter_rows()}
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "tickers": int(per_day.get(d, (0, 0))[0]),
                "with_rsi_14": int(per_day.get(d, (0, 0))[1]),
                "history_rows_read": int(history.height),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    violations = indicators.range_violations(out)
    bad = {k: v for k, v in violations.items() if v}
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["technical_features"],
                RANGE_CHECK,
                not bad,
                f"Rows out of range: {bad}" if bad else f"All {out.height:,} rows within their ranges.",
                {k: int(v) for k, v in violations.items()},
            ),
            qc.schema_result(context, KEYS["technical_features"], out.schema),
        ],
    )


class MacdDayConfig(BaseModel):
    modes: list[str] = Field(
        default=["all", "rth"],
        description="Bar sets to summarise: 'all' (every session, the old --mode default) and/or 'rth' "
        "(regular hours only). Both by default, as the mode column.",
    )
    write_bar_level: bool = Field(
        default=False,
        description="Also write the 1-minute MACD, signal and histogram of every bar (each mode) to "
        "research/macd_bars/<date>.parquet in the lake (large: one row per bar and mode).",
    )


@asset(
    key=KEYS["macd_day_features"],
    **md.asset_kwargs(DOMAIN, layer="features", kinds={"polars", "numba", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(macd.MACD_DAY_SCHEMA, macd.COLUMN_DOCS),
    ins={"minute_aggs": AssetIn(key=MARKET_KEYS["minute_aggs"])},
    check_specs=[
        qc.spec(KEYS["macd_day_features"], MODE_CHECK, "Exactly one row per ticker, day and requested mode."),
        _schema_check(KEYS["macd_day_features"]),
    ],
    config_schema=config_schema(MacdDayConfig),
)
def macd_day_features(context: AssetExecutionContext, minute_aggs: pl.DataFrame, lake: Lake):
    """MACD(12,26,9) histogram summaries of each ticker-day's minute bars, per ``mode``.

    Source: ``market/minute_aggs``. One row per ticker, trading day and mode (``all`` = every
    session's bars, ``rth`` = 09:30-16:00 only): last / min / max histogram and zero-cross counts
    on 1-minute closes (``__1m``) and on 5-minute closes (``__5m``, the last close of each
    5-minute window). MACD is TA-Lib's and runs on that ticker-day's bars alone; it needs 34 bars,
    so thinner ticker-days get nulls (``bars__1m`` / ``bars__5m`` give the counts). Histogram in USD.
    ``write_bar_level`` also stores every bar's MACD under ``research/macd_bars/`` in the lake.
    """
    config = parse(MacdDayConfig, context)
    bad = [m for m in config.modes if m not in macd.MODES]
    if bad or not config.modes:
        raise Failure(description=f"modes must be a non-empty subset of {list(macd.MODES)}, got {config.modes}")
    targets = partition_dates(context.partition_keys)
    minute = _typed(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    try:
        out = macd.macd_day_features(minute).filter(pl.col("mode").is_in(config.modes))
    except ValueError as exc:
        raise Failure(description=f"market/minute_aggs: {exc}") from None
    stats = (
        {
            (d, m): (n, h)
            for d, m, n, h in out.group_by("date", "mode").agg(pl.len(), pl.col("hist_last__1m").is_not_null().sum()).iter_rows()
        }
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                **{f"tickers/{m}": int(stats.get((d, m), (0, 0))[0]) for m in config.modes},
                **{f"with_hist_1m/{m}": int(stats.get((d, m), (0, 0))[1]) for m in config.modes},
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    if config.write_bar_level:
        bars = macd.macd_bars(minute, config.modes)
        for d in targets:
            key = f"research/macd_bars/{d.isoformat()}.parquet"
            lake.write_frame(key, bars.filter(pl.col("date") == d))
            context.add_asset_metadata({"bar_level_file": MetadataValue.path(lake.describe(key))}, partition_key=d.isoformat())
    counts = out.group_by("ticker", "date").len() if out.height else pl.DataFrame({"len": []})
    wrong = counts.filter(pl.col("len") != len(config.modes)).height if out.height else 0
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["macd_day_features"],
                MODE_CHECK,
                wrong == 0,
                f"{wrong} ticker-day(s) without exactly one row per mode." if wrong else "One row per ticker, day and mode.",
                {"ticker_days": counts.height, "wrong": wrong},
            ),
            qc.schema_result(context, KEYS["macd_day_features"], out.schema),
        ],
    )


def _plus_macd_schema() -> dict:
    schema = dict(market.MINUTE_FEATURES_SCHEMA)
    for c in macd.MACD_FEATURE_COLUMNS:
        schema[c] = macd.MACD_DAY_SCHEMA[c]
    for c in macd.MACD_FEATURE_COLUMNS:
        schema[f"{c}_rth"] = macd.MACD_DAY_SCHEMA[c]
    return schema


PLUS_MACD_SCHEMA = _plus_macd_schema()
PLUS_MACD_DOCS = {
    **{c: d for c, d in market.COLUMN_DOCS.items() if c in market.MINUTE_FEATURES_SCHEMA},
    **{c: f"{macd.COLUMN_DOCS[c]} (mode all)" for c in macd.MACD_FEATURE_COLUMNS},
    **{f"{c}_rth": f"{macd.COLUMN_DOCS[c]} (mode rth)" for c in macd.MACD_FEATURE_COLUMNS},
}


@asset(
    key=KEYS["minute_features_plus_macd"],
    **md.asset_kwargs(DOMAIN, layer="features", kinds={"polars", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(PLUS_MACD_SCHEMA, PLUS_MACD_DOCS),
    ins={
        "minute_features": AssetIn(key=MARKET_KEYS["minute_features"]),
        "macd_day_features": AssetIn(key=KEYS["macd_day_features"]),
    },
    check_specs=[
        qc.spec(
            KEYS["minute_features_plus_macd"],
            JOIN_CHECK,
            "Every minute-features row found its MACD-day row (warns otherwise).",
            blocking=False,
        ),
        _schema_check(KEYS["minute_features_plus_macd"]),
    ],
)
def minute_features_plus_macd(context: AssetExecutionContext, minute_features: pl.DataFrame, macd_day_features: pl.DataFrame):
    """``market/minute_features`` with the day's MACD summaries beside them: one row per
    tradable ticker and day. MACD columns of mode ``all`` keep their names; mode ``rth`` columns
    end in ``_rth``. Units as in the two sources."""
    feats = _typed(minute_features, market.MINUTE_FEATURES_SCHEMA)
    m = _typed(macd_day_features, macd.MACD_DAY_SCHEMA)
    out = feats
    for mode, suffix in (("all", ""), ("rth", "_rth")):
        part = m.filter(pl.col("mode") == mode).select(
            "ticker", "date", *[pl.col(c).alias(f"{c}{suffix}") for c in macd.MACD_FEATURE_COLUMNS]
        )
        out = out.join(part, on=["ticker", "date"], how="left")
    out = out.select(list(PLUS_MACD_SCHEMA))
    joined = out.filter(pl.col("bars__1m").is_not_null()).height if out.height else 0
    targets = partition_dates(context.partition_keys)
    per_day = dict(out.group_by("date").len().iter_rows()) if out.height else {}
    md.per_partition(context, {d.isoformat(): {"tickers": int(per_day.get(d, 0))} for d in targets})
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["minute_features_plus_macd"],
                JOIN_CHECK,
                joined == out.height,
                f"{joined:,} of {out.height:,} rows have MACD-day features.",
                {"rows": out.height, "with_macd": joined},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["minute_features_plus_macd"], out.schema),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Labels


class EventLabelConfig(BaseModel):
    target_move: float = Field(default=0.008, gt=0, lt=1, description="Barrier distance from the entry close, fraction (0.008 = 80 bp).")
    time_window: int = Field(default=30, ge=1, description="Forward bars (not clock minutes) scanned for a barrier, within the day.")
    mode: str = Field(default="all", description="Bars used: 'all' sessions or 'rth' only (MACD and forward window alike).")
    long_only: bool = Field(default=False, description="Keep only cross-up (long) events.")
    short_only: bool = Field(default=False, description="Keep only cross-down (short) events.")


def _balance_result(key: AssetKey, label: pl.Series) -> object:
    bal = labels.label_balance(label)
    share = bal["positive_share"]
    ok = bal["labelled"] > 0 and BALANCE_BAND[0] <= share <= BALANCE_BAND[1]
    desc = (
        f"{bal['positive']:,} positive of {bal['labelled']:,} labelled ({share:.1%})"
        if bal["labelled"]
        else "No labelled rows."
    )
    if not ok and bal["labelled"]:
        desc += f": outside {BALANCE_BAND[0]:.0%}-{BALANCE_BAND[1]:.0%}, a classifier would learn little"
    return qc.result(key, BALANCE_CHECK, ok, desc, _rounded(dict(bal)), severity=AssetCheckSeverity.WARN)


@asset(
    key=KEYS["macd_event_labels"],
    **md.asset_kwargs(DOMAIN, layer="labels", kinds={"polars", "numba", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(labels.EVENTS_SCHEMA, labels.EVENT_DOCS),
    ins={"minute_aggs": AssetIn(key=MARKET_KEYS["minute_aggs"])},
    check_specs=[
        qc.spec(KEYS["macd_event_labels"], BALANCE_CHECK, "Positive-label share between 1% and 99% (warns).", blocking=False),
        _schema_check(KEYS["macd_event_labels"]),
    ],
    config_schema=config_schema(EventLabelConfig),
)
def macd_event_labels(context: AssetExecutionContext, minute_aggs: pl.DataFrame):
    """One event per 1-minute MACD histogram zero cross of each ticker-day (up = long, down =
    short) with a barrier label.

    Barrier rule: entry at the event bar's close P; target P x (1 +/- target_move) in the event's
    direction, stop the same distance against it. The next ``time_window`` bars of the same
    ticker, day and mode are scanned with their highs and lows; the first bar touching a barrier
    decides. A bar touching both is a tie of unknown order inside the minute: outcome ``both``,
    label 0. No touch: ``timeout``, label 0. An event on the day's last bar has no forward bars:
    label null. ``ret_fwd`` is the signed trade return at the outcome (fraction).
    """
    config = parse(EventLabelConfig, context)
    targets = partition_dates(context.partition_keys)
    minute = _typed(minute_aggs, market.MINUTE_AGGS_SCHEMA)
    try:
        out = labels.macd_events(
            minute,
            mode=config.mode,
            target_move=config.target_move,
            time_window=config.time_window,
            long_only=config.long_only,
            short_only=config.short_only,
        )
    except ValueError as exc:
        raise Failure(description=f"research/macd_event_labels: {exc}") from None
    stats = (
        {d: (n, p) for d, n, p in out.group_by("date").agg(pl.len(), pl.col("label").fill_null(0).sum()).iter_rows()}
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "events": int(stats.get(d, (0, 0))[0]),
                "positive_labels": int(stats.get(d, (0, 0))[1]),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(
        value=out,
        check_results=[
            _balance_result(KEYS["macd_event_labels"], out["label"]),
            qc.schema_result(context, KEYS["macd_event_labels"], out.schema),
        ],
    )


class RangeLabelConfig(BaseModel):
    threshold: float = Field(default=0.08, gt=0, description="Next-day (high - low) / close at or above this is label 1 (0.08 = 8 %).")


@asset(
    key=KEYS["range_expansion_labels"],
    **md.asset_kwargs(DOMAIN, layer="labels", kinds={"polars", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata=_table_meta(labels.RANGE_LABEL_SCHEMA, labels.RANGE_LABEL_DOCS),
    ins={"daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"], partition_mapping=_window(0, NEXT_WINDOW))},
    check_specs=[
        qc.spec(KEYS["range_expansion_labels"], BALANCE_CHECK, "Positive-label share between 1% and 99% (warns).", blocking=False),
        _schema_check(KEYS["range_expansion_labels"]),
    ],
    config_schema=config_schema(RangeLabelConfig),
)
def range_expansion_labels(context: AssetExecutionContext, daily_bars: pl.DataFrame):
    """Next-day range expansion: one row per ticker with a bar on day D; label 1 when the
    ticker's next-session range (high - low) / close is at least ``threshold``.

    Source: ``market/daily_bars`` of D and the following sessions. The label looks one session
    ahead by definition; it is null while the next session is not yet materialized (re-run the
    partition once it is; the daily schedule does) or when the ticker has no bar that session.
    """
    config = parse(RangeLabelConfig, context)
    targets = partition_dates(context.partition_keys)
    daily = _typed(daily_bars, market.DAILY_BARS_SCHEMA)
    out = labels.range_expansion_labels(daily, targets, config.threshold)
    stats = (
        {
            d: (n, k, p)
            for d, n, k, p in out.group_by("date")
            .agg(pl.len(), pl.col("label").is_not_null().sum().alias("known"), pl.col("label").fill_null(0).sum().alias("pos"))
            .iter_rows()
        }
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "tickers": int(stats.get(d, (0, 0, 0))[0]),
                "labelled": int(stats.get(d, (0, 0, 0))[1]),
                "positive": int(stats.get(d, (0, 0, 0))[2]),
                "next_session": labels.next_session(d).isoformat(),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(
        value=out,
        check_results=[
            _balance_result(KEYS["range_expansion_labels"], out["label"]),
            qc.schema_result(context, KEYS["range_expansion_labels"], out.schema),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Training dataset


def _dataset_schema() -> tuple[dict, dict]:
    """Schema and docs of the training dataset (no query runs at import: see
    ``datasets.dataset_schema``)."""
    schema = datasets.dataset_schema(market.MINUTE_FEATURES_SCHEMA, market.DAILY_BARS_SCHEMA)
    docs = datasets.dataset_docs({c: market.COLUMN_DOCS[c] for c in market.MINUTE_FEATURES_SCHEMA})
    return schema, docs


DATASET_SCHEMA, DATASET_DOCS = _dataset_schema()


@asset(
    key=KEYS["training_dataset"],
    **md.asset_kwargs(DOMAIN, layer="dataset", kinds={"polars", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MINUTE_DAYS_PER_RUN),
    metadata=_table_meta(DATASET_SCHEMA, DATASET_DOCS),
    ins={
        "macd_event_labels": AssetIn(key=KEYS["macd_event_labels"]),
        "technical_features": AssetIn(key=KEYS["technical_features"], partition_mapping=_window(-PREVIOUS_WINDOW, -1)),
        "daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"], partition_mapping=_window(-PREVIOUS_WINDOW, -1)),
        "minute_features": AssetIn(key=MARKET_KEYS["minute_features"], partition_mapping=_window(-PREVIOUS_WINDOW, -1)),
        "macd_day_features": AssetIn(key=KEYS["macd_day_features"], partition_mapping=_window(-PREVIOUS_WINDOW, -1)),
    },
    check_specs=[
        qc.spec(
            KEYS["training_dataset"],
            PIT_CHECK,
            "Every joined feature comes from a session strictly before the event's day.",
        ),
        _schema_check(KEYS["training_dataset"]),
    ],
)
def training_dataset(
    context: AssetExecutionContext,
    macd_event_labels: pl.DataFrame,
    technical_features: pl.DataFrame,
    daily_bars: pl.DataFrame,
    minute_features: pl.DataFrame,
    macd_day_features: pl.DataFrame,
):
    """The model-ready table: every MACD event of the day with what was known at its time.

    Event columns (direction, MACD values at the event bar, minute of day) are known at the event
    bar's close; every other feature is the *previous NYSE session's* completed summary
    (``feature_date``): its technical indicators, daily return, minute features and MACD-day
    summaries of the event's mode. A ticker absent from a source that session has nulls there
    (e.g. the previous session had no minute file). Targets (label, ret_fwd, outcome,
    bars_to_outcome, forward_bars) look forward by definition and are never features.
    """
    targets = partition_dates(context.partition_keys)
    events = _typed(macd_event_labels, labels.EVENTS_SCHEMA)
    previous = {
        "technical_features": _typed(technical_features, indicators.TECHNICAL_SCHEMA),
        "daily_bars": _typed(daily_bars, market.DAILY_BARS_SCHEMA),
        "minute_features": _typed(minute_features, market.MINUTE_FEATURES_SCHEMA),
        "macd_day_features": _typed(macd_day_features, macd.MACD_DAY_SCHEMA),
    }
    out = datasets.build_training_dataset(events, previous).select(list(DATASET_SCHEMA))
    leaks = datasets.point_in_time_violations(out)
    stats = (
        {d: (n, k) for d, n, k in out.group_by("date").agg(pl.len(), pl.col("rsi_14").is_not_null().sum()).iter_rows()}
        if out.height
        else {}
    )
    md.per_partition(
        context,
        {
            d.isoformat(): {
                "events": int(stats.get(d, (0, 0))[0]),
                "with_previous_day_technicals": int(stats.get(d, (0, 0))[1]),
                "feature_date": cal.previous_trading_day(d).isoformat(),
                **({} if cal.is_trading_day(d) else md.no_data(HOLIDAY)),
            }
            for d in targets
        },
    )
    return MaterializeResult(
        value=out,
        check_results=[
            qc.result(
                KEYS["training_dataset"],
                PIT_CHECK,
                leaks == 0,
                f"{leaks} row(s) with features not strictly before the event day." if leaks else "All features precede their event's day.",
                {"violations": leaks},
            ),
            qc.schema_result(context, KEYS["training_dataset"], out.schema),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Models

ALL_DAYS = AllPartitionMapping()


class ModelConfig(BaseModel):
    data_source: str = Field(
        default="technical_features",
        description="'technical_features' (target: next-session return) or 'training_dataset' (MACD events: label / ret_fwd).",
    )
    features: list[str] = Field(
        default=[],
        description="Feature columns; empty = the source's default set (scale-free technical columns, or every event feature).",
    )
    n_splits: int = Field(default=5, ge=1, description="Walk-forward folds.")
    gap_days: int = Field(default=5, ge=0, description="Distinct dates purged between each training set and its test block.")


class LgbmConfig(ModelConfig):
    n_estimators: int = Field(default=200, ge=1, description="Boosting rounds.")
    learning_rate: float = Field(default=0.05, gt=0, description="Shrinkage per round.")
    num_leaves: int = Field(default=31, ge=2, description="Leaves per tree.")
    min_child_samples: int = Field(default=50, ge=1, description="Minimum rows in a leaf.")
    n_jobs: int = Field(
        default=1,
        ge=1,
        description="LightGBM threads. More help only on an idle machine: its threads spin while waiting, so on a busy "
        "one (or beside other steps) one thread is faster.",
    )

    def params(self) -> modeling.LgbmParams:
        return modeling.LgbmParams(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            n_jobs=self.n_jobs,
        )


class LinearConfig(ModelConfig):
    regularization: str = Field(default="none", description="'none' (OLS), 'ridge', 'lasso' or 'elasticnet'.")
    alpha: float = Field(default=1.0, gt=0, description="Penalty strength (ignored for OLS).")
    tune_alpha: bool = Field(
        default=False,
        description="Pick alpha from a log grid by walk-forward RMSE, nested: inside each fold's training window "
        "(the fold's reported figures stay out of sample for alpha).",
    )
    l1_ratio: float = Field(default=0.5, ge=0, le=1, description="ElasticNet mix of L1 (1) and L2 (0).")


class LogisticConfig(ModelConfig):
    regularization: str = Field(default="l2", description="'l2', 'l1' or 'none'.")
    alpha: float = Field(default=1.0, gt=0, description="Penalty strength (C = 1 / alpha).")
    tune_alpha: bool = Field(
        default=False,
        description="Pick alpha from a log grid by walk-forward log loss, nested: inside each fold's training window.",
    )


def _model_source(lake: Lake, source: str) -> pl.DataFrame:
    if source not in modeling.SOURCES:
        raise Failure(description=f"data_source must be one of {list(modeling.SOURCES)}, got {source!r}")
    key = KEYS[source]
    frame, _ = lakeio.read_partitions(lake, key, trading_days.get_partition_keys())
    return frame


def _model_metadata(lake: Lake, name: str, result: modeling.ModelResult, chart_values: tuple[list, list, str]) -> dict:
    base = f"research/models/{name}"
    meta = {
        "metrics (mean over folds)": MetadataValue.json(modeling.json_ready(result.mean_metrics)),
        **{f"cv/{k}": float(v) for k, v in result.mean_metrics.items() if v is not None},
        "folds": _key_table(result.folds, 20),
        "dropped_features": MetadataValue.json(result.results["data"]["dropped_features"]),
        "training_rows": int(result.results["data"]["rows"]),
        **(
            {"alpha_by_fold": MetadataValue.json(result.results["alpha_by_fold"]), "tuning": result.results["tuning"]}
            if result.results.get("alpha_by_fold")
            else {}
        ),
        "results_json": MetadataValue.path(lakeio.write_json(lake, f"{base}/results.json", modeling.json_ready(result.results))),
    }
    table_key = f"{base}/{'importance' if result.model_text else 'coefficients'}.parquet"
    lake.write_frame(table_key, result.table)
    meta["importance" if result.model_text else "coefficients"] = _key_table(result.table, 40)
    meta["table_file"] = MetadataValue.path(lake.describe(table_key))
    if result.model_text is not None:
        lake.store().write_bytes(f"{base}/model.txt", result.model_text.encode())
        meta["model_file (LightGBM text format)"] = MetadataValue.path(lake.describe(f"{base}/model.txt"))
    labels_, values, title = chart_values
    if labels_:
        meta["chart (inline)"] = MetadataValue.md(f"{title}\n\n" + charts.text_bars(labels_[:15], values[:15]))
        png = charts.bar_chart(labels_, values, title=title, xlabel=title.split(":")[0])
        meta.update(lakeio.write_chart(lake, f"research/charts/{name}.png", png, "chart"))
    return meta


def _purge_result(key: AssetKey, result: modeling.ModelResult, gap_days: int):
    bad = result.purge_violations
    n = result.folds.height
    return qc.result(
        key,
        PURGE_CHECK,
        not bad,
        f"Folds {bad} train within {gap_days} dates of their test block." if bad else f"All {n} folds purge {gap_days} dates before testing.",
        {"folds": n, "gap_days": gap_days},
    )


def _train(key: AssetKey, lake: Lake, config: ModelConfig, kind: str, fit):
    frame = _model_source(lake, config.data_source)
    try:
        data = modeling.model_data(config.data_source, frame, kind=kind, features=config.features)
        result = fit(data)
    except modeling.ModelingError as exc:
        raise Failure(description=f"{key.to_user_string()}: {exc}") from None
    return result


def _model_asset(name: str):
    return dict(
        key=KEYS[name],
        **md.asset_kwargs(DOMAIN, layer="model", kinds={"lightgbm" if name.startswith("lgbm") else "scikitlearn", "polars"}, code_version="2"),
        deps=[
            AssetDep(KEYS["technical_features"], partition_mapping=ALL_DAYS),
            AssetDep(KEYS["training_dataset"], partition_mapping=ALL_DAYS),
        ],
        metadata=md.table_definition_metadata(
            {"fold": pl.Int32(), "train_start": pl.Date(), "train_end": pl.Date(), "test_start": pl.Date(), "test_end": pl.Date(), "n_train": pl.Int64(), "n_test": pl.Int64()},
            modeling.FOLD_DOCS,
        ),
        check_specs=[qc.spec(KEYS[name], PURGE_CHECK, "Every fold's training dates end gap_days dates before its test block.")],
    )


@asset(**_model_asset("lgbm_classifier"), config_schema=config_schema(LgbmConfig))
def lgbm_classifier(context: AssetExecutionContext, lake: Lake):
    """LightGBM classifier of direction: next-session return > 0 (technical features) or the event
    label (training dataset). Walk-forward CV with a purge gap; accuracy, ROC-AUC, F1 per fold and
    on average; gain importance. The final model (fitted on all rows) is stored in LightGBM's own
    text format with a results JSON under ``research/models/lgbm_classifier/`` in the lake."""
    config = parse(LgbmConfig, context)
    result = _train(
        KEYS["lgbm_classifier"], lake, config, "classifier",
        lambda d: modeling.train_lgbm(d, "classifier", config.params(), config.n_splits, config.gap_days),
    )
    imp = result.table.head(20)
    meta = _model_metadata(lake, "lgbm_classifier", result, (imp["feature"].to_list(), imp["gain_share"].to_list(), "gain share: feature importance"))
    return MaterializeResult(value=result.folds, metadata=meta, check_results=[_purge_result(KEYS["lgbm_classifier"], result, config.gap_days)])


@asset(**_model_asset("lgbm_regressor"), config_schema=config_schema(LgbmConfig))
def lgbm_regressor(context: AssetExecutionContext, lake: Lake):
    """LightGBM regressor of the return: next-session return (technical features) or the event's
    ``ret_fwd`` (training dataset). Walk-forward CV with a purge gap; RMSE, R^2, direction accuracy
    and rank IC per fold and on average; gain importance; LightGBM text model + results JSON under
    ``research/models/lgbm_regressor/``."""
    config = parse(LgbmConfig, context)
    result = _train(
        KEYS["lgbm_regressor"], lake, config, "regressor",
        lambda d: modeling.train_lgbm(d, "regressor", config.params(), config.n_splits, config.gap_days),
    )
    imp = result.table.head(20)
    meta = _model_metadata(lake, "lgbm_regressor", result, (imp["feature"].to_list(), imp["gain_share"].to_list(), "gain share: feature importance"))
    return MaterializeResult(value=result.folds, metadata=meta, check_results=[_purge_result(KEYS["lgbm_regressor"], result, config.gap_days)])


@asset(**_model_asset("linear_model"), config_schema=config_schema(LinearConfig))
def linear_model(context: AssetExecutionContext, lake: Lake):
    """Linear regression of the return (OLS, Ridge, Lasso or ElasticNet; ``regularization``) on
    z-scored features, rows with every feature present. Walk-forward RMSE / R^2 / direction
    accuracy; coefficients with standard errors, t-stats and p-values (OLS exact, Ridge sandwich,
    Lasso / ElasticNet post-selection OLS); ``tune_alpha`` picks alpha by walk-forward RMSE.
    Coefficients and results JSON under ``research/models/linear_model/``."""
    config = parse(LinearConfig, context)
    result = _train(
        KEYS["linear_model"], lake, config, "regressor",
        lambda d: modeling.train_linear(
            d, regularization=config.regularization, alpha=config.alpha, tune_alpha=config.tune_alpha,
            l1_ratio=config.l1_ratio, n_splits=config.n_splits, gap_days=config.gap_days,
        ),
    )
    coef = result.table.with_columns(pl.col("coef").abs().alias("_abs")).sort("_abs", descending=True).head(20)
    meta = _model_metadata(lake, "linear_model", result, (coef["feature"].to_list(), coef["coef"].to_list(), "coefficient per 1 std: linear model"))
    meta["alpha"] = float(result.results["alpha"]) if result.results["alpha"] is not None else 0.0
    return MaterializeResult(value=result.folds, metadata=meta, check_results=[_purge_result(KEYS["linear_model"], result, config.gap_days)])


@asset(**_model_asset("logistic_model"), config_schema=config_schema(LogisticConfig))
def logistic_model(context: AssetExecutionContext, lake: Lake):
    """Logistic regression of direction (next-session return > 0, or the event label) on z-scored
    features, rows with every feature present. Walk-forward accuracy / ROC-AUC / F1; log-odds
    coefficients per standard deviation and odds ratios. Results JSON under
    ``research/models/logistic_model/``."""
    config = parse(LogisticConfig, context)
    result = _train(
        KEYS["logistic_model"], lake, config, "classifier",
        lambda d: modeling.train_logistic(
            d, regularization=config.regularization, alpha=config.alpha, tune_alpha=config.tune_alpha,
            n_splits=config.n_splits, gap_days=config.gap_days,
        ),
    )
    coef = result.table.with_columns(pl.col("coef").abs().alias("_abs")).sort("_abs", descending=True).head(20)
    meta = _model_metadata(lake, "logistic_model", result, (coef["feature"].to_list(), coef["coef"].to_list(), "log-odds per 1 std: logistic model"))
    return MaterializeResult(value=result.folds, metadata=meta, check_results=[_purge_result(KEYS["logistic_model"], result, config.gap_days)])


# ---------------------------------------------------------------------------------------------
# Factor evaluation


class FactorEvaluationConfig(BaseModel):
    factor_column: str = Field(
        default="all",
        description="'all' (every numeric indicator of research/technical_features), one column, or a comma-separated list.",
    )
    horizons: list[int] = Field(default=[1, 5, 10], description="Forward-return horizons in NYSE sessions.")
    min_pairs: int = Field(default=10, ge=3, description="Dates with fewer (feature, return) pairs are skipped.")


@asset(
    key=KEYS["factor_evaluation"],
    **md.asset_kwargs(DOMAIN, layer="analysis", kinds={"polars", "scipy"}, code_version="2"),
    deps=[AssetDep(KEYS["technical_features"], partition_mapping=ALL_DAYS)],
    metadata=_table_meta(factors.FACTOR_EVALUATION_SCHEMA, factors.FACTOR_EVALUATION_DOCS, partitioned=False),
    check_specs=[
        qc.spec(KEYS["factor_evaluation"], COVERAGE_CHECK, "Every evaluated feature has at least one date with an IC (warns).", blocking=False),
        _schema_check(KEYS["factor_evaluation"]),
    ],
    config_schema=config_schema(FactorEvaluationConfig),
)
def factor_evaluation(context: AssetExecutionContext, lake: Lake):
    """Information coefficients of the technical features: one row per (feature, horizon).

    Per date, the Spearman IC across tickers between the feature and the forward return of
    horizon h (close on the h-th next NYSE session / close - 1; null when the ticker has no bar
    then); dates with fewer than ``min_pairs`` pairs or a constant side are skipped (alphalens
    conventions). Mean, std, ICIR, t-stat and p-value (plain for horizon 1, Newey-West for longer,
    overlapping horizons; method, lags and degrees of freedom beside them), positive share, and
    the mean forward return of five equal-count feature quintiles. An all-null feature gets ``n_dates = 0`` and nulls. The
    per-date ICs are stored beside the table (``research/factor_evaluation/ic_by_date.parquet``).
    """
    config = parse(FactorEvaluationConfig, context)
    feats, _ = lakeio.read_partitions(lake, KEYS["technical_features"], trading_days.get_partition_keys())
    if feats.is_empty():
        raise Failure(description="research/technical_features has no materialized partition; materialize it first")
    numeric = [c for c in indicators.FEATURE_COLUMNS if feats.schema[c].is_numeric()]
    if config.factor_column.strip().lower() == "all":
        columns = numeric
    else:
        columns = [c.strip() for c in config.factor_column.split(",") if c.strip()]
        unknown = [c for c in columns if c not in numeric]
        if unknown:
            raise Failure(description=f"factor_column names {unknown}, not numeric columns of research/technical_features: {numeric}")
    if any(h < 1 for h in config.horizons) or not config.horizons:
        raise Failure(description=f"horizons must be positive session counts, got {config.horizons}")
    summary, by_date = factors.factor_evaluation(feats, columns, config.horizons, min_pairs=config.min_pairs)
    ic_key = "research/factor_evaluation/ic_by_date.parquet"
    lake.write_frame(ic_key, by_date)
    h1 = min(config.horizons)
    top = (
        summary.filter((pl.col("horizon") == h1) & pl.col("icir").is_not_null())
        .with_columns(pl.col("icir").abs().alias("_a"))
        .sort("_a", descending=True)
        .head(4)["feature"]
        .to_list()
    )
    series = {}
    for f in top:
        s = by_date.filter((pl.col("feature") == f) & (pl.col("horizon") == h1)).sort("date")
        rolled = s.with_columns(pl.col("ic").rolling_mean(window_size=20, min_samples=5).alias("r")).drop_nulls("r")
        if rolled.height:
            series[f] = (rolled["date"].to_list(), rolled["r"].to_list())
    meta = {
        "ic_table": _key_table(summary.sort(["horizon", "ic_mean"], descending=[False, True]), 100),
        "t_statistics": "horizon 1: plain t-test (Student t, n-1 df); longer horizons: Newey-West HAC standard errors "
        "(statsmodels, Bartlett kernel, 2 x horizon lags, small-sample correction), p from Student t with "
        "floor(n / (lags + 1)) - 1 df; per row in t_method, hac_lags, t_df",
        "t_stats_compared": MetadataValue.md(factors.t_comparison_markdown(by_date, summary)),
        "ic_by_date_file": MetadataValue.path(lake.describe(ic_key)),
        "dates": int(feats["date"].n_unique()),
        "features": len(columns),
    }
    if series:
        title = f"20-date rolling mean IC, horizon {h1} (top |ICIR|)"
        meta["chart (inline)"] = MetadataValue.md(title + "\n\n" + charts.text_lines({k: v for k, (_, v) in series.items()}))
        png = charts.line_chart(series, title=title, ylabel="Spearman IC", zero_line=True)
        meta.update(lakeio.write_chart(lake, "research/charts/factor_evaluation_ic.png", png, "chart"))
    empty = summary.filter(pl.col("n_dates") == 0)["feature"].unique().to_list()
    return MaterializeResult(
        value=summary,
        metadata=meta,
        check_results=[
            qc.result(
                KEYS["factor_evaluation"],
                COVERAGE_CHECK,
                not empty,
                f"No usable date for {empty} (all null or too short a history)." if empty else "Every feature has ICs.",
                {"features_without_ic": MetadataValue.json(empty)},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["factor_evaluation"], summary.schema),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Factor models


class FactorModelConfig(BaseModel):
    tickers: list[str] = Field(
        default=[], description="Tickers to regress over their whole history; empty = the members of research/liquid_universe plus SPY."
    )
    n_liquid: int = Field(
        default=20, ge=0, description="When tickers is empty: the first n_liquid members of each rebalance date, each regressed over the sessions it was held."
    )
    analysis: str = Field(default="compare", description="'capm', 'ff' (the model below) or 'compare' (CAPM, FF3 and FF5).")
    model: str = Field(default="5-factor", description="Fama-French model for analysis='ff': '3-factor' or '5-factor'.")
    factor_source: str = Field(
        default="landing",
        description="'landing' (Ken French zips under kenfrench/ in the landing zone) or 'http' (download them).",
    )
    kenfrench_base_url: str = Field(default=kenfrench.BASE_URL, description="Where the Ken French zips are downloaded from.")
    http_timeout_s: float = Field(default=30.0, gt=0, description="Deadline of each download (connect and every read together), seconds.")
    min_obs: int = Field(default=60, ge=5, description="Regressions with fewer common days are skipped (and listed).")


def _models_for(config: FactorModelConfig) -> list[str]:
    if config.analysis == "capm":
        return ["capm"]
    if config.analysis == "ff":
        if config.model not in ("3-factor", "5-factor"):
            raise Failure(description=f"model must be '3-factor' or '5-factor', got {config.model!r}")
        return ["ff3" if config.model == "3-factor" else "ff5"]
    if config.analysis == "compare":
        return ["capm", "ff3", "ff5"]
    raise Failure(description=f"analysis must be 'capm', 'ff' or 'compare', got {config.analysis!r}")


def load_factor_tables(config: FactorModelConfig, landing: LandingZone, models: list[str]) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    """Factor table per model and where each file came from."""
    needed = {kenfrench.MODEL_DATASET[m] for m in models}
    tables: dict[kenfrench.Dataset, pl.DataFrame] = {}
    sources: dict[str, str] = {}
    client = kenfrench.download_client(config.kenfrench_base_url, timeout_s=config.http_timeout_s) if config.factor_source == "http" else None
    try:
        for ds in sorted(needed, key=lambda d: d.name):
            if config.factor_source == "landing":
                key = kenfrench.landing_key(ds)
                where = landing.describe(key)
                try:
                    data = landing.store().read_bytes(key)
                except FileNotFoundError:
                    raise Failure(
                        description=f"no Ken French file at {where}: drop the vendor zip there (the simulator writes one), "
                        "or set factor_source='http'"
                    ) from None
            elif config.factor_source == "http":
                where = kenfrench.url(ds, config.kenfrench_base_url)
                try:
                    data = kenfrench.fetch_zip(client, ds, config.kenfrench_base_url)
                except kenfrench.KenFrenchDownloadError as exc:
                    raise Failure(description=str(exc)) from None
            else:
                raise Failure(description=f"factor_source must be 'landing' or 'http', got {config.factor_source!r}")
            try:
                tables[ds] = kenfrench.read_daily_factors(data, where, ds)
            except kenfrench.KenFrenchFormatError as exc:
                raise Failure(description=f"changed Ken French layout: {exc}", metadata={"file": where}) from None
            sources[ds.name] = where
    finally:
        if client is not None:
            client.close()
    return {m: tables[kenfrench.MODEL_DATASET[m]] for m in models}, sources


@asset(
    key=KEYS["factor_models"],
    **md.asset_kwargs(DOMAIN, layer="analysis", kinds={"polars", "statsmodels"}, code_version="2", tags={"vendor": "kenfrench"}),
    deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)],
    ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])},
    metadata=_table_meta(factors.FACTOR_MODEL_SCHEMA, factors.FACTOR_MODEL_DOCS, partitioned=False),
    check_specs=[
        qc.spec(
            KEYS["factor_models"],
            FACTOR_COVERAGE_CHECK,
            "The factor files cover the last day with returns (warns: the library publishes monthly, with a lag).",
            blocking=False,
        ),
        _schema_check(KEYS["factor_models"]),
    ],
    config_schema=config_schema(FactorModelConfig),
)
def factor_models(context: AssetExecutionContext, liquid_universe: pl.DataFrame, landing: LandingZone, lake: Lake):
    """CAPM, Fama-French 3- and 5-factor regressions of daily excess returns, one row per
    (ticker, model): annualised alpha (x 252), betas, t-stats, R^2, residual volatility.

    Returns: ``ret_1d`` of ``market/daily_bars``; excess over the factor file's RF. Factors: the
    Ken French daily CSV zips (percent units converted to fractions) from the landing zone
    (``kenfrench/F-F_Research_Data_Factors_daily_CSV.zip`` and the 5-factor 2x3 zip) or over HTTP.
    CAPM and FF3 use the three-factor file, FF5 the five-factor file. Plain OLS standard errors.

    Names: ``tickers`` over their whole history, or the dated ``research/liquid_universe`` (its
    first ``n_liquid`` members of each rebalance date), each over the sessions it was held, a
    delisting's exit included, so no name is chosen by how it did later.
    """
    config = parse(FactorModelConfig, context)
    models = _models_for(config)
    daily = _all_daily(lake, ["ticker", "date", "close", "volume", "ret_1d"])
    returns, tickers = _dated_returns(daily, liquid_universe, config.tickers, config.n_liquid)
    tickers = tickers + ([BENCHMARK] if not config.tickers else [])
    returns = pl.concat([returns, daily.filter(pl.col("ticker") == BENCHMARK).select("ticker", "date", "ret_1d")]) if not config.tickers else returns
    tables, sources = load_factor_tables(config, landing, models)
    # Inside the span the files and the returns share, every NYSE session must have factors.
    first_return = returns.filter(pl.col("ret_1d").is_not_null())["date"].min()
    for name, t in tables.items():
        gaps = kenfrench.missing_sessions(t, max(first_return, t["date"].min()), min(t["date"].max(), daily["date"].max()))
        if gaps:
            raise Failure(
                description=f"the Ken French file of {name} ({sources[kenfrench.MODEL_DATASET[name].name]}) has no row for "
                f"{len(gaps)} NYSE session(s) it covers, first {gaps[0]}: {', '.join(map(str, gaps[:5]))}",
                metadata={"missing_sessions": MetadataValue.json([str(d) for d in gaps[:100]])},
            )
    table, notes = factors.factor_models(returns, tables, tickers, models, min_obs=config.min_obs)
    compare = (
        table.pivot(on="model", index="ticker", values="r_squared").rename({m: f"r2_{m}" for m in models})
        .join(table.pivot(on="model", index="ticker", values="alpha_annual").rename({m: f"alpha_ann_{m}" for m in models}), on="ticker")
        .join(table.filter(pl.col("model") == models[0]).select("ticker", pl.col("beta_mkt_rf").alias(f"beta_mkt_{models[0]}")), on="ticker")
        if table.height
        else pl.DataFrame()
    )
    last_return = daily.filter(pl.col("ret_1d").is_not_null())["date"].max()
    last_factor = min(t["date"].max() for t in tables.values())
    covered = last_factor >= last_return
    return MaterializeResult(
        value=table,
        metadata={
            "comparison": _key_table(compare, 40) if compare.height else MetadataValue.md("(no regression had enough days)"),
            "tickers": MetadataValue.json(tickers),
            "factor_files": MetadataValue.json(sources),
            "factor_last_date": str(last_factor),
            "skipped": MetadataValue.json(notes),
        },
        check_results=[
            qc.result(
                KEYS["factor_models"],
                FACTOR_COVERAGE_CHECK,
                covered,
                f"Factors end {last_factor}, returns {last_return}: "
                + ("covered." if covered else "later days are left out of the regressions."),
                {"factor_last_date": str(last_factor), "return_last_date": str(last_return)},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["factor_models"], table.schema),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Backtests and performance


class BacktestConfig(BaseModel):
    tickers: list[str] = Field(default=[], description="Tickers to backtest on all their bars; empty = the members of research/liquid_universe.")
    n_liquid: int = Field(
        default=10, ge=1, description="When tickers is empty: the first n_liquid members of each rebalance date, each traded only while a member."
    )
    strategies: list[str] = Field(default=["macd", "rsi"], description="Strategies to run: 'macd' and/or 'rsi'.")
    rsi_period: int = Field(default=14, ge=2, description="RSI lookback of the rsi strategy.")
    oversold: float = Field(default=30.0, description="RSI crossing below this enters.")
    overbought: float = Field(default=70.0, description="RSI crossing above this exits.")
    fees: float = Field(default=0.001, ge=0, description="Fees per fill, fraction of traded value (0.001 = 10 bp).")
    slippage: float = Field(default=0.0005, ge=0, description="Slippage per fill, fraction of price, against the trade.")
    init_cash: float = Field(default=10_000.0, gt=0, description="Starting cash per ticker and strategy, USD.")
    min_bars: int = Field(default=60, ge=35, description="Tickers with fewer bars are skipped (and listed).")
    delisting_return: float = Field(
        default=universe.DELISTING_RETURN,
        ge=-1.0,
        le=10.0,
        description="A held name that stops trading is sold at its last close x (1 + this); 0 = at the last close, -0.3 = a typical performance delisting.",
    )


@asset(
    key=KEYS["backtests"],
    **md.asset_kwargs(DOMAIN, layer="analysis", kinds={"vectorbt", "polars"}, code_version="2"),
    deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)],
    ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])},
    metadata=_table_meta(backtests.BACKTEST_SCHEMA, backtests.BACKTEST_DOCS, partitioned=False),
    check_specs=[
        qc.spec(KEYS["backtests"], TRADES_CHECK, "Every strategy traded at least once on some ticker (warns).", blocking=False),
        _schema_check(KEYS["backtests"]),
    ],
    config_schema=config_schema(BacktestConfig),
)
def backtests_asset(context: AssetExecutionContext, liquid_universe: pl.DataFrame, lake: Lake):
    """vectorbt backtests of the MACD zero-cross and RSI mean-reversion strategies, one row per
    (ticker, strategy), long only, all-in.

    Signals from each ticker's own daily bars (TA-Lib-exact MACD / RSI); a signal on bar t's close
    fills at bar t+1's open with ``fees`` and ``slippage``. Stats use 252 days a year. Equity
    curves (USD) are stored beside the table (``research/backtests/equity_curves.parquet``).

    Names: ``tickers`` on all their bars, or the dated ``research/liquid_universe``: each of its
    first ``n_liquid`` members is simulated from its first member session, enters only while a
    member and is sold at the open of the first session it is not. A held name that stops
    trading is sold on the next session at its last close x (1 + ``delisting_return``).
    """
    config = parse(BacktestConfig, context)
    daily = _all_daily(lake, ["ticker", "date", "open", "close", "volume"])
    if config.tickers:
        tickers, membership = list(config.tickers), None
        _require_bars(daily, tickers)
    else:
        tickers, membership = universe.selection(liquid_universe, config.n_liquid, daily["date"].unique().to_list())
        if not tickers:
            raise Failure(description="research/liquid_universe has no member: materialize it over enough history (window, min_history)")
    params = backtests.BacktestParams(
        rsi_period=config.rsi_period,
        oversold=config.oversold,
        overbought=config.overbought,
        fees=config.fees,
        slippage=config.slippage,
        init_cash=config.init_cash,
    )
    try:
        stats, equity, notes = backtests.run_backtests(
            daily, tickers, config.strategies, params, min_bars=config.min_bars, membership=membership, delisting_return=config.delisting_return
        )
    except ValueError as exc:
        raise Failure(description=f"research/backtests: {exc}") from None
    curve_key = "research/backtests/equity_curves.parquet"
    lake.write_frame(curve_key, equity)
    meta = {
        "stats": _key_table(stats, 60),
        "equity_curves_file": MetadataValue.path(lake.describe(curve_key)),
        "tickers": MetadataValue.json(tickers),
        "universe": "tickers (config)" if config.tickers else f"research/liquid_universe, first {config.n_liquid} of each rebalance date",
        "delisted": MetadataValue.json(sorted(set(stats.filter(pl.col("delisted"))["ticker"].to_list()))),
        "skipped": MetadataValue.json(notes),
    }
    if equity.height:
        norm = equity.with_columns((pl.col("equity") / config.init_cash).alias("growth"))
        avg = norm.group_by("date", "strategy").agg(pl.col("growth").mean()).sort("date")
        series = {
            f"{s} (mean of {stats.filter(pl.col('strategy') == s).height})": (g["date"].to_list(), g["growth"].to_list())
            for s in config.strategies
            if (g := avg.filter(pl.col("strategy") == s)).height
        }
        spans = stats.select("ticker", "start", "end").unique()
        bh = daily.join(spans, on="ticker").filter(pl.col("date").is_between(pl.col("start"), pl.col("end"))).sort("date")
        first = bh.group_by("ticker").agg(pl.col("open").first().alias("o0"))
        bh = bh.join(first, on="ticker").with_columns((pl.col("close") / pl.col("o0")).alias("growth"))
        bhm = bh.group_by("date").agg(pl.col("growth").mean()).sort("date")
        series["buy and hold (mean)"] = (bhm["date"].to_list(), bhm["growth"].to_list())
        title = "Equity per 1 USD invested, mean over tickers"
        meta["chart (inline)"] = MetadataValue.md(
            title + "\n\n" + charts.text_lines({k: v for k, (_, v) in series.items()}, fmt="{:.3f}")
        )
        png = charts.line_chart(series, title=title, ylabel="growth of 1 USD")
        meta.update(lakeio.write_chart(lake, "research/charts/backtests_equity.png", png, "chart"))
    traded = stats.group_by("strategy").agg(pl.col("n_trades").sum()) if stats.height else pl.DataFrame({"strategy": [], "n_trades": []})
    idle = [s for s in config.strategies if not traded.filter((pl.col("strategy") == s) & (pl.col("n_trades") > 0)).height]
    return MaterializeResult(
        value=stats,
        metadata=meta,
        check_results=[
            qc.result(
                KEYS["backtests"],
                TRADES_CHECK,
                not idle,
                f"No trade at all for {idle}." if idle else "Every strategy traded.",
                {"idle_strategies": MetadataValue.json(idle)},
                severity=AssetCheckSeverity.WARN,
            ),
            qc.schema_result(context, KEYS["backtests"], stats.schema),
        ],
    )


class LiquidUniverseConfig(BaseModel):
    count: int = Field(default=universe.UniverseSpec.count, ge=1, description="Members on each rebalance date.")
    window: int = Field(
        default=universe.UniverseSpec.window, ge=1, description="Trailing sessions (ending on the rebalance date) the ranking uses."
    )
    rebalance: str = Field(default=universe.UniverseSpec.rebalance, description="'daily', 'weekly' or 'monthly' (first session of each).")
    min_history: int = Field(
        default=universe.UniverseSpec.min_history, ge=1, description="Bars a candidate needs within the window (and one on the rebalance date)."
    )
    exclude: list[str] = Field(default=[BENCHMARK], description="Tickers never admitted (the benchmark).")

    def spec(self) -> universe.UniverseSpec:
        return universe.UniverseSpec(count=self.count, window=self.window, rebalance=self.rebalance, min_history=self.min_history)


UNIVERSE_CHECK = "universe_not_empty"


@asset(
    key=KEYS["liquid_universe"],
    **md.asset_kwargs(DOMAIN, layer="analysis", kinds={"polars"}, code_version="1"),
    deps=[AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS)],
    metadata=_table_meta(universe.UNIVERSE_SCHEMA, universe.UNIVERSE_DOCS, partitioned=False),
    check_specs=[
        qc.spec(
            KEYS["liquid_universe"],
            UNIVERSE_CHECK,
            "Every rebalance date with window sessions of history before it has members.",
        ),
        _schema_check(KEYS["liquid_universe"]),
    ],
    config_schema=config_schema(LiquidUniverseConfig),
)
def liquid_universe(context: AssetExecutionContext, lake: Lake):
    """The most liquid names as of each rebalance date, from what was known then: candidates have
    a bar on the rebalance date and at least ``min_history`` bars in the ``window`` sessions
    ending on it, ranked by median daily dollar volume (close x volume) over those bars; the
    first ``count`` are members from the next session until the next rebalance. A name that
    lists late joins once it has the history; one that delists stays a member until the next
    rebalance after its last bar. One row per (rebalance date, member)."""
    config = parse(LiquidUniverseConfig, context)
    try:
        spec = config.spec()
    except ValueError as exc:
        raise Failure(description=f"research/liquid_universe: {exc}") from None
    daily = _all_daily(lake, ["ticker", "date", "close", "volume"])
    members = universe.liquid_universe(daily, spec, exclude=config.exclude)
    sessions = sorted(set(daily["date"].to_list()))
    due = [d for d in universe.rebalance_dates(sessions, spec.rebalance) if sessions.index(d) >= spec.window - 1]
    empty = sorted(set(due) - set(members["rebalance_date"].to_list()))
    per_date = members.group_by("rebalance_date").len().sort("rebalance_date")
    meta = {
        "rebalance_dates": per_date.height,
        "distinct_members": int(members["ticker"].n_unique()),
        "members_per_date": _key_table(per_date.rename({"len": "members"}), 40),
        "latest_members": MetadataValue.json(
            members.filter(pl.col("rebalance_date") == members["rebalance_date"].max())["ticker"].to_list() if members.height else []
        ),
        "preview": _key_table(members.sort("rebalance_date", "rank", descending=[True, False]), 20),
    }
    return MaterializeResult(
        value=members,
        metadata=meta,
        check_results=[
            qc.result(
                KEYS["liquid_universe"],
                UNIVERSE_CHECK,
                not empty,
                f"No member on {len(empty)} rebalance date(s): {[str(d) for d in empty[:10]]}" if empty else f"{len(due)} rebalance date(s), each with members.",
                {"empty_rebalance_dates": MetadataValue.json([str(d) for d in empty])},
            ),
            qc.schema_result(context, KEYS["liquid_universe"], members.schema),
        ],
    )


class PerformanceConfig(BaseModel):
    tickers: list[str] = Field(default=[], description="Names to report over their whole history; empty = the members of research/liquid_universe.")
    n_liquid: int = Field(
        default=20, ge=0, description="When tickers is empty: the first n_liquid members of each rebalance date, each reported over the sessions it was held."
    )
    benchmark: str = Field(default=BENCHMARK, description="Benchmark ticker for alpha, beta and the information ratio.")
    delisting_return: float = Field(
        default=universe.DELISTING_RETURN,
        ge=-1.0,
        le=10.0,
        description="A held name that stops trading is sold at its last close x (1 + this); 0 = at the last close, -0.3 = a typical performance delisting.",
    )


@asset(
    key=KEYS["performance_report"],
    **md.asset_kwargs(DOMAIN, layer="analysis", kinds={"polars", "numpy"}, code_version="2"),
    deps=[
        AssetDep(MARKET_KEYS["daily_bars"], partition_mapping=ALL_DAYS),
        AssetDep(MARKET_KEYS["daily_filtered"], partition_mapping=ALL_DAYS),
    ],
    ins={"liquid_universe": AssetIn(key=KEYS["liquid_universe"])},
    metadata=_table_meta(performance.PERFORMANCE_SCHEMA, performance.COLUMN_DOCS, partitioned=False),
    check_specs=[_schema_check(KEYS["performance_report"])],
    config_schema=config_schema(PerformanceConfig),
)
def performance_report(context: AssetExecutionContext, liquid_universe: pl.DataFrame, lake: Lake):
    """Risk and return of each name against the benchmark, and of the equal-weight portfolio of
    ``market/daily_filtered`` (row ``name = 'portfolio'``).

    Daily simple returns ``ret_1d`` of ``market/daily_bars`` on the dates where both the name and
    the benchmark have one. The portfolio holds, over day D's return, the names in the filtered
    universe on the previous session (membership known before D); a held name that stops trading
    is sold at its last close x (1 + ``delisting_return``), never dropped. Names: ``tickers``
    over their whole history, or the first ``n_liquid`` members of each rebalance date of
    ``research/liquid_universe``, each over the sessions it was held. Every figure is empyrical's
    function of the same name (252 days a year, zero risk-free rate, historical VaR / CVaR at 5 %);
    undefined figures (no variance, no drawdown) are null.
    """
    config = parse(PerformanceConfig, context)
    daily = _all_daily(lake, ["ticker", "date", "close", "volume", "ret_1d"])
    bench = daily.filter(pl.col("ticker") == config.benchmark)
    if bench.drop_nulls("ret_1d").is_empty():
        raise Failure(description=f"benchmark {config.benchmark} has no daily returns in market/daily_bars")
    returns, names = _dated_returns(daily, liquid_universe.filter(pl.col("ticker") != config.benchmark), config.tickers, config.n_liquid, config.delisting_return)
    filtered, _ = lakeio.read_partitions(lake, MARKET_KEYS["daily_filtered"], trading_days.get_partition_keys(), ["ticker", "date"])
    series = {t: returns.filter(pl.col("ticker") == t) for t in names}
    portfolio = performance.equal_weight_portfolio(daily, filtered, delisting_return=config.delisting_return)
    series["portfolio"] = portfolio
    table, aligned = performance.performance_table(series, bench)
    meta = {
        "report": _key_table(table, 40),
        "benchmark": config.benchmark,
        "portfolio_days": int(portfolio.height),
        "portfolio_mean_names": float(portfolio["names"].mean()) if portfolio.height else 0.0,
        "portfolio_exits": int(portfolio["exits"].sum()) if portfolio.height else 0,
        "names_from": "tickers (config)" if config.tickers else f"research/liquid_universe, first {config.n_liquid} of each rebalance date",
        "delisting_return": config.delisting_return,
    }
    lines = {}
    pa = aligned["portfolio"]
    if pa.height:
        lines["portfolio"] = (pa["date"].to_list(), ((pa["r"] + 1).cum_prod() - 1).to_list())
        lines[config.benchmark] = (pa["date"].to_list(), ((pa["b"] + 1).cum_prod() - 1).to_list())
        title = "Cumulative return: equal-weight filtered universe vs benchmark"
        meta["chart (inline)"] = MetadataValue.md(
            title + "\n\n" + charts.text_lines({k: v for k, (_, v) in lines.items()}, fmt="{:+.1%}")
        )
        png = charts.line_chart(lines, title=title, ylabel="cumulative return", zero_line=True)
        meta.update(lakeio.write_chart(lake, "research/charts/performance_report.png", png, "chart"))
    return MaterializeResult(value=table, metadata=meta, check_results=[qc.schema_result(context, KEYS["performance_report"], table.schema)])
