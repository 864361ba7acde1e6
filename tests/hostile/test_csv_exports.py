"""Every CSV export goes through one writer that defuses spreadsheet formulas (issue 14, item 3)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from core.store.csv_safe import FORMULA_START, csv_bytes, write_csv
from tests.hostile.corpus import PROJECT_ROOT, cases
from tests.train_fixtures import make_kermany_folder


def _cells(data: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")) for cell in row]


@pytest.mark.parametrize("case", cases("csv"), ids=str)
def test_formula_cell_and_column_name_are_defused(case, tmp_path):
    cell = case.build(tmp_path)
    frame = pd.DataFrame({"image_id": [cell, "CNV-1-1.jpeg"], cell: ["note", cell], "prob_CNV": [-0.5, 0.25]})
    data = csv_bytes(frame)
    cells = _cells(data)
    assert cells.count("'" + cell) == 3  # two cells and the column name
    assert not [c for c in cells if c.startswith(FORMULA_START) and c != "-0.5"]
    assert "-0.5" in cells and "CNV-1-1.jpeg" in cells  # numbers and ordinary text unchanged
    assert write_csv(frame, tmp_path / "x.csv").read_bytes() == data


def test_no_export_writes_csv_around_the_one_writer():
    """Static: pandas' to_csv (or csv.writer) is called only by core/store/csv_safe.py; every CLI and page
    export goes through it. The synthetic demo's own lesions.csv holds no user text and is the one exception."""
    allowed = {Path("core/store/csv_safe.py"), Path("core/data/synthetic.py")}
    offenders = []
    for folder in ("core", "dashboard", "pages"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            rel = path.relative_to(PROJECT_ROOT)
            if rel not in allowed and re.search(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(", path.read_text()):
                offenders.append(str(rel))
    assert offenders == []


def test_predict_cli_csv_defuses_a_patient_id_formula(seeded_workspace, tmp_path, monkeypatch):
    from core.__main__ import main
    from core.models import find_checkpoint
    from core.store import Workspace

    # The seeded model, run into a workspace of this test's own (the shared one keeps its predictions list).
    seeded = Workspace.open(seeded_workspace["root"])
    weights = find_checkpoint(seeded.get_run(seeded_workspace["run_id"])["run_dir"])
    monkeypatch.setenv("CORE_WORKSPACE", str(tmp_path / "ws"))
    folder = make_kermany_folder(tmp_path / "oct", per_class=1, test_per_class=1)
    rows = ["path,label,patient_id"]
    for i, image in enumerate(sorted((folder / "test").rglob("*.jpeg"))):
        rows.append(f"{image.relative_to(folder).as_posix()},{image.parent.name},\"=cmd|' /C calc'!A{i}\"")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "x.csv"
    assert main(["predict", "--run", str(weights), "--data", str(folder / "manifest.csv"),
                 "--out", str(out)]) == 0
    cells = _cells(out.read_bytes())
    assert "'=cmd|' /C calc'!A0" in cells
    assert not [c for c in cells if c.startswith("=")]
