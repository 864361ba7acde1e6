"""Real browser: launch the server on localhost, drive Debian's headless Chromium through every page of the demo,
assert no error element, and save a screenshot per page under test-artifacts/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboard.common import PAGES
from dashboard.state import SESSION_PARAM
from tests._server import CHROMIUM_ARGS, ROOT, ServerFailed, chromium_path, require_chromium, running_server

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "screenshots"

_ROOTS: dict[str, Path] = {}  # server URL -> its workspace


@pytest.fixture(scope="module")
def server(seeded_server):
    return seeded_server[0]


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory):
    """(url, ids): the real server on a freshly seeded workspace, and that workspace's ids (tests.seed)."""
    require_chromium("the browser tests")
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


def _signed_in_reader(browser, page, server: str, ws, name: str):
    """A new page on which reader `name` (made here, as a reader user with a password) signed in through the form;
    `page` makes the first admin if the workspace has no user yet."""
    from core.store.access import READER, SHELL, has_users, set_user

    if not has_users(ws):
        _sign_in_first_admin(page, server)
    set_user(ws, name, READER, f"{name}-pw", actor=SHELL)
    fresh = browser.new_page(viewport={"width": 1400, "height": 1400})
    fresh.goto(server, wait_until="networkidle")
    _settle(fresh)
    fresh.get_by_label("User name", exact=True).fill(name)
    fresh.get_by_label("Password", exact=True).fill(f"{name}-pw")
    fresh.get_by_role("button", name="Sign in").click()
    fresh.get_by_text("Reading as").wait_for(timeout=60_000)
    return fresh


def test_every_page_renders_without_error(server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
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
                try:  # the Present page rewrites its address to the presentation link and reruns once more
                    signed_in.first.wait_for(timeout=30_000)
                except PlaywrightTimeout:  # reported by the assertion below, with the page's title
                    pass
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

    ws = Workspace.open(_ROOTS[server])
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            fresh = _signed_in_reader(browser, page, server, ws, "reader-r1")
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


def _answers(ws, study_id: str, reader: str) -> list[tuple[str, int | None]]:
    with ws.connect() as con:
        return [(r["label"], r["confidence"]) for r in con.execute(
            "SELECT label, confidence FROM answers WHERE study_id=? AND reader_id=? ORDER BY answered",
            (study_id, reader))]


def _wait_for(condition, seconds: float = 60.0, what: str = "") -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.2)


def test_keyboard_answers_after_a_confidence_click_are_all_stored_and_a_reload_resumes(seeded_server):
    """Item 12 of the first-afternoon walk: after clicking a confidence radio, keys 1-4 did nothing (2 of 10 presses
    lost, no feedback), and a reload logged the reader out of the study."""
    from playwright.sync_api import sync_playwright

    from core.data import load_dataset
    from core.readers import create_study
    from core.store import Workspace
    from core.store.access import SHELL

    server, ids = seeded_server
    ws = Workspace.open(_ROOTS[server])
    row = ws.get_dataset(ids["test_set_id"])
    study_id = create_study(ws, row["id"], load_dataset(row["source"], "oct-kermany"), "oct-kermany",
                            subset_size=10, seed=11, name="keyboard study", actor=SHELL)
    classes = ("CNV", "DME", "DRUSEN", "NORMAL")
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page = _signed_in_reader(browser, page, server, ws, "reader-keys")
            page.locator(".st-key-rs_join button").click()  # the newest study, ours, is the one selected
            for i in range(10):
                if i == 5:  # a reload mid-study: straight back to the next image, no "Start or resume" click
                    page.reload(wait_until="networkidle")
                    _settle(page)
                    assert page.locator(".st-key-rs_join").count() == 0
                page.get_by_text(f"Image {i + 1} of 10").wait_for(timeout=60_000)
                if i == 5:
                    page.screenshot(path=str(ARTIFACTS / "reader_resumed_after_reload.png"), full_page=True)
                    # All five confidence levels fit the column the class buttons fill ("5" was cut off).
                    five = page.locator("[class*='st-key-rs_confidence_'] button").filter(has_text="5").first
                    column = page.locator(".st-key-rs_class_0 button").bounding_box()
                    box = five.bounding_box()
                    assert box["x"] + box["width"] <= column["x"] + column["width"] + 1, (box, column)
                    resume = page.locator(".st-key-rs_next button").first
                    assert resume.evaluate("b => b.scrollWidth <= b.clientWidth"), "the Resume label is cut off"
                confidence = 1 + i % 5
                page.locator("[class*='st-key-rs_confidence_'] button").filter(
                    has_text=str(confidence)).first.click()
                _wait_for(lambda: page.locator("[class*='st-key-rs_confidence_'] button[kind*='Active']").count()
                          or page.locator("[class*='st-key-rs_confidence_'] [aria-checked='true'], "
                                          "[class*='st-key-rs_confidence_'] [aria-pressed='true']").count(),
                          30, "the confidence click to register")
                page.keyboard.press(str(1 + i % 4))  # focus is on the confidence button the reader just clicked
                _wait_for(lambda: len(_answers(ws, study_id, "reader-keys")) == i + 1, 60, f"answer {i + 1}")
                # Every press acknowledged on screen, the last one too (it had no feedback).
                page.get_by_text(f"Last answer saved: {classes[i % 4]}").wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "reader_keyboard_done.png"), full_page=True)
            assert _answers(ws, study_id, "reader-keys") == [(classes[i % 4], 1 + i % 5) for i in range(10)]
            page.get_by_text("All 10 images graded").wait_for(timeout=60_000)
        finally:
            browser.close()
