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
