"""Real browser: launch the server on localhost, drive Debian's headless Chromium through every page of the demo,
assert no error element, and save a screenshot per page under test-artifacts/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboard.common import PAGES
from dashboard.state import SESSION_PARAM
from tests._server import CHROMIUM, CHROMIUM_ARGS, ROOT, ServerFailed, chromium_path, running_server

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "screenshots"

_ROOTS: dict[str, Path] = {}  # server URL -> its workspace


@pytest.fixture(scope="module")
def server(seeded_server):
    return seeded_server[0]


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory):
    """(url, ids): the real server on a freshly seeded workspace, and that workspace's ids (tests.seed)."""
    if chromium_path() is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package to run the browser test")
    from tests.seed import seed_workspace

    root = tmp_path_factory.mktemp("browser") / "workspace"
    ids = seed_workspace(root)
    try:
        with running_server(root, root.parent / "server.log") as url:
            _ROOTS[url] = root
            yield url, ids
    except ServerFailed as exc:
        pytest.fail(str(exc))


def _url_path(filename: str) -> str:
    return "" if filename == "home.py" else filename.removesuffix(".py")


def _launch(p):
    return p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def _settle(page) -> None:
    page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
    # Wait until the script finished running (the status widget disappears).
    deadline = time.time() + 120
    while time.time() < deadline and page.locator("[data-testid='stStatusWidget']").count():
        time.sleep(0.5)
    time.sleep(1.0)


def _session_token(page) -> str:
    from urllib.parse import parse_qs, urlparse

    deadline = time.time() + 30
    while time.time() < deadline:
        token = parse_qs(urlparse(page.url).query).get(SESSION_PARAM)
        if token:
            return token[0]
        time.sleep(0.3)
    raise AssertionError(f"no sign-in token in the URL {page.url}")


def _sign_in_first_admin(page, server: str) -> str:
    """The seeded workspace has no user: the first start asks for the local admin password. Returns the token."""
    page.goto(server, wait_until="networkidle")
    page.get_by_text("Set the local admin password").wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "first_start.png"), full_page=True)
    page.get_by_label("Password", exact=True).fill("browser-admin-pw")
    page.get_by_label("Password again", exact=True).fill("browser-admin-pw")
    page.get_by_role("button", name="Create the admin account").click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    return _session_token(page)


def test_every_page_renders_without_error(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        try:
            token = _sign_in_first_admin(page, server)
            for _, filename, title, _ in PAGES:
                # Each goto is a reload: the token in the URL keeps the admin signed in.
                page.goto(f"{server}/{_url_path(filename)}?{SESSION_PARAM}={token}", wait_until="networkidle")
                _settle(page)
                signed_in = (page.get_by_role("button", name="Next") if filename == "present.py"  # slides: no sidebar
                             else page.get_by_text("Signed in as"))
                assert signed_in.count() > 0, f"{title}: signed out by a reload"
                page.screenshot(path=str(ARTIFACTS / f"{filename.removesuffix('.py')}.png"), full_page=True)
                errors = page.locator("[data-testid='stException']")
                assert errors.count() == 0, f"{title}: {errors.first.inner_text()[:1000]}"
                assert page.get_by_text(title).count() > 0
        finally:
            browser.close()


def test_a_signed_in_reader_stays_signed_in_after_a_reload(server):
    from playwright.sync_api import sync_playwright

    from core.store import Workspace
    from core.store.access import READER, SHELL, has_users, set_user

    ws = Workspace.open(_ROOTS[server])
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            if not has_users(ws):
                _sign_in_first_admin(page, server)
            set_user(ws, "reader-r1", READER, "reader-r1-pw", actor=SHELL)
            fresh = browser.new_page(viewport={"width": 1400, "height": 1400})
            fresh.goto(server, wait_until="networkidle")
            _settle(fresh)
            fresh.get_by_label("User name", exact=True).fill("reader-r1")
            fresh.get_by_label("Password", exact=True).fill("reader-r1-pw")
            fresh.get_by_role("button", name="Sign in").click()
            fresh.get_by_text("Reading as").wait_for(timeout=60_000)
            _session_token(fresh)
            fresh.reload(wait_until="networkidle")
            _settle(fresh)
            fresh.screenshot(path=str(ARTIFACTS / "reader_after_reload.png"), full_page=True)
            assert fresh.get_by_text("Reading as").count() > 0
            assert fresh.get_by_role("button", name="Sign in").count() == 0
            # Another page's URL is refused. offers only the Reader study page; another page's URL is refused.
            fresh.goto(f"{server}/performance?{SESSION_PARAM}={_session_token(fresh)}", wait_until="networkidle")
            _settle(fresh)
            assert fresh.get_by_text("Readers grade images only").count() > 0
        finally:
            browser.close()
