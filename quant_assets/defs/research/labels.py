"""Research, labels: MACD zero-cross event labels (barrier outcomes) and next-session range
expansion labels (``quant_assets.lib.research.labels``, ``.macd``)."""


import polars as pl
from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, Failure
from pydantic import BaseModel, Field

from quant_assets.defs import checks as qc
from quant_assets.defs import metadata as md
from quant_assets.defs.assets import house_asset
from quant_assets.defs.config import mirrors, parse
from quant_assets.defs.market.keys import KEYS as MARKET_KEYS
from quant_assets.defs.partitions import partition_dates, trading_days
from quant_assets.defs.research.common import closed, day_window, rounded, table_meta
from quant_assets.defs.research.keys import BALANCE_BAND, BALANCE_CHECK, KEYS, MINUTE_DAYS_PER_RUN, NEXT_WINDOW
from quant_assets.lib import frames, market
from quant_assets.lib.research import labels

BALANCE = qc.Check(BALANCE_CHECK, "Positive-label share between 1% and 99% (warns).", blocking=False)
EVENT_CHECKS = qc.AssetChecks(KEYS["macd_event_labels"], BALANCE)
RANGE_CHECKS = qc.AssetChecks(KEYS["range_expansion_labels"], BALANCE)


@mirrors(labels.EventRule)
class EventLabelConfig(BaseModel):
    """The barrier rule's knobs (declared in ``lib.research.macd.EventRule``, re-exported by ``labels``)."""


def _balance(label: pl.Series) -> dict[str, qc.Outcome]:
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
    return {BALANCE_CHECK: qc.Outcome(ok, desc, rounded(dict(bal)))}


@house_asset(
    KEYS["macd_event_labels"], "labels", {"polars", "numba", "parquet"}, "1",
    partitions_def=trading_days, per_run=MINUTE_DAYS_PER_RUN, metadata=table_meta(labels.EVENTS_SCHEMA, labels.EVENT_DOCS),
    ins={"minute_aggs": AssetIn(key=MARKET_KEYS["minute_aggs"])}, checks=EVENT_CHECKS, config=EventLabelConfig,
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
    minute = frames.conform(minute_aggs, market.MINUTE_AGGS_SCHEMA)
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
    figures = frames.per_day_counts(out, targets, {"positive_labels": pl.col("label").fill_null(0).sum()}, rows="events")
    md.per_day(context, figures, closed=closed)
    return EVENT_CHECKS.materialize(context, out, outcomes=_balance(out["label"]))


class RangeLabelConfig(BaseModel):
    threshold: float = Field(default=0.08, gt=0, description="Next-day (high - low) / close at or above this is label 1 (0.08 = 8 %).")


@house_asset(
    KEYS["range_expansion_labels"], "labels", {"polars", "parquet"}, "1",
    partitions_def=trading_days, backfill_policy=BackfillPolicy.single_run(),
    metadata=table_meta(labels.RANGE_LABEL_SCHEMA, labels.RANGE_LABEL_DOCS),
    ins={"daily_bars": AssetIn(key=MARKET_KEYS["daily_bars"], partition_mapping=day_window(0, NEXT_WINDOW))}, checks=RANGE_CHECKS,
    config=RangeLabelConfig,
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
    daily = frames.conform(daily_bars, market.DAILY_BARS_SCHEMA)
    out = labels.range_expansion_labels(daily, targets, config.threshold)
    known = {"labelled": pl.col("label").is_not_null().sum(), "positive": pl.col("label").fill_null(0).sum()}
    figures = frames.per_day_counts(out, targets, known, rows="tickers")
    md.per_day(context, figures, closed=closed, each=lambda day: {"next_session": labels.next_session(day).isoformat()})
    return RANGE_CHECKS.materialize(context, out, outcomes=_balance(out["label"]))
