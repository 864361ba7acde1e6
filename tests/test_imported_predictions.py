"""Scores from elsewhere (core.infer.imported, core.infer.score_table): column matching and score detection on
built tables, alignment to a test set (missing and extra images listed, duplicates refused by line), the ordinary
predictions table it writes with its provenance, the command line, the Test sets form, and every evaluation page
and the PDF report on it."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.imported import align_to_test_set, import_predictions, is_imported_run, plan_import, provenance_text
from core.infer.score_table import (ColumnMapping, check_mapping, detect_scores, mapping_from_args, read_score_file,
                                    score_values, suggest_mapping, to_probabilities)
from core.infer.predictions import evaluation_arrays, imported_provenance, probability_columns, read_predictions
from core.metrics.threshold_in_use import NO_IMPORTED_POINT, threshold_in_use
from core.store import Workspace
from core.store.access import AccessDenied, Actor

OCT = get_task("oct-kermany")
CXR = get_task("cxr-kermany")


def _csv(frame: pd.DataFrame, name: str = "vendor.csv"):
    return read_score_file(frame.to_csv(index=False).encode(), name)


# -- columns ------------------------------------------------------------------------------------------------
def test_columns_are_matched_by_name_case_spaces_and_aliases():
    columns = ["File Name", "prob_normal", "Bacteria", "viral pneumonia", "predicted", "site"]
    mapping = suggest_mapping(columns, CXR)
    assert mapping.id_column == "File Name" and mapping.predicted_column == "predicted"
    assert mapping.by_class == {"NORMAL": "prob_normal", "BACTERIAL": "Bacteria", "VIRAL": "viral pneumonia"}
    check_mapping(mapping, columns, CXR)
    # --columns puts a class's column over the match; a pair without '=' says how to write it
    chosen = mapping_from_args(columns, CXR, ["viral=site"])
    assert chosen.by_class["VIRAL"] == "site"
    with pytest.raises(InputError, match="CLASS=COLUMN"):
        mapping_from_args(columns, CXR, ["VIRAL"])
    with pytest.raises(InputError, match="no column names the images"):
        suggest_mapping(["a", "b"], CXR)


def test_wrong_class_count_and_unknown_columns_are_refused():
    columns = ["image_id", "CNV", "DME", "NORMAL", "extra"]
    with pytest.raises(InputError, match=r"no score column for 1 of the task's 4 classes \(\['DRUSEN'\]\)"):
        check_mapping(suggest_mapping(columns, OCT), columns, OCT)
    with pytest.raises(InputError, match="no column 'nope'"):
        check_mapping(ColumnMapping("image_id", (("CNV", "nope"),)), columns, OCT)
    with pytest.raises(InputError, match="mapped to more than one"):
        check_mapping(ColumnMapping("image_id", tuple((c, "CNV") for c in OCT.classes)), columns, OCT)


# -- score kinds --------------------------------------------------------------------------------------------
def _rows(seed: int = 0, n: int = 6, k: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k)) * 2


def test_score_kinds_are_detected_and_transformed():
    logits = _rows()
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    found = detect_scores(logits, OCT)
    assert (found.kind, found.transform) == ("logits", "softmax") and "outside 0 to 1" in found.reason
    probs, note = to_probabilities(logits, OCT, found.transform)
    np.testing.assert_allclose(probs, softmax)
    assert detect_scores(softmax, OCT).kind == "probabilities"
    assert detect_scores(np.round(softmax, 2), OCT).transform == "none"  # rounded in a CSV: still probabilities
    percent = detect_scores(softmax * 100, OCT)
    assert (percent.kind, percent.transform) == ("percent", "scale")
    np.testing.assert_allclose(to_probabilities(softmax * 100, OCT, "scale")[0], softmax)
    # in [0, 1] but rows not summing to 1 (one-vs-rest scores): not probabilities of one class
    one_vs_rest = 1 / (1 + np.exp(-logits))
    assert detect_scores(one_vs_rest, OCT).kind == "logits"
    with pytest.raises(InputError, match="do not sum to 1"):
        to_probabilities(one_vs_rest, OCT, "none")
    rescaled, note = to_probabilities(logits, OCT, "sigmoid")
    np.testing.assert_allclose(rescaled.sum(axis=1), 1.0)
    assert "rescaled to sum to 1" in note
    with pytest.raises(InputError, match="outside 0 to 1"):
        to_probabilities(logits, OCT, "none")
    # multi-label: one logit per label, sigmoid, no row sum
    fundus = get_task("fundus-multilabel")
    assert detect_scores(_rows(k=8), fundus).transform == "sigmoid"
    assert detect_scores(1 / (1 + np.exp(-_rows(k=8))), fundus).kind == "probabilities"


def test_a_two_class_task_scored_by_one_column():
    from core.data.tasks import task_from_dict


    task = task_from_dict({"name": "glaucoma", "title": "Glaucoma", "modality": "fundus", "kind": "binary",
                           "classes": ["healthy", "glaucoma"]}, source="test")
    frame = pd.DataFrame({"image": ["a.png", "b.png", "c.png"], "glaucoma_score": [2.0, -1.0, 0.0]})
    scores = _csv(frame)
    mapping = suggest_mapping(scores.columns, task)
    assert mapping.by_class == {"glaucoma": "glaucoma_score"}
    check_mapping(mapping, scores.columns, task)  # one column is enough for two classes
    values = score_values(scores, mapping)
    found = detect_scores(values, task, single_column=True)
    assert (found.kind, found.transform) == ("logits", "sigmoid")
    probs, note = to_probabilities(values, task, "sigmoid", mapping)
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-values[:, 0])))
    np.testing.assert_allclose(probs[:, 0], 1 - probs[:, 1])
    assert "healthy = 1 - glaucoma" in note
    with pytest.raises(InputError, match="softmax needs one logit per class"):
        to_probabilities(values, task, "softmax", mapping)


def test_non_numeric_and_empty_values_are_named_by_line():
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "CNV": ["0.1", "zero", "0.3"], "DME": ["0.3"] * 3,
                          "DRUSEN": ["0.3"] * 3, "NORMAL": ["0.3", "0.3", ""]})
    scores = _csv(frame)
    with pytest.raises(InputError, match=r"column 'CNV' \(CNV\) holds values that are not finite numbers on line 3 "
                                         r"\(e.g. 'zero'\)"):
        score_values(scores, suggest_mapping(scores.columns, OCT))
    frame.loc[1, "CNV"] = "0.1"
    scores = _csv(frame)
    with pytest.raises(InputError, match=r"column 'NORMAL' \(NORMAL\) has no value on line 4"):
        score_values(scores, suggest_mapping(scores.columns, OCT))


# -- which image is which ----------------------------------------------------------------------------------
TEST_IDS = ["CNV/cnv-1.jpeg", "CNV/cnv-2.jpeg", "DME/dme-1.jpeg", "NORMAL/normal-1.jpeg"]


def test_missing_and_extra_images_are_listed_and_duplicates_refused():
    scores = _csv(pd.DataFrame({"file": ["cnv-1.jpeg", "dme-1.jpeg", "other.jpeg", "normal-1.jpeg"]}))
    align = align_to_test_set(scores, "file", TEST_IDS)
    assert align.matched_by == "file name"
    assert align.missing_images == ["CNV/cnv-2.jpeg"] and align.unmatched_scores == ["other.jpeg"]
    assert [TEST_IDS[t] for t in align.test_rows] == ["CNV/cnv-1.jpeg", "DME/dme-1.jpeg", "NORMAL/normal-1.jpeg"]
    assert align.file_rows.tolist() == [0, 1, 3]
    by_stem = align_to_test_set(_csv(pd.DataFrame({"file": ["cnv-1", "cnv-2"]})), "file", TEST_IDS)
    assert by_stem.matched_by == "file name without extension" and by_stem.n_matched == 2
    exact = align_to_test_set(_csv(pd.DataFrame({"file": [".\\CNV\\cnv-1.jpeg"]})), "file", TEST_IDS)
    assert exact.matched_by == "image id"  # Windows separators and a leading ./ are read as the id
    duplicated = _csv(pd.DataFrame({"file": ["cnv-1.jpeg", "dme-1.jpeg", "CNV/cnv-1.jpeg"]}))
    with pytest.raises(InputError, match=r"appear more than once.*'cnv-1.jpeg' on lines 2, 4"):
        align_to_test_set(duplicated, "file", TEST_IDS)
    with pytest.raises(InputError, match="none of the 2 images in the score file is in the test set"):
        align_to_test_set(_csv(pd.DataFrame({"file": ["x.png", "y.png"]})), "file", TEST_IDS)
    with pytest.raises(InputError, match="names no image on line 3"):
        align_to_test_set(_csv(pd.DataFrame({"file": ["cnv-1.jpeg", ""]})), "file", TEST_IDS)


def test_parquet_is_read_and_size_is_bounded(tmp_path, monkeypatch):
    frame = pd.DataFrame({"image_id": ["a", "b"], "CNV": [0.25, 0.5], "DME": np.array([0.5, 1], dtype=np.float32)})
    path = tmp_path / "scores.parquet"
    frame.to_parquet(path)
    scores = read_score_file(path)
    assert scores.unit == "row" and scores.table["CNV"].tolist() == ["0.25", "0.5"]
    assert scores.table["DME"].tolist() == ["0.5", "1.0"]  # float32 cells read as numbers too
    with pytest.raises(InputError, match="a score file is a .csv or .parquet file"):
        read_score_file(b"x", "scores.xlsx")
    with pytest.raises(InputError, match="not a readable parquet table"):
        read_score_file(b"not parquet", "scores.parquet")
    import core.infer.score_table as score_table

    monkeypatch.setattr(score_table, "MAX_SCORE_FILE_BYTES", 10)
    with pytest.raises(InputError, match="above the limit"):
        read_score_file(path)


# -- the table it writes -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    """A tiny registered demo test set (12 images of 32 px) in a workspace of this module's own."""
    from core.data.demo import ensure_demo

    ws = Workspace.open(tmp_path_factory.mktemp("imported") / "workspace")
    ids = ensure_demo(ws, per_class=2, test_per_class=3, size=32)
    return ws, ids["test_set_id"]


def _vendor_table(ws: Workspace, test_set_id: str, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    from core.data.ingest import load_registered

    ids = load_registered(ws, test_set_id).table["image_id"].astype(str).tolist()
    logits = _rows(seed, n=len(ids))
    frame = pd.DataFrame({"Image": [i.rsplit("/", 1)[-1] for i in ids]})
    for j, cls in enumerate(OCT.classes):
        frame[f"{cls.lower()} logit"] = logits[:, j]
    return frame, logits


def test_imported_scores_become_an_ordinary_predictions_table(demo_ws):
    from core.store.audit_trail import read_trail

    ws, test_set_id = demo_ws
    frame, logits = _vendor_table(ws, test_set_id)
    extra = pd.DataFrame([{"Image": "not-in-the-set.jpeg", **{c: 0.0 for c in frame.columns[1:]}}])
    scores = _csv(pd.concat([frame.iloc[1:], extra]))  # the first test image has no score, one name is extra
    plan = plan_import(ws, scores, test_set_id)
    assert (plan.detection.kind, plan.transform) == ("logits", "softmax")
    assert plan.alignment.n_matched == len(frame) - 1 and plan.alignment.unmatched_scores == ["not-in-the-set.jpeg"]
    with pytest.raises(AccessDenied):
        import_predictions(ws, plan, actor=Actor("r", "reader"))
    result = import_predictions(ws, plan, actor=Actor("alice", "researcher"))
    table, meta = read_predictions(result.path)
    softmax = np.exp(logits[1:]) / np.exp(logits[1:]).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(table[probability_columns(OCT)].to_numpy(), softmax)
    assert (table["predicted"] == np.asarray(OCT.classes)[softmax.argmax(axis=1)]).all()
    arrays = evaluation_arrays(table, OCT)  # what every page reads
    assert arrays.n == len(frame) - 1
    provenance = imported_provenance(meta)
    assert provenance["sha256"] == scores.sha256 and provenance["imported_by"] == "alice"
    assert provenance["n_images_without_scores"] == 1 and provenance["unmatched_scores"] == ["not-in-the-set.jpeg"]
    assert provenance["columns"]["classes"]["CNV"] == "cnv logit" and provenance["transform"] == "softmax"
    assert meta["n_excluded"] == 1 and meta["run_id"] == result.run_id
    run = ws.get_run(result.run_id)
    assert is_imported_run(run) and run["status"] == "succeeded"
    assert ws.find_predictions(result.run_id, test_set_id)["n_rows"] == len(table)
    text = provenance_text(provenance)
    assert "vendor.csv" in text and NO_IMPORTED_POINT in text and "1 test image(s) had no score" in text
    assert any(row["action"] == "predictions_imported" and row["target"] == result.run_id
               for row in read_trail(ws, actor=Actor("admin", "admin")).to_dict("records"))
    from core.infer.predict import predict

    with pytest.raises(InputError, match="holds scores imported from a file, not a model"):
        predict(result.run_id, test_set_id, ws)  # nothing to run (nor to recalibrate)
    # the same file, mapping and transform again: the same run, nothing new registered
    again = import_predictions(ws, plan, actor=Actor("alice", "researcher"))
    assert again.reused and again.run_id == result.run_id
    # the file's own calls, when it has them, are the calls
    own = frame.assign(predicted=["normal"] * len(frame))
    table = import_predictions(ws, plan_import(ws, _csv(own, "own.csv"), test_set_id)).frame
    assert set(table["predicted"]) == {"NORMAL"}
    bad = own.assign(predicted=["tumour"] * len(frame))
    with pytest.raises(InputError, match="the file's own calls.*unknown label 'tumour'"):
        plan_import(ws, _csv(bad, "bad.csv"), test_set_id)


def test_threshold_source_of_imported_scores():
    assert threshold_in_use(None, None, imported=True).label == f"default threshold 0.500 ({NO_IMPORTED_POINT})"
    assert threshold_in_use(None, 0.3, imported=True).label == "your threshold 0.300"
    assert threshold_in_use(None, None).label == "default threshold 0.500"


def test_the_command_line_imports_and_registers(demo_ws, tmp_path, capsys, monkeypatch):
    from core.__main__ import main

    ws, test_set_id = demo_ws
    monkeypatch.setenv("CORE_WORKSPACE", str(ws.root))
    frame, logits = _vendor_table(ws, test_set_id, seed=1)
    frame = frame.rename(columns={"drusen logit": "col_x"})
    percent = 100 * np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame[[c for c in frame.columns[1:]]] = percent
    path = tmp_path / "scores.parquet"
    frame.to_parquet(path)
    out = tmp_path / "out" / "p.parquet"
    code = main(["import-predictions", "--scores", str(path), "--data", test_set_id, "--task", "oct-kermany",
                 "--columns", "DRUSEN=col_x", "--scores-are", "percent", "--name", "Vendor X", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    run_id = printed.out.strip().splitlines()[-1]
    assert ws.get_run(run_id)["name"] == "Vendor X"
    table, meta = read_predictions(out)
    np.testing.assert_allclose(table[probability_columns(OCT)].to_numpy(), percent / 100, atol=1e-12)
    assert imported_provenance(meta)["columns"]["classes"]["DRUSEN"] == "col_x"
    assert main(["import-predictions", "--scores", str(path), "--data", test_set_id]) == 2  # DRUSEN unmapped
    assert "no score column for 1 of the task's 4 classes" in capsys.readouterr().err


# -- every page and the report -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imported_workspace(_seeded_root, tmp_path_factory):
    """A copy of the seeded workspace holding the seeded run's own probabilities imported back as logits (so every
    threshold-free number must equal the run's), and the ids the pages need."""
    root = tmp_path_factory.mktemp("imported-pages") / "workspace"
    shutil.copytree(_seeded_root["root"], root)
    ws = Workspace.open(root)
    table, _ = read_predictions(ws.find_predictions(_seeded_root["run_id"], _seeded_root["test_set_id"])["path"])
    frame = pd.DataFrame({"image_id": table["image_id"]})
    for cls, column in zip(OCT.classes, probability_columns(OCT)):
        frame[cls] = np.log(table[column].to_numpy()) + 3.0
    scores = read_score_file(frame.to_csv(index=False).encode(), "vendor.csv")
    result = import_predictions(ws, plan_import(ws, scores, _seeded_root["test_set_id"]), name="Vendor scores")
    return {**_seeded_root, "root": str(root), "imported_run": result.run_id, "csv": frame.to_csv(index=False)}


@pytest.fixture
def pages_ws(imported_workspace, monkeypatch):
    monkeypatch.setenv("CORE_WORKSPACE", imported_workspace["root"])
    # Each page opens as a new user would (the Experts page remembers its slider's threshold as a choice).
    from core.store.selection import save_selection

    save_selection(Workspace.open(imported_workspace["root"]), "test-admin",
                   {"run_id": None, "test_set_id": None, "threshold": None})
    return imported_workspace


@pytest.mark.parametrize("page", ["performance", "penalties", "experts", "compare", "report", "explain"])
def test_imported_scores_reach_every_page(pages_ws, page):
    from dashboard.widgets import plain
    from tests.apptest import open_page, page_texts

    at = open_page(f"../pages/{page}.py", run_id=pages_ws["imported_run"], test_set_id=pages_ws["test_set_id"])
    texts = page_texts(at)
    if page != "compare":
        assert plain("Scores imported from the file “vendor.csv”") in texts, page  # the provenance, on top
    if page == "performance":
        assert f"Threshold in use: **default threshold 0.500 ({NO_IMPORTED_POINT})**" in texts
        assert "Recalibrate into a new run" not in [b.label for b in at.button]  # no model to recalibrate
    if page == "report":
        assert f"Threshold in use: default threshold 0.500 ({NO_IMPORTED_POINT})" in texts
    if page == "experts":
        assert at.tabs and any("MRMC" in t.label for t in at.tabs)
    if page == "compare":
        summary = next(f.value for f in at.dataframe if "weighted_error" in f.value.columns).set_index("run")
        assert summary.loc["Vendor scores", "threshold"] == f"default threshold 0.500 ({NO_IMPORTED_POINT})"
    if page == "explain":
        assert "no model came with them" in texts


def test_the_report_builds_from_imported_scores(pages_ws, tmp_path):
    from core.report import build_report
    from core.report.pdf import render_pdf
    from tests._server import require_chromium

    from core.metrics.headline import urgent_auc

    ws = Workspace.open(pages_ws["root"])
    report = build_report(ws, pages_ws["imported_run"], pages_ws["test_set_id"], bootstrap=0)
    assert report["model"] == {} and report["scores_source"]["run_name"] == "Vendor scores"
    assert report["options"]["threshold_source"] == "imported"
    assert any(c["key"] == "imported_scores" for c in report["caveats"])
    heads = {h["key"]: h["value"] for h in report["headline"]}
    # The run's own probabilities came back through a CSV of logits: its threshold-free numbers are the run's.
    own, _ = read_predictions(ws.find_predictions(pages_ws["run_id"], pages_ws["test_set_id"])["path"])
    arrays = evaluation_arrays(own, OCT)
    assert heads["urgent_auc"] == pytest.approx(urgent_auc(arrays.truth, arrays.probabilities, OCT).value, abs=1e-9)
    require_chromium("the PDF of imported scores")
    pdf = render_pdf(report)
    assert pdf[:4] == b"%PDF" and len(pdf) > 10_000


def test_the_test_sets_form_imports_a_file(pages_ws):
    from tests.apptest import open_page, page_texts

    at = open_page("../pages/test_sets.py")
    assert pages_ws["imported_run"] not in at.selectbox(key="testsets_run").options  # no model to run
    data = pages_ws["csv"].replace("\nCNV/", "\nCNV/", 1)
    at.file_uploader(key="testsets_import_file").set_value(("vendor2.csv", data.encode() + b"\nextra.jpeg,1,2,3,4\n",
                                                            "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    texts = page_texts(at)
    assert "they look like logits (any real number)" in texts
    assert any("1 images named in the file are not in this test set" in w.value for w in at.warning)
    assert "extra.jpeg" in " ".join(t.value for t in at.text)
    transform = next(r for r in at.radio if r.label == "Turn them into probabilities by")
    assert transform.value == "softmax"
    import_button = next(b for b in at.button if b.label == "Import")
    import_button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("are imported as run imported-" in s.value for s in at.success)
    ws = Workspace.open(pages_ws["root"])
    assert sum(is_imported_run(r) for r in ws.list_runs()) == 2
