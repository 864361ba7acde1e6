"""The real dashboard server on localhost and the system Chromium, as the browser test and the load test use them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The Chromium the product prints its PDF with (core.report.pdf.chromium_path: $CHROMIUM_PATH, Debian's, one on
    PATH); None when there is none."""
    from core.errors import InputError
    from core.report.pdf import chromium_path as product_chromium

    try:
        return product_chromium()
    except InputError:
        return None


def require_chromium(what: str) -> str:
    """Chromium's path, or a skip saying how to get it: a missing browser is the one reason a browser test skips."""
    import pytest

    path = chromium_path()
    if path is None:
        pytest.skip(f"no Chromium (looked at $CHROMIUM_PATH, /usr/bin/chromium, PATH): install Debian's 'chromium' "
                    f"package to run {what}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerFailed(RuntimeError):
    """The server did not come up (the message holds the end of its log)."""


@contextmanager
def running_server(workspace: str | Path, log_path: str | Path, startup_s: float = 90) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on a free localhost port over `workspace`; yields its URL and stops it."""
    port = _free_port()
    env = {**os.environ, "CORE_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + startup_s
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise ServerFailed(f"streamlit server exited: {Path(log_path).read_text()[-2000:]}") from None
                if time.time() > deadline:
                    raise ServerFailed(f"streamlit server did not come up in {startup_s:.0f} s") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
