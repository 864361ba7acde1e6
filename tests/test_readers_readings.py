"""Importing expert readings: long and wide CSVs, every problem reported at once, nothing half-imported."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from core.errors import InputError
from core.readers import (delete_readings, list_readings, load_readings, reading_coverage, store_readings)

IMAGES = [f"img{i:03d}" for i in range(6)]


def _write(tmp_path, text: str, name: str = "readings.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_long_format_canonicalises_labels_and_reads_seconds(tmp_path):
    path = _write(tmp_path, "reader_id,image_id,label,seconds\n"
                            "dr_a,img000,cnv,12.5\n"
                            "dr_a,img001,NORMAL,\n"
                            " dr_b ,img000,Dme,3\n")
    df = load_readings(path, "oct-kermany", known_image_ids=IMAGES)
    assert list(df.columns) == ["reader_id", "image_id", "label", "seconds"]
    assert df["label"].tolist() == ["CNV", "NORMAL", "DME"]
    assert df["reader_id"].tolist() == ["dr_a", "dr_a", "dr_b"]
    assert df["seconds"].iloc[0] == 12.5 and pd.isna(df["seconds"].iloc[1])


def test_task_aliases_apply(tmp_path):
    path = _write(tmp_path, "reader_id,image_id,label\nr1,x1,virus\nr1,x2,bacteria\n")
    assert load_readings(path, "cxr-kermany")["label"].tolist() == ["VIRAL", "BACTERIAL"]


def test_image_ids_stay_text(tmp_path):
    path = _write(tmp_path, "reader_id,image_id,label\nr1,007,CNV\n")
    assert load_readings(path, "oct-kermany", known_image_ids=["007"])["image_id"].tolist() == ["007"]


def test_wide_format_empty_cell_means_not_graded_and_coverage_is_partial(tmp_path):
    path = _write(tmp_path, "image_id,dr_a,dr_b\nimg000,CNV,DME\nimg001,NORMAL,\nimg002,DRUSEN,NORMAL\n")
    df = load_readings(path, "oct-kermany", known_image_ids=IMAGES[:3])
    assert sorted(df.loc[df.reader_id == "dr_b", "image_id"]) == ["img000", "img002"]
    cov = reading_coverage(df, IMAGES[:3]).set_index("reader_id")
    assert cov.loc["dr_a", "n_graded"] == 3 and not cov.loc["dr_a", "partial"]
    assert cov.loc["dr_b", "n_graded"] == 2 and cov.loc["dr_b", "partial"]
    assert "graded 2 of 3" in cov.loc["dr_b", "statement"]


def test_all_problems_reported_together_with_lines(tmp_path):
    path = _write(tmp_path, "reader_id,image_id,label,seconds\n"
                            "dr_a,img000,CNV,1\n"       # line 2 fine
                            "dr_a,img999,CNV,1\n"       # line 3 unknown image
                            "dr_a,img001,tumour,1\n"    # line 4 unknown label
                            "dr_a,img000,DME,1\n"       # line 5 duplicate of line 2
                            "dr_b,img002,CNV,-4\n"      # line 6 bad seconds
                            ",img003,CNV,\n")           # line 7 empty reader
    with pytest.raises(InputError) as err:
        load_readings(path, "oct-kermany", known_image_ids=IMAGES)
    text = str(err.value)
    assert text.startswith("readings.csv: 5 problem(s)")
    assert "line 3: unknown image id 'img999'" in text
    assert "line 4: unknown label 'tumour'" in text
    assert "line 2, line 5: reader 'dr_a' graded image 'img000' more than once" in text
    assert "line 6: seconds must be a non-negative number" in text
    assert "line 7: empty reader_id" in text


def test_long_problem_lists_are_cut_short(tmp_path):
    rows = "".join(f"r1,unknown{i},CNV\n" for i in range(25))
    path = _write(tmp_path, "reader_id,image_id,label\n" + rows)
    with pytest.raises(InputError) as err:
        load_readings(path, "oct-kermany", known_image_ids=IMAGES)
    assert "25 problem(s)" in str(err.value) and "... and 15 more" in str(err.value)


def test_wide_format_problems_name_the_reader_column(tmp_path):
    path = _write(tmp_path, "image_id,dr_a\nimg000,CNVV\n")
    with pytest.raises(InputError, match=r"line 2, column 'dr_a': unknown label 'CNVV'"):
        load_readings(path, "oct-kermany")


@pytest.mark.parametrize("text, message", [
    ("reader,image,diagnosis\nr,i,CNV\n", "needs columns reader_id,image_id,label"),
    ("reader_id,image_id\nr,i\n", r"missing \['label'\]"),
    ("image_id,label,dr_a\ni,CNV,CNV\n", "long format needs"),
    ("image_id,dr_a,truth\ni,CNV,CNV\n", "do not look like readers"),
    ("image_id\ni\n", "at least one reader column"),
    ("", "empty"),
    ("reader_id,image_id,label\n", "no readings found"),
])
def test_bad_layouts_are_clear(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_readings(_write(tmp_path, text), "oct-kermany")


def test_not_utf8_and_missing_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"reader_id,image_id,label\nr,\xff\xfe,CNV\n")
    with pytest.raises(InputError, match="bad.csv: not a UTF-8"):
        load_readings(bad, "oct-kermany")
    with pytest.raises(InputError, match="file not found"):
        load_readings(tmp_path / "nope.csv", "oct-kermany")


def test_file_like_and_dataframe_sources():
    upload = io.BytesIO(b"\xef\xbb\xbfreader_id,image_id,label\nr1,img000,CNV\n")
    upload.name = "upload.csv"
    assert load_readings(upload, "oct-kermany")["label"].tolist() == ["CNV"]
    frame = pd.DataFrame({"reader_id": ["r1", "r1"], "image_id": ["a", "a"], "label": ["CNV", "DME"]})
    with pytest.raises(InputError, match=r"(?s)readings table: 1 problem.*row 1, row 2"):
        load_readings(frame, "oct-kermany")


def test_store_list_reject_and_replace(workspace, tmp_path):
    first = load_readings(_write(tmp_path, "reader_id,image_id,label\nr1,img000,CNV\nr1,img001,NORMAL\n"),
                          "oct-kermany")
    assert store_readings(workspace, "ts1", first, "first.csv") == 2
    stored = list_readings(workspace, "ts1")
    assert stored[["reader_id", "image_id", "label"]].values.tolist() == [["r1", "img000", "CNV"],
                                                                          ["r1", "img001", "NORMAL"]]
    assert set(stored["source"]) == {"first.csv"}
    # A file holding a known reader and a new one: rejected as a whole, nothing of r2 stored either.
    second = load_readings(_write(tmp_path, "reader_id,image_id,label\nr1,img000,DME\nr2,img000,CNV\n"),
                           "oct-kermany")
    with pytest.raises(InputError, match=r"second.csv: reader\(s\) \['r1'\] already have readings"):
        store_readings(workspace, "ts1", second, "second.csv")
    assert list_readings(workspace, "ts1").equals(stored)
    store_readings(workspace, "ts1", second, "second.csv", replace=True)
    after = list_readings(workspace, "ts1")
    assert after[["reader_id", "image_id", "label"]].values.tolist() == [["r1", "img000", "DME"],
                                                                         ["r2", "img000", "CNV"]]
    # Readings are per test set.
    assert list_readings(workspace, "other").empty
    assert delete_readings(workspace, "ts1", "r2") == 1
    assert list_readings(workspace, "ts1")["reader_id"].tolist() == ["r1"]


def test_store_checks_the_table_it_is_given(workspace):
    dup = pd.DataFrame({"reader_id": ["r", "r"], "image_id": ["a", "a"], "label": ["CNV", "CNV"]})
    with pytest.raises(InputError, match="duplicate"):
        store_readings(workspace, "ts", dup, "x")
    with pytest.raises(InputError, match="missing column"):
        store_readings(workspace, "ts", dup[["reader_id"]], "x")
    assert list_readings(workspace, "ts").empty


def test_list_can_leave_out_simulated_readers(workspace):
    df = pd.DataFrame({"reader_id": ["SIMULATED-x", "human"], "image_id": ["a", "a"], "label": ["CNV", "DME"]})
    store_readings(workspace, "ts", df, "mixed")
    assert list_readings(workspace, "ts", include_simulated=False)["reader_id"].tolist() == ["human"]


@pytest.mark.parametrize("text, where", [
    ("reader_id,image_id,label\nSIMULATED-junior,img000,CNV\ndr_a,img001,DME\n", "line 2"),
    ("reader_id,image_id,label\nsimulated-junior,img000,CNV\n", "line 2"),
    ("image_id,dr_a,SIMULATED-expert\nimg000,CNV,DME\n", "SIMULATED-expert"),
])
def test_the_simulated_reader_prefix_is_refused_on_import(tmp_path, text, where):
    """SIMULATED- marks the simulated readers (reports label them so): an imported human reading may not take it."""
    with pytest.raises(InputError, match=rf"(?s)readings\.csv: 1 problem\(s\).*{where}.*reader code: 'SIMULATED-' is "
                                         r"reserved for simulated readers") as caught:
        load_readings(_write(tmp_path, text), "oct-kermany", known_image_ids=IMAGES)
    assert "nothing was imported" in str(caught.value)


def test_an_import_of_readings_is_in_the_audit_trail(workspace, tmp_path):
    from core.store.access import Actor, create_first_admin
    from core.store.audit_trail import read_trail

    admin = create_first_admin(workspace, "ada", "a long enough password")
    frame = load_readings(_write(tmp_path, "reader_id,image_id,label\nr1,img000,CNV\n"), "oct-kermany")
    store_readings(workspace, "ts1", frame, "grades.csv", actor=Actor("rob", "researcher"))
    trail = read_trail(workspace, actor=admin, action="readings_stored")
    assert trail[["user", "role", "target"]].values.tolist() == [["rob", "researcher", "test_set ts1"]]
    assert '"rows": 1' in trail["detail"].iat[0] and "grades.csv" in trail["detail"].iat[0]
