"""predict(): the predictions table's schema and metadata, its cache, binary and multi-label models, the CLI."""


import numpy as np
import pytest

from core.data import load_dataset
from core.data.tasks import get_task, task_from_dict
from core.errors import InputError
from core.infer import predict, read_predictions
from core.train import RunConfig, run_training
from tests.train_fixtures import (
    TINY,
    make_kermany_folder,
    make_table_dataset,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


def _train(data, workspace, run_dir, **kw):
    run_training(RunConfig(data=str(data), mode="features", epochs=3, **{**TINY, **kw}), run_dir, workspace)
    return run_dir


def test_predictions_table_schema_and_metadata(oct_folder, workspace, tmp_path):
    run_dir = _train(oct_folder, workspace, tmp_path / "run")
    seen = []
    frame = predict(run_dir, oct_folder, workspace, progress=lambda done, total: seen.append((done, total)))
    classes = list(get_task("oct-kermany").classes)
    assert list(frame.columns) == ["image_id", "label", "patient_id", *[f"prob_{c}" for c in classes], "predicted"]
    assert len(frame) == 32 and frame["image_id"].is_unique and seen[-1] == (32, 32)
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (frame["predicted"] == np.asarray(classes)[probs.argmax(axis=1)]).all()
    assert frame["patient_id"].notna().all()
    table, meta = read_predictions(frame.attrs["path"])
    assert table.equals(frame)
    assert meta["classes"] == classes and meta["task"]["name"] == "oct-kermany"
    assert meta["run_id"].startswith("ckpt-") and meta["dataset_id"].startswith("fp-")


def test_second_call_is_served_from_the_cache(oct_folder, workspace, tmp_path):
    from pathlib import Path

    run_dir = _train(oct_folder, workspace, tmp_path / "run")
    seen = []
    first = predict(run_dir, oct_folder, workspace, progress=lambda d, t: seen.append(d))
    assert first.attrs["cached"] is False and len(seen) == 1  # one batch of 32 through the model
    written = Path(first.attrs["path"]).stat().st_mtime_ns
    second = predict(run_dir, oct_folder, workspace, progress=lambda d, t: seen.append(d))
    assert second.attrs["cached"] is True and second.equals(first)
    assert Path(second.attrs["path"]).stat().st_mtime_ns == written  # read back, not rewritten
    assert len(workspace.list_predictions()) == 1
    # A new checkpoint under the same run folder (a resumed run) invalidates the cached table.
    _train(oct_folder, workspace, tmp_path / "run2", seed=1)
    import shutil

    shutil.copytree(tmp_path / "run2" / "checkpoint", run_dir / "checkpoint", dirs_exist_ok=True)
    assert predict(run_dir, oct_folder, workspace).attrs["cached"] is False


def test_registered_run_and_test_set_ids_are_used(oct_folder, workspace):
    run_id = workspace.create_run(config={"backbone": "test_efficientnet", "mode": "features", "task": "oct-kermany"})
    _train(oct_folder, workspace, workspace.runs_dir / run_id)
    test_ds = load_dataset(oct_folder).split_named("test")
    set_id = workspace.register_dataset(name="held-out", source=str(oct_folder), task="oct-kermany",
                                        fingerprint=test_ds.fingerprint, n_images=len(test_ds), role="test_set")
    frame = predict(run_id, test_ds, workspace)
    assert len(frame) == 8
    record = workspace.find_predictions(run_id, set_id)
    assert record is not None and record["n_rows"] == 8
    assert read_predictions(record["path"])[1]["dataset_id"] == set_id


def test_binary_model_on_a_multiclass_test_set(oct_folder, workspace, tmp_path):
    run_dir = _train(oct_folder, workspace, tmp_path / "run", binary="CNV vs NORMAL")
    frame = predict(run_dir, oct_folder, workspace, split="test")
    assert set(frame["label"]) == {"CNV", "NORMAL"} and len(frame) == 4  # DME and DRUSEN images left out
    assert {"prob_NORMAL", "prob_CNV"} <= set(frame.columns)
    assert read_predictions(frame.attrs["path"])[1]["n_excluded"] == 4


def test_multilabel_predictions_carry_true_columns(workspace, tmp_path):
    task = task_from_dict({"name": "three-labels", "kind": "multilabel", "classes": ["A", "B", "C"]})
    ds = make_table_dataset(tmp_path / "ml", task, per_class=4)
    run_training(RunConfig(data=str(tmp_path / "ml"), mode="features", epochs=2, **TINY), tmp_path / "run",
                 workspace, dataset=ds)
    frame = predict(tmp_path / "run", ds, workspace)
    assert {f"true_{c}" for c in "ABC"} <= set(frame.columns)
    probs = frame[["prob_A", "prob_B", "prob_C"]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and not np.allclose(probs.sum(axis=1), 1.0)  # sigmoid, not softmax
    assert frame.loc[0, "label"] in ("A", "A|B")


def test_bad_inputs_are_named(oct_folder, workspace, tmp_path):
    with pytest.raises(InputError, match="neither a run id"):
        predict("no-such-run", oct_folder, workspace)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable predictions table"):
        read_predictions(bad)
    run_dir = _train(oct_folder, workspace, tmp_path / "run")
    other = make_kermany_folder(tmp_path / "cxr", classes=("NORMAL", "BACTERIAL", "VIRAL"), per_class=2)
    with pytest.raises(InputError):
        predict(run_dir, other, workspace)


def test_predict_cli_writes_the_table(oct_folder, workspace, tmp_path, capsys):
    from core.__main__ import main

    run_dir = _train(oct_folder, workspace, tmp_path / "run")
    out = tmp_path / "out" / "predictions.parquet"
    assert main(["predict", "--run", str(run_dir), "--data", str(oct_folder), "--out", str(out),
                 "--split", "test"]) == 0
    frame, meta = read_predictions(out)
    assert len(frame) == 8 and meta["split"] == "test"
    assert "8 images" in capsys.readouterr().out
