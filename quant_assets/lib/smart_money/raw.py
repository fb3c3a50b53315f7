"""One symbol's raw smart-money tables, fetched (or read from the cache) and normalised.

Raw table -> FMP data types it is built from:

* ``insider_trades``          <- ``insider_trades``
* ``institutional_ownership`` <- ``institutional_ownership`` (one cache entry per quarter)
* ``hedge_fund_holdings``     <- ``institutional_ownership``, the configured hedge-fund CIKs only
  (a fund's 13F position in the stock is one of the stock's holder records: no extra request)
* ``senate_trades``           <- ``senate_trades``
* ``house_trades``            <- ``house_trades``
* ``etf_exposure``            <- ``etf_exposure``
* ``prices``                  <- ``prices`` and ``splits``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl

from quant_assets.lib.smart_money.universe import DEFAULT_HEDGE_FUNDS, FetchWindow
from quant_assets.lib.sources import fmp

RAW_TABLES: dict[str, tuple[str, ...]] = {
    "insider_trades": ("insider_trades",),
    "institutional_ownership": ("institutional_ownership",),
    "hedge_fund_holdings": ("institutional_ownership",),
    "senate_trades": ("senate_trades",),
    "house_trades": ("house_trades",),
    "etf_exposure": ("etf_exposure",),
    "prices": ("prices", "splits"),
}
RAW_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "insider_trades": fmp.INSIDER_TRADES_SCHEMA,
    "institutional_ownership": fmp.HOLDINGS_SCHEMA,
    "hedge_fund_holdings": fmp.HOLDINGS_SCHEMA,
    "senate_trades": fmp.CONGRESS_SCHEMA,
    "house_trades": fmp.CONGRESS_SCHEMA,
    "etf_exposure": fmp.ETF_EXPOSURE_SCHEMA,
    "prices": fmp.PRICES_SCHEMA,
}


def data_types_for(tables: Iterable[str]) -> list[str]:
    out: list[str] = []
    for t in tables:
        for d in RAW_TABLES[t]:
            if d not in out:
                out.append(d)
    return out


def fetch_raw(
    client: fmp.FmpClient,
    symbol: str,
    window: FetchWindow,
    *,
    tables: Iterable[str] = RAW_TABLES,
    hedge_fund_ciks: Iterable[str] = DEFAULT_HEDGE_FUNDS,
) -> tuple[dict[str, pl.DataFrame], dict[str, fmp.FetchReport]]:
    """(raw tables, fetch report per FMP data type) of one symbol over ``window``."""
    tables_out, reports = fetch_raw_many(client, [symbol], window, tables=tables, hedge_fund_ciks=hedge_fund_ciks)
    return tables_out, reports[symbol]


def fetch_raw_many(
    client: fmp.FmpClient,
    symbols: Sequence[str],
    window: FetchWindow,
    *,
    tables: Iterable[str] = RAW_TABLES,
    hedge_fund_ciks: Iterable[str] = DEFAULT_HEDGE_FUNDS,
) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, fmp.FetchReport]]]:
    """(raw tables of all ``symbols`` -- a ``symbol`` column tells them apart -- and the fetch
    report per symbol and FMP data type) over ``window``."""
    tables = list(tables)
    fetched = client.fetch_many(list(symbols), window.start, window.end, window.quarters, data_types_for(tables))
    out: dict[str, pl.DataFrame] = {}
    holdings: pl.DataFrame | None = None
    for table in tables:
        if table in ("institutional_ownership", "hedge_fund_holdings"):
            if holdings is None:
                holdings = fmp.normalize_holdings(fetched["institutional_ownership"].frame)
            out[table] = holdings if table == "institutional_ownership" else hedge_funds(holdings, hedge_fund_ciks)
        else:
            out[table] = normalise(table, fetched)
    reports = {s: {t: f.reports[s] for t, f in fetched.items()} for s in symbols}
    return out, reports


def hedge_funds(holdings: pl.DataFrame, ciks: Iterable[str]) -> pl.DataFrame:
    """The 13F holder records of the given filers only."""
    wanted = pl.Series([str(c).zfill(10) for c in ciks], dtype=pl.String)
    return holdings.filter(pl.col("cik").is_in(wanted.implode()))


def normalise(table: str, fetched: dict[str, fmp.Fetched]) -> pl.DataFrame:
    if table == "insider_trades":
        return fmp.normalize_insider_trades(fetched["insider_trades"].frame)
    if table in ("senate_trades", "house_trades"):
        return fmp.normalize_congress(fetched[table].frame, chamber=table.removesuffix("_trades"))
    if table == "etf_exposure":
        return fmp.normalize_etf_exposure(fetched["etf_exposure"].frame)
    if table == "prices":
        return fmp.normalize_prices(fetched["prices"].frame, fetched["splits"].frame)
    raise ValueError(f"unknown raw table {table!r}")



def fetch_figures(reports: Sequence[fmp.FetchReport]) -> dict:
    """What fetching one raw table of one symbol cost and found: cache hits, misses and hit
    rate, HTTP calls, cache entries fetched again, repeats dropped and conflicts held back."""
    hits, misses = sum(r.cache_hits for r in reports), sum(r.cache_misses for r in reports)
    return {
        "cache_hits": hits,
        "cache_misses": misses,
        "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
        "http_calls": sum(r.http_calls for r in reports),
        "cache_refetched": sum(r.cache_refetched for r in reports),
        "duplicates_dropped": sum(r.duplicates_dropped for r in reports),
        "conflicts_quarantined": sum(r.conflicts_quarantined for r in reports),
    }


def conflict_verdict(reports: Mapping[str, Sequence[fmp.FetchReport]], limit: float) -> tuple[bool, str, int, dict]:
    """(passed, verdict, conflicting rows held back, symbols over ``limit``) of one raw table:
    each symbol's share of rows held back as conflicting against ``limit``."""
    shares = {}
    for symbol, rep in reports.items():
        held = sum(r.conflicts_quarantined for r in rep)
        rows = sum(r.rows for r in rep)
        shares[symbol] = (held, held / rows if rows else 0.0)
    over = {s: {"rows": v[0], "share": round(v[1], 6)} for s, v in shares.items() if v[1] > limit}
    worst = max(shares.items(), key=lambda kv: kv[1][1], default=(None, (0, 0.0)))
    verdict = (
        f"{len(over)} symbol(s) with more than {limit:.1%} conflicting records; worst {worst[0]} at {worst[1][1]:.1%} "
        f"({worst[1][0]} rows held back)"
        if over
        else f"Every symbol within the {limit:.1%} conflict limit (worst {worst[1][1]:.2%})."
    )
    return not over, verdict, sum(v[0] for v in shares.values()), over
