"""The verification checklist of the client-intelligence world, as plain functions on the tables.

Each rule returns a :class:`Verdict`: whether it passed, a one-line description naming what is
wrong, and figures for the UI. They read only the published tables (never the generator's
internals), so they verify what an agent will actually read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.classifier import MIN_ACCURACY, ClassifierReport
from quant_assets.lib.client_intel.market import MA_WINDOW, Panel
from quant_assets.lib.client_intel.regimes import MAX_STEP, POINTS, PROB_CEIL, PROB_FLOOR
from quant_assets.lib.client_intel.spec import (
    BEHAVIOURS,
    HEDGER,
    HEDGER_SELL_SHARE,
    HEDGER_SELL_SHARE_TOL,
    INSTRUMENTS,
    MEAN_REVERTER,
    SEGMENTS,
    SYMBOLS,
    TREND_FOLLOWER,
    TREND_SETTER,
    WorldSpec,
)
from quant_assets.lib.client_intel.trades import CLIENT_SHARE_SD, TREND_LOOKBACK

# Share of rule-bound opening trades that must follow their segment's rule.
RULE_SHARE = 0.99
MIN_ACTIVE_TRADES_PER_6M = 30
SENTIMENT_AGREEMENT = 0.8
EPS = 1e-9


@dataclasses.dataclass
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    markdown: dict[str, str] = dataclasses.field(default_factory=dict)
    # A verdict that could not be reached (too little data to test it) warns, even on a
    # blocking check: a valid configuration must not stop the pipeline.
    warn_only: bool = False


def _fail_or_pass(problems: list[str], ok_text: str, metadata: dict[str, Any], markdown: dict[str, str] | None = None) -> Verdict:
    desc = "; ".join(problems[:6]) + (f"; ... ({len(problems)} problems)" if len(problems) > 6 else "") if problems else ok_text
    return Verdict(not problems, desc, {**metadata, "problems": problems[:50]}, markdown or {})


# --------------------------------------------------------------------------- market bars


def bars_complete(bars: pl.DataFrame, spec: WorldSpec) -> Verdict:
    expected = len(SYMBOLS) * spec.days
    problems = []
    if bars.height != expected:
        problems.append(f"{bars.height} bars, expected {expected} ({len(SYMBOLS)} instruments x {spec.days} days)")
    dup = bars.group_by("instrument", "date").len().filter(pl.col("len") > 1).height
    if dup:
        problems.append(f"{dup} (instrument, date) pairs appear more than once")
    if bars.height:
        lo, hi = bars["date"].min(), bars["date"].max()
        if (lo, hi) != (spec.start, spec.as_of):
            problems.append(f"bars span {lo}..{hi}, expected {spec.start}..{spec.as_of}")
    bad_ohlc = bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") <= 0)
    ).height
    if bad_ohlc:
        problems.append(f"{bad_ohlc} bars with low > open/close, high < open/close or a non-positive price")
    nulls = bars.select(pl.exclude("ret_1d").null_count()).sum_horizontal().item() if bars.height else 0
    if nulls:
        problems.append(f"{nulls} null values outside ret_1d")
    return _fail_or_pass(
        problems,
        f"{bars.height:,} bars: {len(SYMBOLS)} instruments x {spec.days} calendar days, OHLC consistent.",
        {"rows": bars.height, "expected_rows": expected},
    )


# --------------------------------------------------------------------------- clients


def clients_valid(clients: pl.DataFrame, spec: WorldSpec) -> Verdict:
    problems = []
    if clients.height != spec.n_clients:
        problems.append(f"{clients.height} clients, expected n_clients={spec.n_clients}")
    if clients["client_id"].n_unique() != clients.height:
        problems.append("client_id is not unique")
    unknown = sorted(set(clients["segment"].to_list()) - set(SEGMENTS))
    if unknown:
        problems.append(f"unknown segment(s) {unknown}")
    counts = dict(clients.group_by("segment").len().iter_rows())
    expected = {s: round(spec.segment_mix[s] * spec.n_clients) for s in SEGMENTS}
    off = {s: (counts.get(s, 0), expected[s]) for s in SEGMENTS if abs(counts.get(s, 0) - expected[s]) > 1}
    if off:
        problems.append(f"segment counts (got, expected) {off} do not follow segment_mix")
    late = clients.filter(pl.col("onboarding_date") >= spec.start).height
    if late:
        problems.append(f"{late} client(s) onboarded on or after the history start {spec.start}")
    if clients.null_count().sum_horizontal().item():
        problems.append("null values in clients")
    return _fail_or_pass(
        problems,
        f"{clients.height} clients with unique ids; per segment {counts}.",
        {"rows": clients.height, "per_segment": {s: counts.get(s, 0) for s in SEGMENTS}},
    )


# --------------------------------------------------------------------------- trades


def trades_valid(trades: pl.DataFrame, clients: pl.DataFrame, bars: pl.DataFrame) -> Verdict:
    problems = []
    unknown = trades.filter(~pl.col("client_id").is_in(clients["client_id"].implode())).height
    if unknown:
        problems.append(f"{unknown} trade(s) of clients not in client_intel/clients")
    if trades["trade_id"].n_unique() != trades.height:
        problems.append("trade_id is not unique")
    joined = trades.join(bars.select("instrument", "date", "low", "high"), left_on=["instrument", "trade_date"], right_on=["instrument", "date"], how="left")
    no_bar = joined.filter(pl.col("low").is_null()).height
    if no_bar:
        problems.append(f"{no_bar} trade(s) on an instrument/day without a bar")
    outside = joined.filter((pl.col("price") < pl.col("low")) | (pl.col("price") > pl.col("high"))).height
    if outside:
        problems.append(f"{outside} trade(s) priced outside their day's [low, high]")
    lots = {s.symbol: s.lot for s in INSTRUMENTS}
    bad_qty = trades.filter(
        (pl.col("quantity") <= 0) | (pl.col("quantity") % pl.col("instrument").replace_strict(lots, default=1) != 0)
    ).height
    if bad_qty:
        problems.append(f"{bad_qty} trade(s) with a quantity that is not a positive whole number of lots")
    date_mismatch = trades.filter(pl.col("executed_at").dt.date() != pl.col("trade_date")).height
    if date_mismatch:
        problems.append(f"{date_mismatch} trade(s) whose executed_at is not on trade_date")
    idle = clients.height - trades["client_id"].n_unique()
    if idle:
        problems.append(f"{idle} client(s) without a single trade")
    return _fail_or_pass(
        problems,
        f"{trades.height:,} trades: known clients, priced inside their bars, whole lots, every client trading.",
        {"rows": trades.height, "clients_trading": trades["client_id"].n_unique()},
    )


def _rule_shares(trades: pl.DataFrame, clients: pl.DataFrame, panel: Panel) -> dict[str, tuple[int, int]]:
    """(followed, checked) of the opening trades of rule-bound segments, from the bars."""
    opens = trades.filter(pl.col("position_effect") == "OPEN").join(clients.select("client_id", "segment"), on="client_id")
    day = (opens["trade_date"].to_numpy().astype("datetime64[D]") - panel.dates[0]).astype(np.int64)
    inst = opens["instrument"].replace_strict({s: i for i, s in enumerate(SYMBOLS)}, return_dtype=pl.Int64).to_numpy()
    side = np.where(opens["side"].to_numpy() == "BUY", 1, -1)
    seg = opens["segment"].to_numpy()
    close = panel.close
    out = {}
    tf = (seg == TREND_FOLLOWER) & (day - 1 - TREND_LOOKBACK >= 0)
    trend = np.sign(np.log(close[inst[tf], day[tf] - 1] / close[inst[tf], day[tf] - 1 - TREND_LOOKBACK]))
    out[TREND_FOLLOWER] = (int((trend == side[tf]).sum()), int(tf.sum()))
    mr = (seg == MEAN_REVERTER) & (day - MA_WINDOW >= 0)
    csum = np.concatenate([np.zeros((close.shape[0], 1)), np.cumsum(close, axis=1)], axis=1)
    d, i = day[mr], inst[mr]
    ma = (csum[i, d] - csum[i, d - MA_WINDOW]) / MA_WINDOW
    below = close[i, d - 1] < ma
    out[MEAN_REVERTER] = (int(((side[mr] > 0) == below).sum()), int(mr.sum()))
    return out


def share_tolerance(target: float, tol: float, n_trades: int, n_clients: int = 1_000_000) -> float:
    """The segment's tolerance, widened to four standard errors of the observed share (plus a
    continuity correction) when few trades or few clients are observed (one Hedger's ten trades
    cannot pin a share to +/- 0.10): per-trade binomial noise plus the spread of the clients' own
    shares around the segment's."""
    n = max(n_trades, 1)
    var = target * (1.0 - target) / n + CLIENT_SHARE_SD**2 / max(n_clients, 1)
    return max(tol, 4.0 * math.sqrt(var) + 0.5 / n)


def segment_patterns(trades: pl.DataFrame, clients: pl.DataFrame, panel: Panel, spec: WorldSpec) -> Verdict:
    """Order-type shares per segment, Hedgers' sell share and trade counts, and the trend / moving
    average rules of Trend Followers and Mean Reverters, from the trades and the bars."""
    problems = []
    j = trades.join(clients.select("client_id", "segment"), on="client_id")
    per_seg = {
        s: (n, m, sell, k)
        for s, n, m, sell, k in j.group_by("segment")
        .agg(
            pl.len(),
            (pl.col("order_type") == "MARKET").mean(),
            (pl.col("side") == "SELL").mean(),
            pl.col("client_id").n_unique(),
        )
        .iter_rows()
    }
    shares = {}
    for name, b in BEHAVIOURS.items():
        if name not in per_seg:
            continue
        n, m, sell, k = per_seg[name]
        shares[name] = round(m, 4)
        tol = share_tolerance(b.market_share, b.market_share_tol, n, k) if b.market_share > 0 else 0.0
        if abs(m - b.market_share) > tol + EPS:
            problems.append(f"{name}: market-order share {m:.3f}, expected {b.market_share:.2f} +/- {tol:.3f}")
    sell_share = None
    if HEDGER in per_seg:
        n, _, sell_share, k = per_seg[HEDGER]
        tol = share_tolerance(HEDGER_SELL_SHARE, HEDGER_SELL_SHARE_TOL, n, k)
        if abs(sell_share - HEDGER_SELL_SHARE) > tol + EPS:
            problems.append(f"Hedger sell share {sell_share:.3f}, expected {HEDGER_SELL_SHARE:.2f} +/- {tol:.3f}")
    counts = clients.join(j.group_by("client_id").len(), on="client_id", how="left").with_columns(pl.col("len").fill_null(0))
    lo, hi = spec.hedger_trade_band()
    bad_h = counts.filter((pl.col("segment") == HEDGER) & ~pl.col("len").is_between(lo, hi))
    if bad_h.height:
        problems.append(f"{bad_h.height} Hedger(s) outside {lo}-{hi} trades, e.g. {bad_h.head(3).select('client_id', 'len').rows()}")
    min_active = math.ceil(MIN_ACTIVE_TRADES_PER_6M * spec.months_history / 6)
    quiet = counts.filter((pl.col("segment") != HEDGER) & (pl.col("len") < min_active))
    if quiet.height:
        problems.append(f"{quiet.height} active client(s) with fewer than {min_active} trades")
    rules = _rule_shares(trades, clients, panel)
    rule_meta = {}
    for name, (ok, total) in rules.items():
        share = ok / total if total else 1.0
        rule_meta[name] = {"followed": ok, "checked": total, "share": round(share, 4)}
        if share < RULE_SHARE:
            what = "trade with the 5-day trend" if name == TREND_FOLLOWER else "buy below / sell above the 20-day MA"
            problems.append(f"only {share:.1%} of {name} opening trades {what} (need {RULE_SHARE:.0%})")
    return _fail_or_pass(
        problems,
        f"Market-order shares {shares}; Hedger sell share {sell_share if sell_share is None else round(sell_share, 3)}; "
        "rule-bound entries follow their rules.",
        {
            "market_order_share": shares,
            "hedger_sell_share": None if sell_share is None else round(sell_share, 4),
            "hedger_trade_band": [lo, hi],
            "entry_rules": rule_meta,
            "trades_per_segment": {s: per_seg[s][0] for s in per_seg},
        },
    )


# --------------------------------------------------------------------------- positions


def positions_match_trades(positions: pl.DataFrame, trades: pl.DataFrame) -> Verdict:
    """Replaying the trades (signed quantities summed per client and instrument) gives exactly
    the positions, and no position is flat."""
    replay = (
        trades.group_by("client_id", "instrument")
        .agg(pl.when(pl.col("side") == "BUY").then(pl.col("quantity")).otherwise(-pl.col("quantity")).sum().alias("replayed"))
        .filter(pl.col("replayed") != 0)
    )
    cmp = replay.join(positions.select("client_id", "instrument", "quantity"), on=["client_id", "instrument"], how="full", coalesce=True)
    mismatch = cmp.filter(pl.col("replayed").is_null() | pl.col("quantity").is_null() | (pl.col("replayed") != pl.col("quantity")))
    problems = []
    if mismatch.height:
        problems.append(f"{mismatch.height} (client, instrument) pair(s) differ from the trade replay, e.g. {mismatch.head(3).rows()}")
    flat = positions.filter(pl.col("quantity") == 0).height
    if flat:
        problems.append(f"{flat} flat position row(s)")
    return _fail_or_pass(
        problems,
        f"{positions.height} open positions, equal to the replay of {trades.height:,} trades.",
        {"positions": positions.height, "replayed_nonzero": replay.height},
    )


# --------------------------------------------------------------------------- headlines


def headlines_valid(headlines: pl.DataFrame, bars: pl.DataFrame, spec: WorldSpec) -> Verdict:
    problems = []
    if headlines.height != spec.n_headlines:
        problems.append(f"{headlines.height} headlines, expected {spec.n_headlines}")
    out = headlines.filter(~pl.col("sentiment").is_between(-1.0, 1.0) | pl.col("sentiment").is_null()).height
    if out:
        problems.append(f"{out} sentiment value(s) outside [-1, 1]")
    unknown = headlines.filter(~pl.col("instrument").is_in(list(SYMBOLS))).height
    if unknown:
        problems.append(f"{unknown} headline(s) tagged with an unknown instrument")
    dates = headlines["published_at"].dt.date()
    if headlines.height and (dates.min() < spec.start or dates.max() > spec.as_of):
        problems.append(f"headlines published {dates.min()}..{dates.max()}, outside the history")
    bad_tags = 0
    for raw, inst in zip(headlines["tags"].to_list(), headlines["instrument"].to_list(), strict=True):
        try:
            tags = json.loads(raw)
        except (TypeError, ValueError):
            bad_tags += 1
            continue
        if not isinstance(tags, list) or inst not in tags:
            bad_tags += 1
    if bad_tags:
        problems.append(f"{bad_tags} headline(s) whose tags are not a JSON array containing the instrument")
    vol = {s.symbol: s.annual_vol / math.sqrt(365) for s in INSTRUMENTS}
    moves = headlines.with_columns(pl.col("published_at").dt.date().alias("date")).join(
        bars.select("instrument", "date", "ret_1d"), on=["instrument", "date"], how="left"
    ).with_columns((pl.col("ret_1d") / pl.col("instrument").replace_strict(vol, default=None)).alias("z"))
    big = moves.filter(pl.col("z").abs() > 1.0)
    agree = float((big["z"].sign() == big["sentiment"].sign()).mean()) if big.height else 1.0
    if agree < SENTIMENT_AGREEMENT:
        problems.append(f"sentiment agrees with the sign of a >1 sigma move on only {agree:.0%} of such headlines")
    return _fail_or_pass(
        problems,
        f"{headlines.height} headlines; sentiment in [-1, 1] and agreeing with the move on {agree:.0%} of big-move days.",
        {"rows": headlines.height, "expected_rows": spec.n_headlines, "sentiment_agreement_big_moves": round(agree, 4)},
    )


# --------------------------------------------------------------------------- pnl / risk


def pnl_consistent(pnl: pl.DataFrame, positions: pl.DataFrame, clients: pl.DataFrame, spec: WorldSpec) -> Verdict:
    problems = []
    expected = clients.height * spec.days
    if pnl.height != expected:
        problems.append(f"{pnl.height} rows, expected {expected} (clients x days)")
    last = pnl.filter(pl.col("date") == spec.as_of).select("client_id", "gross_exposure_usd", "net_exposure_usd", "unrealized_pnl_usd")
    book = positions.group_by("client_id").agg(
        pl.col("market_value_usd").abs().sum().alias("gross"),
        pl.col("market_value_usd").sum().alias("net"),
        pl.col("unrealized_pnl_usd").sum().alias("unreal"),
    )
    cmp = last.join(book, on="client_id", how="left").fill_null(0.0)
    tol = pl.max_horizontal(pl.lit(0.01), pl.col("gross") * 1e-9)
    off = cmp.filter(
        ((pl.col("gross_exposure_usd") - pl.col("gross")).abs() > tol)
        | ((pl.col("net_exposure_usd") - pl.col("net")).abs() > tol)
        | ((pl.col("unrealized_pnl_usd") - pl.col("unreal")).abs() > tol)
    )
    if off.height:
        problems.append(f"{off.height} client(s) whose last-day exposure or unrealized PnL differs from client_intel/positions")
    cum = pnl.sort("client_id", "date").with_columns(pl.col("pnl_usd").cum_sum().over("client_id").alias("_cum"))
    drift = cum.filter((pl.col("_cum") - pl.col("cumulative_pnl_usd")).abs() > 1e-6 * (1 + pl.col("_cum").abs())).height
    if drift:
        problems.append(f"{drift} row(s) where cumulative_pnl_usd is not the running sum of pnl_usd")
    neg_var = pnl.filter(pl.col("var_95_1d_usd") < 0).height
    pos_dd = pnl.filter(pl.col("drawdown_usd") > 0).height
    if neg_var or pos_dd:
        problems.append(f"{neg_var} negative VaR and {pos_dd} positive drawdown value(s)")
    return _fail_or_pass(
        problems,
        f"{pnl.height:,} client-days; last-day exposures and unrealized PnL equal the positions; cumulative PnL adds up.",
        {"rows": pnl.height, "expected_rows": expected},
    )


# --------------------------------------------------------------------------- features


def features_complete(features: pl.DataFrame, clients: pl.DataFrame) -> Verdict:
    problems = []
    missing = clients.join(features, on="client_id", how="anti").height
    if missing:
        problems.append(f"{missing} client(s) without features")
    if features["client_id"].n_unique() != features.height:
        problems.append("more than one features row for a client")
    nulls = {c: n for c, n in features.null_count().row(0, named=True).items() if n}
    if nulls:
        problems.append(f"null features {nulls}")
    ranges = {
        "momentum_beta_1d": (-1, 1), "momentum_beta_5d": (-1, 1), "momentum_beta_20d": (-1, 1),
        "turnover": (0, 1), "aggressiveness": (0, 1),
    }  # fmt: skip
    for col, (lo, hi) in ranges.items():
        bad = features.filter(~pl.col(col).is_between(lo, hi)).height
        if bad:
            problems.append(f"{bad} {col} value(s) outside [{lo}, {hi}]")
    if features.filter(pl.col("holding_period_avg") <= 0).height:
        problems.append("non-positive holding_period_avg")
    bad_json = 0
    for raw in features["exposure_concentration"].to_list():
        try:
            shares = json.loads(raw)
            ok = isinstance(shares, dict) and set(shares) <= set(SYMBOLS) and abs(sum(shares.values()) - 1) < 1e-3
        except (TypeError, ValueError):
            ok = False
        bad_json += not ok
    if bad_json:
        problems.append(f"{bad_json} exposure_concentration value(s) not a JSON object of instrument shares summing to 1")
    return _fail_or_pass(
        problems,
        f"Features for all {clients.height} clients; betas in [-1, 1], turnover and aggressiveness in [0, 1].",
        {"rows": features.height, "clients": clients.height},
    )


def holding_period_bands(features: pl.DataFrame, clients: pl.DataFrame) -> Verdict:
    j = features.join(clients.select("client_id", "segment"), on="client_id")
    problems = []
    summary = {}
    for name, b in BEHAVIOURS.items():
        seg = j.filter(pl.col("segment") == name)
        if not seg.height:
            continue
        h = seg["holding_period_avg"]
        summary[name] = {"band": [b.hold_min, b.hold_max], "mean": round(h.mean(), 3), "min": round(h.min(), 3), "max": round(h.max(), 3)}
        out = seg.filter(~pl.col("holding_period_avg").is_between(b.hold_min, b.hold_max) | pl.col("holding_period_avg").is_null())
        if out.height:
            problems.append(
                f"{out.height} {name}(s) hold outside {b.hold_min}-{b.hold_max} days, e.g. "
                f"{out.head(3).select('client_id', 'holding_period_avg').rows()}"
            )
    table = "| segment | band (days) | mean | min | max |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {s} | {v['band'][0]}-{v['band'][1]} | {v['mean']:.2f} | {v['min']:.2f} | {v['max']:.2f} |" for s, v in summary.items()
    )
    return _fail_or_pass(
        problems, "Every client's average holding period is inside its segment's band.", {"per_segment": summary}, {"holding_periods": table}
    )


def lead_lag_signs(features: pl.DataFrame, clients: pl.DataFrame) -> Verdict:
    """Trend Setters lead (positive lead-lag alpha), Trend Followers lag (negative)."""
    j = features.join(clients.select("client_id", "segment"), on="client_id")
    problems = []
    ts_bad = j.filter((pl.col("segment") == TREND_SETTER) & ~(pl.col("lead_lag_alpha") > 0)).height
    tf_bad = j.filter((pl.col("segment") == TREND_FOLLOWER) & ~(pl.col("lead_lag_alpha") < 0)).height
    if ts_bad:
        problems.append(f"{ts_bad} Trend Setter(s) without a positive lead_lag_alpha")
    if tf_bad:
        problems.append(f"{tf_bad} Trend Follower(s) without a negative lead_lag_alpha")
    means = dict(j.group_by("segment").agg(pl.col("lead_lag_alpha").mean()).iter_rows())
    return _fail_or_pass(
        problems,
        "Every Trend Setter leads (lead_lag_alpha > 0) and every Trend Follower lags (< 0).",
        {"mean_lead_lag_alpha": {k: round(v, 4) for k, v in means.items() if v is not None}},
    )


def classifier_verdict(report: ClassifierReport) -> Verdict:
    meta = {
        "accuracy": None if report.accuracy is None else round(report.accuracy, 4),
        "min_accuracy": MIN_ACCURACY,
        "folds": report.folds,
        "clients": report.n_clients,
        "labels": report.labels,
        "confusion_matrix": report.confusion,
        "recall": report.recall,
        "model": "StandardScaler + multinomial LogisticRegression, stratified K-fold out-of-fold predictions",
    }
    md = {"confusion": report.confusion_markdown()}
    if report.accuracy is None:
        # A book this small is valid (n_clients >= 1): the check cannot be run, which warns
        # instead of blocking the warehouse load.
        return Verdict(False, f"Not evaluated (warning only): {report.reason}", meta, md, warn_only=True)
    ok = report.accuracy >= MIN_ACCURACY
    return Verdict(
        ok,
        f"{report.folds}-fold cross-validated accuracy {report.accuracy:.1%} "
        f"({'>=' if ok else 'below'} {MIN_ACCURACY:.0%}) recovering the segment from the features.",
        meta,
        md,
    )


# --------------------------------------------------------------------------- regimes


def regimes_valid(regimes: pl.DataFrame, clients: pl.DataFrame) -> Verdict:
    problems = []
    r = regimes.sort("client_id", "start_date")
    per = r.group_by("client_id").len()
    missing = clients.join(per, on="client_id", how="anti").height
    if missing:
        problems.append(f"{missing} client(s) without a regime")
    bad_n = per.filter(~pl.col("len").is_between(1, 4)).height
    if bad_n:
        problems.append(f"{bad_n} client(s) with a number of regimes outside 1-4")
    r = r.with_columns(
        pl.col("start_date").shift(-1).over("client_id").alias("_next"),
        pl.col("segment").shift(-1).over("client_id").alias("_next_seg"),
        (pl.int_range(pl.len()).over("client_id") == pl.len().over("client_id") - 1).alias("_last"),
    )
    open_not_last = r.filter(pl.col("end_date").is_null() & ~pl.col("_last")).height
    last_closed = r.filter(pl.col("_last") & pl.col("end_date").is_not_null()).height
    if open_not_last or last_closed:
        problems.append(f"{last_closed} client(s) whose current regime has an end_date; {open_not_last} open regime(s) that are not the last")
    overlap = r.filter(~pl.col("_last") & (pl.col("end_date") >= pl.col("_next"))).height
    if overlap:
        problems.append(f"{overlap} regime(s) overlapping the next one")
    gaps = r.filter(~pl.col("_last") & (pl.col("end_date") + pl.duration(days=1) != pl.col("_next"))).height
    if gaps:
        problems.append(f"{gaps} gap(s) between consecutive regimes")
    reversed_ = r.filter(pl.col("end_date") < pl.col("start_date")).height
    if reversed_:
        problems.append(f"{reversed_} regime(s) ending before they start")
    same = r.filter(~pl.col("_last") & (pl.col("segment") == pl.col("_next_seg"))).height
    if same:
        problems.append(f"{same} regime change(s) to the same segment")
    cur = r.filter(pl.col("_last")).join(clients.select("client_id", pl.col("segment").alias("_seg")), on="client_id")
    wrong = cur.filter(pl.col("segment") != pl.col("_seg")).height
    if wrong:
        problems.append(f"{wrong} client(s) whose current regime is not their segment")
    conf = regimes.filter(~pl.col("confidence").is_between(0, 1)).height
    if conf:
        problems.append(f"{conf} confidence value(s) outside [0, 1]")
    return _fail_or_pass(
        problems,
        f"{regimes.height} regimes for {per.height} clients: 1-4 each, contiguous and non-overlapping, the current one "
        "open-ended and equal to the client's segment.",
        {"rows": regimes.height, "per_client_max": int(per["len"].max() or 0) if per.height else 0},
    )


# --------------------------------------------------------------------------- switch probability


def switch_probability_gradual(history: pl.DataFrame, clients: pl.DataFrame, spec: WorldSpec) -> Verdict:
    problems = []
    h = history.sort("client_id", "computed_at")
    per = h.group_by("client_id").len()
    lo, hi = POINTS
    missing = clients.join(per, on="client_id", how="anti").height
    if missing:
        problems.append(f"{missing} client(s) without a switch-probability history")
    bad_n = per.filter(~pl.col("len").is_between(lo, hi)).height
    if bad_n:
        problems.append(f"{bad_n} client(s) with a number of points outside {lo}-{hi}")
    out = h.filter(~pl.col("switch_prob").is_between(PROB_FLOOR - EPS, PROB_CEIL + EPS)).height
    if out:
        problems.append(f"{out} switch_prob value(s) outside [{PROB_FLOOR}, {PROB_CEIL}]")
    steps = h.with_columns(pl.col("switch_prob").diff().over("client_id").abs().alias("_step"))
    max_step = steps["_step"].max()
    jumps = steps.filter(pl.col("_step") > MAX_STEP + EPS).height
    if jumps:
        problems.append(f"{jumps} step(s) larger than {MAX_STEP} (largest {max_step:.4f})")
    conf = h.filter(~pl.col("confidence").is_between(0, 1)).height
    if conf:
        problems.append(f"{conf} confidence value(s) outside [0, 1]")
    wrong_seg = h.join(clients.select("client_id", pl.col("segment").alias("_s")), on="client_id").filter(pl.col("segment") != pl.col("_s")).height
    if wrong_seg:
        problems.append(f"{wrong_seg} point(s) whose segment is not the client's")
    bad_json = 0
    for col in ("drivers", "risk_flags"):
        for raw in h[col].to_list():
            try:
                v = json.loads(raw)
                bad_json += not (isinstance(v, list) and all(isinstance(x, str) for x in v))
            except (TypeError, ValueError):
                bad_json += 1
    if bad_json:
        problems.append(f"{bad_json} drivers/risk_flags value(s) that are not JSON arrays of strings")
    days = h["computed_at"].dt.date()
    if h.height and (days.min() < spec.start or days.max() > spec.as_of):
        problems.append(f"computed_at spans {days.min()}..{days.max()}, outside the history")
    latest = h.group_by("client_id").agg(pl.col("switch_prob").last()).join(clients.select("client_id", "segment"), on="client_id")
    per_seg = dict(latest.group_by("segment").agg(pl.col("switch_prob").mean()).iter_rows())
    return _fail_or_pass(
        problems,
        f"{h.height} points for {per.height} clients, {lo}-{hi} each, in [{PROB_FLOOR}, {PROB_CEIL}], largest step "
        f"{(max_step or 0):.3f} (limit {MAX_STEP}).",
        {
            "rows": h.height,
            "largest_step": round(float(max_step or 0.0), 4),
            "elevated_now": int(latest.filter(pl.col("switch_prob") >= 0.5).height),
            "latest_mean_by_segment": {k: round(v, 4) for k, v in per_seg.items()},
        },
    )


def table_figures(table: str, frame: pl.DataFrame, clients: pl.DataFrame) -> dict[str, Any]:
    """Key figures of one world table beyond its row count: clients and trades per segment, the
    trades' span, mean holding period per segment, clients whose switch probability is 0.5 or
    more on the last day."""
    def per_segment(df: pl.DataFrame) -> dict[str, int]:
        return dict(df.group_by("segment").len().sort("segment").iter_rows())

    if table == "clients":
        return {"per_segment": per_segment(frame)}
    if table == "trades":
        joined = frame.join(clients.select("client_id", "segment"), on="client_id")
        return {"per_segment": per_segment(joined), "first_trade": str(frame["executed_at"].min()), "last_trade": str(frame["executed_at"].max())}
    if table == "features":
        joined = frame.join(clients.select("client_id", "segment"), on="client_id")
        hold = joined.group_by("segment").agg(pl.col("holding_period_avg").mean()).sort("segment")
        return {"holding_period_avg_by_segment": {s: round(v, 3) for s, v in hold.iter_rows()}}
    if table == "switch_probability_history":
        latest = frame.group_by("client_id").agg(pl.col("switch_prob").last())
        return {"clients_elevated_now": int((latest["switch_prob"] >= 0.5).sum())}
    return {}
