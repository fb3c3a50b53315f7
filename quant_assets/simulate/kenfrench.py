"""Ken French daily factor files, simulated in the library's own zip/CSV layout.

The market factor is the simulated Polygon market's own: ``Mkt-RF`` on a session is the simple
return of the simulator's market draw (the common factor every simulated stock loads on with its
beta, ``SPY`` with beta 1) minus the risk-free rate, so CAPM betas estimated on the simulated
stocks recover the simulator's betas. SMB, HML, RMW and CMA are independent noise with realistic
daily volatility (the three-factor file's SMB / HML differ slightly from the five-factor
file's, as in the real library); RF is a steady ~5 % a year. Values are written in percent with
two decimals (RF three), one row per NYSE session of ``[start, end]``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import zipfile

import numpy as np

from quant_assets.lib import calendar
from quant_assets.lib.sources import kenfrench
from quant_assets.lib.storage import Store

# The Polygon simulator's market model: its per-session draws come first on the day stream.
from quant_assets.simulate.polygon import (
    _MARKET_DRIFT,
    _MARKET_VOL_INTRADAY,
    _MARKET_VOL_OVERNIGHT,
    _STREAM_DAY,
    _unit_t,
)

_STREAM_FACTORS = 101
_RF_ANNUAL = 0.05
_DESCRIPTIONS = {
    "ff3_daily": (
        "This file was created by CMPT_ME_BEME_RETS_DAILY using the {stamp} CRSP database.",
        "The 1-month TBill return is from Ibbotson and Associates Inc.",
    ),
    "ff5_daily": (
        "This file was created by CMPT_ME_BEME_OP_INV_RETS_DAILY using the {stamp} CRSP database.",
        "The Tbill return is the simple daily rate that, over the number of trading days",
        "in the month, compounds to 1-month TBill rate from Ibbotson and Associates Inc.",
    ),
}


@dataclasses.dataclass
class KenFrenchSimReport:
    rows: int
    keys: list[str]


def market_returns(days: list[dt.date], seed: int) -> np.ndarray:
    """Simple returns of the Polygon simulator's market factor (beta 1) on ``days``."""
    out = np.empty(len(days))
    for i, day in enumerate(days):
        rng = np.random.default_rng([seed, _STREAM_DAY, day.toordinal()])
        m = _unit_t(rng, 5.0, 2)
        log_ret = _MARKET_DRIFT + _MARKET_VOL_OVERNIGHT * m[0] + _MARKET_VOL_INTRADAY * m[1]
        out[i] = np.expm1(log_ret)
    return out


def factor_table(start: dt.date, end: dt.date, seed: int) -> dict[str, np.ndarray]:
    """The simulated factors (fractions) of every NYSE session in ``[start, end]``."""
    days = calendar.trading_days(start, end)
    rf = np.full(len(days), (1 + _RF_ANNUAL) ** (1 / 252) - 1)
    mkt = market_returns(days, seed)
    noise = np.empty((len(days), 6))
    for i, day in enumerate(days):
        noise[i] = np.random.default_rng([seed, _STREAM_FACTORS, day.toordinal()]).standard_normal(6)
    smb5 = 0.005 * noise[:, 0]
    hml5 = 0.004 * noise[:, 1]
    return {
        "date": np.array(days, dtype=object),
        "mkt_rf": mkt - rf,
        "smb5": smb5,
        "hml5": hml5,
        "rmw": 0.003 * noise[:, 2],
        "cma": 0.0025 * noise[:, 3],
        "smb3": smb5 + 0.0008 * noise[:, 4],
        "hml3": hml5 + 0.0008 * noise[:, 5],
        "rf": rf,
    }


def _csv(dataset: kenfrench.Dataset, table: dict[str, np.ndarray], stamp: str, year: int) -> str:
    cols = {
        "Mkt-RF": table["mkt_rf"],
        "SMB": table["smb5"] if dataset is kenfrench.FIVE_FACTOR else table["smb3"],
        "HML": table["hml5"] if dataset is kenfrench.FIVE_FACTOR else table["hml3"],
        "RMW": table["rmw"],
        "CMA": table["cma"],
        "RF": table["rf"],
    }
    lines = [line.format(stamp=stamp) for line in _DESCRIPTIONS[dataset.name]]
    lines += ["", "," + ",".join(dataset.columns)]
    for i, day in enumerate(table["date"]):
        cells = [f"{cols[c][i] * 100:8.3f}" if c == "RF" else f"{cols[c][i] * 100:8.2f}" for c in dataset.columns]
        lines.append(day.strftime("%Y%m%d") + "," + ",".join(cells))
    lines += ["", f"Copyright {year} Kenneth R. French", ""]
    return "\r\n".join(lines)


def encode_zip(dataset: kenfrench.Dataset, csv: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(dataset.csv_name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, csv)
    return buf.getvalue()


def kenfrench_zips(start: dt.date, end: dt.date, seed: int = 7) -> dict[kenfrench.Dataset, bytes]:
    """The two daily factor zips (three- and five-factor) for ``[start, end]``; byte-identical for
    equal arguments."""
    start, end = calendar.as_date(start), calendar.as_date(end)
    table = factor_table(start, end, seed)
    stamp = f"{end.year}{end.month:02d}"
    return {d: encode_zip(d, _csv(d, table, stamp, end.year)) for d in (kenfrench.THREE_FACTOR, kenfrench.FIVE_FACTOR)}


def simulate_kenfrench(store: Store, start: dt.date, end: dt.date, seed: int = 7) -> KenFrenchSimReport:
    """Write both daily factor zips into ``store`` under ``kenfrench/`` (the vendor's file names)."""
    zips = kenfrench_zips(start, end, seed)
    keys = []
    for dataset, data in zips.items():
        key = kenfrench.landing_key(dataset)
        store.write_bytes(key, data)
        keys.append(key)
    return KenFrenchSimReport(rows=len(calendar.trading_days(start, end)), keys=keys)
