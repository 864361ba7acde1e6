"""DICOM header characteristics as subgroup columns: sex, age band, view, manufacturer and model, from a server
folder and from a de-identified upload alike; InstitutionName never (de-identification removes it)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from core.data import load_dataset
from core.data.dicom import KEPT_CHARACTERISTICS
from core.data.ingest import ingest_upload, load_registered
from core.data.readers.dicom import AGE_BANDS, HEADER_SUBGROUPS, age_band, age_years
from core.metrics.subgroups import subgroup_labels, subgroup_order
from core.report.subgroups import available_subgroup_columns
from tests._dicom_files import INSTITUTION, write_dicom

HEADERS = [  # one file each: (class, attributes)
    ("NORMAL", {"PatientSex": "F", "PatientAge": "005Y", "ViewPosition": "PA", "Manufacturer": "Acme",
                "ManufacturerModelName": "X1"}),
    ("PNEUMONIA", {"PatientSex": "M", "PatientAge": "018M", "ViewPosition": "AP", "Manufacturer": "Acme",
                   "ManufacturerModelName": "X2"}),
    ("NORMAL", {"PatientSex": "M", "PatientAge": "003W", "ViewPosition": "AP", "Manufacturer": "Zeta",
                "ManufacturerModelName": "Z9"}),
    ("PNEUMONIA", {"PatientSex": "F", "PatientAge": "095Y", "ViewPosition": "PA", "Manufacturer": "Zeta",
                   "ManufacturerModelName": "Z9"}),
    ("NORMAL", {"PatientSex": "O", "ViewPosition": "LL"}),  # no age, no manufacturer: their "(missing)" group
]


def _tree(root, headers=HEADERS):
    for i, (cls, attributes) in enumerate(headers):
        write_dicom(root / "test" / cls / f"img{i}.dcm", np.full((8, 8), i * 20, np.uint8), patient_id=f"P{i}",
                    sop_uid=f"1.2.3.{i}", attributes=attributes)
    return root


def _by_file(ds):
    names = list(HEADER_SUBGROUPS)
    return {row["image_id"].rsplit("/", 1)[-1]: tuple(None if pd.isna(row[n]) else row[n] for n in names)
            for row in ds.table.to_dict("records")}


EXPECTED = {"img0.dcm": ("F", "5-12 y", "PA", "Acme", "X1"), "img1.dcm": ("M", "1-5 y", "AP", "Acme", "X2"),
            "img2.dcm": ("M", "0-1 y", "AP", "Zeta", "Z9"), "img3.dcm": ("F", "65+ y", "PA", "Zeta", "Z9"),
            "img4.dcm": ("O", None, "LL", None, None)}


def test_age_strings_in_years_and_bands():
    assert age_years("005Y") == 5 and age_years("018M") == 1.5 and age_years(" 010d ") == pytest.approx(10 / 365.25)
    assert age_years("") is None and age_years("5 years") is None and age_years(None) is None
    assert [age_band(v) for v in ("000D", "011M", "001Y", "004Y", "005Y", "012Y", "017Y", "018Y", "064Y", "065Y",
                                  "090Y", "", "abc")] == [
        "0-1 y", "0-1 y", "1-5 y", "1-5 y", "5-12 y", "12-18 y", "12-18 y", "18-65 y", "18-65 y", "65+ y", "65+ y",
        None, None]
    assert AGE_BANDS[-1][1] is None  # the last band is open: every age has one
    # Bands sort by age in every table, not as text ("12-18 y" before "5-12 y").
    labels, _ = subgroup_labels(np.array(["65+ y", "5-12 y", "12-18 y", None, "0-1 y", "1-5 y", "18-65 y"], object))
    assert subgroup_order(labels) == ["0-1 y", "1-5 y", "5-12 y", "12-18 y", "18-65 y", "65+ y", "(missing)"]


def test_header_subgroups_only_from_what_deidentification_keeps():
    assert set(HEADER_SUBGROUPS.values()) <= set(KEPT_CHARACTERISTICS)
    assert "InstitutionName" not in KEPT_CHARACTERISTICS


def test_a_dicom_folder_has_its_header_characteristics_as_subgroup_columns(tmp_path, workspace):
    ds = load_dataset(_tree(tmp_path / "cxr"))
    assert ds.subgroup_columns() == list(HEADER_SUBGROUPS)
    assert _by_file(ds) == EXPECTED
    assert all(INSTITUTION not in str(v) for v in ds.table.to_numpy().ravel())
    assert available_subgroup_columns(ds)[:5] == list(HEADER_SUBGROUPS)
    # A test split keeps them.
    assert ds.split_named("test").subgroup_columns() == list(HEADER_SUBGROUPS)


def test_a_column_no_file_has_is_left_out(tmp_path, workspace):
    ds = load_dataset(_tree(tmp_path / "cxr", [("NORMAL", {"ViewPosition": "PA"}), ("PNEUMONIA", {})]))
    assert ds.subgroup_columns() == ["view"]
    assert sorted(ds.table["view"].fillna("(none)").tolist()) == ["(none)", "PA"]


def test_an_uploaded_dicom_set_keeps_the_same_columns_after_deidentification(tmp_path, workspace):
    src = _tree(tmp_path / "src")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(src.rglob("*.dcm")):
            zf.write(path, path.relative_to(src).as_posix())
    added = ingest_upload(workspace, "export.zip", buffer.getvalue(), role="test_set")
    ds = load_registered(workspace, added.dataset_id)
    assert ds.subgroup_columns() == list(HEADER_SUBGROUPS)
    # Files are renamed on upload: compared as a multiset; the 95-year-old is 090Y after de-identification, 65+.
    assert sorted(_by_file(ds).values(), key=str) == sorted(EXPECTED.values(), key=str)
