"""The 27 smart-money features, point in time.

Every feature is a function ``f(view, t) -> values``: ``view`` holds one symbol's raw tables as
arrays (:class:`SymbolView`), ``t`` the sample dates (days since 1970-01-01), and the result one
value per date (NaN where the source says nothing at that date). The docstring of each function
is its definition; the dataset's column descriptions are taken from it.

Point in time, everywhere: a record informs a sample date ``t`` only once it was public -- its
``known_from`` day (the filing or disclosure day, or the day after when it was filed after the
close) must be on or before ``t``. Transaction dates never decide visibility; they are used only
to place a trade that *is* already public (the cluster blocks, the premium paid). A "30-day
window" is the 30 calendar days ending on ``t``: ``t - 30 < known_from <= t``.

13F data: at ``t`` the reference quarter ``Q(t)`` is the last quarter whose filing deadline (45
days after the quarter end) is on or before ``t``; of its reports, only those filed by ``t``
count (a late filer is simply absent until it files).

Insider share counts are expressed on the share basis of the sample date: a transaction's
reported shares times the ratios of the splits effective after the transaction and on or before
the sample date (a 10:1 split between them makes 20 reported shares 200). A split effective after
the sample date never changes a feature at it (FMP gives no announcement date, so a split is
known from its effective date). Prices compared with a filing's price are the as-traded close.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
import re
from collections.abc import Callable

import numpy as np
import polars as pl

from quant_assets.lib.smart_money.universe import latest_filed_quarter, previous_quarter_end

EPOCH = dt.date(1970, 1, 1)
ETF_POLICIES = ("static", "strict")

# Who counts as "C-suite" (matched against the insider's filed relation, case-insensitive):
# any "Chief ... Officer" title, the usual abbreviations, or the title President on its own
# ("officer: President", "President and CEO") -- not a division president ("EVP and President,
# Americas") nor a vice president.
C_SUITE_RE = re.compile(
    r"\bchief\b[\w\s,&/-]*?\bofficer\b"
    r"|\b(ceo|cfo|coo|cto|cio|cao|cmo|chro|clo|cso)\b"
    r"|(?:^|:\s*|,\s*)president\b(?!\s*,\s*\w)",
    re.IGNORECASE,
)


def is_c_suite(relation: str) -> bool:
    return bool(C_SUITE_RE.search(relation or ""))


def to_days(d: dt.date) -> int:
    return (d - EPOCH).days


def from_days(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(n))


@dataclasses.dataclass
class Holdings:
    """13F rows of one symbol as arrays (institutions, or the tracked hedge funds)."""

    period: np.ndarray
    known: np.ndarray
    ownership: np.ndarray
    last_ownership: np.ndarray
    shares: np.ndarray
    weight: np.ndarray
    last_weight: np.ndarray
    market_value: np.ndarray
    last_market_value: np.ndarray
    is_new: np.ndarray
    is_sold_out: np.ndarray

    def __post_init__(self) -> None:
        # period -> (row indices ordered by publication day, those days): the reports on a
        # quarter public by t are a prefix.
        self._by_period: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        order = np.lexsort((self.known, self.period))
        periods = self.period[order]
        if len(order):
            cuts = np.nonzero(np.diff(periods))[0] + 1
            for chunk in np.split(order, cuts):
                self._by_period[int(self.period[chunk[0]])] = (chunk, self.known[chunk])
        self._memo: dict[tuple[int, bytes], list[np.ndarray]] = {}

    def rows(self, period: int, t: int) -> np.ndarray:
        """Indices of the reports on ``period`` public by ``t``."""
        found = self._by_period.get(period)
        if found is None:
            return _EMPTY
        idx, known = found
        return idx[: np.searchsorted(known, t, side="right")]

    def index(self, t: np.ndarray, back: int) -> list[np.ndarray]:
        """For each date: the reports on its reference quarter moved ``back`` quarters, public by it."""
        key = (back, t.tobytes())
        found = self._memo.get(key)
        if found is None:
            found = [self.rows(reference_quarter(int(day), back), int(day)) for day in t]
            self._memo[key] = found
        return found

    def sums(self, t: np.ndarray, back: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sum of ``values`` over each date's reports, number of reports), one pass for all dates."""
        groups = self.index(t, back)
        counts = np.array([len(g) for g in groups], dtype=np.int64)
        if counts.sum() == 0:
            return np.zeros(len(t)), counts
        flat = np.concatenate(groups)
        starts = np.cumsum(counts) - counts
        out = np.zeros(len(t))
        filled = counts > 0
        # Segment sums (no prefix-sum differences: they would leave rounding noise on exact zeros).
        out[filled] = np.add.reduceat(values[flat].astype(float), starts[filled])
        return out, counts


_EMPTY = np.zeros(0, dtype=np.int64)


@functools.lru_cache(maxsize=4096)
def reference_quarter(day: int, back: int = 0) -> int:
    """Q(t) (days since epoch) moved ``back`` quarters."""
    q = latest_filed_quarter(from_days(day))
    for _ in range(back):
        q = previous_quarter_end(q)
    return to_days(q)


@dataclasses.dataclass
class SymbolView:
    """One symbol's raw tables, as the arrays the feature functions read."""

    symbol: str
    # insider transactions
    ins_known: np.ndarray
    ins_tx: np.ndarray
    ins_who: np.ndarray  # integer id per reporting CIK
    ins_buy: np.ndarray  # open-market purchase (P)
    ins_sell: np.ndarray  # open-market sale (S)
    ins_signed_shares: np.ndarray  # +acquired / -disposed, as reported (the transaction day's share basis)
    ins_shares: np.ndarray  # as reported
    split_days: np.ndarray  # bar days a split took effect (ascending)
    split_ratios: np.ndarray  # their ratios (2.0 for a 2-for-1)
    ins_premium: np.ndarray  # price / as-traded close that day - 1 (NaN without price or close)
    ins_c_suite: np.ndarray
    # congress (both chambers)
    cg_known: np.ndarray
    cg_buy: np.ndarray
    cg_sell: np.ndarray
    # 13F
    inst: Holdings
    funds: Holdings
    # ETF snapshots
    etf_as_of: np.ndarray  # one entry per snapshot
    etf_shares: np.ndarray  # total ETF-held shares per snapshot (today's basis)
    etf_top5: np.ndarray  # shares held by the five largest ETF holders per snapshot
    etf_policy: str
    # shares outstanding, today's basis, estimated from each 13F quarter (period -> shares)
    outstanding: dict[int, float]


class SymbolTable:
    """A raw table of many symbols as numpy columns, sorted by symbol, with each symbol's rows."""

    def __init__(self, frame: pl.DataFrame, columns: dict[str, pl.Expr], order: tuple[str, ...] = ()):
        frame = frame.sort(["symbol", *order]) if frame.height else frame
        selected = frame.select([e.alias(name) for name, e in columns.items()])
        self.col = {name: selected.get_column(name).to_numpy() for name in columns}
        self.rows: dict[str, tuple[int, int]] = {}
        if frame.height:
            runs = frame.select(pl.col("symbol").rle()).unnest("symbol")
            start = 0
            for sym, n in zip(runs["value"].to_list(), runs["len"].to_list(), strict=True):
                self.rows[sym] = (start, start + n)
                start += n

    def of(self, symbol: str) -> dict[str, np.ndarray]:
        lo, hi = self.rows.get(symbol, (0, 0))
        return {name: values[lo:hi] for name, values in self.col.items()}


def day_number(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Int32).cast(pl.Int64)


def _asof(bar_days: np.ndarray, values: np.ndarray, days: np.ndarray, max_gap: int | None = 7) -> np.ndarray:
    """``values`` on the last bar on or before each day (NaN before the first bar, or when the
    last bar is more than ``max_gap`` days old)."""
    if len(bar_days) == 0 or len(days) == 0:
        return np.full(len(days), np.nan)
    idx = np.searchsorted(bar_days, days, side="right") - 1
    safe = np.clip(idx, 0, None)
    out = np.where(idx >= 0, values[safe], np.nan)
    if max_gap is not None:
        out = np.where(days - bar_days[safe] > max_gap, np.nan, out)
    return out


def build_views(raw: dict[str, pl.DataFrame], symbols: list[str], etf_policy: str = "static") -> dict[str, SymbolView]:
    """The arrays of each symbol from raw tables holding any number of symbols (``insider_trades``,
    ``institutional_ownership``, ``hedge_fund_holdings``, ``senate_trades``, ``house_trades``,
    ``etf_exposure``, ``prices``). Table-wide work is done once for all symbols."""
    if etf_policy not in ETF_POLICIES:
        raise ValueError(f"etf_snapshot_policy must be one of {ETF_POLICIES}, got {etf_policy!r}")
    prices = SymbolTable(
        raw["prices"],
        {
            "date": day_number("date"),
            "factor": pl.col("split_factor").fill_null(1.0),
            "traded": pl.col("close_as_traded"),
            "split": pl.col("split_ratio").fill_null(1.0),
        },
        ("date",),
    )
    relations = raw["insider_trades"]["type_of_owner"].fill_null("").unique().to_list()
    c_suite_of = pl.DataFrame({"type_of_owner": relations, "c": [is_c_suite(r) for r in relations]}, schema={"type_of_owner": pl.String, "c": pl.Boolean})
    ins_frame = raw["insider_trades"].join(c_suite_of, on="type_of_owner", how="left") if raw["insider_trades"].height else raw["insider_trades"].with_columns(pl.lit(False).alias("c"))
    ins = SymbolTable(
        ins_frame,
        {
            "known": day_number("known_from"),
            "tx": day_number("transaction_date"),
            "who": pl.col("reporting_cik").cast(pl.Categorical).to_physical().cast(pl.Int64),
            "code": pl.col("transaction_type").str.slice(0, 1),
            "shares": pl.col("securities_transacted").fill_null(0.0),
            "sign": pl.when(pl.col("acquisition_or_disposition") == "A").then(1.0).otherwise(-1.0),
            "price": pl.col("price").fill_null(0.0),
            "c_suite": pl.col("c").fill_null(False),
        },
    )
    congress = SymbolTable(
        pl.concat([raw["senate_trades"], raw["house_trades"]], how="vertical"),
        {"known": day_number("known_from"), "kind": pl.col("transaction")},
    )
    holding_cols = {
        "period": day_number("period"),
        "known": day_number("known_from"),
        **{c: pl.col(c).fill_null(0.0) for c in ("ownership", "last_ownership", "shares", "weight", "last_weight", "market_value", "last_market_value")},
        "is_new": pl.col("is_new").fill_null(False),
        "is_sold_out": pl.col("is_sold_out").fill_null(False),
    }
    inst = SymbolTable(raw["institutional_ownership"], holding_cols)
    funds = SymbolTable(raw["hedge_fund_holdings"], holding_cols)
    est = (
        raw["institutional_ownership"]
        .filter((pl.col("ownership") > 0) & (pl.col("shares") > 0))
        .group_by("symbol", "period")
        .agg((pl.col("shares") / pl.col("ownership")).median().alias("outstanding"))
    )
    outstanding = SymbolTable(est, {"period": day_number("period"), "shares": pl.col("outstanding")}, ("period",))
    snaps = raw["etf_exposure"].group_by("symbol", "as_of").agg(
        pl.col("shares").sum().alias("total"), pl.col("shares").sort(descending=True).head(5).sum().alias("top5")
    )
    etf = SymbolTable(snaps, {"as_of": day_number("as_of"), "total": pl.col("total"), "top5": pl.col("top5")}, ("as_of",))

    views = {}
    for symbol in symbols:
        px, i, cg, o, e = prices.of(symbol), ins.of(symbol), congress.of(symbol), outstanding.of(symbol), etf.of(symbol)
        shares = i["shares"].astype(float)
        splits = px["split"] != 1.0
        close_traded = _asof(px["date"], px["traded"], i["tx"])
        with np.errstate(divide="ignore", invalid="ignore"):
            premium = np.where((i["price"] > 0) & (close_traded > 0), i["price"] / close_traded - 1.0, np.nan)
        # Shares outstanding as of each 13F quarter, in today's share basis.
        o_factor = _asof(px["date"], px["factor"], o["period"], max_gap=None) if len(px["date"]) else np.ones(len(o["period"]))
        o_factor = np.where(np.isfinite(o_factor), o_factor, 1.0)
        views[symbol] = SymbolView(
            symbol=symbol,
            ins_known=i["known"],
            ins_tx=i["tx"],
            ins_who=i["who"],
            ins_buy=i["code"] == "P",
            ins_sell=i["code"] == "S",
            ins_signed_shares=i["sign"] * shares,
            ins_shares=shares,
            split_days=px["date"][splits].astype(np.int64),
            split_ratios=px["split"][splits].astype(float),
            ins_premium=premium,
            ins_c_suite=i["c_suite"].astype(bool),
            cg_known=cg["known"],
            cg_buy=cg["kind"] == "purchase",
            cg_sell=cg["kind"] == "sale",
            inst=Holdings(**_holding_arrays(inst.of(symbol))),
            funds=Holdings(**_holding_arrays(funds.of(symbol))),
            etf_as_of=e["as_of"],
            etf_shares=e["total"],
            etf_top5=e["top5"],
            etf_policy=etf_policy,
            outstanding={int(p): float(v * k) for p, v, k in zip(o["period"], o["shares"], o_factor, strict=True)},
        )
    return views


def _holding_arrays(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "period": cols["period"].astype(np.int64),
        "known": cols["known"].astype(np.int64),
        **{c: cols[c].astype(float) for c in ("ownership", "last_ownership", "shares", "weight", "last_weight", "market_value", "last_market_value")},
        "is_new": cols["is_new"].astype(bool),
        "is_sold_out": cols["is_sold_out"].astype(bool),
    }


def build_view(raw: dict[str, pl.DataFrame], symbol: str, etf_policy: str = "static") -> SymbolView:
    """The arrays of one symbol (see :func:`build_views`)."""
    return build_views(raw, [symbol], etf_policy)[symbol]


def _window(known: np.ndarray, t: np.ndarray, days: int) -> np.ndarray:
    """(dates x records) mask: record public within the ``days`` calendar days ending on t."""
    return (known[None, :] <= t[:, None]) & (known[None, :] > t[:, None] - days)


# ---------------------------------------------------------------------------------------
# Insider trading (Form 4), by filing date.
# ---------------------------------------------------------------------------------------


def insider_buy_ratio_30d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Open-market insider purchases (code P) / (purchases + sales (code S)), counting
    transactions filed in the 30 days ending on the sample date; 0 when there were none.
    Awards, option exercises, gifts and tax withholdings are not trading decisions and are left
    out. Unitless, 0-1."""
    m = _window(v.ins_known, t, 30)
    buys = (m & v.ins_buy).sum(axis=1)
    sells = (m & v.ins_sell).sum(axis=1)
    total = buys + sells
    return np.where(total > 0, buys / np.maximum(total, 1), 0.0)


def share_basis(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """(sample dates x insider transactions): the factor from a transaction's reported shares to
    the sample date's share basis -- the product of the ratios of the splits effective after the
    transaction day and on or before the sample date (1 without such a split). Splits after the
    sample date are never touched."""
    out = np.ones((len(t), len(v.ins_tx)))
    for day, ratio in zip(v.split_days, v.split_ratios, strict=True):
        rows, cols = day <= t, v.ins_tx < day
        if rows.any() and cols.any():
            out[np.ix_(rows, cols)] *= ratio
    return out


def insider_buy_volume_30d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Shares bought by insiders in open-market purchases (code P) filed in the 30 days ending
    on the sample date. Shares, split-adjusted to the sample date's basis."""
    return ((_window(v.ins_known, t, 30) & v.ins_buy) * (share_basis(v, t) * v.ins_shares)).sum(axis=1)


def insider_sell_volume_30d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Shares sold by insiders in open-market sales (code S) filed in the 30 days ending on the
    sample date. Shares, split-adjusted to the sample date's basis."""
    return ((_window(v.ins_known, t, 30) & v.ins_sell) * (share_basis(v, t) * v.ins_shares)).sum(axis=1)


def insider_net_flow_30d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """insider_buy_volume_30d - insider_sell_volume_30d. Shares, split-adjusted to the sample
    date's basis."""
    return insider_buy_volume_30d(v, t) - insider_sell_volume_30d(v, t)


def insider_cluster_score(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Cluster buying: of the thirteen 7-day blocks that tile the 91 days ending on the sample
    date (block k holds transaction days t-7k+1 .. t-7k+7), the number in which at least two
    different insiders made open-market purchases (code P) -- counting only purchases already
    filed by the sample date. Count, 0-13."""
    out = np.zeros(len(t))
    buys = np.nonzero(v.ins_buy)[0]
    if len(buys) < 2:
        return out
    known, tx, who = v.ins_known[buys], v.ins_tx[buys], v.ins_who[buys]
    for j, day in enumerate(t):
        sel = (known <= day) & (tx > day - 91) & (tx <= day)
        if sel.sum() < 2:
            continue
        block = (day - tx[sel]) // 7
        pairs = np.unique(block * 1_000_003 + who[sel])
        counts = np.bincount(pairs // 1_000_003, minlength=13)
        out[j] = float((counts >= 2).sum())
    return out


def insider_ownership_change_90d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Net change in insiders' holdings: shares acquired minus shares disposed (every transaction
    code, by its A/D flag: purchases, awards and exercises add; sales, gifts and withholdings
    subtract) in transactions filed in the 90 days ending on the sample date. Shares,
    split-adjusted to the sample date's basis."""
    return (_window(v.ins_known, t, 90) * (share_basis(v, t) * v.ins_signed_shares)).sum(axis=1)


def insider_avg_premium(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Mean premium insiders paid in open-market purchases (code P) filed in the 90 days ending
    on the sample date: price paid / that day's as-traded close - 1 (the close of the last session
    on or before the transaction day). 0 when there were no such purchases. Fraction (0.01 = 1%)."""
    m = _window(v.ins_known, t, 90) & v.ins_buy & np.isfinite(v.ins_premium)
    n = m.sum(axis=1)
    total = m @ np.nan_to_num(v.ins_premium)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0)


def c_suite_activity_ratio(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of open-market insider transactions (codes P and S) filed in the 90 days ending on
    the sample date whose insider is C-suite: the filed relation holds a "Chief ... Officer"
    title, CEO/CFO/COO/CTO/CIO/CAO/CMO/CHRO/CLO/CSO, or the title President on its own (not
    "Vice President", not a division president such as "EVP and President, Americas").
    Directors and 10% owners are not C-suite. 0 when there were no such transactions. 0-1."""
    m = _window(v.ins_known, t, 90) & (v.ins_buy | v.ins_sell)
    n = m.sum(axis=1)
    return np.where(n > 0, (m & v.ins_c_suite).sum(axis=1) / np.maximum(n, 1), 0.0)


# ---------------------------------------------------------------------------------------
# Institutional ownership (13F holder analytics), reference quarter Q(t), reports filed by t.
# ---------------------------------------------------------------------------------------


def _per_quarter(h: Holdings, t: np.ndarray, back: int, fn: Callable[[Holdings, np.ndarray], float]) -> np.ndarray:
    out = np.full(len(t), np.nan)
    for j, rows in enumerate(h.index(t, back)):
        if len(rows):
            out[j] = fn(h, rows)
    return out


def _available(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """True where at least one 13F report on the reference quarter is public."""
    return v.inst.sums(t, 0, v.inst.ownership)[1] > 0


def _total(h: Holdings, t: np.ndarray, values: np.ndarray, back: int = 0) -> np.ndarray:
    """Sum of ``values`` over each date's reports; NaN where there is none."""
    total, n = h.sums(t, back, values)
    return np.where(n > 0, total, np.nan)


def inst_ownership_pct(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of the company's shares outstanding held by 13F filers at the reference quarter
    Q(t), summed over the reports filed by the sample date. Fraction (can exceed 1 where
    filers double count lent shares); NaN before any report on Q(t) is public."""
    return _total(v.inst, t, v.inst.ownership)


def inst_ownership_change_1q(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Change of that share over Q(t), from the same reports (their position now minus their
    position a quarter earlier, so late filers do not look like sellers). Fraction of shares
    outstanding; NaN when inst_ownership_pct is."""
    return _total(v.inst, t, v.inst.ownership - v.inst.last_ownership)


def inst_new_positions_count(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """13F filers reporting a new position in Q(t) (no shares a quarter earlier), among the
    reports filed by the sample date. Count."""
    return _total(v.inst, t, v.inst.is_new.astype(float))


def inst_closed_positions_count(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """13F filers reporting they sold out in Q(t), among the reports filed by the sample date.
    Count."""
    return _total(v.inst, t, v.inst.is_sold_out.astype(float))


def inst_avg_position_size_change(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Mean relative change over Q(t) of the positions held both at its start and at its end
    (ownership now / ownership a quarter earlier - 1, split-proof), over the reports filed by
    the sample date. Fraction; NaN without such positions."""
    h = v.inst
    both = (h.ownership > 0) & (h.last_ownership > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(both, h.ownership / np.where(both, h.last_ownership, 1.0) - 1.0, 0.0)
    total, _ = h.sums(t, 0, change)
    held, _ = h.sums(t, 0, both.astype(float))
    return np.where(held > 0, total / np.where(held > 0, held, 1.0), np.nan)


def inst_concentration_top10(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of the institutional holding in the ten largest positions at Q(t): their ownership
    / the ownership of all 13F filers, over the reports filed by the sample date. 0-1; NaN when
    nobody holds."""

    def fn(h: Holdings, r: np.ndarray) -> float:
        own = np.sort(h.ownership[r])[::-1]
        total = own.sum()
        return float(own[:10].sum() / total) if total > 0 else np.nan

    return _per_quarter(v.inst, t, 0, fn)


MOMENTUM_WEIGHTS = (0.5, 0.3, 0.2)


def inst_momentum_score(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Recency-weighted growth of institutional holdings: 0.5 g(Q(t)) + 0.3 g(Q(t)-1) +
    0.2 g(Q(t)-2), where g(q) = (ownership of the filers at q) / (their ownership a quarter
    earlier) - 1 over the reports on q filed by the sample date; a quarter without reports is
    left out and the weights of the others rescaled. Fraction; NaN with no quarter."""

    def growth(back: int) -> np.ndarray:
        now, _ = v.inst.sums(t, back, v.inst.ownership)
        last, _ = v.inst.sums(t, back, v.inst.last_ownership)
        return np.where(last > 0, now / np.where(last > 0, last, 1.0) - 1.0, np.nan)

    parts = np.stack([growth(k) for k in range(len(MOMENTUM_WEIGHTS))])
    w = np.array(MOMENTUM_WEIGHTS)[:, None] * np.isfinite(parts)
    wsum = w.sum(axis=0)
    return np.where(wsum > 0, (np.nan_to_num(parts) * w).sum(axis=0) / np.where(wsum > 0, wsum, 1.0), np.nan)


# ---------------------------------------------------------------------------------------
# Congressional trading (Senate and House periodic transaction reports), by disclosure date.
# ---------------------------------------------------------------------------------------


def congress_buy_count_90d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Purchases of the stock by members of Congress (both chambers) disclosed in the 90 days
    ending on the sample date. Count."""
    return (_window(v.cg_known, t, 90) & v.cg_buy).sum(axis=1).astype(float)


def congress_sell_count_90d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Sales (full or partial) of the stock by members of Congress disclosed in the 90 days
    ending on the sample date. Count."""
    return (_window(v.cg_known, t, 90) & v.cg_sell).sum(axis=1).astype(float)


def congress_net_sentiment(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """congress_buy_count_90d - congress_sell_count_90d. Count (negative: net selling)."""
    return congress_buy_count_90d(v, t) - congress_sell_count_90d(v, t)


def congress_recent_activity_7d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """1 when a member of Congress disclosed a purchase or a sale of the stock in the 7 days
    ending on the sample date, else 0."""
    m = _window(v.cg_known, t, 7) & (v.cg_buy | v.cg_sell)
    return m.any(axis=1).astype(float)


# ---------------------------------------------------------------------------------------
# Hedge funds: the configured hedge-fund CIKs among the 13F filers, at Q(t), filed by t.
# ---------------------------------------------------------------------------------------


def _funds(v: SymbolView, t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over the tracked funds' reports on Q(t) public by t; 0 where no tracked
    fund reported but other 13F reports are public; NaN where no 13F report on Q(t) is public yet."""
    total, _ = v.funds.sums(t, 0, values)
    return np.where(_available(v, t), total, np.nan)


def hedgefund_top20_exposure(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of shares outstanding held by the tracked hedge funds (the configured CIKs, by
    default twenty large hedge funds) at Q(t), from their reports filed by the sample date.
    Fraction; NaN before any 13F report on Q(t) is public."""
    return _funds(v, t, v.funds.ownership)


def hedgefund_net_change_1q(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Change of the tracked hedge funds' holding over Q(t): their ownership now minus a quarter
    earlier, from their reports filed by the sample date. Fraction of shares outstanding."""
    return _funds(v, t, v.funds.ownership - v.funds.last_ownership)


def hedgefund_new_entry_count(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Tracked hedge funds that opened a position in Q(t) (reports filed by the sample date).
    Count."""
    return _funds(v, t, v.funds.is_new.astype(float))


def hedgefund_exit_count(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Tracked hedge funds that sold out in Q(t) (reports filed by the sample date). Count."""
    return _funds(v, t, v.funds.is_sold_out.astype(float))


def hedgefund_conviction_score(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Size-weighted change of conviction: the mean over the tracked funds reporting on Q(t)
    (filed by the sample date) of the change in the stock's weight in the fund's portfolio
    (weight now - weight a quarter earlier), each fund weighted by its 13F portfolio value
    (position value / weight), so larger funds count more. Fraction of portfolio; 0 when no
    tracked fund reports the stock."""
    h = v.funds
    with np.errstate(divide="ignore", invalid="ignore"):
        size = np.where(h.weight > 0, h.market_value / h.weight, h.last_market_value / h.last_weight)
    size = np.where(np.isfinite(size) & (size > 0), size, 0.0)
    weighted, _ = h.sums(t, 0, size * (h.weight - h.last_weight))
    total, _ = h.sums(t, 0, size)
    score = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), 0.0)
    return np.where(_available(v, t), score, np.nan)


# ---------------------------------------------------------------------------------------
# ETF exposure (FMP's present-day snapshot).
# ---------------------------------------------------------------------------------------


def _etf_snapshot(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Index of the snapshot describing each date (-1: none). ``static``: the latest snapshot
    describes every date (FMP keeps no history of ETF exposure; see the docs); ``strict``: only
    a snapshot taken on or before the date."""
    if not len(v.etf_as_of):
        return np.full(len(t), -1)
    if v.etf_policy == "static":
        return np.full(len(t), len(v.etf_as_of) - 1)
    return np.searchsorted(v.etf_as_of, t, side="right") - 1


def _latest_outstanding(v: SymbolView) -> float:
    if not v.outstanding:
        return np.nan
    return v.outstanding[max(v.outstanding)]


def etf_ownership_pct(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of shares outstanding held by ETFs: shares held by all ETFs in the snapshot /
    shares outstanding (estimated from the latest 13F quarter's positions, split-adjusted to
    the snapshot's basis). Fraction; NaN without a snapshot or a share count."""
    idx = _etf_snapshot(v, t)
    out = _latest_outstanding(v)
    return np.where(idx >= 0, v.etf_shares[np.clip(idx, 0, None)] / out if len(v.etf_shares) else np.nan, np.nan)


def etf_flow_30d(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Net ETF buying: the change in ETF-held shares between the snapshot describing the sample
    date and the one describing 30 days earlier, as a fraction of shares outstanding. With a
    single snapshot (FMP serves only the current one) no flow is observable and the value is 0;
    NaN without a snapshot."""
    now, before = _etf_snapshot(v, t), _etf_snapshot(v, t - 30)
    out = _latest_outstanding(v)
    if not len(v.etf_shares):
        return np.full(len(t), np.nan)
    flow = np.where(before >= 0, (v.etf_shares[np.clip(now, 0, None)] - v.etf_shares[np.clip(before, 0, None)]) / out, 0.0)
    return np.where(now >= 0, flow, np.nan)


def etf_concentration(v: SymbolView, t: np.ndarray) -> np.ndarray:
    """Share of the ETF holding in the five largest ETF positions: their shares / shares held by
    all ETFs in the snapshot. 0-1; NaN without a snapshot."""
    idx = _etf_snapshot(v, t)
    if not len(v.etf_shares):
        return np.full(len(t), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(v.etf_shares > 0, v.etf_top5 / v.etf_shares, np.nan)
    return np.where(idx >= 0, share[np.clip(idx, 0, None)], np.nan)


FEATURES: tuple[Callable[[SymbolView, np.ndarray], np.ndarray], ...] = (
    insider_buy_ratio_30d,
    insider_buy_volume_30d,
    insider_sell_volume_30d,
    insider_net_flow_30d,
    insider_cluster_score,
    insider_ownership_change_90d,
    insider_avg_premium,
    c_suite_activity_ratio,
    inst_ownership_pct,
    inst_ownership_change_1q,
    inst_new_positions_count,
    inst_closed_positions_count,
    inst_avg_position_size_change,
    inst_concentration_top10,
    inst_momentum_score,
    congress_buy_count_90d,
    congress_sell_count_90d,
    congress_net_sentiment,
    congress_recent_activity_7d,
    hedgefund_top20_exposure,
    hedgefund_net_change_1q,
    hedgefund_new_entry_count,
    hedgefund_exit_count,
    hedgefund_conviction_score,
    etf_ownership_pct,
    etf_flow_30d,
    etf_concentration,
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.__name__ for f in FEATURES)
# Features that count things: integer columns in the dataset.
COUNT_FEATURES = frozenset(
    {
        "insider_cluster_score",
        "inst_new_positions_count",
        "inst_closed_positions_count",
        "congress_buy_count_90d",
        "congress_sell_count_90d",
        "congress_net_sentiment",
        "congress_recent_activity_7d",
        "hedgefund_new_entry_count",
        "hedgefund_exit_count",
    }
)


def feature_docs() -> dict[str, str]:
    """Column description of each feature: its function's docstring, on one line."""
    return {f.__name__: " ".join(inspect.getdoc(f).split()) for f in FEATURES}


def compute_features(view: SymbolView, dates: list[dt.date]) -> dict[str, np.ndarray]:
    """Every feature of one symbol at each sample date (NaN = not available at that date)."""
    t = np.array([to_days(d) for d in dates], dtype=np.int64)
    return {f.__name__: np.asarray(f(view, t), dtype=float) for f in FEATURES}
