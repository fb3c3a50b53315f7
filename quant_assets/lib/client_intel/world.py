"""Build one client-intelligence world: the nine tables, in dependency order, and their checks.

``build_world(WorldSpec(...))`` returns every table as a polars DataFrame. Everything after the
simulation of prices, clients and trades is computed from the published tables themselves
(bars, trades), never from the generator's internals, so the derived tables are exactly what an
agent would recompute from the warehouse.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import polars as pl

from quant_assets.lib.client_intel import book as B
from quant_assets.lib.client_intel import clients, features
from quant_assets.lib.client_intel import market as M
from quant_assets.lib.client_intel import quality as Q
from quant_assets.lib.client_intel import regimes as R
from quant_assets.lib.client_intel import spec as S
from quant_assets.lib.client_intel import trades as TR

TABLES: tuple[str, ...] = (
    "market_bars",
    "clients",
    "trades",
    "positions",
    "headlines",
    "pnl_risk",
    "features",
    "client_regimes",
    "switch_probability_history",
)

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "market_bars": M.MARKET_BARS_SCHEMA,
    "clients": clients.CLIENTS_SCHEMA,
    "trades": TR.TRADES_SCHEMA,
    "positions": B.POSITIONS_SCHEMA,
    "headlines": M.HEADLINES_SCHEMA,
    "pnl_risk": B.PNL_RISK_SCHEMA,
    "features": features.FEATURES_SCHEMA,
    "client_regimes": R.REGIMES_SCHEMA,
    "switch_probability_history": R.SWITCH_SCHEMA,
}

_CLIENT = "Client id, ACME_FX_ followed by the client number (e.g. ACME_FX_023)"
_INSTRUMENT = "Instrument: EURUSD, GBPUSD, USDJPY, AUDUSD, USDCHF or XAUUSD (gold, per troy ounce)"
COLUMN_DOCS: dict[str, dict[str, str]] = {
    "market_bars": {
        "instrument": _INSTRUMENT,
        "date": "Calendar day (UTC); one bar per calendar day",
        "open": "First price of the day, quote currency per unit of base (USD per ounce for gold)",
        "high": "Highest price of the day, quote currency",
        "low": "Lowest price of the day, quote currency",
        "close": "Last price of the day, quote currency",
        "volume": "Simulated market volume, base-currency units (ounces for gold)",
        "ret_1d": "Simple return close / previous close - 1, fraction; null on the first day",
    },
    "clients": {
        "client_id": _CLIENT,
        "name": "Client's legal name",
        "desk": "Client type covered: Hedge Funds, Real Money, Corporates, Banks or Prop Trading",
        "region": "EMEA, Americas or APAC",
        "segment": "Behavioural segment: Trend Follower, Mean Reverter, Hedger or Trend Setter",
        "onboarding_date": "Day the client was onboarded (before the history starts)",
    },
    "trades": {
        "trade_id": "Trade number, 1..n in execution-time order",
        "client_id": _CLIENT,
        "instrument": _INSTRUMENT,
        "trade_date": "Calendar day of execution (UTC)",
        "executed_at": "Execution time, UTC",
        "side": "BUY or SELL (of the base currency / ounces)",
        "order_type": "MARKET (takes liquidity) or LIMIT (rests in the book)",
        "position_effect": "OPEN (adds to a lot) or CLOSE (reduces the client's position, FIFO)",
        "quantity": "Base-currency units (ounces for gold), a whole number of lots, > 0",
        "price": "Execution price, quote currency per unit; inside the day's [low, high], on the tick",
        "notional_usd": "quantity x USD value of one base unit at the execution price, USD",
    },
    "positions": {
        "client_id": _CLIENT,
        "instrument": _INSTRUMENT,
        "quantity": "Net position, base units (ounces for gold); long > 0, short < 0; never 0",
        "avg_entry_price": "Quantity-weighted price of the open FIFO lots, quote currency",
        "market_price": "Close on as_of, quote currency",
        "market_value_usd": "Signed USD exposure: quantity x USD value of one base unit at the close",
        "unrealized_pnl_usd": "(quantity x close - cost of open lots), converted at the close, USD",
        "opened_on": "Trade date of the oldest open lot",
        "as_of": "Day the positions are valued (last day of the history)",
    },
    "headlines": {
        "headline_id": "Headline number, 1..n in publication order",
        "published_at": "Publication time, UTC (on the day of the move it reports)",
        "instrument": "Instrument the headline is tagged with (primary tag)",
        "headline": "Headline text",
        "source": "News source",
        "sentiment": "Sentiment for the instrument's base currency, -1 (bearish) .. 1 (bullish)",
        "tags": "JSON array of tags: the instrument, its currencies, the topic",
    },
    "pnl_risk": {
        "client_id": _CLIENT,
        "date": "Calendar day",
        "realized_pnl_usd": "PnL realized by that day's closing trades (FIFO), USD at the day's close",
        "unrealized_pnl_usd": "Mark-to-close PnL of the open lots at the end of the day, USD",
        "pnl_usd": "That day's PnL: yesterday's positions' price change + today's trades marked to the close, USD",
        "cumulative_pnl_usd": "Running sum of pnl_usd since the first day of the history, USD",
        "gross_exposure_usd": "Sum of absolute end-of-day USD exposures over instruments",
        "net_exposure_usd": "Sum of signed end-of-day USD exposures over instruments",
        "var_95_1d_usd": "One-day 95% historical-simulation VaR of the end-of-day positions from the last 60 daily "
        "returns up to the day, USD loss (>= 0); null while fewer than 20 returns exist",
        "drawdown_usd": "cumulative_pnl_usd minus its running peak (peak starts at 0), USD, <= 0",
        "open_positions": "Number of instruments with a non-zero position at the end of the day",
    },
    "features": {
        "client_id": _CLIENT,
        "as_of": "Last day of the history the features use",
        "n_trades": "Trades in the history",
        "momentum_beta_1d": "Correlation of the end-of-day position sign with the trailing 1-day move, [-1, 1]",
        "momentum_beta_5d": "Correlation of the end-of-day position sign with the trailing 5-day move, [-1, 1]",
        "momentum_beta_20d": "Correlation of the end-of-day position sign with the trailing 20-day move, [-1, 1]",
        "holding_period_avg": "Quantity-weighted mean holding period of closed FIFO lots, calendar days",
        "turnover": "Trading frequency: share of the history's days with at least one trade, 0-1",
        "aggressiveness": "Share of MARKET orders among the client's trades, 0-1",
        "lead_lag_alpha": "Mean side x (5-day move after - 5-day move before) of opening trades, in volatility "
        "units; > 0 leads the market, < 0 lags it",
        "exposure_concentration": "JSON object {instrument: share of time-averaged gross USD exposure}",
    },
    "client_regimes": {
        "client_id": _CLIENT,
        "segment": "Segment during the regime",
        "start_date": "First day of the regime",
        "end_date": "Last day of the regime; null for the current one",
        "confidence": "Confidence in the regime's segment, 0-1",
        "notes": "What characterised the regime",
    },
    "switch_probability_history": {
        "client_id": _CLIENT,
        "computed_at": "Evaluation time, UTC (22:00 on the evaluation day; uses data up to then only)",
        "switch_prob": "Probability that the client is switching segment, 0.15-0.85, gradual (steps <= 0.10)",
        "confidence": "Confidence of the evaluation (grows with the trades in its window), 0-1",
        "segment": "The client's segment when evaluated",
        "drivers": "JSON array of the behaviours moving the probability, strongest first",
        "risk_flags": "JSON array of risk flags at the evaluation (drawdown, concentration, inactivity, ...)",
    },
}


@dataclasses.dataclass
class World:
    spec: S.WorldSpec
    tables: dict[str, pl.DataFrame]
    panel: M.Panel
    seconds: dict[str, float]

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.tables[name]


def build_world(spec: S.WorldSpec) -> World:
    """Every table of one world (see the modules for what each contains)."""
    seconds: dict[str, float] = {}
    tables: dict[str, pl.DataFrame] = {}

    def timed(name: str, fn: Callable[[], object]):
        t0 = time.perf_counter()
        out = fn()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
        return out

    market = timed("market_bars", lambda: M.simulate_market(spec))
    tables["market_bars"] = timed("market_bars", lambda: M.market_bars_frame(market))
    panel = timed("market_bars", lambda: M.panel_from_bars(tables["market_bars"]))
    book = timed("clients", lambda: clients.build_clients(spec))
    tables["clients"] = book.frame
    ids = book.frame["client_id"].to_list()
    segments = book.segment_codes

    def make_trades():
        params = TR.client_params(segments, spec.seed)
        raw = TR.generate_trades(market, segments, params, spec)
        return TR.trades_frame(raw, ids, market.dates)

    tables["trades"] = timed("trades", make_trades)
    ledger = timed("positions", lambda: B.TradeArrays.from_frame(tables["trades"], ids, panel))
    fifo = timed("positions", lambda: B.fifo(ledger))
    tables["positions"] = timed("positions", lambda: B.positions_frame(fifo, panel, ids))
    tables["headlines"] = timed("headlines", lambda: M.headlines_frame(panel, spec))
    daily = timed("pnl_risk", lambda: B.daily(ledger, fifo, panel, len(ids)))
    tables["pnl_risk"] = timed("pnl_risk", lambda: B.pnl_risk_frame(daily, panel, ids))
    tables["features"] = timed("features", lambda: features.features_frame(ledger, fifo, daily, panel, ids))
    tables["client_regimes"] = timed(
        "client_regimes", lambda: R.regimes_frame(book.frame, segments, tables["features"], spec.start, spec.seed)
    )
    tables["switch_probability_history"] = timed(
        "switch_probability_history",
        lambda: R.switch_probability_frame(ledger, fifo, daily, tables["pnl_risk"], panel, ids, segments, spec.seed),
    )
    return World(spec=spec, tables={t: tables[t] for t in TABLES}, panel=panel, seconds=seconds)


def verify(world: World) -> dict[str, dict[str, Q.Verdict]]:
    """Every rule of the checklist except the classifier, by table: {table: {check name: verdict}}."""
    t, spec = world.tables, world.spec
    return {
        "market_bars": {"bars_complete": Q.bars_complete(t["market_bars"], spec)},
        "clients": {"clients_valid": Q.clients_valid(t["clients"], spec)},
        "trades": {
            "trades_valid": Q.trades_valid(t["trades"], t["clients"], t["market_bars"]),
            "segment_patterns": Q.segment_patterns(t["trades"], t["clients"], world.panel, spec),
        },
        "positions": {"positions_match_trades": Q.positions_match_trades(t["positions"], t["trades"])},
        "headlines": {"headlines_valid": Q.headlines_valid(t["headlines"], t["market_bars"], spec)},
        "pnl_risk": {"pnl_consistent": Q.pnl_consistent(t["pnl_risk"], t["positions"], t["clients"], spec)},
        "features": {
            "features_complete": Q.features_complete(t["features"], t["clients"]),
            "holding_period_bands": Q.holding_period_bands(t["features"], t["clients"]),
            "lead_lag_signs": Q.lead_lag_signs(t["features"], t["clients"]),
        },
        "client_regimes": {"regimes_valid": Q.regimes_valid(t["client_regimes"], t["clients"])},
        "switch_probability_history": {
            "switch_probability_gradual": Q.switch_probability_gradual(t["switch_probability_history"], t["clients"], spec)
        },
    }
