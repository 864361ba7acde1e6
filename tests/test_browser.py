"""Real browser: launch the server on localhost, drive Debian's headless Chromium through every page of the demo,
assert no error element, and save a screenshot per page under test-artifacts/screenshots/."""

from __future__ import annotations

import time

import pytest

from dashboard.common import PAGES
from tests._server import CHROMIUM, CHROMIUM_ARGS, ROOT, ServerFailed, chromium_path, running_server

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def server(seeded_server):
    return seeded_server[0]


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory):
    """(url, ids): the real server on a freshly seeded workspace, and that workspace's ids (tests.seed)."""
    if chromium_path() is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package to run the browser test")
    pytest.importorskip("playwright.sync_api")
    from tests.seed import seed_workspace

    root = tmp_path_factory.mktemp("browser") / "workspace"
    ids = seed_workspace(root)
    try:
        with running_server(root, root.parent / "server.log") as url:
            yield url, ids
    except ServerFailed as exc:
        pytest.fail(str(exc))


def _url_path(filename: str) -> str:
    return "" if filename == "home.py" else filename.removesuffix(".py")


def test_every_page_renders_without_error(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        try:
            for _, filename, title, _ in PAGES:
                page.goto(f"{server}/{_url_path(filename)}", wait_until="networkidle")
                page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
                # Wait until the script finished running (the status widget disappears).
                deadline = time.time() + 120
                while time.time() < deadline and page.locator("[data-testid='stStatusWidget']").count():
                    time.sleep(0.5)
                time.sleep(1.0)
                page.screenshot(path=str(ARTIFACTS / f"{filename.removesuffix('.py')}.png"), full_page=True)
                errors = page.locator("[data-testid='stException']")
                assert errors.count() == 0, f"{title}: {errors.first.inner_text()[:1000]}"
                assert page.get_by_text(title).count() > 0
        finally:
            browser.close()
