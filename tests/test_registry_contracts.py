"""Contract tests per registry: every registered backbone, dataset format and explainer runs end to end on tiny data,
looping over the registry itself, so adding an entry needs no test edit. Plus the two recipes shown working on a
temporary registry: a backbone whose pooled width differs from timm's num_features, and a JSON-lines manifest."""

from __future__ import annotations

import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import load_dataset
from core.data.readers import registry as formats_registry
from core.data.readers.common import custom_task
from core.data.readers.registry import EXAMPLE_PER_CLASS, EXAMPLE_SIDE, example_pixels
from core.errors import InputError
from core.explain import explain, list_explainers
from core.models import attach_head, create_head, create_model, list_backbones, preprocess_config
from core.models import registry as backbone_registry
from core.models.registry import BackboneSpec, feature_dim_of
from tests._data_files import write_image
from tests.train_fixtures import TINY, one_torch_thread  # noqa: F401 (autouse fixture)

# ---- backbones: builds at random init, pools to spec.feature_dim, a head fits, Grad-CAM's layer gets gradients ----


@pytest.mark.parametrize("spec", list_backbones(), ids=lambda s: s.name)
def test_every_backbone_pools_to_its_spec_width_and_takes_a_head(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pretrained=False is an explicit choice: no warning
        extractor = create_model(spec.name, 0, pretrained=False).eval()
    assert extractor.backbone_name == spec.name and feature_dim_of(extractor) == spec.feature_dim
    assert spec.default_size == preprocess_config(spec.name)["input_size"][-1]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = extractor(images)
    assert features.shape == (2, spec.feature_dim)
    # Features mode: a head fitted on the pooled features, put on the backbone, gives the same logits.
    head = create_head(spec.feature_dim, 3).eval()
    model = attach_head(extractor, head)
    with torch.no_grad():
        assert torch.allclose(model(images), head(features), atol=1e-5)
    layer = dict(model.named_modules())[spec.gradcam_layer]
    captured = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.update(out=out) or out.retain_grad())
    try:
        model(images)[:, 0].sum().backward()
    finally:
        handle.remove()
    activation = captured["out"]
    if spec.gradcam_tokens:
        assert activation.shape[:2] == (2, model.num_prefix_tokens + (64 // 16) ** 2)
        assert activation.grad[:, model.num_prefix_tokens:].abs().sum() > 0
    else:
        assert activation.ndim == 4 and activation.grad.abs().sum() > 0


# ---- explainers: each method's map for one image of a tiny model ------------------------------------------------


@pytest.mark.parametrize("explainer", list_explainers(), ids=lambda e: e.name)
def test_every_explainer_maps_one_image_of_a_tiny_model(explainer):
    torch.manual_seed(0)
    model = create_model("test_resnet", 2, pretrained=False).eval()
    amap = explain(model, torch.rand(1, 3, 48, 48), 1, explainer.name)
    assert amap.method == explainer.name and amap.target == 1
    assert amap.map.shape == (48, 48) and np.isfinite(amap.map).all()
    assert 0.0 <= amap.probability <= 1.0
    assert set(amap.params) <= {spec.name for spec in explainer.params}
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # the model is left as it was


# ---- dataset formats: each format's own tiny example, read from its folder and from a zip upload --------------

# No preset task holds these classes: read without a task, an example's classes are inferred.
EXAMPLE_TASK = custom_task("example", ("calm", "spotted"))


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return out


def _check_format_example(fmt: formats_registry.DatasetFormat, tmp_path: Path) -> None:
    """The format's example (fmt.example) is claimed by the format itself and reads back, from its folder with the
    task inferred and from a zip upload with the task given, as the images and labels it wrote."""
    assert fmt.example is not None, f"format {fmt.name!r}: declare an example writer in FORMAT (example=...)"
    assert fmt.folder_description and (fmt.file_description or not fmt.suffixes)
    folder = tmp_path / fmt.name
    fmt.example(folder, EXAMPLE_TASK)
    assert formats_registry.detect(folder)[0] is fmt
    written = sorted(label for label, _, _ in example_pixels(EXAMPLE_TASK))
    inferred = load_dataset(folder)
    given = load_dataset(_zip(folder, tmp_path / f"{fmt.name}.zip"), EXAMPLE_TASK, extract_to=tmp_path / "extracted")
    assert len(inferred.task.classes) == len(EXAMPLE_TASK.classes)
    assert sorted(inferred.table["label"].value_counts()) == [EXAMPLE_PER_CLASS] * len(EXAMPLE_TASK.classes)
    assert sorted(given.table["label"]) == written
    for ds in (inferred, given):
        assert [ds.load_image(k).size for k in range(len(ds.table))] == [(EXAMPLE_SIDE, EXAMPLE_SIDE)] * len(written)
    for suffix in fmt.suffixes:  # the format's own files are what it is picked for
        assert formats_registry.format_for_file(Path(f"x{suffix.upper()}")) is fmt
        assert suffix.lstrip(".") in formats_registry.upload_types() or not fmt.uploadable
        assert fmt.file_description in formats_registry.data_argument_help()


@pytest.mark.parametrize("fmt", formats_registry.formats(), ids=lambda f: f.name)
def test_every_format_reads_its_own_example_from_its_folder_and_from_a_zip(fmt, tmp_path):
    _check_format_example(fmt, tmp_path)


def test_a_format_without_an_example_writer_is_told_to_declare_one(tmp_path):
    bare = replace(formats_registry.formats()[0], name="bare", example=None)
    with pytest.raises(AssertionError, match="format 'bare': declare an example writer in FORMAT"):
        _check_format_example(bare, tmp_path)


# ---- recipe: a backbone whose pooled width differs from timm's num_features ------------------------------------

# MobileNetV3: timm's num_features is the last feature map's 576 channels; a 1x1 conv (conv_head) after the pooling
# makes the head read 1,024 (timm's head_hidden_size).
MOBILENET = BackboneSpec(name="mobilenetv3_small_100", timm_name="mobilenetv3_small_100", default_size=224,
                         feature_dim=1024, offline_weights=False, gradcam_layer="blocks.5", family="mobilenet",
                         description="MobileNetV3-Small; random init here.")


@pytest.fixture
def temporary_backbones(monkeypatch):
    """The real registry plus MOBILENET, undone after the test."""
    monkeypatch.setattr(backbone_registry, "_REGISTRY", {**backbone_registry._REGISTRY, MOBILENET.name: MOBILENET})


def test_backbone_whose_head_width_is_not_num_features_trains_and_predicts(temporary_backbones, oct_folder,
                                                                           workspace, tmp_path):
    from core.infer import predict
    from core.models import load_checkpoint
    from core.train import run_training

    extractor = create_model(MOBILENET.name, 0, pretrained=False)
    assert extractor.num_features == 576 and feature_dim_of(extractor) == 1024  # the case this recipe is about
    cfg = dict(TINY, backbone=MOBILENET.name, pretrained=False)
    summary = run_training(dict(cfg, data=str(oct_folder), mode="features"), tmp_path / "run", workspace,
                           log=lambda *_: None)
    assert summary["test"]["n"] == 8
    model, card = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert card["backbone"] == MOBILENET.name and model.get_submodule("classifier")[-1].in_features == 1024
    frame = predict(tmp_path / "run" / "checkpoint", oct_folder, workspace, split="test")
    assert len(frame) == 8 and np.allclose(frame.filter(like="prob_").sum(axis=1), 1.0)


def test_a_wrong_feature_width_in_the_registry_is_refused_naming_the_right_one(monkeypatch):
    wrong = replace(MOBILENET, name="mobilenet_wrong", feature_dim=576)
    monkeypatch.setattr(backbone_registry, "_REGISTRY", {**backbone_registry._REGISTRY, wrong.name: wrong})
    with pytest.raises(InputError, match=r"mobilenet_wrong: .*feature_dim=576.*1024 wide; set feature_dim=1024"):
        create_model(wrong.name, 2, pretrained=False)


# ---- recipe: a JSON-lines manifest is one module in core/data/readers/ ------------------------------------------

JSONL_MODULE = '''
"""JSON-lines manifests: one {"path": ..., "label": ...} object a line."""

import pandas as pd

from core.data.readers.manifest import ManifestTable, example_manifest, manifest_format, text_table
from core.errors import InputError


def read_jsonl(path, nrows=None):
    try:
        return text_table(pd.read_json(path, lines=True, nrows=nrows, dtype=False))
    except ValueError as exc:
        raise InputError(f"{path}: not readable JSON lines ({exc})") from None


def write_example(folder, task):
    example_manifest(folder, task).to_json(folder / "cases.jsonl", orient="records", lines=True)


FORMAT = manifest_format("jsonl-manifest", ManifestTable(".jsonl", "JSON lines", read_jsonl, first_line=1),
                         priority=12, example=write_example)
'''


@pytest.fixture
def jsonl_format(tmp_path, monkeypatch):
    """The module above found by the registry's own discovery (one more folder on the readers package's path)."""
    import core.data.readers as package

    modules = tmp_path / "more_readers"
    modules.mkdir()
    (modules / "jsonl_manifest.py").write_text(JSONL_MODULE)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(modules)])
    formats_registry.formats.cache_clear()
    yield
    sys.modules.pop("core.data.readers.jsonl_manifest", None)
    formats_registry.formats.cache_clear()


def test_a_jsonl_manifest_module_is_read_from_a_folder_and_a_zip_upload(jsonl_format, tmp_path, workspace):
    import json

    from core.data.ingest import ingest_upload
    from core.data.readers.manifest import example_manifest

    jsonl = next(f for f in formats_registry.formats() if f.name == "jsonl-manifest")
    _check_format_example(jsonl, tmp_path / "contract")  # what every registered format meets, with its own example
    folder = tmp_path / "site"
    # The example's images and rows, with JSON numbers for patients and a subgroup column.
    table = example_manifest(folder, EXAMPLE_TASK).assign(patient_id=lambda t: t.index // 2, site="A")
    table.to_json(folder / "cases.jsonl", orient="records", lines=True)
    zipped = _zip(folder, tmp_path / "site.zip")
    assert "jsonl" in formats_registry.upload_types() and ".jsonl manifest" in formats_registry.data_argument_help()
    for ds in (load_dataset(folder), load_dataset(folder / "cases.jsonl"), load_dataset(zipped)):
        assert ds.table["label"].tolist() == table["label"].tolist()
        assert ds.table["patient_id"].tolist() == table["patient_id"].astype(str).tolist()
        assert set(ds.table["site"]) == {"A"}
    with pytest.raises(InputError, match=r"unsupported file type \.png; give a folder, .*a \.jsonl manifest.* or a \.zip"):
        load_dataset(folder / table["path"][0])
    uploaded = ingest_upload(workspace, "site.zip", zipped.read_bytes())  # the dashboard's upload path
    assert uploaded.dataset.table["label"].tolist() == table["label"].tolist()
    # The manifest seam's row building and path guard apply: a row naming a file outside is refused, by line.
    outside = write_image(tmp_path / "outside.png")
    (folder / "cases.jsonl").write_text(json.dumps({"path": str(outside), "label": "calm"}) + "\n"
                                        + json.dumps({"path": table["path"][3], "label": "spotted"}) + "\n")
    with pytest.raises(InputError, match=r"cases\.jsonl: 1 row\(s\) name an image path that points outside.*line 1"):
        load_dataset(folder)
