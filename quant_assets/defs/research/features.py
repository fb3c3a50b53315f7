"""Research, features: TA-Lib-exact technical indicators per trading day and the MACD day
features of the minute bars (``quant_assets.lib.research.indicators``, ``.macd``)."""

import datetime as dt

import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.config import config_schema, parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import history_start, partition_dates, trading_days
from quant_assets.defs.research import lakeio
from quant_assets.defs.research.common import (
    conform,
    schema_check,
    table_meta,
)
from quant_assets.defs.research.keys import (
    DOMAIN,
    HOLIDAY,
    JOIN_CHECK,
    KEYS,
    MINUTE_DAYS_PER_RUN,
    MODE_CHECK,
    RANGE_CHECK,
)
from quant_assets.defs.resources import Lake
from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.research import (
    indicators,
    macd,
)

# ---------------------------------------------------------------------------------------------
# Features


@asset(
    key=KEYS["technical_features"],
    **md.asset_kwargs(DOMAIN, layer="features", kinds={"polars", "numba", "parquet"}, code_version="1"),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    metadata=table_meta(indicators.TECHNICAL_SCHEMA, indicators.COLUMN_DOCS),
    ins={"daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"])},
    check_specs=[
        qc.spec(
            KEYS["technical_features"],
            RANGE_CHECK,
            "Oscillators within 0-100, Bollinger bands ordered, ATR and volatility non-negative.",
        ),
        schema_check(KEYS["technical_features"]),
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
    current = conform(daily_bars, market.DAILY_BARS_SCHEMA).select(cols)
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
    metadata=table_meta(macd.MACD_DAY_SCHEMA, macd.COLUMN_DOCS),
    ins={"minute_aggs": AssetIn(key=MARKET_KEYS["minute_aggs"])},
    check_specs=[
        qc.spec(KEYS["macd_day_features"], MODE_CHECK, "Exactly one row per ticker, day and requested mode."),
        schema_check(KEYS["macd_day_features"]),
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
    minute = conform(minute_aggs, market.MINUTE_AGGS_SCHEMA)
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
    metadata=table_meta(PLUS_MACD_SCHEMA, PLUS_MACD_DOCS),
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
        schema_check(KEYS["minute_features_plus_macd"]),
    ],
)
def minute_features_plus_macd(context: AssetExecutionContext, minute_features: pl.DataFrame, macd_day_features: pl.DataFrame):
    """``market/minute_features`` with the day's MACD summaries beside them: one row per
    tradable ticker and day. MACD columns of mode ``all`` keep their names; mode ``rth`` columns
    end in ``_rth``. Units as in the two sources."""
    feats = conform(minute_features, market.MINUTE_FEATURES_SCHEMA)
    m = conform(macd_day_features, macd.MACD_DAY_SCHEMA)
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


