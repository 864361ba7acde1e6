"""Shared fixtures: an isolated workspace per test, offline hub, and the optional ../shared/data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_NUM_THREADS", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh workspace folder, also set as $CORE_WORKSPACE for code that opens the default one."""
    from core.store import Workspace

    root = tmp_path / "workspace"
    monkeypatch.setenv("CORE_WORKSPACE", str(root))
    return Workspace.open(root)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data when present (developers' machines); tests using it skip cleanly elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not present at {SHARED_DATA}")
    return SHARED_DATA
