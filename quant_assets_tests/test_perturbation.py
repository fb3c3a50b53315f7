"""The perturbation property, dataset by dataset, on the simulators: changing any input strictly
after a date T changes nothing dated at or before T -- labels excepted within their documented
horizon (one session for the range label, 14 days for smart money's, the 24 h outcome of a pump
signal).

Each section builds a dataset twice from the same simulated vendor input, once as delivered and
once with everything after T disturbed (prices and volumes rescaled, a name delisted, a name
listed, a split, filings withdrawn and invented, trades dropped and giant ones added, pump paths
and scores replaced), and compares what is dated on or before T.
"""

import datetime as dt
import io
import math

import numpy as np
import polars as pl
import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib import market
from quant_assets.lib.pump import bars as pbars
from quant_assets.lib.pump import composite as pcomp
from quant_assets.lib.pump import filters as pfil
from quant_assets.lib.pump import optimizer as opt
from quant_assets.lib.pump import walkforward as wf
from quant_assets.lib.pump.signals import score_band_expr
from quant_assets.lib.pump.trades import window_start_expr
from quant_assets.lib.research import backtests, indicators, labels, performance
from quant_assets.lib.research import universe as uni
from quant_assets.lib.smart_money import dataset as ds
from quant_assets.lib.smart_money import raw as rw
from quant_assets.lib.smart_money.universe import FetchWindow, Schedule
from quant_assets.lib.sources import fmp
from quant_assets.lib.storage import LocalStore
from quant_assets.simulate import PolygonSimSpec, day_aggs_key, pump_paths, simulate_polygon
from quant_assets.simulate.binance import simulate_day_trades

# ---------------------------------------------------------------------------------------------
# Research: daily bars, technical features, range labels, the liquid universe, held returns,
# the equal-weight portfolio and the backtests' equity curves.

POLYGON = PolygonSimSpec(dt.date(2024, 1, 2), dt.date(2024, 8, 30), tickers=120, minute_days=0, seed=7)
T_RESEARCH = dt.date(2024, 6, 14)
UNIVERSE = uni.UniverseSpec(count=8, window=20, rebalance="weekly", min_history=15)


def _day_aggs(store: LocalStore, perturb: bool) -> pl.DataFrame:
    frames = []
    for day in POLYGON.sessions:
        rows = pl.read_csv(io.BytesIO(store.read_bytes(day_aggs_key(day))), schema_overrides={"ticker": pl.String})
        frames.append(market.to_day_aggs(rows, day))
    aggs = pl.concat(frames)
    if not perturb:
        return aggs
    later = pl.col("date") > T_RESEARCH
    liquid = aggs.filter(pl.col("date") <= T_RESEARCH).group_by("ticker").agg((pl.col("close") * pl.col("volume")).median().alias("dv"))
    top = liquid.filter(pl.col("ticker") != "SPY").sort("dv", descending=True)["ticker"][0]
    rng = np.random.default_rng(11)
    scale = pl.Series(np.exp(rng.normal(0.0, 0.3, aggs.height)))
    aggs = aggs.with_columns(
        *[pl.when(later).then(pl.col(c) * scale).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")],
        pl.when(later).then((pl.col("volume") * scale * 50).round()).otherwise(pl.col("volume")).alias("volume"),
    )
    aggs = aggs.filter(~(later & (pl.col("ticker") == top)))  # the most liquid name delists after T
    newcomer = aggs.filter(later & (pl.col("ticker") == "SPY")).with_columns(pl.lit("NEWCO").alias("ticker"))
    return pl.concat([aggs, newcomer])  # and a giant lists


@pytest.fixture(scope="module")
def research_worlds(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("polygon"))
    simulate_polygon(store, POLYGON)
    out = {}
    for name, perturb in (("delivered", False), ("perturbed", True)):
        aggs = _day_aggs(store, perturb)
        daily, _ = market.build_daily_bars(aggs, POLYGON.sessions, POLYGON.start)
        out[name] = daily
    return out


def research_datasets(daily: pl.DataFrame) -> dict[str, pl.DataFrame]:
    sessions = sorted(set(daily["date"].to_list()))
    members = uni.liquid_universe(daily, UNIVERSE, exclude=["SPY"])
    names, membership = uni.selection(members, 4, sessions)
    _, equity, _ = backtests.run_backtests(daily, names, ["macd", "rsi"], backtests.BacktestParams(), min_bars=35, membership=membership)
    filtered = daily.select("ticker", "date")
    return {
        "market/daily_bars": daily,
        "research/technical_features": indicators.technical_features(daily),
        "research/range_expansion_labels": labels.range_expansion_labels(daily, sessions, 0.03),
        "research/liquid_universe": members.rename({"rebalance_date": "date"}),
        "held returns": uni.held_returns(daily, membership),
        "equal-weight portfolio": performance.equal_weight_portfolio(daily, filtered),
        "research/backtests equity": equity,
    }


# The range label of D reads the next session's bar: its horizon is one session.
RESEARCH_HORIZON = {"research/range_expansion_labels": 1}


def dated_on_or_before(frame: pl.DataFrame, cut: dt.date) -> pl.DataFrame:
    keys = [c for c in ("date", "ticker", "strategy", "symbol") if c in frame.columns]
    return frame.filter(pl.col("date") <= cut).sort(keys)


def test_research_datasets_and_universe_ignore_what_comes_after_T(research_worlds):
    a, b = research_datasets(research_worlds["delivered"]), research_datasets(research_worlds["perturbed"])
    assert not a["market/daily_bars"].equals(b["market/daily_bars"])  # the perturbation is real
    for name in a:
        horizon = RESEARCH_HORIZON.get(name, 0)
        cut = T_RESEARCH if not horizon else cal.trading_days(POLYGON.start, T_RESEARCH)[-1 - horizon]
        before_a, before_b = dated_on_or_before(a[name], cut), dated_on_or_before(b[name], cut)
        assert before_a.height > 0, name
        assert before_a.equals(before_b), name
        after = a[name].filter(pl.col("date") > T_RESEARCH)
        if after.height and name != "research/liquid_universe":
            assert not after.equals(b[name].filter(pl.col("date") > T_RESEARCH)), f"{name}: nothing after T moved"


# ---------------------------------------------------------------------------------------------
# Smart money: the 27 features, prices and labels of the dataset.

T_SMART = dt.date(2023, 8, 31)


@pytest.fixture(scope="module")
def smart_money_raw(tmp_path_factory):
    from quant_assets.lib.http import PoliteClient, ResponseCache
    from quant_assets.simulate.fmp import SIM_BASE_URL, SimulatedFmp

    client = fmp.FmpClient(
        PoliteClient(SIM_BASE_URL, calls_per_minute=1e7, transport=SimulatedFmp().transport()),
        ResponseCache(tmp_path_factory.mktemp("fmp_cache"), "sim"),
    )
    window = FetchWindow.for_schedule(Schedule())
    frames = [rw.fetch_raw(client, sym, window)[0] for sym in ("NVDA", "KO")]
    return {t: pl.concat([f[t] for f in frames]) for t in frames[0]}


def perturb_smart_money(raw: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """After T: every filing withdrawn or doubled, invented filings, prices rescaled, and a 4-for-1
    split the vendor back-adjusts the whole price history for."""
    out = dict(raw)
    for name, frame in raw.items():
        if name == "prices" or "known_from" not in frame.columns:
            continue
        later = frame.filter(pl.col("known_from") > T_SMART)
        doubled = later.with_columns(pl.col(c) * 2 for c in frame.columns if frame.schema[c] == pl.Float64)
        invented = later.head(5).with_columns(pl.col("known_from") + pl.duration(days=3))
        out[name] = pl.concat([frame.filter(pl.col("known_from") <= T_SMART), doubled, invented])
    split_day, ratio = dt.date(2023, 10, 2), 4.0
    px = raw["prices"]
    before = pl.col("date") < split_day
    out["prices"] = px.with_columns(
        *[pl.when(before).then(pl.col(c) / ratio).otherwise(pl.col(c) * 1.3).alias(c) for c in ("open", "high", "low", "close", "vwap")],
        pl.when(before).then(pl.col("split_factor") * ratio).otherwise(pl.col("split_factor")).alias("split_factor"),
        pl.when(before).then(pl.col("volume") * ratio).otherwise(pl.col("volume")).alias("volume"),
        pl.when(pl.col("date") == split_day).then(pl.lit(ratio)).otherwise(pl.col("split_ratio")).alias("split_ratio"),
    ).with_columns((pl.col("close") * pl.col("split_factor")).alias("close_as_traded"))
    return out


def test_smart_money_dataset_ignores_what_comes_after_T(smart_money_raw):
    dates = Schedule().sample_dates()
    symbols = ["NVDA", "KO"]
    a = ds.dataset_rows(smart_money_raw, symbols, dates, etf_policy="strict")
    b = ds.dataset_rows(perturb_smart_money(smart_money_raw), symbols, dates, etf_policy="strict")
    labelled = [d for d, end in zip(dates, ds.label_dates(dates)) if end <= T_SMART]
    features = [c for c in ds.DATASET_COLUMNS if c not in ("price_after_14d", "return_14d", "label")]
    known = [d for d in dates if d <= T_SMART]
    assert known and labelled
    left, right = a.filter(pl.col("date").is_in(known)), b.filter(pl.col("date").is_in(known))
    assert left.select(features).equals(right.select(features))  # features and price on the sample date's basis
    left, right = a.filter(pl.col("date").is_in(labelled)), b.filter(pl.col("date").is_in(labelled))
    assert left.equals(right)  # labels whose 14 days ended by T
    assert not a.filter(pl.col("date") > T_SMART).equals(b.filter(pl.col("date") > T_SMART))


# ---------------------------------------------------------------------------------------------
# Pump: 1-second delta bars and minute candles, and the walk-forward champions.

DAY0 = dt.datetime(2025, 3, 3, tzinfo=dt.timezone.utc)


def simulated_trades(seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 6 * 3_600
    t = np.arange(n, dtype=np.float64)
    log_price = math.log(0.05) + np.cumsum(rng.normal(0.0, 0.0006, n)) + 0.3 * (1 - np.exp(-t / 900.0))
    intensity = 0.3 * (1.0 + 6.0 * np.exp(-t / 1_800.0))
    start_s = int(DAY0.timestamp())
    raw = simulate_day_trades(
        rng, start_s, log_price, intensity, price_decimals=6, qty_decimals=0, first_id=1, first_trade_id=1, sigma=0.0006
    )
    # As the zip reader returns them: transact_time a UTC microsecond timestamp.
    return raw.with_columns(pl.col("transact_time_us").cast(pl.Datetime("us", "UTC")).alias("transact_time")).drop("transact_time_us")


def test_pump_bars_and_candles_ignore_trades_after_T():
    trades = simulated_trades()
    start_s = int(DAY0.timestamp()) + 60
    window = 5 * 3_600
    t_cut = start_s + 2 * 3_600 + 17  # mid-minute
    cut_us = t_cut * 1_000_000
    rng = np.random.default_rng(5)
    later = trades["transact_time"].dt.epoch("us") >= cut_us + 1_000_000
    kept = trades.filter(~later | pl.Series(rng.random(trades.height) < 0.5))  # half the later trades vanish
    giants = kept.filter(pl.col("transact_time").dt.epoch("us") >= cut_us + 1_000_000).head(20).with_columns(
        pl.col("quantity") * 1_000, pl.col("price") * 3, ~pl.col("is_buyer_maker")
    )
    perturbed = pl.concat([kept.filter(~pl.col("agg_trade_id").is_in(giants["agg_trade_id"].to_list())), giants]).sort("agg_trade_id")
    a = pbars.delta_bars(trades, 1, start_s, window).bars
    b = pbars.delta_bars(perturbed, 1, start_s, window).bars
    upto = lambda f: f.filter(pl.col("second_ts") <= t_cut)  # noqa: E731
    assert upto(a).height == t_cut - start_s + 1 and upto(a).equals(upto(b))
    assert upto(a)["large_buy_count"].sum() + upto(a)["large_sell_count"].sum() > 0
    assert not a.equals(b)
    minute_a, minute_b = pbars.candles(a, 60), pbars.candles(b, 60)
    closed = lambda f: f.filter(pl.col("open_time").dt.epoch("s") + 60 <= t_cut + 1)  # noqa: E731  minutes over by T
    assert closed(minute_a).height > 100 and closed(minute_a).equals(closed(minute_b))


SECONDS = 3_600


def pump_champions(seed: int, replace_after: int | None):
    closes, offsets, signals = pump_paths(240, SECONDS, seed=seed, days=12)
    if replace_after is not None:
        other_closes, _, other = pump_paths(240, SECONDS, seed=seed + 100, days=12)
        late = (signals["signal_ts"].dt.epoch("s") > replace_after).to_numpy()
        for j in np.flatnonzero(late):
            closes[offsets[j] : offsets[j + 1]] = other_closes[offsets[j] : offsets[j + 1]]
        signals = signals.with_columns(
            *[pl.when(pl.Series(late)).then(other[c]).otherwise(pl.col(c)).alias(c) for c in ("total_score", "rsi", "volume_zscore", "oi_change_pct")]
        )
    research = signals.with_columns(window_start_expr(), score_band_expr().alias("score_range"), pl.col("signal_ts").dt.date().alias("signal_date"))
    strategies = opt.strategy_grid(opt.GridSpec(sl_levels=(0.02, 0.05), profiles=tuple(opt.PROFILES)[:2], timeouts_s=(900, SECONDS), entry_delays_s=(0,), fee=0.0))
    pnl, ex = opt.evaluate_strategies(closes, offsets, strategies)
    grid = pfil.FilterGrid(rsi_cuts=(50, 70), volume_cuts=(1, 2), oi_cuts=(0, 5))
    folds = wf.make_folds(research["signal_date"].min(), research["signal_date"].max(), wf.WalkForwardSpec(train_days=4, test_days=2, step_days=2))
    sel = wf.select_per_fold(research, pnl, ex, strategies, grid, folds, "walk_forward", horizon_s=SECONDS, min_trades=3)
    champions = pcomp.choose_champions(sel.results, [grid.band_label(lo) for lo in grid.bands], 3, wf.fold_frame(folds, "walk_forward"))
    trades = wf.out_of_sample(research, pnl, ex, champions, folds).trades
    return folds, champions, trades, research


def test_pump_champions_and_their_trades_ignore_signals_after_T():
    folds, champions, trades, research = pump_champions(4, None)
    t_cut = int(folds[3].evaluation_start.timestamp()) + 6 * 3_600  # inside the fourth evaluation window
    _, champions_b, trades_b, research_b = pump_champions(4, t_cut)
    assert not research.equals(research_b)
    decided = [f.fold for f in folds if f.selection_end.timestamp() <= t_cut]
    assert len(decided) >= 4
    pick = lambda c: c.filter(pl.col("fold").is_in(decided)).sort("fold", "score_range")  # noqa: E731
    assert pick(champions).filter(pl.col("has_champion")).height > 0
    assert pick(champions).equals(pick(champions_b))
    # Out-of-sample trades opened and closed by T are the same trades with the same result.
    done = lambda t: t.filter(pl.col("window_start") + SECONDS <= t_cut).sort("score_range", "window_start")  # noqa: E731
    assert done(trades).height > 0 and done(trades).equals(done(trades_b))
