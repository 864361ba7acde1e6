"""The JSON evaluation (core/report/evaluate.py) and `python -m core evaluate` on synthetic predictions tables."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.predictions import write_predictions
from core.report import cli as metrics_cli
from core.report import evaluate_predictions

OCT = get_task("oct-kermany")


def predictions_table(task=OCT, n=240, seed=0, strength=1.5):
    rng = np.random.default_rng(seed)
    k = task.num_classes
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += strength
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = np.array(task.classes, dtype=object)
    table = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(n)], "label": classes[truth],
                          "patient_id": [f"pt{i // 2}" for i in range(n)]})
    for j, name in enumerate(task.classes):
        table[f"prob_{name}"] = probs[:, j]
    table["predicted"] = classes[probs.argmax(axis=1)]
    return table


def write_parquet(table, path, task=OCT):
    write_predictions(table, path, {"task": task.to_dict(), "run_id": "run-test", "classes": list(task.classes)})


def test_report_is_plain_json_with_the_expected_sections():
    table = predictions_table()
    report = evaluate_predictions(table, OCT, bootstrap=50, seed=1)
    json.dumps(report, allow_nan=False)  # no NaN/inf floats anywhere
    for key in ("confusion", "per_class", "accuracy", "macro_auc", "penalty", "binary_views", "referral",
                "calibration", "bootstrap", "prevalence", "cross_entropy"):
        assert key in report
    assert report["n_images"] == 240 and report["n_patients"] == 120
    assert report["bootstrap"]["unit"] == "patients"
    assert set(report["bootstrap"]["intervals"]) >= {"accuracy", "weighted_error", "macro_auc"}
    counts = np.array(report["confusion"]["counts"])
    calls = table["predicted"].map(OCT.classes.index).to_numpy()
    truth = table["label"].map(OCT.classes.index).to_numpy()
    assert counts.sum() == 240 and np.trace(counts) == (calls == truth).sum()
    penalty = OCT.penalty()
    assert report["penalty"]["argmax"]["weighted_error"] == pytest.approx(penalty[truth, calls].mean())
    urgent = report["binary_views"][0]
    assert urgent["name"] == "urgent referral vs rest"
    assert set(urgent["operating_points"]) == {"threshold", "model_calls", "youden", "sensitivity_0_95",
                                               "specificity_0_95"}
    assert urgent["operating_points"]["sensitivity_0_95"]["sensitivity"]["value"] >= 0.95
    assert report["referral"]["urgent_auc"]["value"] == pytest.approx(urgent["auc"]["value"])
    assert len(urgent["roc_curve"]["fpr"]) <= 200


def test_infinite_likelihood_ratio_is_written_as_inf():
    table = predictions_table(n=40, strength=50.0)  # perfect separation: specificity 1, LR+ infinite
    report = evaluate_predictions(table, OCT, bootstrap=0)
    lr = report["binary_views"][0]["operating_points"]["model_calls"]["lr_positive"]
    # Infinite, with the Koopman score lower limit (the log interval is undefined with a zero cell) and "inf" above.
    assert lr["value"] == "inf" and lr["high"] == "inf" and lr["low"] > 1 and lr["reason"]
    assert "zero cell" in lr["method"]
    assert "intervals" in report["bootstrap"] and report["bootstrap"]["intervals"] == {}


def test_ordinal_and_multilabel_tasks():
    dr = get_task("dr-grading")
    report = evaluate_predictions(predictions_table(dr), dr, bootstrap=0)
    assert report["ordinal"]["quadratic_kappa"]["kappa"]["value"] > 0
    fundus = get_task("fundus-multilabel")
    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame({"image_id": [f"f{i}" for i in range(n)], "patient_id": None})
    truth = rng.random((n, fundus.num_classes)) < 0.3
    truth[0], truth[1] = True, False  # every label has both outcomes
    for j, name in enumerate(fundus.classes):
        table[f"true_{name}"] = truth[:, j].astype(int)
        table[f"prob_{name}"] = np.clip(0.5 * truth[:, j] + 0.5 * rng.random(n), 0, 1)
    table["label"] = ["|".join(c for c, t in zip(fundus.classes, row) if t) for row in truth]
    report = evaluate_predictions(table, fundus, bootstrap=30)
    json.dumps(report, allow_nan=False)
    labels = report["multilabel"]
    assert set(labels["per_label"]) == set(fundus.classes) and labels["macro_auc"] > 0.5
    assert labels["macro_auc_bootstrap"]["low"] <= labels["macro_auc"] <= labels["macro_auc_bootstrap"]["high"]


def test_missing_columns_and_bad_options_are_input_errors():
    table = predictions_table(n=20)
    with pytest.raises(InputError, match="prob_CNV"):
        evaluate_predictions(table.drop(columns=["prob_CNV"]), OCT)
    with pytest.raises(InputError):
        evaluate_predictions(table, OCT, bootstrap=-1)
    with pytest.raises(InputError):
        evaluate_predictions(table, OCT, penalty=np.ones((3, 3)))


def test_readers_section_from_a_table():
    table = predictions_table(n=60)
    # Reader A always right; reader B calls everything NORMAL (lowercase: labels are canonicalised).
    readings = pd.concat([
        pd.DataFrame({"reader_id": "A", "image_id": table["image_id"], "label": table["label"]}),
        pd.DataFrame({"reader_id": "B", "image_id": table["image_id"], "label": "normal"}),
    ])
    report = evaluate_predictions(table, OCT, readings=readings, bootstrap=0)
    a, b = report["readers"]["A"], report["readers"]["B"]
    assert a["reader"]["accuracy"]["value"] == 1.0 and a["reader"]["weighted_error"] == 0.0
    view = b["reader"]["binary_view"]
    assert view["sensitivity"]["value"] == 0.0 and view["specificity"]["value"] == 1.0
    urgent_truth = table["label"].isin(["CNV", "DME"]).to_numpy()
    assert view["counts"] == {"tp": 0, "fp": 0, "fn": int(urgent_truth.sum()), "tn": int((~urgent_truth).sum())}
    expected = OCT.penalty()[table["label"].map(OCT.classes.index), OCT.class_index("NORMAL")].mean()
    assert b["reader"]["weighted_error"] == pytest.approx(expected)
    assert a["model_on_same_images"]["n_images"] == 60 and a["mcnemar_model_vs_reader"]["p_value"] <= 1


def parse(argv):
    parser = argparse.ArgumentParser(prog="core")
    metrics_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_writes_report(tmp_path, capsys):
    table = predictions_table(n=80)
    write_parquet(table, tmp_path / "p.parquet")
    readings = pd.DataFrame({"reader_id": "R1", "image_id": table["image_id"], "label": table["predicted"]})
    readings.to_csv(tmp_path / "r.csv", index=False)
    paper = {"classes": ["NORMAL", "DRUSEN", "CNV", "DME"],
             "matrix": [[0, 1, 1, 1], [1, 0, 1, 1], [8, 2, 0, 1], [8, 2, 1, 0]]}
    (tmp_path / "penalty.json").write_text(json.dumps(paper))
    args = parse(["evaluate", "--predictions", str(tmp_path / "p.parquet"), "--task", "oct-kermany",
                  "--penalty", str(tmp_path / "penalty.json"), "--readings", str(tmp_path / "r.csv"),
                  "--out", str(tmp_path / "out" / "report.json"), "--bootstrap", "20"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run_id"] == "run-test" and report["penalty"]["matrix"][0][3] == 8.0
    assert report["readers"]["R1"]["reader"]["accuracy"]["value"] == pytest.approx(
        (table["predicted"] == table["label"]).mean())
    assert "wrote" in capsys.readouterr().out
    # Without --task the task comes from the file's metadata.
    args = parse(["evaluate", "--predictions", str(tmp_path / "p.parquet"), "--bootstrap", "0"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["task"]["name"] == "oct-kermany"


def test_cli_errors_name_the_file(tmp_path):
    args = parse(["evaluate", "--predictions", str(tmp_path / "absent.parquet"), "--task", "oct-kermany"])
    with pytest.raises(InputError, match="absent.parquet"):
        args.func(args)
    pd.DataFrame({"image_id": ["a"], "label": ["CNV"]}).to_parquet(tmp_path / "bare.parquet")
    args = parse(["evaluate", "--predictions", str(tmp_path / "bare.parquet")])
    with pytest.raises(InputError, match="--task"):
        args.func(args)


def test_cli_through_core_main(tmp_path, monkeypatch):
    import core.__main__ as main_module

    assert "core.report.cli" in main_module.COMMAND_MODULES  # main() imports only that module for `evaluate`
    write_parquet(predictions_table(n=40), tmp_path / "p.parquet")
    argv = ["evaluate", "--predictions", str(tmp_path / "p.parquet"), "--task", "oct-kermany", "--bootstrap", "0",
            "--out", str(tmp_path / "r.json")]
    assert main_module.main(argv) == 0 and (tmp_path / "r.json").is_file()
    assert main_module.main(["evaluate", "--predictions", str(tmp_path / "nope.parquet"), "--task", "x"]) == 2


def test_metrics_package_never_imports_torch_or_streamlit():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "core" / "metrics"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("torch", "streamlit") for n in names), source.name
    # Nothing core.metrics pulls in (core.data, core.readers...) may bring them in either.
    code = "import sys, core.metrics; print([m for m in ('torch', 'streamlit') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=package.parents[1])
    assert out.stdout.strip() == "[]"
