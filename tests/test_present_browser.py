"""Presentation mode in a real browser on a kiosk screen (1920 x 1080) and a laptop (1366 x 768): every slide from the
shareable URL, no error, no sidebar, no file name, nothing below the screen's bottom edge; one screenshot per slide
and size under test-artifacts/screenshots/. Opened from the page list, it becomes the shareable link (no sidebar)."""

from __future__ import annotations

import re

import pytest

from dashboard.state import SESSION_PARAM
from tests.test_browser import ARTIFACTS, _launch, _settle, _sign_in_first_admin, seeded_server  # noqa: F401

pytestmark = pytest.mark.browser
VIEWPORTS = ((1920, 1080), (1366, 768))
# The lowest edge of what a slide shows (its content and the navigation), in CSS pixels from the top of the screen.
BOTTOM_JS = ("() => Math.max(...['.st-key-slide', '.st-key-present_nav'].map("
             "s => document.querySelector(s).getBoundingClientRect().bottom))")
# The script has finished and no element of the previous slide is still on screen (Streamlit marks them stale).
SETTLED_JS = ("() => !document.querySelector(\"[data-stale='true']\") && "
              "!document.querySelector(\"[data-testid='stStatusWidget']\")")
FILE_NAME = re.compile(r"[\w-]+\.(?:jpe?g|png|dcm|bmp|tiff?|npz|csv)\b", re.IGNORECASE)


def _slide_count(page) -> int:
    counter = page.locator(".st-key-present_nav").get_by_text(re.compile(r"^\s*1 / \d+\s*$"))
    counter.wait_for(timeout=60_000)  # the navigation's block may be drawn before its text
    return int(re.search(r"1 / (\d+)", counter.inner_text()).group(1))


def test_every_slide_fits_a_kiosk_and_a_laptop_screen(seeded_server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, ids = seeded_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            token = _sign_in_first_admin(page, url)  # the slides show results: staff only
            link = f"{url}/?present=1&run={ids['run_id']}&test_set={ids['test_set_id']}&{SESSION_PARAM}={token}"
            shown_figure = False
            page.goto(link, wait_until="networkidle")
            page.wait_for_selector(".st-key-present_nav", timeout=60_000)
            _settle(page)
            n_slides = _slide_count(page)
            assert n_slides >= 6  # what, readers, ROC with the readers, cost, failures, what is not known
            for i in range(n_slides):
                page.wait_for_selector(f".st-key-present_nav :text('{i + 1} / {n_slides}')", timeout=60_000)
                page.wait_for_function(SETTLED_JS, timeout=60_000)
                assert page.locator("[data-testid='stException']").count() == 0
                assert page.locator("[data-testid='stSidebar']").count() == 0
                names = FILE_NAME.findall(page.locator("[data-testid='stMain']").inner_text())
                assert not names, f"slide {i + 1} shows file names {names}"
                for width, height in VIEWPORTS:  # the type and the figure follow the screen's height (CSS)
                    page.set_viewport_size({"width": width, "height": height})
                    page.wait_for_timeout(300)  # plotly redraws on resize
                    page.screenshot(path=str(ARTIFACTS / f"present-{width}x{height}-{i + 1}.png"))
                    bottom = page.evaluate(BOTTOM_JS)
                    assert bottom <= height, f"slide {i + 1} at {width}x{height} ends at {bottom:.0f} px"
                shown_figure |= page.locator(".st-key-slide_figure .js-plotly-plot").count() == 1  # drawn by now
                if i < n_slides - 1:
                    page.get_by_role("button", name="Next").click()
            assert shown_figure  # the ROC with the readers on it was drawn

            # From the page list (no ?present=1): the page turns itself into the shareable link, sidebar gone.
            page.goto(f"{url}/present?run={ids['run_id']}&test_set={ids['test_set_id']}&{SESSION_PARAM}={token}",
                      wait_until="networkidle")
            page.wait_for_selector(".st-key-present_nav", timeout=60_000)
            _settle(page)
            assert "present=1" in page.url
            assert page.locator("[data-testid='stSidebar']").count() == 0
        finally:
            browser.close()
