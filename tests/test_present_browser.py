"""Presentation mode in a real browser at 1920 x 1080 (a kiosk screen): every slide from the shareable URL, no error,
no scrolling, one screenshot per slide under test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from dashboard.state import SESSION_PARAM
from tests.test_browser import ARTIFACTS, _launch, _settle, _sign_in_first_admin, seeded_server  # noqa: F401

pytestmark = pytest.mark.browser
N_SLIDES = 5
# How many pixels the page's main area would have to scroll.
MAIN_OVERFLOW_JS = ("() => { const m = document.querySelector(\"[data-testid=stMain]\"); "
                    "return m.scrollHeight - m.clientHeight; }")


def test_every_slide_fits_a_kiosk_screen(seeded_server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, ids = seeded_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        try:
            token = _sign_in_first_admin(page, url)  # the slides show results: staff only
            page.goto(f"{url}/?present=1&run={ids['run_id']}&test_set={ids['test_set_id']}&{SESSION_PARAM}={token}",
                      wait_until="networkidle")
            page.wait_for_selector("[data-testid='stMain']", timeout=60_000)
            _settle(page)
            assert page.locator("[data-testid='stSidebar']").count() == 0
            for i in range(N_SLIDES):
                page.wait_for_selector(f"text={i + 1} / {N_SLIDES}", timeout=60_000)
                _settle(page)
                page.screenshot(path=str(ARTIFACTS / f"present-{i + 1}.png"))
                assert page.locator("[data-testid='stException']").count() == 0
                overflow = page.evaluate(MAIN_OVERFLOW_JS)
                assert overflow <= 2, f"slide {i + 1} needs scrolling ({overflow} px)"
                if i < N_SLIDES - 1:
                    page.get_by_role("button", name="Next").click()
        finally:
            browser.close()
