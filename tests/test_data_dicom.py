"""DICOM: decoded pixel values (rescale, windows, VOI LUT, MONOCHROME1, bit depths, compression), datasets from
class folders and CSVs, and de-identification of uploads (no header text anywhere in the workspace)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from core.data import load_dataset
from core.data.dicom import DicomOptions, hash_patient_id
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


def test_class_folders_of_dicom_with_hashed_patients(tmp_path):
    ds = load_dataset(_class_tree(tmp_path / "cxr"))
    assert sorted(ds.table["image_id"]) == [f"train/{c}/img{i}.dcm" for i, c in
                                            [(0, "NORMAL"), (2, "NORMAL"), (1, "PNEUMONIA"), (3, "PNEUMONIA")]]
    assert set(ds.table["label"]) == {"NORMAL", "PNEUMONIA"} and set(ds.table["split"]) == {"train"}
    assert ds.patients() == sorted(hash_patient_id(p) for p in ("A1", "B2", "C3"))
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
    # Pixels unchanged by de-identification; patients still told apart, by hash only.
    assert [np.asarray(ds.load_image(i)).tolist() for i in range(len(ds))] == [v.tolist() for v in before.values()]
    assert ds.patients() == sorted({hash_patient_id(p) for p in ("MRN-777", "MRN-888", "MRN-999")})
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
    with pytest.raises(InputError, match="could not be read"):
        ingest_upload(workspace, "export.zip", buffer.getvalue())
    assert workspace.list_datasets(role="test_set") == [] and not any(workspace.uploads_dir.iterdir())
    added = ingest_upload(workspace, "export.zip", buffer.getvalue(), skip_bad=True)
    assert added.record["n_images"] == 4 and "removed" in added.record["meta"]["problems"][0]
    for path in workspace.root.rglob("*"):
        assert not path.is_file() or b"Roe^Richard" not in path.read_bytes()
