"""Factor IC against scipy's Spearman per date, quantile returns by hand, factor regressions
against numpy least squares, and the Ken French reader / downloader on the vendor's real layout
(served from a local HTTP server on loopback for the download)."""

import datetime as dt
import http.server
import io
import threading
import time
import zipfile

import httpx
import numpy as np
import polars as pl
import pytest
from scipy import stats

from quant_assets.lib import calendar as cal
from quant_assets.lib import http as http_lib
from quant_assets.lib.research import factors
from quant_assets.lib.sources import kenfrench as kf
from quant_assets.simulate import kenfrench_zips

DAYS = cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 3, 28))


def panel(seed=0, n_tickers=25) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tickers):
        price = 10.0 + t
        for i, d in enumerate(DAYS):
            if rng.random() < 0.05:  # the ticker skips a session now and then
                continue
            signal = rng.normal()
            rows.append((f"T{t:02d}", d, price, signal, float(t % 3), None))
            price *= 1 + 0.01 * rng.normal()
    return pl.DataFrame(rows, schema=["ticker", "date", "close", "f", "tiered", "empty"], orient="row").with_columns(
        pl.col("empty").cast(pl.Float64)
    )


def test_forward_returns_use_the_hth_session_and_null_on_a_missing_bar():
    df = panel()
    fwd = factors.forward_returns(df, [1, 5])
    t = df.filter(pl.col("ticker") == "T03").sort("date")
    got = fwd.filter(pl.col("ticker") == "T03").sort("date")
    close = dict(zip(t["date"], t["close"]))
    for row in got.head(30).iter_rows(named=True):
        i = DAYS.index(row["date"])
        for h in (1, 5):
            target = DAYS[i + h] if i + h < len(DAYS) else None
            expected = close[target] / row["close"] - 1 if target in close else None
            assert row[f"fwd_ret_{h}"] == (pytest.approx(expected) if expected is not None else None)


def test_ic_equals_scipy_spearman_per_date_and_quantiles_by_hand():
    df = panel()
    summary, by_date = factors.factor_evaluation(df, ["f", "tiered", "empty"], (1, 5, 10), min_pairs=10)
    assert summary.columns == list(factors.FACTOR_EVALUATION_COLUMNS)
    assert summary.height == 9
    fwd = factors.forward_returns(df, [5]).drop_nulls(["f", "fwd_ret_5"])
    ics, q1, q5 = [], [], []
    for (d,), g in fwd.group_by(["date"], maintain_order=True):
        if g.height < 10:
            continue
        rho = stats.spearmanr(g["f"], g["fwd_ret_5"]).statistic
        ics.append((d, rho))
        ranks = stats.rankdata(g["f"].to_numpy())
        q = np.floor((ranks - 1) * 5 / g.height).astype(int)
        y = g["fwd_ret_5"].to_numpy()
        q1.append(y[q == 0].mean())
        q5.append(y[q == 4].mean())
    ics.sort()
    got = by_date.filter((pl.col("feature") == "f") & (pl.col("horizon") == 5)).sort("date")
    assert got["date"].to_list() == [d for d, _ in ics]
    np.testing.assert_allclose(got["ic"].to_numpy(), [r for _, r in ics], rtol=1e-10)
    row = summary.filter((pl.col("feature") == "f") & (pl.col("horizon") == 5)).row(0, named=True)
    ic = np.array([r for _, r in ics])
    assert row["n_dates"] == len(ic)
    assert row["ic_mean"] == pytest.approx(ic.mean(), rel=1e-10)
    assert row["ic_std"] == pytest.approx(ic.std(ddof=1), rel=1e-10)
    # h = 5: Newey-West with 10 lags, by the hand formula (Bartlett weights, small-sample correction).
    e = ic - ic.mean()
    lags, n = 10, len(ic)
    s2 = (e @ e + 2 * sum((1 - k / (lags + 1)) * (e[k:] @ e[:-k]) for k in range(1, lags + 1))) / n**2 * n / (n - 1)
    assert (row["t_method"], row["hac_lags"], row["t_df"]) == ("newey_west", 10, n // 11 - 1)
    assert row["t_stat"] == pytest.approx(ic.mean() / np.sqrt(s2), rel=1e-10)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(row["t_stat"]), n // 11 - 1), rel=1e-10)
    # h = 1 keeps the plain t-test.
    one = summary.filter((pl.col("feature") == "f") & (pl.col("horizon") == 1)).row(0, named=True)
    ic1 = by_date.filter((pl.col("feature") == "f") & (pl.col("horizon") == 1)).sort("date")["ic"].to_numpy()
    assert (one["t_method"], one["hac_lags"], one["t_df"]) == ("student_t", 0, len(ic1) - 1)
    assert one["t_stat"] == pytest.approx(ic1.mean() / (ic1.std(ddof=1) / np.sqrt(len(ic1))), rel=1e-10)
    assert one["p_value"] == pytest.approx(stats.ttest_1samp(ic1, 0).pvalue, rel=1e-8)
    assert row["ic_positive_share"] == pytest.approx(np.mean(ic > 0))
    assert row["q1_return"] == pytest.approx(np.mean(q1), rel=1e-10)
    assert row["q5_return"] == pytest.approx(np.mean(q5), rel=1e-10)
    assert row["q5_minus_q1"] == pytest.approx(np.mean(q5) - np.mean(q1), rel=1e-10)
    empty = summary.filter(pl.col("feature") == "empty")
    assert (empty["n_dates"] == 0).all() and empty["ic_mean"].null_count() == 3  # all-null: documented nulls
    tiered = summary.filter(pl.col("feature") == "tiered")
    assert (tiered["n_dates"] > 0).all()  # ties share ranks; three tiers still rank
    with pytest.raises(ValueError, match="not columns"):
        factors.factor_evaluation(df, ["nope"])


def test_newey_west_matches_the_reference_values():
    # shared/reference: statsmodels 0.14 HAC standard error of a mean, y below, with correction.
    y = np.array([0.5, -1.2, 0.3, 2.0, -0.7, 1.1, 0.0, -0.4, 0.9, 1.6])
    for lags, se in ((1, 0.27670481664682944), (2, 0.21939479044424468), (3, 0.21156821857526495)):
        t, _, df = factors.newey_west_t(y, lags)
        assert t == pytest.approx(y.mean() / se, rel=1e-12) and df == max(1, 10 // (lags + 1) - 1)


NULL_DAYS = cal.trading_days(dt.date(2023, 1, 3), dt.date(2023, 12, 29))


def null_world(seed: int, tickers: int = 60, features: int = 40, phi: float = 0.95) -> pl.DataFrame:
    """Random-walk prices and persistent features (AR(1), phi 0.95) that know nothing of them."""
    rng = np.random.default_rng(seed)
    t = len(NULL_DAYS)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (t, tickers)), axis=0))
    cols = {}
    for k in range(features):
        e = rng.normal(0, 1, (t, tickers))
        f = np.empty_like(e)
        f[0] = e[0]
        for i in range(1, t):
            f[i] = phi * f[i - 1] + e[i]
        cols[f"f{k}"] = f.ravel()
    dates = pl.Series(np.repeat(np.array(NULL_DAYS), tickers).tolist(), dtype=pl.Date)
    return pl.DataFrame({"ticker": np.tile([f"T{i}" for i in range(tickers)], t), "date": dates, "close": close.ravel(), **cols})


def test_null_factor_false_positive_rate_stays_near_five_percent():
    rows = []
    for seed in range(8):
        df = null_world(seed)
        summary, by_date = factors.factor_evaluation(df, [c for c in df.columns if c.startswith("f")], (1, 5, 10))
        for r in summary.iter_rows(named=True):
            ic = by_date.filter((pl.col("feature") == r["feature"]) & (pl.col("horizon") == r["horizon"]))["ic"].to_numpy()
            rows.append({"h": r["horizon"], "hac": r["p_value"] < 0.05, "plain": factors.plain_t(ic)[1] < 0.05})
    rates = pl.DataFrame(rows).group_by("h").agg(pl.col("hac").mean(), pl.col("plain").mean(), pl.len()).sort("h")
    for r in rates.iter_rows(named=True):
        assert r["len"] == 320
        assert 0.02 <= r["hac"] <= 0.09, rates
    # The plain t-test on overlapping horizons is the flaw being fixed: far above 5 %.
    assert rates.filter(pl.col("h") == 10)["plain"][0] > 0.3


def test_shuffled_factor_is_the_no_skill_baseline_beside_each_ic():
    df = null_world(21, features=2)
    fwd = factors.forward_returns(df.select("ticker", "date", "close"), [1])
    rng = np.random.default_rng(0)
    df = df.join(fwd.select("ticker", "date", "fwd_ret_1"), on=["ticker", "date"]).with_columns(
        (pl.col("fwd_ret_1") + pl.Series(rng.normal(0, 0.05, df.height))).alias("skill")
    )
    summary, _ = factors.factor_evaluation(df, ["skill", "f0"], (1,))
    skill = summary.filter(pl.col("feature") == "skill").row(0, named=True)
    noise = summary.filter(pl.col("feature") == "f0").row(0, named=True)
    assert skill["ic_mean"] > 0.2 and abs(skill["shuffled_ic_mean"]) < 0.02 and abs(skill["shuffled_t_stat"]) < 3
    assert abs(noise["ic_mean"] - noise["shuffled_ic_mean"]) < 0.05
    again, _ = factors.factor_evaluation(df, ["skill", "f0"], (1,))
    assert again.select("shuffled_ic_mean", "shuffled_t_stat").equals(summary.select("shuffled_ic_mean", "shuffled_t_stat"))  # seeded


def test_factor_regressions_equal_least_squares():
    rng = np.random.default_rng(5)
    f3 = pl.DataFrame(
        {
            "date": DAYS,
            "mkt_rf": rng.normal(0, 0.01, len(DAYS)),
            "smb": rng.normal(0, 0.005, len(DAYS)),
            "hml": rng.normal(0, 0.005, len(DAYS)),
            "rf": np.full(len(DAYS), 0.0002),
        }
    )
    r = 0.0002 + f3["rf"].to_numpy() + 1.3 * f3["mkt_rf"].to_numpy() - 0.4 * f3["smb"].to_numpy() + rng.normal(0, 0.004, len(DAYS))
    rets = pl.DataFrame({"ticker": ["X"] * len(DAYS), "date": DAYS, "ret_1d": r})
    table, notes = factors.factor_models(rets, {"capm": f3, "ff3": f3}, ["X", "ABSENT"], ["capm", "ff3"], min_obs=20)
    assert notes == ["ABSENT capm: 0 day(s) with returns and factors, fewer than min_obs=20", "ABSENT ff3: 0 day(s) with returns and factors, fewer than min_obs=20"]
    y = r - f3["rf"].to_numpy()
    X = np.column_stack([np.ones(len(DAYS)), f3.select("mkt_rf", "smb", "hml").to_numpy()])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    ff3 = table.filter(pl.col("model") == "ff3").row(0, named=True)
    assert ff3["alpha_daily"] == pytest.approx(coef[0], rel=1e-9)
    assert [ff3["beta_mkt_rf"], ff3["beta_smb"], ff3["beta_hml"]] == pytest.approx(list(coef[1:]), rel=1e-9)
    assert ff3["alpha_annual"] == pytest.approx(coef[0] * 252)
    resid = y - X @ coef
    assert ff3["r_squared"] == pytest.approx(1 - resid @ resid / ((y - y.mean()) @ (y - y.mean())), rel=1e-9)
    capm = table.filter(pl.col("model") == "capm").row(0, named=True)
    assert capm["beta_smb"] is None and capm["beta_mkt_rf"] == pytest.approx(1.3, abs=0.15)
    with pytest.raises(ValueError, match="lacks"):
        factors.factor_models(rets, {"ff5": f3}, ["X"], ["ff5"])


# --------------------------------------------------------------------------------- Ken French


def real_layout(dataset: kf.Dataset, rows: list[str], header: str | None = None, trailer: str = "Copyright 2024 Kenneth R. French") -> bytes:
    lines = [
        "This file was created by CMPT_ME_BEME_RETS_DAILY using the 202412 CRSP database.",
        "The 1-month TBill return is from Ibbotson and Associates Inc.",
        "",
        header if header is not None else "," + ",".join(dataset.columns),
        *rows,
        "",
        trailer,
        "",
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(dataset.csv_name, "\r\n".join(lines))
    return buf.getvalue()


def test_reader_takes_the_real_layout_in_percent():
    data = real_layout(kf.THREE_FACTOR, ["20241230,   -1.07,   -0.29,    0.51,   0.017", "20241231,   -0.46,    0.05,  -99.99,   0.017"])
    df = kf.read_daily_factors(data, "ff3.zip", kf.THREE_FACTOR)
    assert df.columns == ["date", "mkt_rf", "smb", "hml", "rf"]
    assert df["date"].to_list() == [dt.date(2024, 12, 30), dt.date(2024, 12, 31)]
    assert df["mkt_rf"].to_list() == pytest.approx([-0.0107, -0.0046])
    assert df["rf"][0] == pytest.approx(0.00017)
    assert df["hml"][1] is None  # the library's missing-value sentinel
    sim = kenfrench_zips(dt.date(2024, 1, 2), dt.date(2024, 1, 31), seed=3)
    five = kf.read_daily_factors(sim[kf.FIVE_FACTOR], "sim", kf.FIVE_FACTOR)
    assert five.columns == ["date", "mkt_rf", "smb", "hml", "rmw", "cma", "rf"]
    assert five["date"].to_list() == cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    assert kenfrench_zips(dt.date(2024, 1, 2), dt.date(2024, 1, 31), seed=3) == sim  # deterministic bytes


@pytest.mark.parametrize(
    "data, message",
    [
        (b"<html>maintenance</html>", "not a zip archive"),
        (real_layout(kf.THREE_FACTOR, ["20241230,-1.07,-0.29,0.51,0.017"], header=",Mkt-RF,SMB,HML,RMW,RF"), "header columns"),
        (real_layout(kf.THREE_FACTOR, ["202412,   -1.07,   -0.29,    0.51,   0.017"]), "line 5: row key '202412' is not a YYYYMMDD date"),
        (real_layout(kf.THREE_FACTOR, ["2024-12-30,-1.07,-0.29,0.51,0.017"]), "is not a YYYYMMDD date"),
        (real_layout(kf.THREE_FACTOR, ["20241230,-1.07,-0.29,0.51"]), "3 values where the header has 4"),
        (real_layout(kf.THREE_FACTOR, ["20241230,-1.07,n/a,0.51,0.017"]), "SMB value 'n/a' is not a number"),
        (real_layout(kf.THREE_FACTOR, []), "no daily rows"),
        (real_layout(kf.THREE_FACTOR, ["20241231,1,1,1,1", "20241230,1,1,1,1"]), "does not follow"),
        (real_layout(kf.THREE_FACTOR, ["20241230,1,1,1,1"], header="Mkt-RF SMB HML RF"), "line 5: data row before any header line"),
        (real_layout(kf.THREE_FACTOR, [], header="Mkt-RF SMB HML RF"), "no header line starting with ','"),
    ],
)
def test_changed_layouts_fail_naming_file_line_and_problem(data, message):
    with pytest.raises(kf.KenFrenchFormatError, match=message) as info:
        kf.read_daily_factors(data, "landing/kenfrench/F-F_Research_Data_Factors_daily_CSV.zip", kf.THREE_FACTOR)
    assert "landing/kenfrench/F-F_Research_Data_Factors_daily_CSV.zip" in str(info.value)


class _Vendor(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[int, str, bytes]] = {}

    user_agents: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        agent = self.headers.get("User-Agent", "")
        self.user_agents.append(agent)
        # As the library's server does (reported in 2026): no browser-like User-Agent, no file.
        if not agent.startswith("Mozilla/5.0"):
            status, ctype, body = 403, "text/html", b"<html>403 Forbidden</html>"
        else:
            status, ctype, body = self.files.get(self.path, (404, "text/html", b"<html>Not Found</html>"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return


@pytest.fixture
def vendor():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Vendor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/pages/faculty/ken.french/ftp"
    finally:
        server.shutdown()
        server.server_close()


def test_download_over_http_from_a_loopback_server(vendor):
    server, base = vendor
    zips = kenfrench_zips(dt.date(2024, 1, 2), dt.date(2024, 2, 29), seed=3)
    _Vendor.files = {
        f"/pages/faculty/ken.french/ftp/{kf.THREE_FACTOR.zip_name}": (200, "application/x-zip-compressed", zips[kf.THREE_FACTOR]),
        f"/pages/faculty/ken.french/ftp/{kf.FIVE_FACTOR.zip_name}": (200, "text/html", b"<html>Sorry, down for maintenance</html>"),
    }
    with httpx.Client(timeout=5.0) as bare:  # a client without the browser-like User-Agent is refused
        assert bare.get(f"{base}/{kf.THREE_FACTOR.zip_name}").status_code == 403
    fast = dict(retry=http_lib.RetryPolicy(max_attempts=2, backoff_s=0.01))
    with kf.download_client(base, timeout_s=5.0, **fast) as client:
        data = kf.fetch_zip(client, kf.THREE_FACTOR, base)
        assert data == zips[kf.THREE_FACTOR]
        assert _Vendor.user_agents[-1] == kf.USER_AGENT
        expected_days = len(cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 2, 29)))
        assert kf.read_daily_factors(data, kf.url(kf.THREE_FACTOR, base), kf.THREE_FACTOR).height == expected_days
        with pytest.raises(kf.KenFrenchDownloadError, match=r"GET http://127\.0\.0\.1:\d+/.*5_Factors.* bytes of text/html, not a zip"):
            kf.fetch_zip(client, kf.FIVE_FACTOR, base)
    with kf.download_client(base + "/missing", timeout_s=5.0, **fast) as client:
        with pytest.raises(kf.KenFrenchDownloadError, match=r"failed with HTTP 404"):
            kf.fetch_zip(client, kf.THREE_FACTOR, base + "/missing")
    server.shutdown()
    gone = f"http://127.0.0.1:{server.server_address[1] + 1 if server.server_address[1] < 65535 else 1}/x"
    with kf.download_client(gone, timeout_s=1.0, sleep=lambda s: None, **fast) as client:
        with pytest.raises(kf.KenFrenchDownloadError, match=r"GET http://127\.0\.0\.1:\d+/.* failed after 2 attempts: connection failed \(ConnectError\)"):
            kf.fetch_zip(client, kf.THREE_FACTOR, gone)


def percent_rows(days, mkt, rf=0.017):
    return [f"{d:%Y%m%d},{m:8.2f},{0.1:8.2f},{-0.1:8.2f},{rf:8.3f}" for d, m in zip(days, mkt)]


DAYS = cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 3, 28))


def test_a_file_in_fractions_instead_of_percent_is_refused():
    rng = np.random.default_rng(0)
    mkt = rng.normal(0.05, 1.0, len(DAYS))  # percent, as published
    assert kf.read_daily_factors(real_layout(kf.THREE_FACTOR, percent_rows(DAYS, mkt)), "ok.zip", kf.THREE_FACTOR).height == len(DAYS)
    as_fractions = real_layout(kf.THREE_FACTOR, [f"{d:%Y%m%d},{m / 100:.6f},0.001,-0.001,0.00017" for d, m in zip(DAYS, mkt)])
    with pytest.raises(kf.KenFrenchFormatError, match=r"ff3\.zip: the daily Mkt-RF varies by 0\.0\d+ % .* fractions, not percent"):
        kf.read_daily_factors(as_fractions, "ff3.zip", kf.THREE_FACTOR)


def test_an_implausible_day_fails_naming_its_date():
    rng = np.random.default_rng(1)
    mkt = rng.normal(0.05, 1.0, len(DAYS))
    mkt[17] = 2500.0
    with pytest.raises(kf.KenFrenchFormatError, match=rf"mkt_rf of {DAYS[17]} is \+2,500\.00 %, beyond any day since 1926"):
        kf.read_daily_factors(real_layout(kf.THREE_FACTOR, percent_rows(DAYS, mkt)), "ff3.zip", kf.THREE_FACTOR)
    mkt[17] = 0.3
    with pytest.raises(kf.KenFrenchFormatError, match=rf"RF of {DAYS[0]} is \+1\.700 % a day"):
        kf.read_daily_factors(real_layout(kf.THREE_FACTOR, percent_rows(DAYS, mkt, rf=1.7)), "ff3.zip", kf.THREE_FACTOR)


def test_missing_trading_days_are_found():
    rng = np.random.default_rng(2)
    skipped = DAYS[:20] + DAYS[21:]
    table = kf.read_daily_factors(real_layout(kf.THREE_FACTOR, percent_rows(skipped, rng.normal(0, 1, len(skipped)))), "ff3.zip", kf.THREE_FACTOR)
    assert kf.missing_sessions(table, DAYS[0], DAYS[-1]) == [DAYS[20]]
    assert kf.missing_sessions(table, DAYS[21], DAYS[-1]) == []


def test_over_http_a_file_in_fractions_fails_and_a_trickling_server_hits_the_deadline(scripted_http):
    from quant_assets_tests.http_fake import Reply

    rng = np.random.default_rng(3)
    mkt = rng.normal(0.05, 1.0, len(DAYS))
    fractions = real_layout(kf.THREE_FACTOR, [f"{d:%Y%m%d},{m / 100:.6f},0.001,-0.001,0.00017" for d, m in zip(DAYS, mkt)])
    scripted_http.script(f"/ftp/{kf.THREE_FACTOR.zip_name}", [Reply(200, fractions, content_type="application/zip")])
    scripted_http.script(f"/ftp/{kf.FIVE_FACTOR.zip_name}", [Reply(200, fractions, content_type="application/zip", trickle_s=0.2)])
    base = scripted_http.url + "/ftp"
    with kf.download_client(base, timeout_s=1.0, retry=http_lib.RetryPolicy(max_attempts=1)) as client:
        data = kf.fetch_zip(client, kf.THREE_FACTOR, base)
        with pytest.raises(kf.KenFrenchFormatError, match="fractions, not percent"):
            kf.read_daily_factors(data, kf.url(kf.THREE_FACTOR, base), kf.THREE_FACTOR)
    # A fresh client (the library is asked at most 30 times a minute: the first call is free).
    with kf.download_client(base, timeout_s=1.0, retry=http_lib.RetryPolicy(max_attempts=1)) as client:
        t0 = time.monotonic()
        with pytest.raises(kf.KenFrenchDownloadError, match=r"timed out after 1s"):
            kf.fetch_zip(client, kf.FIVE_FACTOR, base)
        assert time.monotonic() - t0 < 1.0 + http_lib.DEADLINE_SLACK_S + 0.3
    assert all(h.get("User-Agent") == kf.USER_AGENT for h in scripted_http.headers)
