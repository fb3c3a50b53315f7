"""Ken French Data Library daily factor files: reader and HTTP download.

The library publishes each data set as a zip holding one CSV, in this layout (CRLF line ends):

    This file was created by CMPT_ME_BEME_RETS_DAILY using the 202412 CRSP database.
    The 1-month TBill return is from Ibbotson and Associates Inc.
    <blank>
    ,Mkt-RF,SMB,HML,RF
    19260701,    0.10,   -0.25,   -0.27,    0.009
    ...
    <blank>
    Copyright 2024 Kenneth R. French

A free-text description block, a header line that starts with a comma, one row per day keyed
``YYYYMMDD``, values in **percent**, and a copyright trailer. ``-99.99`` / ``-999`` mark missing
values. The reader returns fractions (``0.10`` percent -> ``0.001``) and refuses anything that
departs from this layout with a :class:`KenFrenchFormatError` naming the file, the line and what
changed, so a vendor-side format change fails loudly instead of shifting columns.

Values are checked for plausibility too (:func:`check_plausible`): the spread of the daily
market excess return tells percent from fractions (a file in fractions would make every factor
100 times too small), a day beyond what markets have done (the worst since 1926 is -17.4 % on
19 October 1987) fails naming its date, and :func:`missing_sessions` finds the NYSE sessions a
file skips. The download (:func:`fetch_zip`) sends a browser-like ``User-Agent``: the library's
server refuses requests without one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import zipfile

import polars as pl

BASE_URL = "https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One Ken French daily factor file: its zip, the CSV inside, and the factors it must hold."""

    name: str
    zip_name: str
    csv_name: str
    columns: tuple[str, ...]  # vendor spelling, in order


THREE_FACTOR = Dataset(
    "ff3_daily",
    "F-F_Research_Data_Factors_daily_CSV.zip",
    "F-F_Research_Data_Factors_daily.CSV",
    ("Mkt-RF", "SMB", "HML", "RF"),
)
FIVE_FACTOR = Dataset(
    "ff5_daily",
    "F-F_Research_Data_5_Factors_2x3_daily_CSV.zip",
    "F-F_Research_Data_5_Factors_2x3_daily.CSV",
    ("Mkt-RF", "SMB", "HML", "RMW", "CMA", "RF"),
)
DATASETS = {d.name: d for d in (THREE_FACTOR, FIVE_FACTOR)}
# The file each regression takes its factors from (FF3 and FF5 build SMB differently).
MODEL_DATASET = {"capm": THREE_FACTOR, "ff3": THREE_FACTOR, "ff5": FIVE_FACTOR}
# Where the landing zone keeps the zips (the vendor's own file names).
LANDING_PREFIX = "kenfrench"

COLUMN_NAMES = {"Mkt-RF": "mkt_rf", "SMB": "smb", "HML": "hml", "RMW": "rmw", "CMA": "cma", "RF": "rf"}
MISSING_SENTINELS = (-99.99, -999.0)
# Plausibility, in fractions. The daily market excess return's standard deviation has stayed
# between about 0.4 % and 3 % in every year since 1926; read as percent a file in fractions
# shows about 0.01 %.
MARKET_SD_RANGE = (0.002, 0.05)
MIN_ROWS_FOR_UNITS = 20
MAX_ABS_DAILY_FACTOR = 0.25  # any factor, one day
RF_DAILY_RANGE = (-0.0005, 0.005)  # daily T-bill return: about -0.01 % to 0.5 % a day at most
# Sent with every download: the library's server refuses clients that do not look like browsers.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 quant-assets"
_DATE = re.compile(r"^\d{8}$")


def landing_key(dataset: Dataset) -> str:
    return f"{LANDING_PREFIX}/{dataset.zip_name}"


def url(dataset: Dataset, base_url: str = BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{dataset.zip_name}"


class KenFrenchFormatError(ValueError):
    """The file does not have the Ken French daily layout; names the file, line and problem."""

    def __init__(self, source: str, problem: str, line: int | None = None):
        self.source = source
        self.problem = problem
        self.line = line
        where = f"{source}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")


class KenFrenchDownloadError(RuntimeError):
    """The download failed; names the URL and the HTTP status or transport error."""


def csv_text(data: bytes, source: str, dataset: Dataset) -> str:
    """The CSV inside a Ken French zip (exactly one ``.csv`` member, any case)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        head = data[:60].decode("latin-1", errors="replace").strip()
        raise KenFrenchFormatError(source, f"not a zip archive (starts with {head!r})") from None
    with archive:
        members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if len(members) != 1:
            raise KenFrenchFormatError(
                source, f"expected exactly one CSV member like {dataset.csv_name!r}, found {archive.namelist()}"
            )
        raw = archive.read(members[0])
    return raw.decode("latin-1")


def parse_daily_factors(text: str, source: str, dataset: Dataset) -> pl.DataFrame:
    """Rows ``date, mkt_rf, smb, hml, [rmw, cma], rf`` (fractions) of a daily factor CSV."""
    lines = text.splitlines()
    header_at = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(","):
            header_at = i
            break
        if _DATE.match(stripped.split(",", 1)[0].strip()):
            raise KenFrenchFormatError(source, "data row before any header line (expected ',Mkt-RF,...')", i + 1)
    if header_at is None:
        raise KenFrenchFormatError(source, "no header line starting with ',' (expected ',Mkt-RF,SMB,HML,...')")
    header = [h.strip() for h in lines[header_at].strip().split(",")[1:]]
    if tuple(header) != dataset.columns:
        raise KenFrenchFormatError(
            source, f"header columns {header} differ from the expected {list(dataset.columns)}", header_at + 1
        )
    dates: list[dt.date] = []
    values: list[list[float | None]] = [[] for _ in header]
    for i in range(header_at + 1, len(lines)):
        line = lines[i].strip()
        if not line:
            break  # the blank line before a trailer or a second (annual) section
        cells = [c.strip() for c in line.split(",")]
        key = cells[0]
        if not _DATE.match(key):
            if line.lower().startswith("copyright") or "annual" in line.lower():
                break
            raise KenFrenchFormatError(
                source, f"row key {key!r} is not a YYYYMMDD date (monthly or re-formatted file?)", i + 1
            )
        if len(cells) != len(header) + 1:
            raise KenFrenchFormatError(source, f"{len(cells) - 1} values where the header has {len(header)}", i + 1)
        try:
            day = dt.date(int(key[:4]), int(key[4:6]), int(key[6:]))
        except ValueError:
            raise KenFrenchFormatError(source, f"{key!r} is not a calendar date", i + 1) from None
        if dates and day <= dates[-1]:
            raise KenFrenchFormatError(source, f"date {day} does not follow {dates[-1]}", i + 1)
        dates.append(day)
        for j, cell in enumerate(cells[1:]):
            try:
                v = float(cell)
            except ValueError:
                raise KenFrenchFormatError(source, f"{header[j]} value {cell!r} is not a number", i + 1) from None
            values[j].append(None if v in MISSING_SENTINELS else v / 100.0)
    if not dates:
        raise KenFrenchFormatError(source, "no daily rows after the header", header_at + 1)
    return pl.DataFrame(
        {"date": dates, **{COLUMN_NAMES[h]: values[j] for j, h in enumerate(header)}},
        schema={"date": pl.Date, **{COLUMN_NAMES[h]: pl.Float64 for h in header}},
    )


def read_daily_factors(data: bytes, source: str, dataset: Dataset) -> pl.DataFrame:
    """Parse the bytes of a Ken French daily factor zip (as delivered), checked for plausibility."""
    return check_plausible(parse_daily_factors(csv_text(data, source, dataset), source, dataset), source)


def check_plausible(table: pl.DataFrame, source: str) -> pl.DataFrame:
    """``table`` (fractions), or :class:`KenFrenchFormatError` naming the file and, for a bad
    day, the date: the market's daily spread out of :data:`MARKET_SD_RANGE` (a file in
    fractions, or in basis points), a factor beyond +-25 % in one day, a risk-free rate out of
    :data:`RF_DAILY_RANGE`."""
    for col in table.columns:
        if col in ("date", "rf"):
            continue
        bad = table.filter(pl.col(col).abs() > MAX_ABS_DAILY_FACTOR)
        if bad.height:
            day, value = bad.row(0)[0], bad[col][0]
            raise KenFrenchFormatError(
                source,
                f"{col} of {day} is {value * 100:+,.2f} %, beyond any day since 1926 (limit +-{MAX_ABS_DAILY_FACTOR:.0%}); "
                f"{bad.height} such day(s)",
            )
    if "rf" in table.columns:
        lo, hi = RF_DAILY_RANGE
        bad = table.filter((pl.col("rf") < lo) | (pl.col("rf") > hi))
        if bad.height:
            raise KenFrenchFormatError(
                source, f"RF of {bad['date'][0]} is {bad['rf'][0] * 100:+.3f} % a day, outside {lo * 100:+.2f}..{hi * 100:+.1f} %"
            )
    mkt = table["mkt_rf"].drop_nulls()
    if mkt.len() >= MIN_ROWS_FOR_UNITS:
        sd = float(mkt.std())
        lo, hi = MARKET_SD_RANGE
        if sd < lo:
            raise KenFrenchFormatError(
                source,
                f"the daily Mkt-RF varies by {sd * 100:.4f} % (standard deviation, read as percent), where markets move "
                f"{lo * 100:.1f}-{hi * 100:.0f} % a day: the file looks like it is in fractions, not percent "
                "(every factor would be 100x too small)",
            )
        if sd > hi:
            raise KenFrenchFormatError(
                source, f"the daily Mkt-RF varies by {sd * 100:.1f} % (standard deviation): not percent (basis points?)"
            )
    return table


def missing_sessions(table: pl.DataFrame, start: dt.date, end: dt.date) -> list[dt.date]:
    """NYSE sessions of ``[start, end]`` the factor table has no row for."""
    from quant_assets.lib import calendar

    have = set(table["date"].to_list())
    return [d for d in calendar.trading_days(start, end) if d not in have]


def download_client(base_url: str = BASE_URL, *, timeout_s: float | None = None, **kwargs):
    """A :class:`~quant_assets.lib.http.PoliteClient` for the library: one deadline per
    download, retries on 429 / 5xx with ``Retry-After``, and the browser-like ``User-Agent``."""
    from quant_assets.lib.http import TIMEOUT_S, PoliteClient, RetryPolicy

    kwargs.setdefault("retry", RetryPolicy(max_attempts=3))
    timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
    return PoliteClient(base_url, calls_per_minute=30, max_concurrency=2, timeout_s=timeout_s, headers={"User-Agent": USER_AGENT}, **kwargs)


def fetch_zip(client, dataset: Dataset, base_url: str = BASE_URL) -> bytes:
    """Download one data set's zip with ``client`` (from :func:`download_client`).

    Raises :class:`KenFrenchDownloadError` naming the URL and the status (or the transport
    error); an answer that is not a zip (an HTML error page served with 200) is refused too.
    """
    from quant_assets.lib.http import HttpError

    target = url(dataset, base_url)
    try:
        response = client.get(dataset.zip_name, context=f"Ken French {dataset.name}")
    except HttpError as exc:
        raise KenFrenchDownloadError(str(exc)) from None
    body = response.content
    if not body.startswith(b"PK"):
        kind = response.headers.get("content-type", "unknown content type")
        raise KenFrenchDownloadError(f"GET {target} returned {len(body)} bytes of {kind}, not a zip archive")
    return body

