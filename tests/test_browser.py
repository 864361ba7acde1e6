"""Real browser: launch the server on localhost, drive Debian's headless Chromium through every page of the demo,
assert no error element, and save a screenshot per page under test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.common import PAGES

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(seeded_server):
    return seeded_server[0]


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory):
    """(url, ids): the real server on a freshly seeded workspace, and that workspace's ids (tests.seed)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package to run the browser test")
    pytest.importorskip("playwright.sync_api")
    from tests.seed import seed_workspace

    root = tmp_path_factory.mktemp("browser") / "workspace"
    ids = seed_workspace(root)
    port = _free_port()
    env = {**os.environ, "CORE_WORKSPACE": str(root), "HF_HUB_OFFLINE": "1"}
    log = open(root.parent / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit server did not come up in 90 s")
    if proc.poll() is not None:
        pytest.fail(f"streamlit server exited: {(root.parent / 'server.log').read_text()[-2000:]}")
    yield url, ids
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _url_path(filename: str) -> str:
    return "" if filename == "home.py" else filename.removesuffix(".py")


def test_every_page_renders_without_error(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
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
