"""Shared fixtures: an isolated workspace per test, offline hub, and the optional ../shared/data folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_NUM_THREADS", "2")
# Suite-wide torch engine: an ONNX export costs seconds per tiny model and the suite is near its budget. The
# engine choice itself (auto, onnx, fallback) is tested in tests/test_onnx_runtime.py.
os.environ.setdefault("CORE_ENGINE", "torch")
# A test that opens the default workspace without a fixture gets a throwaway one, never the repository's
# ./workspace (a clean clone's suite left an empty registry there for the user's first launch to find).
os.environ["CORE_WORKSPACE"] = tempfile.mkdtemp(prefix="core-tests-workspace-")  # even when set: not yours

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

# AppTest resolves relative paths against the calling file; use this absolute entry point.
APP_PATH = str(PROJECT_ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def oct_folder(tmp_path_factory):
    """A tiny Kermany-layout folder (6 train + 2 test images per class of 32 px patterns), once per module."""
    from tests.train_fixtures import make_kermany_folder

    return make_kermany_folder(tmp_path_factory.mktemp("oct"), per_class=6, test_per_class=2)


@pytest.fixture(scope="session")
def _seeded_root(tmp_path_factory):
    from tests.seed import seed_workspace

    root = tmp_path_factory.mktemp("seeded") / "workspace"
    return seed_workspace(root)


@pytest.fixture
def seeded_workspace(_seeded_root, monkeypatch):
    """A session-wide seeded workspace (tiny demo, trained test model, predictions, simulated readers), set as
    $CORE_WORKSPACE. Shared by the tests of one session, so only for tests that read it: a test that stores
    anything (settings, readings, studies, runs, test sets, maps) takes own_seeded_workspace instead.
    Returns the dict from tests.seed.seed_workspace (root, dataset_id, test_set_id, run_id, predictions_path)."""
    monkeypatch.setenv("CORE_WORKSPACE", _seeded_root["root"])
    before = _files(_seeded_root["root"])
    yield _seeded_root
    after = _files(_seeded_root["root"])
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, ("this test wrote into the shared seeded workspace (take own_seeded_workspace): "
                         f"{sorted({path for path, _ in changed})[:10]}")


def _files(root: str) -> dict[str, object]:
    """(size, mtime) of every file under root, and the registry's rows outside the sign-in tables (which signing in
    writes by design)."""
    import sqlite3

    base = Path(root)
    state: dict[str, object] = {str(p.relative_to(base)): (p.stat().st_size, p.stat().st_mtime_ns)
                                for p in base.rglob("*") if p.is_file() and not p.name.startswith("registry.sqlite")
                                and p.parent.name != "backups"}  # the registry's rolling backups: taken by design
    con = sqlite3.connect(f"file:{base / 'registry.sqlite'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            rows = tuple(map(tuple, con.execute(f'SELECT * FROM "{table}"')))
            if rows and table not in ("users", "user_sessions"):  # tables made on first use hold no rows
                state[f"registry:{table}"] = hash(rows)
    finally:
        con.close()
    return state


@pytest.fixture
def own_seeded_workspace(_seeded_root, tmp_path, monkeypatch):
    """A private copy of the seeded workspace, set as $CORE_WORKSPACE, for a test that changes what it stores (the
    saved selection, penalty matrices, cached maps): its writes never reach another test. The registry's paths still
    point at the shared images, model and predictions, which the test only reads."""
    root = tmp_path / "seeded-copy"
    shutil.copytree(_seeded_root["root"], root)
    monkeypatch.setenv("CORE_WORKSPACE", str(root))
    return {**_seeded_root, "root": str(root)}
