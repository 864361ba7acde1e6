"""Kermany's chest X-ray set as commonly re-exported: one class folder per class (PNEUMONIA_BACTERIAL /
PNEUMONIA_VIRAL) instead of one PNEUMONIA folder told apart by file name (issue 22 item 10)."""

from __future__ import annotations

import pytest

from core.data import get_task, load_dataset
from core.errors import InputError
from tests._data_files import write_image


def _reexport(root, pneumonia=("PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL")):
    files = {"NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-1427-0001.jpeg"],
             pneumonia[0]: ["person1_bacteria_1.jpeg", "person22_bacteria_77.jpeg"],
             pneumonia[1]: ["person1_virus_6.jpeg"]}
    for cls, names in files.items():
        for i, name in enumerate(names):
            write_image(root / "test" / cls / name, seed=i)
    return root


def test_reexported_class_folders_are_read_as_the_three_class_preset(tmp_path):
    ds = load_dataset(_reexport(tmp_path / "cxr3"))
    assert ds.task.name == "cxr-kermany"
    t = ds.table.set_index("image_id")
    assert t.loc["test/PNEUMONIA_BACTERIAL/person1_bacteria_1.jpeg", ["label", "patient_id"]].tolist() == \
        ["BACTERIAL", "person1"]
    assert t.loc["test/PNEUMONIA_VIRAL/person1_virus_6.jpeg", ["label", "patient_id"]].tolist() == ["VIRAL", "person1"]
    assert t.loc["test/NORMAL/NORMAL2-IM-1427-0001.jpeg", "patient_id"] == "IM-1427"
    assert ds.class_counts().loc["test"].to_dict() == {"NORMAL": 2, "BACTERIAL": 2, "VIRAL": 1}


@pytest.mark.parametrize("names", [("pneumonia_bacterial", "pneumonia_viral"), ("Pneumonia-Bacterial", "Pneumonia-Viral")])
def test_the_preset_given_by_name_accepts_the_aliases_in_any_case(tmp_path, names):
    ds = load_dataset(_reexport(tmp_path / "cxr3", names), task="cxr-kermany")
    assert sorted(set(ds.table["label"])) == ["BACTERIAL", "NORMAL", "VIRAL"]


def test_every_refused_class_folder_is_named_with_what_is_accepted(tmp_path):
    root = tmp_path / "cxr"
    for cls in ("NORMAL", "COVID", "TB"):
        write_image(root / cls / "a.png")
    with pytest.raises(InputError) as err:
        load_dataset(root, task="cxr-kermany")
    text = str(err.value)
    assert "'COVID'" in text and "'TB'" in text and "unknown labels for task 'cxr-kermany'" in text
    assert "pneumonia_bacterial" in text
    assert get_task("cxr-kermany").canonical_label("PNEUMONIA_VIRAL") == "VIRAL"
