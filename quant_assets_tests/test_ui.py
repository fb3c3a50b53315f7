"""The Dagster UI on our code location, in headless Chromium (``make test-ui``).

Opens the asset graph and the pages of the market assets after a few partitions were built, and
fails on any error banner, failed GraphQL call or script error. Screenshots land in
``$QUANT_UI_SCREENSHOTS`` (default: the test's temporary folder). Skipped, with the reason, where
no Chromium is installed (Debian: ``apt-get install chromium``); Playwright never downloads one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon
from quant_assets_tests.dagster_stack import REPO, DagsterStack, instance_yaml

pytestmark = pytest.mark.ui

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
ERROR_TEXT = re.compile(r"Unexpected GraphQL error|An unexpected error|Something went wrong|PythonError|Error loading", re.I)
DAYS = [d.isoformat() for d in cal.weekdays("2024-01-02", "2024-01-12")]
PAGES = [
    ("graph", "/asset-groups/market"),
    ("catalog", "/assets"),
    ("day_aggs", "/assets/market/day_aggs"),
    ("daily_bars", "/assets/market/daily_bars"),
    ("daily_bars_partitions", "/assets/market/daily_bars?view=partitions"),
    ("daily_bars_checks", "/assets/market/daily_bars?view=checks"),
    ("sensor", "/locations/quant_assets/sensors/polygon_landing_sensor"),
]


def _chromium() -> str | None:
    explicit = os.environ.get("QUANT_CHROMIUM")
    for path in ([explicit] if explicit else []) + list(CHROMIUM_CANDIDATES):
        if path and Path(path).exists():
            return path
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def built_stack(simulated_landing, tmp_path_factory):
    if _chromium() is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set QUANT_CHROMIUM)")
    root = tmp_path_factory.mktemp("ui")
    home, data, landing = root / "dagster_home", root / "data", root / "landing"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(REPO / "dagster_home" / "dagster.yaml"))
    for day in DAYS:
        if cal.is_trading_day(day):
            dst = landing / polygon.day_aggs_key(day)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(simulated_landing / polygon.day_aggs_key(day), dst)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANT_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(home),
        "QUANT_DATA_DIR": str(data),
        "QUANT_LANDING_URL": str(landing),
        "QUANT_START_DATE": DAYS[0],
        "QUANT_END_DATE": DAYS[-1],
    }
    stack = DagsterStack(home, env, root / "dagster-dev.log")
    try:
        stack.start()
        backfill = stack.launch_backfill(
            [["market", "day_aggs"], ["market", "daily_bars"], ["market", "daily_filtered"]], DAYS[0], DAYS[-1]
        )
        assert stack.wait_backfill(backfill) in ("COMPLETED", "COMPLETED_SUCCESS"), stack.log_tail()
        stack.shots = Path(os.environ.get("QUANT_UI_SCREENSHOTS") or root / "screenshots")
        stack.shots.mkdir(parents=True, exist_ok=True)
        yield stack
    finally:
        stack.stop()


def _dismiss_welcome(page) -> None:
    """A fresh instance greets a new user with a newsletter dialog; skip it like a user would."""
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(300)


def test_pages_render_without_errors(built_stack):
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on(
            "response",
            lambda r: problems.append(f"HTTP {r.status} {r.url}") if "/graphql" in r.url and r.status >= 400 else None,
        )
        for name, path in PAGES:
            page.goto(built_stack.url + path, wait_until="networkidle", timeout=120_000)
            page.wait_for_timeout(1500)
            _dismiss_welcome(page)
            page.screenshot(path=str(built_stack.shots / f"{name}.png"), full_page=True)
            text = page.inner_text("body")
            found = ERROR_TEXT.search(text)
            if found:
                problems.append(f"{path}: {found.group(0)!r} shown")
        # The asset page shows owners, kinds, documented columns and the freshness policy.
        page.goto(built_stack.url + "/assets/market/daily_bars", wait_until="networkidle", timeout=120_000)
        page.wait_for_timeout(1500)
        body = page.inner_text("body")
        for expected in ("market-data", "Parquet", "Simple 1-session return", "Freshness policy", "Row count"):
            if expected not in body:
                problems.append(f"daily_bars page does not show {expected!r}")
        # One partition's own figures: its row count and its preview, not the run's totals.
        page.goto(built_stack.url + "/assets/market/day_aggs?view=partitions&partition=2024-01-10", wait_until="networkidle", timeout=120_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(built_stack.shots / "day_aggs_partition.png"), full_page=True)
        body = page.inner_text("body")
        for expected in ("dagster/row_count", "source_etag", "quarantine_share"):
            if expected not in body:
                problems.append(f"day_aggs partition 2024-01-10 does not show {expected!r}")
        browser.close()
    assert not problems, "\n".join(problems)
