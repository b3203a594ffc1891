"""The dashboard end to end in real headless Chromium (Debian's package, driven by playwright).

A real web server and a real engine process; the test plays the market feed over REST. Any
console error, uncaught exception or request to a host other than the server fails the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.access import keys
from app.settings import PROJECT_ROOT
from tests.live import WebServer, http, start_worker

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", PROJECT_ROOT / "test-artifacts"))
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)"
).sync_playwright

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM}: install Debian's chromium package (apt install chromium)",
)


@pytest.fixture
def server(database_url):
    web = WebServer(database_url, workers=1, RATE_LIMIT_ENABLED="false")
    engine = start_worker(database_url)
    try:
        yield web
    finally:
        engine.terminate()
        engine.wait(timeout=20)
        web.stop()


@pytest.fixture
def browser_page(server):
    """A Chromium page that records every console error and non-local request."""
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1300})
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                problems.append(f"console {message.type}: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

        def only_local(route):
            host = urlsplit(route.request.url).hostname
            if route.request.url.startswith("data:") or host in LOCAL_HOSTS:
                route.continue_()
            else:
                problems.append(f"request to a non-local host: {route.request.url}")
                route.abort()

        context.route("**/*", only_local)
        try:
            yield page, problems
        finally:
            browser.close()


def trader_key() -> str:
    _, raw = keys.create_key(keys.KeyRequest(name="dashboard-trader", role="trader"))
    return raw


def test_the_dashboard_trades_live_in_a_real_browser(server, browser_page):
    page, problems = browser_page
    key = trader_key()
    page.goto(server.url("/dashboard"))
    page.fill("#api-key", key)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector('#connection[data-state="connected"]')
    assert page.text_content("#identity") == "dashboard-trader (trader)"

    # Start a session from the form, then feed prices as the market would.
    page.fill("#start-form [name=symbol]", "BTC/USDT")
    page.fill("#start-form [name=initial_capital]", "10000")
    page.click("#start-form button[type=submit]")
    page.wait_for_selector('#sessions tbody tr[data-status="RUNNING"]')
    post_tick(server, 50_000)

    # An order the API refuses shows its error next to the field it names.
    page.select_option("#order-form [name=type]", "LIMIT")
    page.fill("#order-form [name=symbol]", "BTC/USDT")
    page.fill("#order-form [name=quantity]", "0.01")
    page.click("#order-form button[type=submit]")
    page.wait_for_selector('#order-form [data-error-for="price"]:not(:empty)')
    # Chromium logs every 4xx answer as a console error: this one was asked for.
    refused = [p for p in problems if "status of 400" in p]
    assert len(refused) == 1, problems
    problems.remove(refused[0])

    points_before = int(page.get_attribute("#equity-chart", "data-points"))
    page.select_option("#order-form [name=type]", "MARKET")
    page.click("#order-form button[type=submit]")
    page.wait_for_selector('#orders tbody tr[data-status="FILLED"]')
    page.wait_for_selector("#trades tbody tr")
    assert page.text_content('#order-form [data-error-for="price"]') == ""

    # The next tick marks the new position: the equity curve grows a point, P&L goes live.
    post_tick(server, 50_500)
    wait_for_number(page, "#equity-chart", "data-points", lambda points: points > points_before)
    # Marking the position to the new price reaches the table as a position_update.
    page.wait_for_selector("#positions tbody tr td.up")
    assert float(page.text_content("#positions tbody tr td:nth-child(5)").replace(",", "")) > 0
    wait_for_number(page, "#candle-chart", "data-candles", lambda candles: candles > 0)

    # A decision arrives over the stream; its reasoning opens in the browser.
    decision = http.post(
        server.url("/api/v1/decisions"),
        json={
            "agent_name": "trend-follower",
            "symbol": "BTC/USDT",
            "decision_type": "signal",
            "decision": "BUY",
            "confidence": 0.8,
            "model": "rules",
            "reasoning": "EMA(9) crossed above EMA(21) with RSI at 58: trend resuming",
            "context": {"rsi": 58},
            "prompt_embedding": [0.1] * 16,
        },
        timeout=10,
    )
    assert decision.status_code == 201, decision.text
    decision_id = decision.json()["decision"]["id"]
    page.click(f'#decisions tbody tr[data-decision-id="{decision_id}"]')
    page.wait_for_selector(f'#decision-detail[data-decision-id="{decision_id}"]')
    assert "trend resuming" in page.text_content("#decision-reasoning")

    # The search tab finds it by a misspelt word, and says so; an empty search clears it.
    page.fill('#search-form input[name="query"]', "trnd resumng")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#search-status:has-text('1 found')")
    assert page.locator("#decisions tbody tr").count() == 1
    page.click("#search-clear")
    page.wait_for_selector("#search-status:empty", state="attached")

    # Pause from the controls; the session's status follows.
    page.click('#session-detail [data-action="pause"]')
    page.wait_for_selector('#session-detail[data-status="PAUSED"]')

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert problems == [], "\n".join(problems)


def test_a_viewer_sees_no_controls_and_the_page_says_when_it_is_offline(server, browser_page):
    page, problems = browser_page
    _, viewer = keys.create_key(keys.KeyRequest(name="dashboard-viewer", role="viewer"))
    page.goto(server.url("/dashboard"))
    page.fill("#api-key", "cf_not-a-key")
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector('#sign-in-form [data-error-for="key"]:not(:empty)')
    problems.clear()  # the refused key is a 401 the browser logs as a failed resource

    page.fill("#api-key", viewer)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector('#connection[data-state="connected"]')
    assert page.is_hidden("#order-form")
    assert page.is_hidden("#start-form")
    # The key survives a reload (session storage), and the page signs itself back in.
    page.reload()
    page.wait_for_selector('#connection[data-state="connected"]')

    # The server goes away: the page says so instead of showing stale figures.
    server.process.terminate()
    server.process.wait(timeout=20)
    page.wait_for_selector('#connection[data-state="offline"]', timeout=15_000)
    assert page.is_visible("#banner")
    assert "Live updates are down" in page.text_content("#banner")
    problems[:] = [
        p for p in problems if "ERR_CONNECTION_REFUSED" not in p and "WebSocket" not in p
    ]
    assert problems == []


def wait_for_number(page, selector: str, attribute: str, holds, timeout: float = 15.0) -> None:
    """Poll a numeric data attribute (the page's policy forbids the eval that
    ``wait_for_function`` needs)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.get_attribute(selector, attribute)
        if value is not None and holds(float(value)):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} {attribute} is {value}")


def post_tick(server, price: float) -> None:
    response = http.post(
        server.url("/api/v1/market/prices"), json={"symbol": "BTC/USDT", "price": price}, timeout=10
    )
    assert response.status_code == 201, response.text
