"""Segment timelines (client regimes) and the switch-probability history.

Regimes
    Every client's life since onboarding, cut into 1-4 contiguous, non-overlapping regimes;
    consecutive regimes have different segments and the last one, open-ended (``end_date``
    null), is the client's current segment. The current regime started on or before the first
    day of the published history, so every published trade was made in it and the features
    describe it. Its confidence is how typical the client's features are of the segment
    (1 = at the centre of every band); earlier regimes carry the confidence they were recorded
    with. A regime's ``end_date`` is the day before the next one's ``start_date``.

Switch probability
    10-15 evaluations per client, evenly spaced from ``FIRST_EVALUATION_DAY`` days into the
    history to ``as_of``. Each one uses only the trades and the book up to its ``computed_at``
    (point in time): the client's last ``WINDOW_DAYS`` days are compared with its segment's
    norms (holding period band, market-order share) and with its own activity so far; the
    deviation d >= 0 maps to a target 0.15 + 0.70 (1 - exp(-d)). The published probability
    moves halfway towards that target at each evaluation, by at most ``MAX_STEP`` (0.10), so it
    stays in [0.15, 0.85] and evolves gradually.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quant_assets.lib.client_intel.book import Daily, Fifo, TradeArrays
from quant_assets.lib.client_intel.market import Panel
from quant_assets.lib.client_intel.spec import BEHAVIOURS, SEGMENTS

REGIMES_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "segment": pl.String(),
    "start_date": pl.Date(),
    "end_date": pl.Date(),
    "confidence": pl.Float64(),
    "notes": pl.String(),
}

SWITCH_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "computed_at": pl.Datetime("us"),
    "switch_prob": pl.Float64(),
    "confidence": pl.Float64(),
    "segment": pl.String(),
    "drivers": pl.String(),
    "risk_flags": pl.String(),
}

MIN_REGIME_DAYS = 30
REGIME_COUNT_P = (0.60, 0.30, 0.08, 0.02)  # 1, 2, 3, 4 regimes
PROB_FLOOR, PROB_CEIL = 0.15, 0.85
MAX_STEP = 0.10
POINTS = (10, 15)
FIRST_EVALUATION_DAY = 30
WINDOW_DAYS = 45
EVALUATION_SECOND = 22 * 3600  # published at 22:00 UTC, after the day's close
AGGRESSIVENESS_SCALE = 0.15
PSEUDO_TRADES = 10.0
PSEUDO_LOTS = 3.0
ELEVATED = 0.5
DRAWDOWN_VAR_MULTIPLE = 3.0
CONCENTRATED_SHARE = 0.8


def _band_deviation(hold: np.ndarray, segment: np.ndarray) -> np.ndarray:
    lo = np.array([BEHAVIOURS[s].hold_min for s in SEGMENTS], dtype=np.float64)[segment]
    hi = np.array([BEHAVIOURS[s].hold_max for s in SEGMENTS], dtype=np.float64)[segment]
    centre = np.sqrt(lo * hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.log(hold / centre)) / np.log(hi / centre)


def _aggr_deviation(aggr: np.ndarray, segment: np.ndarray) -> np.ndarray:
    target = np.array([BEHAVIOURS[s].market_share for s in SEGMENTS])[segment]
    return np.abs(aggr - target) / AGGRESSIVENESS_SCALE


def _combine(*parts: np.ndarray) -> np.ndarray:
    stack = np.stack(parts)
    ok = ~np.isnan(stack)
    count = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def typicality(features: pl.DataFrame, segment: np.ndarray) -> np.ndarray:
    """exp(-deviation) of each client's features from its segment's norms, in (0, 1]."""
    hold = features["holding_period_avg"].fill_null(np.nan).to_numpy().astype(np.float64)
    aggr = features["aggressiveness"].fill_null(np.nan).to_numpy().astype(np.float64)
    return np.exp(-_combine(_band_deviation(hold, segment), _aggr_deviation(aggr, segment)))


def regimes_frame(clients: pl.DataFrame, segment: np.ndarray, features: pl.DataFrame, history_start: dt.date, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 6])
    n = clients.height
    onboarding = clients["onboarding_date"].to_numpy().astype("datetime64[D]")
    start = np.datetime64(history_start, "D")
    span = (start - onboarding).astype(np.int64)  # days from onboarding to the history start
    wanted = rng.choice(4, size=n, p=REGIME_COUNT_P) + 1
    # Every regime lasts at least MIN_REGIME_DAYS; fewer regimes when the client is too new.
    count = np.minimum(wanted, 1 + span // MIN_REGIME_DAYS)
    conf_now = np.round(0.5 + 0.5 * typicality(features, segment), 4)
    feats = features.select("holding_period_avg", "aggressiveness", "turnover").to_numpy()
    u = rng.random((n, 8))
    earlier_conf = np.round(rng.uniform(0.55, 0.9, size=(n, 3)), 4)
    rows_c, rows_s, rows_start, rows_end, rows_conf, rows_note = [], [], [], [], [], []
    ids = clients["client_id"].to_list()
    for c in range(n):
        k = int(count[c])
        seg = int(segment[c])
        # Current regime start: on or before the history start, leaving room for earlier ones.
        room = int(span[c]) - MIN_REGIME_DAYS * (k - 1)
        lead = int(u[c, 0] * min(room, 365)) if k > 1 else int(span[c])
        current_start = start - np.timedelta64(lead, "D")
        starts = [onboarding[c]]
        if k > 1:
            free = int((current_start - onboarding[c]).astype(np.int64)) - MIN_REGIME_DAYS * (k - 1)
            cuts = np.sort(np.floor(u[c, 1:k] * (free + 1)).astype(np.int64))
            for j in range(1, k):
                starts.append(onboarding[c] + np.timedelta64(int(cuts[j - 1]) + MIN_REGIME_DAYS * j, "D"))
            starts[-1] = current_start
        segs = [seg]
        for j in range(k - 1):
            choices = [x for x in range(len(SEGMENTS)) if x != segs[0]]
            segs.insert(0, choices[int(u[c, 4 + j] * len(choices)) % len(choices)])
        for j in range(k):
            rows_c.append(ids[c])
            rows_s.append(SEGMENTS[segs[j]])
            rows_start.append(starts[j].item())
            rows_end.append((starts[j + 1] - np.timedelta64(1, "D")).item() if j < k - 1 else None)
            if j == k - 1:
                hold, aggr, turn = feats[c]
                rows_conf.append(float(conf_now[c]))
                prefix = f"Switched from {SEGMENTS[segs[j - 1]]}. " if j else "Since onboarding. "
                rows_note.append(
                    prefix
                    + f"Current: holds {_fmt(hold, '.1f')} days on average, {_fmt(aggr, '.0%')} market orders, "
                    f"trades on {_fmt(turn, '.0%')} of days."
                )
            else:
                rows_conf.append(float(earlier_conf[c, j]))
                rows_note.append(
                    ("Onboarded as " if j == 0 else f"Switched from {SEGMENTS[segs[j - 1]]} to ")
                    + SEGMENTS[segs[j]]
                    + "; classified from trading before the published history."
                )
    return pl.DataFrame(
        {
            "client_id": rows_c,
            "segment": rows_s,
            "start_date": rows_start,
            "end_date": rows_end,
            "confidence": rows_conf,
            "notes": rows_note,
        },
        schema_overrides={"start_date": pl.Date(), "end_date": pl.Date()},
    ).cast(REGIMES_SCHEMA)


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def evaluation_days(days: int, n_points: int) -> np.ndarray:
    """Day indices of ``n_points`` evaluations, evenly spaced, the last on the history's last day."""
    first = min(FIRST_EVALUATION_DAY, days - n_points)
    return np.unique(np.round(np.linspace(first, days - 1, n_points)).astype(np.int64))


def switch_probability_frame(
    tr: TradeArrays,
    fi: Fifo,
    dl: Daily,
    pnl_risk: pl.DataFrame,
    panel: Panel,
    client_ids: list[str],
    segment: np.ndarray,
    seed: int,
) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 7])
    n = len(client_ids)
    T = panel.days
    flat = tr.client * T + tr.day

    def cum(weights=None):
        """Per-client running sums over days (day t inclusive): a window is one subtraction."""
        return np.cumsum(np.bincount(flat, weights=weights, minlength=n * T).reshape(n, T), axis=1)

    c_trades = cum()
    c_market = cum(tr.market.astype(np.float64))
    c_closed = cum(fi.closed_qty.astype(np.float64))
    c_held = cum(fi.hold_qty_days.astype(np.float64))
    c_closing = cum((fi.closed_qty > 0).astype(np.float64))
    dd = pnl_risk["drawdown_usd"].to_numpy().reshape(n, T)
    var = pnl_risk["var_95_1d_usd"].fill_null(np.nan).to_numpy().astype(np.float64).reshape(n, T)
    c_var = np.cumsum(np.nan_to_num(var), axis=1)
    c_var_n = np.cumsum(np.isfinite(var), axis=1).astype(np.float64)
    gross_i = np.abs(dl.exposure_usd)  # (client, instrument, day)
    gross = gross_i.sum(axis=1)
    top = gross_i.max(axis=1)

    n_points = rng.integers(POINTS[0], POINTS[1] + 1, size=n)
    parts: list[pl.DataFrame] = []
    for size in np.unique(n_points):
        members = np.flatnonzero(n_points == size)
        days = evaluation_days(T, int(size))
        lo = days - WINDOW_DAYS  # the window is (lo, day]

        def at(a, idx):
            return a[np.ix_(members, idx)]

        def window(a):
            return at(a, days) - np.where(lo >= 0, at(a, np.maximum(lo, 0)), 0.0)

        n_w = window(c_trades)
        seg = np.broadcast_to(segment[members][:, None], n_w.shape)
        share = np.array([BEHAVIOURS[s].market_share for s in SEGMENTS])[seg]
        lots = window(c_closing)
        with np.errstate(invalid="ignore", divide="ignore"):
            hold_w = window(c_held) / window(c_closed)
            # A few trades say little: shrink the window's market-order share towards the norm
            # and weight the holding-period deviation by the number of closing trades.
            aggr_w = (window(c_market) + PSEUDO_TRADES * share) / (n_w + PSEUDO_TRADES)
            # Activity against the client's own pace so far (up to the evaluation day), as a
            # Poisson-like z-score.
            expected = at(c_trades, days) * np.minimum(WINDOW_DAYS, days + 1) / (days + 1)
            act = np.abs(n_w - expected) / (2.0 * np.sqrt(expected + 1.0))
            var_w = window(c_var) / window(c_var_n)
            top_share = np.where(at(gross, days) > 0, at(top, days) / at(gross, days), 0.0)
        dev_h = _band_deviation(hold_w, seg) * lots / (lots + PSEUDO_LOTS)
        dev_a = _aggr_deviation(aggr_w, seg)
        dev = _combine(dev_h, dev_a, act)
        target = PROB_FLOOR + (PROB_CEIL - PROB_FLOOR) * (1.0 - np.exp(-dev))
        prob = np.empty_like(target)
        prob[:, 0] = target[:, 0]
        for k in range(1, len(days)):
            prob[:, k] = prob[:, k - 1] + np.clip(0.5 * (target[:, k] - prob[:, k - 1]), -MAX_STEP, MAX_STEP)
        prob = np.round(prob, 4)
        # Rounding may stretch a step by half a unit of the 4th decimal; pull it back inside.
        for k in range(1, len(days)):
            prob[:, k] = np.clip(prob[:, k], prob[:, k - 1] - MAX_STEP, prob[:, k - 1] + MAX_STEP)
        prob = np.clip(prob, PROB_FLOOR, PROB_CEIL)

        centre = np.sqrt(_band(seg, "hold_min") * _band(seg, "hold_max"))
        names = np.stack(
            [
                np.where(hold_w > centre, "holding_period_lengthening", "holding_period_shortening"),
                np.where(aggr_w > share, "more_market_orders", "fewer_market_orders"),
                np.where(n_w > expected, "activity_rising", "activity_falling"),
            ],
            axis=-1,
        )
        strength = np.nan_to_num(np.stack([dev_h, dev_a, act], axis=-1), nan=-1.0)
        order = np.argsort(-strength, axis=-1, kind="stable")
        names = np.take_along_axis(names, order, axis=-1)
        keep = np.take_along_axis(strength, order, axis=-1) > 0.5
        flags = np.stack(
            [
                np.isfinite(var_w) & (var_w > 0) & (at(dd, days) < -DRAWDOWN_VAR_MULTIPLE * np.nan_to_num(var_w)),
                top_share >= CONCENTRATED_SHARE,
                n_w == 0,
                prob >= ELEVATED,
            ],
            axis=-1,
        )
        flag_names = np.array(
            ["drawdown_beyond_3x_var", "concentrated_exposure", "no_trades_in_window", "elevated_switch_probability"]
        )
        m, k = n_w.shape
        stamp = panel.dates[days].astype("datetime64[us]") + np.timedelta64(EVALUATION_SECOND, "s")
        parts.append(
            pl.DataFrame(
                {
                    "client_id": pl.Series(client_ids).gather(np.repeat(members, k)),
                    "computed_at": np.tile(stamp, m),
                    "switch_prob": prob.ravel(),
                    "confidence": np.round(0.3 + 0.65 * n_w / (n_w + 10.0), 4).ravel(),
                    "segment": pl.Series(SEGMENTS).gather(seg.ravel()),
                    "drivers": _json_arrays(names.reshape(m * k, -1), keep.reshape(m * k, -1)),
                    "risk_flags": _json_arrays(
                        np.broadcast_to(flag_names, (m * k, len(flag_names))), flags.reshape(m * k, -1)
                    ),
                }
            )
        )
    out = pl.concat(parts) if parts else pl.DataFrame(schema=SWITCH_SCHEMA)
    return out.cast(SWITCH_SCHEMA).sort("client_id", "computed_at")


def _band(seg: np.ndarray, field: str) -> np.ndarray:
    return np.array([getattr(BEHAVIOURS[s], field) for s in SEGMENTS], dtype=np.float64)[seg]


def _json_arrays(names: np.ndarray, keep: np.ndarray) -> pl.Series:
    """JSON arrays of the kept names, row by row (names are plain identifiers, nothing to escape)."""
    cols = [pl.when(pl.lit(keep[:, j])).then(pl.lit(names[:, j])) for j in range(names.shape[1])]
    joined = pl.select(pl.concat_list(cols).list.drop_nulls().list.join('", "').alias("j")).to_series()
    return pl.select(
        pl.when(joined.str.len_bytes() == 0).then(pl.lit("[]")).otherwise(pl.format('["{}"]', joined))
    ).to_series()
