"""Fixtures of the dashboard tests: Debian's headless Chromium (``/usr/bin/chromium``) driven by
Playwright against the session's ``managed_broker``, whose HTTP server serves the dashboard
(``management_ui/static/``) at ``/`` and the API at ``/api``.

Browsers are never downloaded (no ``playwright install``): Playwright drives the system's
Chromium through ``executable_path``; without it the tests are skipped, saying so.

Screenshots (``dashboard-<name>.png``) go to ``screenshots/`` under pytest's base temporary
directory; the ones docs/management.md shows (docs/screenshots/) are taken by
``scripts/dashboard_screenshots.py`` on a broker with traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BrokerHandle
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 860}
TIMEOUT_MS = 15_000  # the dashboard refreshes every 5 s
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it when it can)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def base_url(managed_broker: BrokerHandle) -> str:
    return f"http://127.0.0.1:{managed_broker.server.management_port}/"


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh browser context (empty sessionStorage) on the dashboard's login page."""
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url)
    yield page
    # Errors the dashboard showed (a failed request) that the test did not expect.
    shown = page.locator("#messages .error").all_inner_texts()
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not shown, f"errors shown by the dashboard: {shown}"


@pytest.fixture
def logged_in(page: Page) -> Page:
    login(page)
    return page


def login(page: Page, username: str = "guest", password: str = "guest") -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def goto(page: Page, hash_route: str) -> None:
    """Follow a route of the dashboard ('#/queues/%2F/name') as a link would."""
    page.evaluate("route => { location.hash = route; }", hash_route)


def open_section(page: Page, title: str) -> None:
    """Open a collapsed section by its heading."""
    summary = page.locator("summary", has=page.get_by_role("heading", name=title, exact=True))
    if summary.locator("xpath=..").get_attribute("open") is None:
        summary.click()


def row(page: Page, text: str):
    """The table row whose link is named ``text``."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=text, exact=True))


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def snap(screenshot_dir: Path) -> Callable[[Page, str], None]:
    """snap(page, name): a PNG of the viewport, ``dashboard-<name>.png``."""

    def take(page: Page, name: str) -> None:
        page.wait_for_load_state("networkidle")
        page.evaluate("document.querySelectorAll('#messages .notice').forEach(n => n.remove())")
        path = screenshot_dir / f"dashboard-{name}.png"
        page.screenshot(path=str(path))
        head = path.read_bytes()[:24]  # the signature, then the IHDR chunk: width, height
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(head[16:20]), int.from_bytes(head[20:24])) == (VIEWPORT["width"], VIEWPORT["height"])

    return take
