"""Choosing a gallery's cases (core.explain.gallery) and computing, reading, scoring and exporting their maps
(core.explain.case_maps) on the seeded workspace's tiny model."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.errors import InputError
from core.explain import MapCache, hook_counts
from core.explain.case_images import CaseImages
from core.explain.case_maps import cached_maps, canonical_params, case_map, explain_cases, score_cases
from core.explain.explain_model import ExplainModel
from core.explain.exports import draw_boxes, overlays_zip, suggested_colormap
from core.explain.gallery import CaseFilter, case_table, reader_summary, select_cases

CLASSES = ["A", "B", "C"]


def _frame() -> pd.DataFrame:
    # p(call) per row: 0.7, 0.5, 0.6, 0.9, 0.4 ; rows 1 and 2 and 4 are mistakes
    return pd.DataFrame({
        "image_id": ["i0", "i1", "i2", "i3", "i4"],
        "label": ["A", "A", "B", "C", "C"],
        "prob_A": [0.7, 0.3, 0.6, 0.05, 0.4],
        "prob_B": [0.2, 0.5, 0.3, 0.05, 0.35],
        "prob_C": [0.1, 0.2, 0.1, 0.9, 0.25],
        "predicted": ["A", "B", "A", "C", "A"],
    })


def _readings() -> pd.DataFrame:
    return pd.DataFrame({
        "reader_id": ["r1", "r2", "r1", "r2", "r1", "r2", "r1"],
        "image_id": ["i1", "i1", "i2", "i2", "i3", "i3", "i4"],
        "label": ["A", "B", "A", "A", "B", "B", "A"],
    })


def test_case_table_has_calls_confidence_and_true_class_probability():
    cases = case_table(_frame(), CLASSES)
    assert cases["correct"].tolist() == [True, False, False, True, False]
    assert cases["confidence"].tolist() == pytest.approx([0.7, 0.5, 0.6, 0.9, 0.4])
    assert cases["p_true"].tolist() == pytest.approx([0.7, 0.3, 0.3, 0.9, 0.25])
    assert cases["target_class"].tolist() == ["A", "B", "A", "C", "A"]
    with pytest.raises(InputError, match="prob_C"):
        case_table(_frame().drop(columns=["prob_C"]), CLASSES)


def test_default_gallery_is_misclassified_most_confident_first():
    chosen = select_cases(case_table(_frame(), CLASSES))
    assert chosen["image_id"].tolist() == ["i2", "i1", "i4"]
    everything = select_cases(case_table(_frame(), CLASSES), CaseFilter(outcome="all"))
    assert everything["image_id"].tolist() == ["i2", "i1", "i4", "i3", "i0"]  # mistakes first, then the rest
    assert select_cases(case_table(_frame(), CLASSES), CaseFilter(outcome="correct"))["image_id"].tolist() == \
        ["i3", "i0"]


def test_class_confidence_and_id_filters():
    cases = case_table(_frame(), CLASSES)
    assert select_cases(cases, CaseFilter(true_classes=("C",)))["image_id"].tolist() == ["i4"]
    assert select_cases(cases, CaseFilter(predicted_classes=("A",)))["image_id"].tolist() == ["i2", "i4"]
    assert select_cases(cases, CaseFilter(outcome="all", confidence=(0.5, 0.7)))["image_id"].tolist() == \
        ["i2", "i1", "i0"]
    cell = CaseFilter(outcome="all", image_ids=("i4", "i0", "unknown"))
    assert select_cases(cases, cell)["image_id"].tolist() == ["i4", "i0"]
    with pytest.raises(InputError, match="confidence"):
        CaseFilter(confidence=(0.8, 0.2))
    with pytest.raises(InputError, match="outcome"):
        CaseFilter(outcome="wrong-ish")


def test_reader_summary_and_disagreement_filters():
    cases = case_table(_frame(), CLASSES, _readings())
    summary = reader_summary(_readings(), cases).set_index("image_id")
    assert summary.loc["i1", "n_readers"] == 2
    assert summary.loc["i1", "readers_correct"] == pytest.approx(0.5)  # r1 says A (right), r2 says B
    assert summary.loc["i1", "readers_with_model"] == pytest.approx(0.5)  # the model called B
    assert bool(summary.loc["i1", "readers_split"]) and not bool(summary.loc["i2", "readers_split"])
    assert summary.loc["i1", "reader_answers"] == "r1: A; r2: B"
    assert cases.set_index("image_id").loc["i0", "n_readers"] == 0  # no readings: kept, zero readers
    split = select_cases(cases, CaseFilter(outcome="all", disagreement="readers_split"))
    assert split["image_id"].tolist() == ["i1"]
    against_model = select_cases(cases, CaseFilter(outcome="all", disagreement="readers_vs_model"))
    assert against_model["image_id"].tolist() == ["i3"]  # both readers said B, the model called C
    wrong = select_cases(cases, CaseFilter(outcome="all", disagreement="readers_wrong"))
    assert wrong["image_id"].tolist() == ["i2", "i4", "i3"]  # mistakes of the model first, then by confidence
    with pytest.raises(InputError, match="readings"):
        select_cases(case_table(_frame(), CLASSES), CaseFilter(disagreement="readers_split"))


def test_multilabel_calls_compare_as_sets():
    frame = pd.DataFrame({"image_id": ["m0", "m1"], "label": ["A|B", "C"], "prob_A": [0.9, 0.6],
                          "prob_B": [0.8, 0.1], "prob_C": [0.1, 0.2], "predicted": ["B|A", "A"]})
    cases = case_table(frame, CLASSES)
    assert cases["correct"].tolist() == [True, False]
    assert cases["target_class"].tolist() == ["A", "A"]  # a multi-label call explains its most probable class
    assert cases["confidence"].tolist() == pytest.approx([0.9, 0.6])


# -- maps on the seeded workspace's tiny model -------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded_parts(_seeded_root):
    from core.infer import read_predictions
    from core.store import Workspace

    ws = Workspace.open(_seeded_root["root"])
    model = ExplainModel.load(ws.runs_dir / _seeded_root["run_id"], run_id=_seeded_root["run_id"])
    images = CaseImages.from_workspace(ws, _seeded_root["test_set_id"])
    frame, _ = read_predictions(_seeded_root["predictions_path"])
    cases = select_cases(case_table(frame, model.classes), CaseFilter(outcome="all")).head(4)
    return model, images, cases


def _cases(model, cases):
    return [(i, model.class_index(t)) for i, t in zip(cases["image_id"], cases["target_class"])]


def test_batch_fills_the_cache_then_reads_it_back_without_computing(seeded_parts, tmp_path):
    model, images, cases = seeded_parts
    cache = MapCache(tmp_path / "maps")
    chosen = _cases(model, cases)
    methods = {"occlusion": {"window": 16, "stride": 16}, "gradcam": {}}
    assert cached_maps(model, images, chosen, "gradcam", {}, cache) == {}  # a lookup never computes
    before = hook_counts(model.model)
    flags = [m.training for m in model.model.modules()], [p.requires_grad for p in model.model.parameters()]
    calls = []
    first = explain_cases(model, images, chosen, methods, cache, progress=lambda *a: calls.append(a))
    assert (first.computed, first.cached, first.failed) == (8, 0, [])
    assert calls[0] == (0, 8, 0) and calls[-1] == (8, 8, 0)
    second = explain_cases(model, images, chosen, methods, cache)
    assert (second.computed, second.cached) == (0, 8)
    assert hook_counts(model.model) == before
    assert flags == ([m.training for m in model.model.modules()], [p.requires_grad for p in model.model.parameters()])
    found = cached_maps(model, images, chosen, "occlusion", {"window": 16, "stride": 16}, cache)
    assert list(found) == [c[0] for c in chosen]
    image = images.image(chosen[0][0])
    assert found[chosen[0][0]].map.shape == (image.size[1], image.size[0])  # at original-image resolution
    # Stated defaults and omitted ones are the same map, hence the same cache entry.
    assert canonical_params("occlusion", {"window": 16, "stride": 16, "baseline": "black"}) == \
        {"window": 16, "stride": 16}
    assert case_map(model, images, chosen[0][0], chosen[0][1], "occlusion",
                    {"window": 16, "stride": 16, "baseline": "black"}, cache, compute=False) is not None


def test_batch_stops_when_asked_and_reports_bad_images(seeded_parts, tmp_path):
    model, images, cases = seeded_parts
    cache = MapCache(tmp_path / "maps")
    chosen = [("not-an-image", 0)] + _cases(model, cases)
    run = explain_cases(model, images, chosen, {"gradcam": {}}, cache, should_stop=lambda: cache.misses >= 1)
    assert run.stopped and run.computed == 1
    assert len(run.failed) == 1 and "not-an-image" in run.failed[0]
    with pytest.raises(InputError, match="window"):
        explain_cases(model, images, chosen, {"occlusion": {"window": "big"}}, cache)


def test_worker_copy_and_time_estimates(seeded_parts):
    model, _, _ = seeded_parts
    copy = model.clone()
    assert copy.model is not model.model and copy.model_id == model.model_id
    coarse = model.expected_seconds("occlusion", {"window": 32, "stride": 32})
    fine = model.expected_seconds("occlusion", {"window": 8, "stride": 4, "refine_regions": 0})
    assert 0 < coarse < fine  # 4 windows vs 225 windows at 64 px
    assert fine / coarse == pytest.approx(225 / 4)
    # coarse-to-fine (the default): its most windows, 16 coarse + 4 regions x 36 fine = 160
    assert model.expected_seconds("occlusion", {"window": 8, "stride": 4}) / coarse == pytest.approx(160 / 4)


def test_boxes_scores_and_zip_on_the_demo_lesions(seeded_parts, tmp_path):
    model, images, cases = seeded_parts
    cache = MapCache(tmp_path / "maps")
    chosen = _cases(model, cases)
    explain_cases(model, images, chosen, {"gradcam": {}}, cache)
    boxes, problems = images.boxes()  # the demo's lesions.csv beside test/
    assert images.lesions_csv().name == "lesions.csv"
    assert all(image_id in images for image_id in boxes) and problems  # train-image boxes are reported
    with_boxes = [i for i in cases["image_id"] if not i.startswith("NORMAL")]
    assert with_boxes and all(boxes.get(i) for i in with_boxes)
    maps = {"gradcam": cached_maps(model, images, chosen, "gradcam", {}, cache)}
    scores, summary = score_cases(cases, maps, boxes, model.classes)
    assert set(scores["image_id"]) == set(cases["image_id"])
    assert (scores.set_index("image_id").loc[with_boxes, "n_boxes"] > 0).all()
    overall = summary[(summary["class"] == "all classes") & (summary["outcome"] == "all")].iloc[0]
    assert overall["n_images"] == len(with_boxes)
    assert overall["pointing_hits"] == int(scores["pointing_hit"].fillna(False).astype(bool).sum())
    uploaded = pd.DataFrame({"image_id": [cases["image_id"].iat[0]], "x0": [0], "y0": [0], "x1": [5], "y1": [5]})
    assert images.boxes(uploaded)[0] == {cases["image_id"].iat[0]: [(0.0, 0.0, 5.0, 5.0)]}
    with pytest.raises(InputError, match="x1"):
        images.boxes(io.BytesIO(b"image_id,x0,y0\na,1,2\n"), name="mine.csv")
    archive = zipfile.ZipFile(io.BytesIO(overlays_zip(images, maps, files={"scores.csv": b"a,b\n"})))
    pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert len(pngs) == len(chosen) and "scores.csv" in archive.namelist() and "maps.json" in archive.namelist()
    assert Image.open(io.BytesIO(archive.read(pngs[0]))).size == images.image(chosen[0][0]).size


def test_colormap_suits_the_image_and_boxes_are_drawn():
    gray = Image.fromarray(np.full((40, 40), 120, dtype=np.uint8))
    assert suggested_colormap(gray) == "inferno"
    assert suggested_colormap(gray.convert("RGB")) == "inferno"  # a grayscale scan saved as RGB
    colour = Image.fromarray(np.dstack([np.full((40, 40), v, dtype=np.uint8) for v in (200, 60, 30)]))
    assert suggested_colormap(colour) == "viridis"
    drawn = np.asarray(draw_boxes(gray, [(5, 5, 20, 20)]))
    assert tuple(drawn[5, 10]) != (120, 120, 120) and tuple(drawn[12, 12]) == (120, 120, 120)
