"""The `explain` command end to end: a tiny trained-format checkpoint, the synthetic demo with its lesion boxes."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.errors import InputError
from core.explain import cli

CLASSES = ["CNV", "DME", "DRUSEN", "NORMAL"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(["explain", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from core.data.synthetic import generate_demo_dataset
    from core.models import create_model, preprocess_config, save_checkpoint

    root = tmp_path_factory.mktemp("explain-cli")
    generate_demo_dataset(root / "demo", per_class=1, test_per_class=2, size=64, seed=0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init warns by design
        model = create_model("test_efficientnet", len(CLASSES), pretrained=False).eval()
    card = {"task": {"name": "oct-kermany"}, "classes": CLASSES,
            "preprocessing": preprocess_config(model, image_size=32)}
    save_checkpoint(model, root / "run" / "checkpoint", card)
    return root


def test_explain_writes_overlays_scores_and_a_summary(setup, tmp_path):
    out = tmp_path / "out"
    code = run(["--run", str(setup / "run"), "--data", str(setup / "demo" / "test"), "--method", "occlusion",
                "--images", "5", "--window", "8", "--stride", "8", "--out", str(out), "--cache", str(tmp_path / "c")])
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 5
    assert {"image_id", "label", "predicted", "target_class", "probability", "correct", "n_boxes", "pointing_hit",
            "positive_share", "overlay"} <= set(scores.columns)
    assert scores["probability"].between(0, 1).all()
    assert (scores["target_class"] == scores["predicted"]).all()
    for name in scores["overlay"]:
        png = Image.open(out / name)
        assert png.mode == "RGB" and png.size == (64, 64)  # the original image's size, not the 32 px input
    # the demo's lesions.csv was found beside test/: disease images have boxes, NORMAL ones none
    diseased = scores[scores["label"] != "NORMAL"]
    assert (diseased["n_boxes"] > 0).all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["outcome"]) == {"all", "correct", "misclassified"}
    assert summary.loc[(summary["class"] == "all classes") & (summary["outcome"] == "all"), "n_images"].item() == len(
        diseased)
    meta = json.loads((out / "explain.json").read_text())
    assert meta["params"]["window"] == 8 and meta["colour_scale"][1] > 0
    # a second run reuses the cached maps and gives the same scores
    assert run(["--run", str(setup / "run"), "--data", str(setup / "demo" / "test"), "--images", "5", "--window",
                "8", "--stride", "8", "--out", str(tmp_path / "again"), "--cache", str(tmp_path / "c")]) == 0
    again = pd.read_csv(tmp_path / "again" / "scores.csv")
    np.testing.assert_allclose(again["positive_share"], scores["positive_share"])


def test_explain_gradcam_misclassified_only(setup, tmp_path):
    out = tmp_path / "out"
    code = run(["--run", str(setup / "run"), "--data", str(setup / "demo" / "test"), "--method", "gradcam",
                "--images", "2", "--misclassified", "--out", str(out)])
    if code == 1:  # this random model got every image right: nothing to explain, nothing written
        assert not (out / "scores.csv").exists()
        return
    scores = pd.read_csv(out / "scores.csv")
    assert 1 <= len(scores) <= 2 and not scores["correct"].any()
    assert json.loads((out / "explain.json").read_text())["params"]["layer"] == "bn2"


def test_explain_input_errors(setup, tmp_path):
    with pytest.raises(InputError, match="neither a run id|does not exist"):
        run(["--run", str(tmp_path / "nope"), "--data", str(setup / "demo" / "test"), "--out", str(tmp_path)])
    with pytest.raises(InputError, match="--images"):
        run(["--run", str(setup / "run"), "--data", str(setup / "demo" / "test"), "--images", "0",
             "--out", str(tmp_path)])
    with pytest.raises(InputError, match="boxes CSV"):
        run(["--run", str(setup / "run"), "--data", str(setup / "demo" / "test"), "--images", "1",
             "--boxes", str(tmp_path / "none.csv"), "--out", str(tmp_path)])


def test_cli_choices_come_from_the_registry():
    import argparse

    from core.explain import list_explainers
    from core.explain import cli
    from core.explain.overlay import overlay

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    explain = parser._subparsers._group_actions[0].choices["explain"]
    actions = {a.dest: a for a in explain._actions}
    assert list(actions["method"].choices) == [e.name for e in list_explainers()]
    assert actions["colormap"].default == overlay.__kwdefaults__["colormap"]


def test_registering_the_cli_does_not_load_torch():
    import subprocess
    import sys

    code = ("import sys, argparse, core.explain.cli as c; p = argparse.ArgumentParser(); "
            "c.register(p.add_subparsers()); print('torch' in sys.modules, 'captum' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_explain_uses_the_models_operating_point_not_argmax(setup, tmp_path, threshold):
    """The calls explained are the model's own (its card's operating point, as in its `predicted` column and on the
    Explain page): at threshold 0 every image is called on the view's positive side, at 1 on its negative side,
    which argmax alone could not do on both."""
    from core.data.tasks import get_task
    from core.metrics.model_operating_point import ModelOperatingPoint
    from core.models import load_checkpoint, save_checkpoint

    view = get_task("oct-kermany").default_view()
    model, card = load_checkpoint(setup / "run" / "checkpoint" / "model.safetensors")
    point = ModelOperatingPoint(view.name, tuple(view.positive), tuple(view.negative), threshold, "youden", None,
                                0.9, 0.9, 10, 10)
    save_checkpoint(model, tmp_path / "run" / "checkpoint", {**card, "operating_point": point.to_dict()})
    out = tmp_path / "out"
    assert run(["--run", str(tmp_path / "run"), "--data", str(setup / "demo" / "test"), "--images", "3",
                "--window", "16", "--stride", "16", "--out", str(out)]) == 0
    scores = pd.read_csv(out / "scores.csv")
    side = view.positive if threshold == 0.0 else view.negative
    assert set(scores["predicted"]) <= set(side)
    assert (scores["target_class"] == scores["predicted"]).all()
    assert (scores["correct"] == (scores["predicted"] == scores["label"])).all()
