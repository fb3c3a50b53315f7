"""A multi-asset portfolio simulation of the research set's signals on 1-minute candles.

Per signal (one rule for all: stop ``sl``, trailing ``activation``/``callback``, ``timeout``):

* entry at the open of the first candle starting at or after the signal's window start, filled
  at ``open * (1 + slippage)``; the rule's reference price ``P`` is that open;
* in every candle from the entry on, in this order (pessimistic inside a candle, where the
  order of high and low is unknown): stop when ``low <= P * (1 - sl)``, filled at that level,
  or at the open if the candle opened below it; else, once the running high of earlier candles
  reached ``P * (1 + activation)``, trailing exit when ``low <= high * (1 - callback)``, filled
  at that level (or the open); then the candle's high joins the running high; after
  ``timeout`` minutes the position is closed at the candle's close; when the candles end first,
  at the last close;
* exit fills are ``price * (1 - slippage)``; a fee of ``fee_rate`` of the notional is paid on
  entry and on exit.

The portfolio starts with ``initial_capital`` USDT; each accepted signal gets
``position_size`` x book equity (cash + cost of open positions). A signal is skipped when
``max_positions`` are open, its symbol is already held, or cash is short -- each counted.
The equity curve is marked at every minute's close; drawdowns are from the running peak;
the Sharpe ratio uses daily (UTC) returns of the curve, annualised with sqrt(365) (crypto
trades every day), and is absent with fewer than 2 daily returns.
"""

from __future__ import annotations

import dataclasses
import math

import numba as nb
import numpy as np
import polars as pl

from quant_assets.lib.knobs import check_knobs, knob
from quant_assets.lib.pump.schemas import EQUITY_SCHEMA, UTC_MS

STOP, TRAILING, TIMEOUT, END = 1, 2, 3, 4
REASONS = {STOP: "stop", TRAILING: "trailing", TIMEOUT: "timeout", END: "end_of_window"}


@dataclasses.dataclass(frozen=True)
class PortfolioRules:
    sl: float = knob(0.05, "Stop loss below the entry reference price, fraction.", gt=0, lt=1)
    activation: float = knob(0.04, "Rise over the entry that arms the trailing exit, fraction.", ge=0)
    callback: float = knob(0.02, "Fall from the running high that exits once armed, fraction.", gt=0, lt=1)
    timeout_minutes: int = 240  # the launchpad's ``timeout``
    fee_rate: float = knob(0.0005, "Fee per side, fraction of the notional (0.05 % taker).", ge=0)
    slippage: float = 0.001  # a fraction of price; the launchpad's ``slippage_bps`` in basis points
    initial_capital: float = knob(10_000.0, "Starting cash, USDT.", gt=0)
    position_size: float = knob(0.1, "Notional per position, fraction of book equity.", gt=0, le=1)
    max_positions: int = knob(5, "Most positions open at once.", ge=1)

    def __post_init__(self) -> None:
        check_knobs(self)


@nb.njit(cache=True)
def _walk(o, h, lo, c, start, sl, activation, callback, timeout):
    """(exit candle index, exit price before slippage, reason) of one position."""
    p = o[start]
    stop = p * (1.0 - sl)
    arm = p * (1.0 + activation)
    peak = p
    n = o.shape[0]
    for i in range(start, n):
        if lo[i] <= stop:
            return i, min(o[i], stop), STOP
        if peak >= arm:
            trail = peak * (1.0 - callback)
            if lo[i] <= trail:
                return i, min(o[i], trail), TRAILING
        if h[i] > peak:
            peak = h[i]
        if i - start + 1 >= timeout:
            return i, c[i], TIMEOUT
    return n - 1, c[n - 1], END


def signal_trades(research: pl.DataFrame, candles: pl.DataFrame, rules: PortfolioRules) -> list[dict]:
    """Each signal's trade under ``rules`` before any portfolio constraint (``_closes``: the
    closes of the minutes it spans)."""
    starts = dict(zip(research["signal_id"].to_list(), research["window_start"].to_list()))
    rows = []
    parts = candles.sort("signal_id", "open_time").partition_by("signal_id", as_dict=True) if candles.height else {}
    for sid, sym in research.select("signal_id", "symbol").iter_rows():
        part = parts.get((sid,))
        if part is None:
            continue
        t = part["open_time"].dt.epoch("s").to_numpy()
        first = int(np.searchsorted(t, starts[sid], side="left"))
        if first >= t.shape[0]:
            continue
        o, h, lo, c = (part[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close"))
        i, px, reason = _walk(o, h, lo, c, first, rules.sl, rules.activation, rules.callback, max(1, int(rules.timeout_minutes)))
        rows.append(
            {
                "signal_id": sid,
                "symbol": sym,
                "entry_minute": int(t[first]),
                "exit_minute": int(t[i]),
                "reference_price": float(o[first]),
                "exit_reference": float(px),
                "exit_reason": REASONS[int(reason)],
                "_closes": c[first : i + 1],
            }
        )
    return rows


@dataclasses.dataclass
class PortfolioResult:
    equity: pl.DataFrame  # EQUITY_SCHEMA
    trades: pl.DataFrame
    metrics: dict[str, float | int | None]


def simulate_portfolio(research: pl.DataFrame, candles: pl.DataFrame, rules: PortfolioRules) -> PortfolioResult:
    trades = signal_trades(research, candles, rules)
    slip, fee = rules.slippage, rules.fee_rate
    cash = rules.initial_capital
    open_pos: list[dict] = []
    taken: list[dict] = []
    skipped = {"max_positions": 0, "symbol_held": 0, "cash": 0}
    records = sorted(trades, key=lambda r: (r["entry_minute"], r["signal_id"]))

    def close_until(minute: int) -> None:
        nonlocal cash
        for pos in sorted([p for p in open_pos if p["exit_minute"] < minute], key=lambda p: p["exit_minute"]):
            cash += pos["proceeds"]
            open_pos.remove(pos)

    for r in records:
        close_until(r["entry_minute"])
        if len(open_pos) >= rules.max_positions:
            skipped["max_positions"] += 1
            continue
        if any(p["symbol"] == r["symbol"] for p in open_pos):
            skipped["symbol_held"] += 1
            continue
        book = cash + sum(p["cost"] for p in open_pos)
        size = rules.position_size * book
        cost = size * (1.0 + fee)
        if size <= 0 or cost > cash:
            skipped["cash"] += 1
            continue
        entry_fill = r["reference_price"] * (1.0 + slip)
        qty = size / entry_fill
        exit_fill = r["exit_reference"] * (1.0 - slip)
        proceeds = qty * exit_fill * (1.0 - fee)
        cash -= cost
        pos = {**r, "qty": qty, "cost": cost, "proceeds": proceeds, "entry_fill": entry_fill, "exit_fill": exit_fill}
        open_pos.append(pos)
        taken.append(pos)
    equity = _equity_curve(taken, rules)
    trade_frame = (
        pl.DataFrame(
            {
                "signal_id": [p["signal_id"] for p in taken],
                "symbol": [p["symbol"] for p in taken],
                "entry_time": [p["entry_minute"] * 1000 for p in taken],
                "entry_fill": [p["entry_fill"] for p in taken],
                "exit_time": [(p["exit_minute"] + 60) * 1000 for p in taken],
                "exit_fill": [p["exit_fill"] for p in taken],
                "exit_reason": [p["exit_reason"] for p in taken],
                "cost": [p["cost"] for p in taken],
                "proceeds": [p["proceeds"] for p in taken],
            },
            schema={
                "signal_id": pl.Int64,
                "symbol": pl.String,
                "entry_time": pl.Int64,
                "entry_fill": pl.Float64,
                "exit_time": pl.Int64,
                "exit_fill": pl.Float64,
                "exit_reason": pl.String,
                "cost": pl.Float64,
                "proceeds": pl.Float64,
            },
        )
        .with_columns(pl.col("entry_time").cast(UTC_MS), pl.col("exit_time").cast(UTC_MS))
        .with_columns((pl.col("proceeds") / pl.col("cost") - 1.0).alias("net_return"))
    )
    return PortfolioResult(equity, trade_frame, _metrics(equity, trade_frame, rules, skipped, len(records)))


def _equity_curve(taken: list[dict], rules: PortfolioRules) -> pl.DataFrame:
    if not taken:
        return pl.DataFrame(schema=EQUITY_SCHEMA)
    first = min(p["entry_minute"] for p in taken)
    last = max(p["exit_minute"] for p in taken)
    n = (last - first) // 60 + 1
    cash_delta = np.zeros(n)
    value = np.zeros(n)
    count = np.zeros(n + 1, dtype=np.int64)
    for p in taken:
        a = (p["entry_minute"] - first) // 60
        b = (p["exit_minute"] - first) // 60
        cash_delta[a] -= p["cost"]
        cash_delta[b] += p["proceeds"]
        # Held at the close of every minute from entry up to (not including) the exit minute.
        value[a:b] += p["qty"] * p["_closes"][: b - a]
        count[a] += 1
        count[b] -= 1
    cash = rules.initial_capital + np.cumsum(cash_delta)
    equity = cash + value
    peak = np.maximum.accumulate(np.maximum(equity, rules.initial_capital))
    return pl.DataFrame(
        {
            "time": ((first + 60 * np.arange(n) + 60) * 1000).astype(np.int64),
            "equity": equity,
            "cash": cash,
            "positions_value": value,
            "open_positions": np.cumsum(count)[:n].astype(np.int32),
            "drawdown": 1.0 - equity / peak,
        }
    ).with_columns(pl.col("time").cast(UTC_MS)).select(list(EQUITY_SCHEMA))


def _metrics(equity: pl.DataFrame, trades: pl.DataFrame, rules: PortfolioRules, skipped: dict, candidates: int) -> dict:
    final = float(equity["equity"][-1]) if equity.height else rules.initial_capital
    daily = (
        equity.group_by(pl.col("time").dt.date().alias("day"), maintain_order=True).agg(pl.col("equity").last())
        if equity.height
        else pl.DataFrame()
    )
    sharpe = None
    if daily.height >= 3:
        levels = np.concatenate([[rules.initial_capital], daily["equity"].to_numpy()])
        rets = np.diff(levels) / levels[:-1]
        if rets.std(ddof=1) > 0:
            sharpe = float(rets.mean() / rets.std(ddof=1) * math.sqrt(365.0))
    n = trades.height
    return {
        "initial_capital": rules.initial_capital,
        "final_equity": final,
        "total_return": final / rules.initial_capital - 1.0,
        "max_drawdown": float(equity["drawdown"].max()) if equity.height else 0.0,
        "sharpe_daily_365": sharpe,
        "trades": n,
        "win_rate": float((trades["net_return"] > 0).mean()) if n else None,
        "avg_trade_return": float(trades["net_return"].mean()) if n else None,
        "exposure": float((equity["open_positions"] > 0).mean()) if equity.height else 0.0,
        "signals_considered": candidates,
        "skipped_max_positions": skipped["max_positions"],
        "skipped_symbol_held": skipped["symbol_held"],
        "skipped_cash": skipped["cash"],
    }


def text_chart(equity: pl.DataFrame, width: int = 60, height: int = 10) -> str:
    """The equity curve as a small text chart (for the UI's Markdown metadata)."""
    if equity.height < 2:
        return "(no equity curve)"
    y = equity["equity"].to_numpy()
    idx = np.linspace(0, y.shape[0] - 1, min(width, y.shape[0])).round().astype(int)
    pts = y[idx]
    lo, hi = float(pts.min()), float(pts.max())
    span = hi - lo or 1.0
    rows = [[" "] * len(pts) for _ in range(height)]
    for x, v in enumerate(pts):
        level = int(round((v - lo) / span * (height - 1)))
        rows[height - 1 - level][x] = "*"
    t0 = equity["time"][0].strftime("%Y-%m-%d %H:%M")
    t1 = equity["time"][-1].strftime("%Y-%m-%d %H:%M")
    lines = [f"{hi:>12,.0f} |" + "".join(rows[0])]
    lines += [" " * 12 + " |" + "".join(r) for r in rows[1:-1]]
    lines.append(f"{lo:>12,.0f} |" + "".join(rows[-1]))
    lines.append(" " * 14 + f"{t0} UTC ... {t1} UTC")
    return "```\n" + "\n".join(lines) + "\n```"


def portfolio_signals(
    research: pl.DataFrame, champions: pl.DataFrame, *, out_of_sample: bool = True, only_composite: bool = False
) -> pl.DataFrame:
    """The research signals a portfolio backtest trades.

    ``out_of_sample`` with walk-forward champions: only signals of an evaluation window (the
    signals no champion was chosen on); ``only_composite``: only signals passing the champion
    filter in force for them (the evaluating fold's, or the in-sample one's)."""
    from quant_assets.lib.pump import walkforward as wf

    walk_forward = champions.height > 0 and champions["selection"][0] == "walk_forward"
    ws = research["window_start"].to_numpy()
    if walk_forward and (out_of_sample or only_composite):
        fold_of = wf.evaluation_fold(ws, wf.folds_from_frame(champions))
    else:
        fold_of = np.zeros(research.height, dtype=np.int64)
    keep = fold_of >= 0 if walk_forward and out_of_sample else np.ones(research.height, dtype=bool)
    if only_composite:
        passing = np.zeros(research.height, dtype=bool)
        for row in champions.filter(pl.col("has_champion")).iter_rows(named=True):
            mine = (fold_of == int(row["fold"])) & (research["score_range"] == row["score_range"]).to_numpy()
            passing |= mine & wf.champion_mask(research, row)
        keep &= passing
    return research.filter(pl.Series(keep))


def ledger_problems(equity: pl.DataFrame, trades: pl.DataFrame, initial_capital: float) -> list[str]:
    """Breaks of the portfolio's accounting: negative cash, equity other than cash plus
    positions, a final equity other than the initial capital plus the trades' net PnL."""
    if not equity.height:
        return []
    problems = []
    if (equity["cash"] < -1e-9).any():
        problems.append("cash went negative")
    if ((equity["equity"] - equity["cash"] - equity["positions_value"]).abs() > 1e-6).any():
        problems.append("equity != cash + positions")
    net = float((trades["proceeds"] - trades["cost"]).sum())
    final = float(equity["equity"][-1])
    if abs(final - (initial_capital + net)) > 1e-6 * initial_capital:
        problems.append(f"final equity {final:.2f} != capital + net PnL {initial_capital + net:.2f}")
    return problems
