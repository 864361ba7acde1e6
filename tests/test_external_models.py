"""Models trained elsewhere as runs: export a seeded run to ONNX and TorchScript, import the files as new runs,
predict and explain them; refusals for cards that do not fit and for pickles posing as models."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.__main__ import main
from core.data.tasks import get_task
from core.errors import InputError
from core.infer import predict, read_predictions
from core.infer.model_exchange import export_run, import_model
from core.infer.predictions import evaluation_arrays
from core.metrics.headline import urgent_auc
from core.store import Workspace
from tests.apptest import chosen_labels, open_page, page_texts

TASK = get_task("oct-kermany")


@pytest.fixture(scope="module")
def exchange(_seeded_root, tmp_path_factory):
    """A private copy of the seeded workspace with the seeded run exported to ONNX and imported back through the
    command line, as the README's worked example does."""
    root = tmp_path_factory.mktemp("exchange") / "workspace"
    shutil.copytree(_seeded_root["root"], root)
    out = root.parent / "exported"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORE_WORKSPACE", str(root))
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            assert main(["export", "--run", _seeded_root["run_id"], "--format", "onnx", "--out", str(out)]) == 0
            assert main(["import-model", "--model", str(out / "model.onnx"), "--card", str(out / "card.json"),
                         "--name", "Vendor model (ONNX)"]) == 0
        imported = said.getvalue().strip().splitlines()[-1]  # the run id is the last line
        yield {**_seeded_root, "root": str(root), "out": out, "imported": imported, "printed": said.getvalue()}


def _auc(frame) -> float:
    arrays = evaluation_arrays(frame, TASK)
    return float(urgent_auc(arrays.truth, arrays.probabilities, TASK).value)


def _runs(ws: Workspace) -> set[str]:
    return {r["id"] for r in ws.list_runs(include_archived=True)}


def test_onnx_export_imported_as_a_run_reproduces_the_original_numbers(exchange):
    ws = Workspace.open(exchange["root"])
    card = json.loads((exchange["out"] / "card.json").read_text())
    assert card["output"] == "probabilities" and card["classes"] == list(TASK.classes)
    assert card["exported_from"]["max_abs_difference"] <= 1e-4 and card["exported_from"]["images_checked"] == 12
    assert "largest difference from the PyTorch model's probabilities" in exchange["printed"]
    run = ws.get_run(exchange["imported"])
    assert run["status"] == "succeeded" and run["name"] == "Vendor model (ONNX)" and run["backbone"] == "external-onnx"

    imported = predict(exchange["imported"], exchange["test_set_id"], workspace=ws, num_workers=0)
    original, _ = read_predictions(exchange["predictions_path"])
    merged = original.merge(imported, on="image_id", suffixes=("", "_imported"))
    assert len(merged) == len(original) == 12
    columns = [f"prob_{c}" for c in TASK.classes]
    difference = np.abs(merged[columns].to_numpy() - merged[[f"{c}_imported" for c in columns]].to_numpy())
    assert difference.max() <= 1e-4
    assert abs(_auc(imported) - _auc(original)) <= 1e-6
    assert (merged["predicted"] == merged["predicted_imported"]).all()
    assert imported.attrs["meta"]["backbone"] == "external-onnx"


def test_torchscript_export_imports_and_predicts_the_same(exchange, tmp_path):
    ws = Workspace.open(exchange["root"])
    result = export_run(exchange["run_id"], tmp_path / "ts", ws, fmt="torchscript")
    assert result.model_path.name == "model.torchscript.pt" and result.max_abs_difference <= 1e-4
    run = import_model(result.model_path, result.card_path, ws, name="Vendor model (TorchScript)")
    frame = predict(run.run_id, exchange["test_set_id"], workspace=ws, num_workers=0)
    original, _ = read_predictions(exchange["predictions_path"])
    assert abs(_auc(frame) - _auc(original)) <= 1e-6


def _card(exchange, **changes) -> dict:
    card = json.loads((exchange["out"] / "card.json").read_text())
    card.pop("exported_from")
    return {k: v for k, v in {**card, **changes}.items() if v is not None}


def test_a_card_that_does_not_fit_the_model_is_refused(exchange):
    ws = Workspace.open(exchange["root"])
    model = exchange["out"] / "model.onnx"
    before = _runs(ws)
    refusals = {
        "its height is 64, not 32": _card(exchange, input_size=[32, 32]),
        "its channels is 3, not 1": _card(exchange, channels=1, mean=0.5, std=0.25),
        "gives 4 scores per image but the card names 3 classes": _card(exchange, task=None,
                                                                       classes=["A", "B", "C"]),
        "are not those of task 'oct-kermany'": _card(exchange, classes=["CNV", "DME", "DRUSEN", "OTHER"]),
        "'output' must say what the model returns": _card(exchange, output="scores"),
    }
    for expected, card in refusals.items():
        with pytest.raises(InputError, match=expected):
            import_model(model, card, ws)
    # A model giving logits while its card says probabilities: caught on the model's own outputs.
    logits_model = exchange["out"].parent / "logits.pt"
    net = torch.jit.script(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)))
    with torch.no_grad():
        net[2].bias.fill_(5.0)
    net.save(str(logits_model))
    with pytest.raises(InputError, match="values outside 0..1"):
        import_model(logits_model, _card(exchange), ws)
    assert _runs(ws) == before  # nothing registered for a refused model


class _Payload:
    """A pickle whose loading creates a file: what a malicious 'model.pt' does with more harmful code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_posing_as_a_model_is_refused_without_being_loaded(exchange, tmp_path):
    ws = Workspace.open(exchange["root"])
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists(), "the payload runs when unpickled (so the checks below can fail)"

    marker = tmp_path / "marker"
    saved = tmp_path / "model.pt"
    torch.save({"model": _Payload(marker)}, saved)  # a torch.save zip: data.pkl, no TorchScript code/
    stream = tmp_path / "legacy.pt"
    stream.write_bytes(pickle.dumps(_Payload(marker), protocol=2))  # a bare pickle stream
    # A real TorchScript archive whose data.pkl was swapped for the payload: torch.jit's own unpickler refuses it.
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))).save(str(scripted))
    doctored = tmp_path / "doctored.pt"
    with zipfile.ZipFile(scripted) as source, zipfile.ZipFile(doctored, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, pickle.dumps(_Payload(marker), protocol=2) if name.endswith("/data.pkl") else data)
    before = _runs(ws)
    card = _card(exchange)
    for path, expected in ((saved, "torch.save file: data.pkl without TorchScript code/"),
                           (stream, "pickle stream"), (doctored, "TorchScript archive could not be loaded")):
        with pytest.raises(InputError, match=expected):
            import_model(path, card, ws)
        assert not marker.exists(), path.name
    with contextlib.redirect_stderr(io.StringIO()) as said:
        assert main(["import-model", "--model", str(saved), "--card", str(exchange["out"] / "card.json")]) == 2
    assert "refused without being loaded" in said.getvalue()
    assert not marker.exists() and _runs(ws) == before


class _OneFunction(nn.Module):
    """A model whose forward is its own code (not a chain of stages): traced, its layers cannot be reached."""

    def __init__(self, chain: nn.Sequential):
        super().__init__()
        self.features, self.head = chain[0], chain[1]

    def forward(self, x):
        return self.head(self.features(x) * 1.0)


def test_explain_offers_occlusion_for_onnx_and_gradcam_for_a_torchscript_chain(exchange, tmp_path):
    from core.explain.compute import explain
    from core.explain.explain_model import ExplainModel

    ws = Workspace.open(exchange["root"])
    onnx_model = ExplainModel.load(ws.runs_dir / exchange["imported"], exchange["imported"])
    assert onnx_model.unavailable("occlusion") is None
    assert "ONNX Runtime" in onnx_model.unavailable("gradcam")
    image = torch.rand(1, 3, *onnx_model.input_hw)
    amap = explain(onnx_model.model, image, 0, "occlusion", window=16)
    assert amap.map.shape == (64, 64) and np.isfinite(amap.map).all() and np.abs(amap.map).max() > 0
    with pytest.raises(InputError, match="Grad-CAM is not available for this model: an ONNX model"):
        explain(onnx_model.model, image, 0, "gradcam")

    chain = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
                          nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)))
    torch.jit.script(chain.eval()).save(str(tmp_path / "chain.pt"))
    card = {"task": "oct-kermany", "input_size": [32, 32], "mean": 0.5, "std": 0.25, "output": "logits"}
    chained = import_model(tmp_path / "chain.pt", card, ws, name="TorchScript chain")
    explained = ExplainModel.load(chained.run_dir, chained.run_id)
    assert explained.unavailable("gradcam") is None
    gradcam = explain(explained.model, torch.rand(1, 3, 32, 32), 1, "gradcam")
    assert gradcam.map.shape == (32, 32) and gradcam.params["layer"] == "net.0"

    torch.jit.trace(_OneFunction(chain).eval(), torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "traced.pt"))
    traced = import_model(tmp_path / "traced.pt", card, ws, name="TorchScript function")
    assert "one compiled function" in ExplainModel.load(traced.run_dir, traced.run_id).unavailable("gradcam")


ONNX_RUN_NAME = "Vendor model (ONNX)"  # the name the exchange fixture imports it under


@pytest.fixture(scope="module")
def onnx_predictions(exchange):
    """The imported ONNX run's predictions on the seeded test set, stored as the Test sets page's inference stores
    them; the selection every page test opens with."""
    predict(exchange["imported"], exchange["test_set_id"], workspace=Workspace.open(exchange["root"]), num_workers=0)
    return {"run_id": exchange["imported"], "test_set_id": exchange["test_set_id"]}


def test_an_imported_onnx_run_reaches_performance_report_and_explain(exchange, onnx_predictions, monkeypatch):
    monkeypatch.setenv("CORE_WORKSPACE", exchange["root"])
    ids = onnx_predictions
    performance = open_page("../pages/performance.py", **ids)
    # The tiny seeded run's few validation cases cannot calibrate a referral band (its card's calibration,
    # carried through the export, says so on the original run's page too); nothing else may be refused.
    assert all(e.value == "No band for this target:" for e in performance.error), [e.value for e in performance.error]
    assert any("AUC" in m.label for m in performance.metric)
    open_page("../pages/report.py", **ids)  # the stakeholder report builds on it (open_page checks for exceptions)
    page = open_page("../pages/explain.py", timeout=120, **ids)
    assert not page.error, [e.value for e in page.error]
    assert page.checkbox(key="explain_use_occlusion").value
    assert not [c for c in page.checkbox if c.key == "explain_use_gradcam"]
    assert any("Grad-CAM is not offered for this model: an ONNX model" in c.value for c in page.caption)


@pytest.mark.parametrize("page", ["penalties", "experts", "compare", "test_sets", "present"])
def test_an_imported_onnx_run_reaches_every_other_page_named(exchange, onnx_predictions, monkeypatch, page):
    monkeypatch.setenv("CORE_WORKSPACE", exchange["root"])
    Workspace.open(exchange["root"]).set_setting("selection", {})  # each page opens as a new user would
    at = open_page(f"../pages/{page}.py", **onnx_predictions)
    assert not at.error, [e.value for e in at.error]
    texts = page_texts(at)
    assert ONNX_RUN_NAME in " ".join([texts, *chosen_labels(at)]), page  # in the pickers, or (Present) the slide
    if page == "compare":  # its numbers side by side with the run it was exported from
        summary = next(f.value for f in at.dataframe if "weighted_error" in f.value.columns).set_index("run")
        original = Workspace.open(exchange["root"]).get_run(exchange["run_id"])["name"]
        assert summary.loc[ONNX_RUN_NAME, "view_auc"] == summary.loc[original, "view_auc"]
    if page == "test_sets":  # a model to run: offered for inference, unlike imported scores
        assert any(label.startswith(ONNX_RUN_NAME) for label in at.selectbox(key="testsets_run").options)
    if page == "present":
        assert "None" not in texts  # nothing it lacks (its training data) is printed as a blank value


def test_the_pdf_report_of_an_imported_onnx_run(exchange, onnx_predictions):
    import re

    import pypdfium2 as pdfium

    from core.report import build_report
    from core.report.pdf import render_pdf
    from tests._server import require_chromium

    ws = Workspace.open(exchange["root"])
    report = build_report(ws, onnx_predictions["run_id"], onnx_predictions["test_set_id"], bootstrap=0)
    assert report["model"]["run_name"] == ONNX_RUN_NAME and report["model"]["backbone"] == "external-onnx"
    original, _ = read_predictions(exchange["predictions_path"])
    heads = {h["key"]: h["value"] for h in report["headline"]}
    assert heads["urgent_auc"] == pytest.approx(_auc(original), abs=1e-6)  # the exported run's own number
    require_chromium("the PDF of an imported ONNX run")
    document = pdfium.PdfDocument(render_pdf(report))
    try:
        text = re.sub(r"\s+", " ", " ".join(page.get_textpage().get_text_range() for page in document))
    finally:
        document.close()
    assert f"{ONNX_RUN_NAME} ({onnx_predictions['run_id']})" in text  # the model card's Run row


def test_explain_command_line_on_an_imported_onnx_run(exchange, monkeypatch, tmp_path):
    """`python -m core explain` refuses Grad-CAM for an ONNX run in the Explain page's words, before reading any
    image (the data path below does not exist), and writes occlusion overlays and scores for it."""
    monkeypatch.setenv("CORE_WORKSPACE", exchange["root"])
    run = ["explain", "--run", exchange["imported"], "--images", "1", "--out"]
    with contextlib.redirect_stderr(io.StringIO()) as said:
        assert main([*run, str(tmp_path / "gradcam"), "--method", "gradcam", "--data", str(tmp_path / "none")]) == 2
    assert "Grad-CAM is not offered for this model: an ONNX model is run by ONNX Runtime" in said.getvalue()
    assert not (tmp_path / "gradcam").exists()

    test_images = Workspace.open(exchange["root"]).demo_dir / "test"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*run, str(tmp_path / "occlusion"), "--method", "occlusion", "--window", "32",
                     "--data", str(test_images)]) == 0
    scores = (tmp_path / "occlusion" / "scores.csv").read_text().splitlines()
    assert len(scores) == 2 and len(list((tmp_path / "occlusion").glob("0000-*.png"))) == 1
    assert json.loads((tmp_path / "occlusion" / "explain.json").read_text())["method"] == "occlusion"


def test_an_imported_onnx_model_is_recorded_as_run_by_onnx_runtime(exchange):
    """Predictions and maps record the engine that ran them: an imported ONNX model is ONNX Runtime in float32,
    whatever autocast this machine offers torch."""
    from core.models import load_checkpoint
    from core.models.precision import frozen_forward

    model, _ = load_checkpoint(Workspace.open(exchange["root"]).runs_dir / exchange["imported"])
    forward = frozen_forward(model, (3, 64, 64), torch.device("cpu"), engine="torch")
    assert forward.record()["engine"] == "onnx" and forward.precision == "float32" and not forward.channels_last
    assert forward(torch.zeros(2, 3, 64, 64)).shape == (2, len(TASK.classes))
