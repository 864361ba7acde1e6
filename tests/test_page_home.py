"""Home page: renders on a fresh workspace, generates and registers the synthetic demo, shows the workspace."""


from tests.apptest import signed_in_app


def test_home_generates_demo_and_renders(workspace, monkeypatch):
    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    at = signed_in_app(timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown) + " ".join(i.value for i in at.info)
    assert "synthetic" in text.lower()
    assert any(str(workspace.root) in c.value for c in at.code)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Datasets"] == "1" and metrics["Test sets"] == "1"
    assert (workspace.demo_dir / "demo.json").is_file()
    # A second run reuses the demo: nothing regenerated, still one dataset.
    at.run()
    assert {m.label: m.value for m in at.metric}["Datasets"] == "1"


def test_home_rejects_a_file_as_workspace(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    at = signed_in_app(timeout=120).run()
    at.text_input(key="workspace_input").input(str(not_a_folder))
    at.button(key="open_workspace").click().run()
    assert any("not a folder" in e.value for e in at.error)


def test_try_the_demo_starts_the_default_run(workspace, monkeypatch):
    import time

    from core.train import cancel_run, reconcile_runs

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    at = signed_in_app(timeout=120).run()
    at.button(key="demo_train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = workspace.list_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["backbone"] == "tf_efficientnet_lite0" and run["mode"] == "features"
    assert run["config"]["extra"]["demo"] is True
    cancel_run(run["id"], workspace)
    deadline = time.time() + 120
    while time.time() < deadline:
        reconcile_runs(workspace)
        if workspace.get_run(run["id"])["status"] in ("cancelled", "succeeded", "failed"):
            break
        time.sleep(1)
    assert workspace.get_run(run["id"])["status"] in ("cancelled", "succeeded")


def _damaged_workspace(root):
    """A workspace with one run and a backup, whose registry is then cut in half (a truncated copy, a failing disk)."""
    import sqlite3

    from core.store import Workspace
    from core.store.backup import take_backup

    ws = Workspace.open(root)
    for i in range(40):  # a registry of several pages, so that half of it is missing pages
        ws.set_setting(f"note-{i}", "x" * 800)
    take_backup(ws.db_path)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = ws.db_path.read_bytes()
    ws.db_path.write_bytes(data[: len(data) // 2])
    return ws


def test_a_damaged_registry_shows_a_plain_message_before_sign_in(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP_PATH

    ws = _damaged_workspace(tmp_path / "damaged")
    monkeypatch.setenv("CORE_WORKSPACE", str(ws.root))
    at = AppTest.from_file(APP_PATH, default_timeout=60).run()  # nobody signed in
    assert not at.exception, [e.value for e in at.exception]
    assert any("registry is damaged" in e.value for e in at.error)
    detail = " ".join(c.value for c in at.code)
    # Before sign-in nobody is an admin: the workspace is named by its folder, never by its server path.
    assert f"the workspace registry {ws.root.name}/registry.sqlite is damaged (database disk image is malformed)" in detail
    assert f"python -m core doctor --fix --workspace {ws.root.name}` to restore the newest good backup" in detail
    assert str(ws.root.parent) not in detail and "Traceback" not in detail


def test_a_registry_damaged_while_signed_in_shows_a_plain_message(tmp_path, monkeypatch):
    from core.store import Workspace

    root = tmp_path / "later"
    Workspace.open(root)
    monkeypatch.setenv("CORE_WORKSPACE", str(root))
    at = signed_in_app(timeout=120)
    _damaged_workspace(root)  # the server opened it before; the damage shows on the next query
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("registry is damaged" in e.value for e in at.error)


def test_a_read_only_workspace_shows_a_plain_message(workspace, monkeypatch):
    """The registry opened the way SQLite opens a file it may not write (as root, chmod cannot make one): every
    write SQLite attempts fails as on a read-only folder ("attempt to write a readonly database")."""
    import sqlite3
    import types

    from core.store import workspace as workspace_module

    def read_only(database, *args, **kwargs):
        kwargs.pop("uri", None)
        return sqlite3.connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(workspace_module, "sqlite3", types.SimpleNamespace(**{**vars(sqlite3), "connect": read_only}))
    at = signed_in_app(timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("workspace cannot be used" in e.value for e in at.error)
    assert any("readonly database" in c.value and "the folder is read-only or not writable" in c.value
               for c in at.code), [c.value for c in at.code]


def test_server_paths_show_as_folder_names_for_everyone_but_an_admin(workspace, monkeypatch):
    # The first-start page, Home and its tables showed full server paths to anyone.
    from streamlit.testing.v1 import AppTest

    from core.store.access import RESEARCHER
    from tests.conftest import APP_PATH

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    first = AppTest.from_file(APP_PATH, default_timeout=120).run()  # nobody signed in yet
    shown = " ".join(c.value for c in first.caption)
    assert f"First start of workspace {workspace.root.name}" in shown and str(workspace.root) not in shown
    at = signed_in_app(RESEARCHER, timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    everything = " ".join([c.value for c in at.code] + [c.value for c in at.caption] + [
        str(v) for frame in at.dataframe for v in frame.value.to_numpy().ravel()])
    assert str(workspace.root) not in everything
    assert any(c.value == workspace.root.name for c in at.code)
    sources = [v for frame in at.dataframe if "source" in frame.value for v in frame.value["source"]]
    assert sources and all("/" not in v for v in sources)


def test_a_real_demo_from_a_file_that_is_not_medmnist_is_refused_by_its_name(workspace, monkeypatch, tmp_path):
    """The Home form for a real demo (core.data.demo.build_real_demo): a .npz that is not MedMNIST-shaped gets a
    plain refusal naming the file, not its server folder; nothing is registered."""
    import numpy as np

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("CORE_DATA_ROOTS", str(data))
    np.savez(data / "weights.npz", fc=np.ones(3))
    at = signed_in_app(timeout=120).run()
    datasets = len(workspace.list_datasets())
    at.text_input(key="real_demo_npz").input(str(data / "weights.npz"))
    at.button[[b.label for b in at.button].index("Build the real demo and train")].click().run()
    errors = " ".join(e.value for e in at.error)
    from dashboard.widgets import plain

    assert plain("weights.npz is not a MedMNIST .npz") in errors and plain(str(data)) not in errors
    assert len(workspace.list_datasets()) == datasets and not at.exception
