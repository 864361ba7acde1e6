"""The ONNX engine: export and run, the measured engine choice and its record, the torch fallback, and that
features, the probe's AUC, predictions and occlusion maps match the torch float32 path."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InputError
from core.models import create_model, onnx_runtime
from core.models.precision import ONNX_TOLERANCE, frozen_forward, requested_engine
from core.train import RunConfig, run_training
from tests.train_fixtures import TINY, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")
CPU = torch.device("cpu")


def _rel_l2(a, b) -> float:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-init tiny backbone with a 3-class head, exported once for this module's unit tests."""
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 3).eval()
    folder = tmp_path_factory.mktemp("onnx")
    path, key = onnx_runtime.cached_export(model, (3, 32, 32), folder, framing="squash")
    return {"model": model, "folder": folder, "path": path, "key": key}


def test_export_runs_in_onnx_runtime_like_torch_float32(tiny, tmp_path):
    session = onnx_runtime.OnnxModel(tiny["path"])
    assert session.input_name == "x" and session.input_shape[1:] == [3, 32, 32]
    assert not isinstance(session.input_shape[0], int)  # the batch dimension is dynamic
    features = onnx_runtime.features_module(tiny["model"])
    assert features is not tiny["model"] and isinstance(tiny["model"].get_classifier(), nn.Module)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        reference = features(x)
    out = session(x)
    assert out.dtype == torch.float32 and out.shape == reference.shape == (5, session.output_shapes[0][1])
    assert _rel_l2(out, reference) < 1e-5
    assert np.allclose(session.run(x.numpy())[0], out.numpy())
    # A second request for the same backbone and size reuses the file; another size is another export key.
    assert onnx_runtime.cached_export(tiny["model"], (3, 32, 32), tiny["folder"], framing="squash") == (
        tiny["path"], tiny["key"])
    assert onnx_runtime.export_key("w", (3, 32, 32), "squash") != onnx_runtime.export_key("w", (3, 48, 48), "squash")
    assert onnx_runtime.providers("cpu") == ["CPUExecutionProvider"]
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a valid ONNX model"):
        onnx_runtime.OnnxModel(bad)


def test_engine_is_measured_once_per_machine_and_recorded(tiny, monkeypatch):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = tiny["model"](x)
    auto = frozen_forward(tiny["model"], (3, 32, 32), CPU, engine="auto", cache_dir=tiny["folder"],
                          framing="squash")
    timing_files = list(tiny["folder"].glob(f"{tiny['key']}.*.timing.json"))
    assert len(timing_files) == 1
    timing = json.loads(timing_files[0].read_text())
    assert timing["rel_l2_vs_torch_fp32"] < ONNX_TOLERANCE
    faster = "onnx" if timing["onnx_images_per_s"] > timing["torch_images_per_s"] else "torch"
    assert auto.engine == faster and "measured faster here" in auto.reason
    record = auto.record()
    assert record["engine"] == faster and record["engine_timing"] == timing
    stamp = timing_files[0].stat().st_mtime_ns
    forced = frozen_forward(tiny["model"], (3, 32, 32), CPU, engine="onnx", cache_dir=tiny["folder"],
                            framing="squash")
    assert forced.engine == "onnx" and forced.precision == "float32" and timing_files[0].stat().st_mtime_ns == stamp
    assert _rel_l2(forced(x), logits) < 1e-5  # ONNX backbone + torch head = the model's own logits
    torch_only = frozen_forward(tiny["model"], (3, 32, 32), CPU, engine="torch", cache_dir=tiny["folder"])
    assert torch_only.engine == "torch" and torch_only.record()["engine_reason"] == "asked for (torch)"
    tiny["model"].to(memory_format=torch.contiguous_format)
    monkeypatch.setenv("CORE_ENGINE", "onnx")
    assert requested_engine() == "onnx" and requested_engine("torch") == "torch"
    monkeypatch.setenv("CORE_ENGINE", "tensorrt")
    with pytest.raises(InputError, match="engine must be one of auto, onnx, torch"):
        requested_engine()


class _Unexportable(nn.Module):
    """A backbone whose forward branches on its data: a graph exporter cannot capture it."""

    pretrained_cfg = {"classifier": "head"}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Identity()

    def forward(self, x):
        pooled = self.conv(x).mean(dim=(2, 3))
        return pooled if pooled.sum() > 0 else -pooled


def test_export_failure_falls_back_to_torch_with_the_reason(tmp_path):
    said = []
    forward = frozen_forward(_Unexportable(), (3, 16, 16), CPU, engine="onnx", cache_dir=tmp_path, log=said.append)
    assert forward.engine == "torch" and forward.reason.startswith("ONNX export failed, running torch")
    assert said == [forward.reason] and forward(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert not list(tmp_path.glob("*.onnx"))  # nothing half-written left behind
    no_cache = frozen_forward(_Unexportable(), (3, 16, 16), CPU, engine="onnx", cache_dir=None)
    assert no_cache.engine == "torch" and "no workspace cache" in no_cache.reason


@pytest.fixture(scope="module")
def engine_runs(oct_folder, tmp_path_factory):
    """The default recipe (logistic probe, an acquisition view) trained on ONNX Runtime and on torch float32, each
    in its own workspace (both compute float32 features, which would otherwise share one cache entry)."""
    from core.store import Workspace

    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for engine, amp in (("onnx", "auto"), ("torch", "off")):
            mp.setenv("CORE_ENGINE", engine)
            root = tmp_path_factory.mktemp(engine)
            ws = Workspace.open(root / "workspace")
            cfg = RunConfig(data=str(oct_folder), mode="features", views=1, amp=amp, **TINY)
            runs[engine] = {"ws": ws, "run": root / "run", "summary": run_training(cfg, root / "run", ws)}
    return runs


def test_onnx_features_and_probe_auc_match_torch_float32(engine_runs):
    from core.train.features import FeatureCache

    onnx, torch_run = engine_runs["onnx"], engine_runs["torch"]
    card = json.loads((onnx["run"] / "checkpoint" / "model_card.json").read_text())
    assert card["inference"]["engine"] == "onnx" and card["inference"]["amp"] == "float32"
    torch_card = json.loads((torch_run["run"] / "checkpoint" / "model_card.json").read_text())
    assert torch_card["inference"]["engine"] == "torch" and torch_card["inference"]["amp"] == "float32"
    keys = onnx["summary"]["feature_cache"]["keys"]
    assert keys == torch_run["summary"]["feature_cache"]["keys"]  # same data, weights, preprocessing, arithmetic
    for key in keys:  # the image as stored and its acquisition view
        ids_a, a = FeatureCache(onnx["ws"].cache_dir / "features").load(key)
        ids_b, b = FeatureCache(torch_run["ws"].cache_dir / "features").load(key)
        assert ids_a == ids_b and _rel_l2(a, b) < ONNX_TOLERANCE
    for split in ("val", "test"):
        assert onnx["summary"][split]["auroc"] == pytest.approx(torch_run["summary"][split]["auroc"], abs=1e-9)


def test_predict_and_occlusion_run_on_the_recorded_engine(engine_runs, oct_folder, monkeypatch):
    from core.explain import explain
    from core.explain.occlusion import occlusion_attribution
    from core.infer import predict
    from core.models import build_transform, load_checkpoint

    onnx, torch_run = engine_runs["onnx"], engine_runs["torch"]
    monkeypatch.setenv("CORE_ENGINE", "onnx")
    exports = sorted((onnx["ws"].cache_dir / "onnx").glob("*.onnx"))
    frame = predict(onnx["run"] / "checkpoint", oct_folder, onnx["ws"], split="test", use_cache=False)
    assert sorted((onnx["ws"].cache_dir / "onnx").glob("*.onnx")) == exports  # training's export, reused
    meta = frame.attrs["meta"]["inference"]
    assert meta["engine"] == "onnx" and meta["amp"] == "float32"
    reference = predict(onnx["run"] / "checkpoint", oct_folder, torch_run["ws"], split="test", use_cache=False,
                        engine="torch")
    assert reference.attrs["meta"]["inference"]["engine"] == "torch"
    probs = frame.filter(like="prob_").to_numpy()
    assert np.abs(probs - reference.filter(like="prob_").to_numpy()).max() < 1e-4
    assert (frame["predicted"] == reference["predicted"]).all()

    model, card = load_checkpoint(onnx["run"] / "checkpoint")
    from PIL import Image

    image = build_transform(card["preprocessing"], train=False)(
        Image.open(next((oct_folder / "test").rglob("*.jpeg"))).convert("RGB"))
    monkeypatch.setenv("CORE_WORKSPACE", str(onnx["ws"].root))
    on_onnx = explain(model, image, 0, "occlusion", window=8, stride=8, preprocess=card["preprocessing"])
    assert sorted((onnx["ws"].cache_dir / "onnx").glob("*.onnx")) == exports
    monkeypatch.setenv("CORE_ENGINE", "torch")
    on_torch = occlusion_attribution(model.eval(), image[None], 0, window=8, stride=8, fp32=True,
                                     preprocess=card["preprocessing"])
    assert on_onnx.info["engine"] == "onnx" and on_torch["info"]["engine"] == "torch"
    assert np.abs(on_onnx.raw - on_torch["raw"]).max() < 1e-4
