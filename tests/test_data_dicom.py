"""DICOM: decoded pixel values (rescale, windows, VOI LUT, MONOCHROME1, bit depths, compression), datasets from
class folders and CSVs, and de-identification of uploads (no header text anywhere in the workspace)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from core.data import load_dataset
from core.data.dicom import DicomOptions, hash_patient_id
from core.store.secret import patient_key
from core.data.images import check_image, image_size, open_image
from core.data.ingest import ingest_upload, load_registered
from core.errors import InputError
from tests._dicom_files import INSTITUTION, PATIENT_NAME, jpeg_decoded, write_dicom


def pixels(path, **options) -> np.ndarray:
    return np.asarray(open_image(path, dicom=DicomOptions(**options) if options else None))


def test_8bit_without_window_uses_the_full_range(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", np.array([[0, 100], [200, 50]], np.uint8))
    # min 0, max 200 -> 0..255: 100 -> 127.5 -> 127 (float rounding below .5), 50 -> 63.75 -> 64
    assert pixels(path).tolist() == [[0, 127], [255, 64]]
    assert image_size(path) == (2, 2) and check_image(path) == (2, 2)


def test_12bit_window_from_the_file_monochrome2_and_monochrome1(tmp_path):
    stored = np.array([[0, 4095], [2048, 1024]], np.uint16)
    m2 = write_dicom(tmp_path / "m2.dcm", stored, bits_stored=12, window=(2048, 4096))
    m1 = write_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, window=(2048, 4096), photometric="MONOCHROME1")
    # DICOM linear window: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255; 1024 -> 63.78 -> 64, 2048 -> 127.53 -> 128
    assert pixels(m2).tolist() == [[0, 255], [128, 64]]
    assert pixels(m1).tolist() == [[255, 0], [127, 191]]  # MONOCHROME1: low values are white


def test_signed_rescaled_ct_with_preset_and_full_range(tmp_path):
    # stored -512, 0, 512, 1000 with slope 2, intercept -1024 -> -2048, -1024, 0, 976 HU
    path = write_dicom(tmp_path / "ct.dcm", np.array([[-512, 0], [512, 1000]], np.int16), slope=2, intercept=-1024,
                       window=(0, 10))
    # mediastinum preset (40, 400): 0 HU -> ((0 - 39.5) / 399 + 0.5) * 255 = 102.26; below -160 -> 0; above 239 -> 255
    assert pixels(path, window="mediastinum").tolist() == [[0, 0], [102, 255]]
    # full range -2048..976 (3024 HU): -1024 -> 86.35, 0 -> 172.70
    assert pixels(path, window="full").tolist() == [[0, 86], [173, 255]]
    # the file's own narrow window (0, 10): everything at or below -5 HU black, 0 HU -> 141.67
    assert pixels(path).tolist() == [[0, 0], [142, 255]]


def test_16bit_values_are_kept_until_the_last_step(tmp_path):
    path = write_dicom(tmp_path / "w16.dcm", np.array([[0, 1000], [65535, 30000]], np.uint16))
    # 1000 / 65535 * 255 = 3.89 -> 4; a first cut to 8 bits would make it 0 (or 232 when wrapped)
    assert pixels(path).tolist() == [[0, 4], [255, 117]]


def test_voi_lut_sequence(tmp_path):
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 1], [2, 7]], np.uint16),
                       voi_lut=([4, 0, 8], [0, 50, 100, 255]))
    assert pixels(path).tolist() == [[0, 50], [100, 255]]  # 7 lies past the LUT: its last entry
    assert pixels(path, window="full").tolist() == [[0, 36], [73, 255]]  # the LUT ignored on request


def test_jpeg_baseline_and_jpeg2000(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    jpeg = write_dicom(tmp_path / "jpeg.dcm", ramp, syntax="jpeg")
    decoded = pixels(jpeg, window="full")
    expected = jpeg_decoded(ramp).astype(float)
    expected = np.rint((expected - expected.min()) * 255 / (expected.max() - expected.min()))
    assert decoded.shape == (24, 32) and np.abs(decoded - expected).max() <= 1  # two libjpeg builds may differ by 1
    stored = (np.arange(64 * 64).reshape(64, 64) * 5 % 4096).astype(np.uint16)  # openjpeg needs >= 64 px
    j2k = write_dicom(tmp_path / "j2k.dcm", stored, bits_stored=12, syntax="j2k")
    full = np.rint(stored.astype(float) * 255 / stored.max())
    assert np.array_equal(pixels(j2k, window="full"), full)  # lossless: exact
    assert check_image(j2k) == (64, 64)


def test_colour_and_extension_less_and_no_preamble(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    im = open_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    assert im.mode == "RGB" and np.asarray(im)[0, 0].tolist() == [200, 0, 50]
    bare = write_dicom(tmp_path / "IM0001", np.array([[0, 10]], np.uint8))
    assert pixels(bare).tolist() == [[0, 255]]
    (tmp_path / "NOTDICOM").write_bytes(b"\x00" * 200)
    with pytest.raises(InputError, match="NOTDICOM"):
        open_image(tmp_path / "NOTDICOM")
    raw = write_dicom(tmp_path / "raw.dcm", np.array([[0, 10]], np.uint8), preamble=False)
    assert pixels(raw).tolist() == [[0, 255]]


def test_multi_frame_refused_or_first_frame(tmp_path):
    frames = np.stack([np.array([[0, 9]], np.uint8), np.array([[9, 0]], np.uint8)])
    path = write_dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(InputError, match="multi-frame DICOM .2 frames"):
        open_image(path)
    assert pixels(path, frames="first").tolist() == [[0, 255]]


def test_bad_dicom_files_give_clear_errors(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.zeros((64, 64), np.uint16))
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(InputError, match="truncated DICOM pixel data|not a readable DICOM"):
        check_image(path)
    with pytest.raises(InputError, match="above the limit"):
        open_image(write_dicom(tmp_path / "big.dcm", np.zeros((40, 40), np.uint8)), max_pixels=1000)
    with pytest.raises(InputError, match="windowing must be one of"):
        DicomOptions(window="soft")


def _class_tree(root, patient_ids=("A1", "A1", "B2", "C3")):
    for i, patient in enumerate(patient_ids):
        cls = "NORMAL" if i % 2 == 0 else "PNEUMONIA"
        write_dicom(root / "train" / cls / f"img{i}.dcm", np.full((8, 8), i * 20, np.uint8), patient_id=patient,
                    sop_uid=f"1.2.3.{i}")
    return root


def test_class_folders_of_dicom_with_hashed_patients(tmp_path, workspace):
    ds = load_dataset(_class_tree(tmp_path / "cxr"))
    assert sorted(ds.table["image_id"]) == [f"train/{c}/img{i}.dcm" for i, c in
                                            [(0, "NORMAL"), (2, "NORMAL"), (1, "PNEUMONIA"), (3, "PNEUMONIA")]]
    assert set(ds.table["label"]) == {"NORMAL", "PNEUMONIA"} and set(ds.table["split"]) == {"train"}
    assert ds.patients() == sorted(hash_patient_id(p, patient_key(workspace.root)) for p in ("A1", "B2", "C3"))
    assert "A1" not in ds.patients()
    assert np.asarray(ds.load_image(0)).shape == (8, 8)


def test_csv_labels_by_sop_instance_uid_or_file_name(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        write_dicom(root / f"scan{i}", np.full((4, 4), i, np.uint8), sop_uid=f"1.2.840.99.{i}")  # no extension
    (root / "labels.csv").write_text("sop_instance_uid,label\n" + "".join(
        f"1.2.840.99.{i},{'cat' if i < 2 else 'dog'}\n" for i in range(4)))
    ds = load_dataset(root)
    assert dict(zip(ds.table["image_id"], ds.table["label"])) == {
        "scan0": "cat", "scan1": "cat", "scan2": "dog", "scan3": "dog"}
    (root / "labels.csv").write_text("file_name,label\nscan0,dog\nscan1,dog\nscan2,cat\n")
    with pytest.raises(InputError, match="scan3: not listed in labels.csv"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert dict(zip(ds.table["image_id"], ds.table["label"])) == {"scan0": "dog", "scan1": "dog", "scan2": "cat"}
    with pytest.raises(InputError, match="single DICOM image carries no label"):
        load_dataset(root / "scan0")


def test_windowing_choice_changes_the_fingerprint_and_is_kept_on_registration(tmp_path, workspace):
    root = _class_tree(tmp_path / "cxr")
    default, full = load_dataset(root), load_dataset(root, dicom=DicomOptions(window="full"))
    assert default.fingerprint != full.fingerprint
    assert full.subset([0]).dicom == DicomOptions(window="full")
    from core.data.ingest import register_folder

    added = register_folder(workspace, root, dicom=DicomOptions(window="lung"))
    assert load_registered(workspace, added.dataset_id).dicom == DicomOptions(window="lung")


def test_uploaded_dicom_leaves_no_header_text_in_the_workspace(tmp_path, workspace):
    src = _class_tree(tmp_path / "src", patient_ids=("MRN-777", "MRN-777", "MRN-888", "MRN-999"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(src.rglob("*.dcm")):
            zf.write(path, path.relative_to(src).as_posix())
    before = {p: np.asarray(open_image(p)) for p in sorted(src.rglob("*.dcm"))}
    added = ingest_upload(workspace, "export.zip", buffer.getvalue(), role="test_set")
    ds = load_registered(workspace, added.dataset_id)
    # Pixels unchanged by de-identification (files are renamed, so compared as sets); patients still told apart,
    # by keyed hash only.
    assert sorted(np.asarray(ds.load_image(i)).tolist() for i in range(len(ds))) == sorted(
        v.tolist() for v in before.values())
    key = patient_key(workspace.root)
    assert ds.patients() == sorted({hash_patient_id(p, key) for p in ("MRN-777", "MRN-888", "MRN-999")})
    texts = [PATIENT_NAME, "Doe", INSTITUTION, "MRN-777", "20190304", "Chest PA"]
    for path in workspace.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for text in texts:
                assert text.encode() not in data, f"{text!r} found in {path}"
                assert text.encode("utf-16-le") not in data, f"{text!r} found in {path}"


def test_an_upload_with_an_unreadable_dicom_is_refused_or_keeps_no_trace_of_it(tmp_path, workspace):
    src = _class_tree(tmp_path / "src")
    broken = src / "train" / "NORMAL" / "report.dcm"
    write_dicom(broken, np.zeros((2, 2), np.uint8), patient_name="Roe^Richard")
    data = broken.read_bytes()
    broken.write_bytes(data[:data.index(b"Roe^Richard") + 11])  # the header survives, the rest is cut
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(src.rglob("*.dcm")):
            zf.write(path, path.relative_to(src).as_posix())
    with pytest.raises(InputError, match="could not be added: export.zip/train/NORMAL/report.dcm: DICOM file without"):
        ingest_upload(workspace, "export.zip", buffer.getvalue())
    assert workspace.list_datasets(role="test_set") == [] and not any(workspace.uploads_dir.iterdir())
    added = ingest_upload(workspace, "export.zip", buffer.getvalue(), skip_bad=True)
    assert added.record["n_images"] == 4 and "removed" in added.record["meta"]["problems"][0]
    for path in workspace.root.rglob("*"):
        assert not path.is_file() or b"Roe^Richard" not in path.read_bytes()


# -- issue 21: keyed pseudonyms, the PS3.15 basic profile, burned-in annotation, identifying names ------------
def _zip_of(src, buffer=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(src).as_posix())
    return buffer.getvalue()


def _stored(workspace, added):
    import pydicom

    ds = load_registered(workspace, added.dataset_id)
    return ds, {row.image_id: pydicom.dcmread(row.path) for row in ds.table.itertuples()}


def test_patient_pseudonyms_are_keyed_per_workspace_and_resist_brute_force(tmp_path, monkeypatch):
    import hashlib
    import stat

    from core.store import Workspace

    src = tmp_path / "src"
    write_dicom(src / "NORMAL" / "a.dcm", np.zeros((4, 4), np.uint8), patient_id="MRN-123456")
    write_dicom(src / "PNEUMONIA" / "b.dcm", np.ones((4, 4), np.uint8), patient_id="MRN-000001")
    stored = []
    for name in ("one", "two"):
        monkeypatch.setenv("CORE_WORKSPACE", str(tmp_path / name))
        ws = Workspace.open(tmp_path / name)
        _, files = _stored(ws, ingest_upload(ws, "export.zip", _zip_of(src)))
        stored.append({str(f.PatientID) for f in files.values()})
        key_file = ws.root / "patient.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
        assert patient_key(ws.root) == key_file.read_bytes()  # stable within the workspace
        assert hash_patient_id("MRN-123456", patient_key(ws.root)) in stored[-1]
    assert not stored[0] & stored[1]  # another workspace, other pseudonyms
    pseudonym = hash_patient_id("MRN-123456", patient_key(tmp_path / "one"))
    assert len(pseudonym) == 64 and pseudonym.startswith("pid-")
    # The old public scheme (a fixed salt, 16 hex digits) let anyone try every MRN-NNNNNN: none matches now.
    old = {"pid-" + hashlib.sha256(f"openkermany-patient\nMRN-{n:06d}".encode()).hexdigest()[:16]
           for n in range(1_000_000)}
    assert not (stored[0] | stored[1]) & old and pseudonym[:20] not in old


def test_uploaded_header_follows_the_basic_profile_with_uids_remapped_per_study(tmp_path, workspace):
    from pydicom.uid import UID

    src = tmp_path / "src"
    study, series = "1.2.840.555.1", "1.2.840.555.1.1"
    common = {"StudyInstanceUID": study, "SeriesInstanceUID": series, "FrameOfReferenceUID": "1.2.840.555.9",
              "StudyDate": "20190304", "AccessionNumber": "ACC-31337", "ViewPosition": "PA", "PatientSex": "F",
              "PatientAge": "095Y", "Manufacturer": "Acme", "ManufacturerModelName": "X-1",
              "InstitutionAddress": "1 Example Road"}
    write_dicom(src / "NORMAL" / "DOE_JOHN_MRN-123456.dcm", np.zeros((4, 4), np.uint8), patient_id="MRN-123456",
                sop_uid="1.2.840.555.1.1.1", attributes=common, private_text="Doe John secret note")
    write_dicom(src / "PNEUMONIA" / "DOE_JOHN_MRN-123456_2.dcm", np.ones((4, 4), np.uint8),
                patient_id="MRN-123456", sop_uid="1.2.840.555.1.1.2", attributes=common)
    ds, files = _stored(workspace, ingest_upload(workspace, "export.zip", _zip_of(src)))
    assert len(files) == 2
    for image_id, f in files.items():
        # Identifying file names become the new SOP Instance UID, in the class folder; nothing keeps the old name.
        label = ds.table["label"].iat[ds.row_of(image_id)]
        assert image_id == f"{label}/{f.SOPInstanceUID}.dcm" and "DOE" not in image_id
        assert UID(f.SOPInstanceUID).is_valid and f.SOPInstanceUID.startswith("2.25.")
        assert f.SOPInstanceUID not in ("1.2.840.555.1.1.1", "1.2.840.555.1.1.2")
        assert f.file_meta.MediaStorageSOPInstanceUID == f.SOPInstanceUID
        assert f.StudyInstanceUID.startswith("2.25.") and f.StudyInstanceUID != study
        assert f.FrameOfReferenceUID.startswith("2.25.")
        # Kept (pixel description and characteristics; ages over 89 in one bucket), dummies, removed.
        assert (f.ViewPosition, f.PatientSex, f.PatientAge, f.Manufacturer, f.ManufacturerModelName, f.Modality) \
            == ("PA", "F", "090Y", "Acme", "X-1", "CR")
        assert (str(f.PatientName), f.StudyDate, f.AccessionNumber, f.PatientBirthDate) == ("Anonymous", "", "", "")
        for gone in ("InstitutionName", "InstitutionAddress", "StudyDescription"):
            assert gone not in f
        assert not any(e.tag.is_private for e in f)
        assert f.PatientIdentityRemoved == "YES" and "BurnedInAnnotation" not in f
        assert [(c.CodeValue, c.CodingSchemeDesignator) for c in f.DeidentificationMethodCodeSequence] == [
            ("113100", "DCM"), ("113108", "DCM")]
        assert "PS3.15" in f.DeidentificationMethod
    a, b = files.values()
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    for path in workspace.root.rglob("*"):
        assert "DOE" not in path.name
        if path.is_file():
            data = path.read_bytes()
            for text in (b"MRN-123456", b"Doe John", b"ACC-31337", b"Example Road", b"1.2.840.555"):
                assert text not in data, (text, path)


def test_csv_labels_of_an_upload_follow_the_renamed_files(tmp_path, workspace):
    src = tmp_path / "src"
    for i in range(4):
        write_dicom(src / f"SMITH_ANNA_{i}", np.full((4, 4), i, np.uint8), sop_uid=f"1.2.840.99.{i}")
    (src / "labels.csv").write_text("sop_instance_uid,label,patient_name\n" + "".join(
        f"1.2.840.99.{i},{'cat' if i < 2 else 'dog'},Smith Anna\n" for i in range(4)))
    ds, files = _stored(workspace, ingest_upload(workspace, "by_uid.zip", _zip_of(src)))
    assert sorted(ds.table["label"]) == ["cat", "cat", "dog", "dog"]
    assert all(image_id == f"{f.SOPInstanceUID}.dcm" for image_id, f in files.items())
    (src / "labels.csv").write_text("file_name,label\n" + "".join(f"SMITH_ANNA_{i},{'cat' if i % 2 else 'dog'}\n"
                                                                  for i in range(4)))
    ds, files = _stored(workspace, ingest_upload(workspace, "by_name.zip", _zip_of(src)))
    assert sorted(ds.table["label"]) == ["cat", "cat", "dog", "dog"]
    for path in workspace.root.rglob("*"):
        assert "SMITH" not in path.name and (not path.is_file() or b"Smith Anna" not in path.read_bytes())


def _burned_in_tree(root):
    write_dicom(root / "NORMAL" / "ok.dcm", np.zeros((4, 4), np.uint8))
    write_dicom(root / "PNEUMONIA" / "DOE_JOHN_MRN-123456.dcm", np.ones((4, 4), np.uint8),
                attributes={"BurnedInAnnotation": "YES"})
    return root


def test_burned_in_annotation_is_refused_unless_kept_and_then_flagged(tmp_path, workspace):
    from core.data.ingest import register_folder

    data = _zip_of(_burned_in_tree(tmp_path / "src"))
    with pytest.raises(InputError, match=r"export\.zip/PNEUMONIA/DOE_JOHN_MRN-123456\.dcm: BurnedInAnnotation = YES"):
        ingest_upload(workspace, "export.zip", data)
    assert workspace.list_datasets() == [] and not any(workspace.uploads_dir.iterdir())
    skipped = ingest_upload(workspace, "export.zip", data, skip_bad=True)
    assert skipped.record["n_images"] == 1 and "BurnedInAnnotation = YES" in skipped.record["meta"]["problems"][0]
    kept = ingest_upload(workspace, "export.zip", data, dicom=DicomOptions(burned_in="keep"))
    ds, files = _stored(workspace, kept)
    flagged = [image_id for image_id, f in files.items() if f.get("BurnedInAnnotation") == "YES"]
    assert len(flagged) == 1 and kept.record["meta"]["burned_in_annotation"] == flagged
    assert files[flagged[0]].PatientIdentityRemoved == "NO"
    assert "Burned-in annotation NOT removed" in str(files[flagged[0]].DeidentificationMethod)
    assert all(f.PatientIdentityRemoved == "YES" for i, f in files.items() if i not in flagged)
    # A server folder is read in place: refused whole, naming the file, unless kept.
    folder = _burned_in_tree(tmp_path / "server")
    with pytest.raises(InputError, match=r"DOE_JOHN_MRN-123456\.dcm: BurnedInAnnotation = YES"):
        register_folder(workspace, folder, skip_bad=True)
    added = register_folder(workspace, folder, dicom=DicomOptions(burned_in="keep"))
    assert added.record["meta"]["burned_in_annotation"] == ["PNEUMONIA/DOE_JOHN_MRN-123456.dcm"]


def test_the_command_line_refuses_burned_in_files_unless_allowed(tmp_path, workspace, capsys):
    from core.__main__ import main

    folder = _burned_in_tree(tmp_path / "server")
    assert main(["add-data", str(folder), "--workspace", str(workspace.root)]) == 2
    assert "BurnedInAnnotation = YES" in capsys.readouterr().err and workspace.list_datasets() == []
    assert main(["add-data", str(folder), "--workspace", str(workspace.root), "--allow-burned-in"]) == 0
    out = capsys.readouterr().out
    assert "registered:" in out and "1 DICOM file(s) kept with burned-in annotation" in out


def test_unnamed_dicom_in_a_zip_is_added(tmp_path, workspace):
    src = tmp_path / "src"
    write_dicom(src / "NORMAL" / "IM000001", np.zeros((4, 4), np.uint8))  # PACS export: no extension
    write_dicom(src / "PNEUMONIA" / "1.2.840.113619.2.55", np.ones((4, 4), np.uint8))  # named by a UID
    (src / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(64))  # an index, not an image: left out
    added = ingest_upload(workspace, "pacs.zip", _zip_of(src))
    assert added.record["n_images"] == 2 and added.record["meta"]["problems"] == []


def test_an_unknown_transfer_syntax_is_named_on_upload_and_in_inspect(tmp_path, workspace, capsys):
    from core.__main__ import main

    src = tmp_path / "src"
    write_dicom(src / "NORMAL" / "a.dcm", np.zeros((4, 4), np.uint8))
    write_dicom(src / "PNEUMONIA" / "jxl.dcm", np.zeros((4, 4), np.uint8), syntax="1.2.840.10008.1.2.4.112")
    with pytest.raises(InputError, match=r"export\.zip/PNEUMONIA/jxl\.dcm: DICOM transfer syntax "
                                         r"1\.2\.840\.10008\.1\.2\.4\.112 \(JPEG XL\) cannot be decoded here"):
        ingest_upload(workspace, "export.zip", _zip_of(src))
    assert main(["inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert "problems: 1" in out and "jxl.dcm: DICOM transfer syntax 1.2.840.10008.1.2.4.112 (JPEG XL)" in out


def test_a_legacy_file_without_part10_header_is_decoded(tmp_path, workspace, capsys):
    from core.__main__ import main

    src = tmp_path / "src"
    values = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    write_dicom(src / "NORMAL" / "old.dcm", values, syntax="legacy")
    write_dicom(src / "PNEUMONIA" / "new.dcm", values)
    assert main(["inspect", str(src)]) == 0
    assert "problems: none" in capsys.readouterr().out
    assert pixels(src / "NORMAL" / "old.dcm").tolist() == pixels(src / "PNEUMONIA" / "new.dcm").tolist()
    ds, files = _stored(workspace, ingest_upload(workspace, "old.zip", _zip_of(src)))
    expected = pixels(src / "NORMAL" / "old.dcm").tolist()
    assert [np.asarray(ds.load_image(i)).tolist() for i in range(2)] == [expected] * 2
