"""Readers: ImageFolder, Kermany OCT/CXR naming, CSV manifests, MedMNIST .npz; errors name file and problem."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from core.data import get_task, load_dataset
from core.errors import InputError
from tests._data_files import image_folder, truncate, write_image


# -- class folders ----------------------------------------------------------------------------------
def test_plain_image_folder_gives_custom_task(tmp_path):
    root = image_folder(tmp_path / "pets", {"class10": 1, "class2": 2}, name=lambda c, i: f"img{i}.png")
    ds = load_dataset(root)
    assert ds.task.name == "custom-pets" and ds.task.kind == "multiclass"
    assert ds.task.classes == ("class2", "class10")  # natural order
    assert sorted(ds.table["image_id"]) == ["class10/img0.png", "class2/img0.png", "class2/img1.png"]
    assert ds.table["patient_id"].isna().all() and ds.table["split"].isna().all()
    assert ds.problems == []


def test_image_folder_with_split_folders(tmp_path):
    root = tmp_path / "d"
    image_folder(root, {"yes": 2, "no": 1}, split="Training")
    image_folder(root, {"yes": 1, "no": 1}, split="valid")
    image_folder(root, {"yes": 1, "no": 1}, split="test")
    ds = load_dataset(root)
    counts = ds.class_counts()
    assert counts.index.tolist() == ["train", "val", "test"]
    assert counts.loc["train"].to_dict() == {"no": 1, "yes": 2}
    assert len(ds.split_named("val")) == 2


def test_oct2017_layout(tmp_path):
    root = tmp_path / "OCT2017"
    image_folder(root, {"CNV": 2, "DME": 1, "DRUSEN": 1, "NORMAL": 2}, split="train",
                 name=lambda c, i: f"{c}-{100 + i}-{i + 1}.jpeg")
    image_folder(root, {"CNV": 1, "NORMAL": 1}, split="test", name=lambda c, i: f"{c}-{900 + i}-1.jpeg")
    ds = load_dataset(root)
    assert ds.task.name == "oct-kermany"
    row = ds.table.set_index("image_id").loc["train/CNV/CNV-101-2.jpeg"]
    assert row["label"] == "CNV" and row["patient_id"] == "101" and row["split"] == "train"
    # The patient number is shared across classes: CNV-100 and NORMAL-100 are one patient.
    assert set(ds.table.loc[ds.table["patient_id"] == "100", "label"]) == {"CNV", "DME", "DRUSEN", "NORMAL"}
    assert ds.class_counts().loc["test"].tolist() == [1, 0, 0, 1]


def test_chest_xray_layout_reads_labels_and_patients_from_names(tmp_path):
    root = tmp_path / "chest_xray"
    names = {"NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-0115-0002.jpeg"],
             "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_virus_6.jpeg", "person22_bacteria_77.jpeg"]}
    for cls, files in names.items():
        for i, f in enumerate(files):
            write_image(root / "train" / cls / f, seed=i)
    ds = load_dataset(root)
    assert ds.task.name == "cxr-kermany"
    t = ds.table.set_index("image_id")
    assert t.loc["train/PNEUMONIA/person1_bacteria_1.jpeg", ["label", "patient_id"]].tolist() == ["BACTERIAL", "person1"]
    assert t.loc["train/PNEUMONIA/person1_virus_6.jpeg", ["label", "patient_id"]].tolist() == ["VIRAL", "person1"]
    assert t.loc["train/NORMAL/IM-0115-0001.jpeg", "patient_id"] == "IM-0115"
    assert t.loc["train/NORMAL/NORMAL2-IM-1427-0001.jpeg", ["label", "patient_id"]].tolist() == ["NORMAL", "IM-1427"]
    assert ds.class_counts().loc["train"].to_dict() == {"NORMAL": 3, "BACTERIAL": 2, "VIRAL": 1}
    assert ds.patients() == ["IM-0115", "IM-1427", "person1", "person22"]


def test_chest_xray_pneumonia_without_type(tmp_path):
    root = tmp_path / "cxr"
    write_image(root / "NORMAL" / "IM-0001-0001.jpeg")
    write_image(root / "PNEUMONIA" / "person3_bacteria_9.jpeg")
    write_image(root / "PNEUMONIA" / "scan42.jpeg")
    with pytest.raises(InputError, match=r"scan42\.jpeg.*neither 'bacteria' nor 'virus'"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert len(ds) == 2 and "scan42.jpeg" in ds.problems[0]


def test_pneumonia_folder_kept_whole_for_a_task_that_has_it(tmp_path):
    root = tmp_path / "cxr"
    write_image(root / "NORMAL" / "a.png")
    write_image(root / "PNEUMONIA" / "b.png")
    task = {"name": "pneu", "classes": ["NORMAL", "PNEUMONIA"], "kind": "binary"}
    (tmp_path / "pneu.json").write_text(json.dumps(task))
    ds = load_dataset(root, task=str(tmp_path / "pneu.json"))
    assert sorted(ds.table["label"]) == ["NORMAL", "PNEUMONIA"]


def test_empty_class_folder(tmp_path):
    root = image_folder(tmp_path / "d", {"a": 2, "b": 1})
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"empty class folder 'c'"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert len(ds) == 3 and "empty class folder" in ds.problems[0]


def test_unknown_class_folder_for_given_task(tmp_path):
    root = image_folder(tmp_path / "d", {"CNV": 1, "GLAUCOMA": 1})
    with pytest.raises(InputError, match=r"GLAUCOMA.*unknown label"):
        load_dataset(root, task="oct-kermany")


def test_split_folders_mixed_with_others(tmp_path):
    root = image_folder(tmp_path / "d", {"a": 1, "b": 1}, split="train")
    image_folder(root, {"a": 1})
    with pytest.raises(InputError, match="mixes split folders"):
        load_dataset(root)


def test_bad_images_in_folder_reported_or_skipped(tmp_path):
    root = image_folder(tmp_path / "d", {"a": 3, "b": 3})
    truncate(write_image(root / "a" / "cut.jpeg", size=(64, 64)), 0.5)
    (root / "b" / "fake.jpeg").write_text("hello")
    with pytest.raises(InputError, match=r"2 problem\(s\).*(cut\.jpeg|fake\.jpeg).*skip unreadable files"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert len(ds) == 6 and len(ds.problems) == 2
    assert not ds.table["image_id"].str.contains("cut|fake").any()


def test_no_dataset_in_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no dataset found"):
        load_dataset(tmp_path / "d")
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match="unsupported file type"):
        load_dataset(tmp_path / "d" / "notes.txt")


# -- CSV manifests ----------------------------------------------------------------------------------
def _manifest_dir(tmp_path, rows, header="path,label,patient_id,split"):
    base = tmp_path / "m"
    for i, row in enumerate(rows):
        write_image(base / row.split(",")[0], seed=i)
    (base / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return base


def test_csv_manifest_with_patients_and_splits(tmp_path):
    base = _manifest_dir(tmp_path, ["img/a.png,cat,p1,train", "img/b.png,dog,p1,train", "img/c.png,dog,p2,TEST"])
    ds = load_dataset(base / "manifest.csv")
    assert ds.task.classes == ("cat", "dog") and ds.task.name == "custom-manifest"
    assert ds.table["patient_id"].tolist() == ["p1", "p1", "p2"]
    assert ds.table["split"].tolist() == ["train", "train", "test"]
    assert ds.table["path"].iloc[0] == str((base / "img" / "a.png").resolve())
    assert len(load_dataset(base)) == 3  # the folder finds its manifest


def test_csv_missing_columns(tmp_path):
    base = _manifest_dir(tmp_path, ["a.png,cat"], header="file_path_x,label")
    with pytest.raises(InputError, match=r"manifest\.csv: missing image column"):
        load_dataset(base / "manifest.csv")
    (base / "nolabel.csv").write_text("path,comment\na.png,hello\n")
    with pytest.raises(InputError, match=r"nolabel\.csv: missing label column"):
        load_dataset(base / "nolabel.csv")
    with pytest.raises(InputError, match=r"missing label columns \['ARMD'"):
        (base / "ml.csv").write_text("ID,DR\na.png,1\n")
        load_dataset(base / "ml.csv", task="fundus-multilabel")


def test_csv_unknown_labels(tmp_path):
    base = _manifest_dir(tmp_path, ["a.png,CNV", "b.png,GLAUCOMA"], header="path,label")
    with pytest.raises(InputError, match=r"manifest\.csv, line 3: unknown label 'GLAUCOMA'"):
        load_dataset(base / "manifest.csv", task="oct-kermany")
    ds = load_dataset(base / "manifest.csv", task="oct-kermany", skip_bad=True)
    assert ds.table["label"].tolist() == ["CNV"] and "GLAUCOMA" in ds.problems[0]


def test_csv_duplicate_ids(tmp_path):
    base = _manifest_dir(tmp_path, ["a.png,x", "b.png,y", "a.png,y"], header="path,label")
    with pytest.raises(InputError, match=r"duplicate image id 'a\.png' on lines 2, 4"):
        load_dataset(base / "manifest.csv")


def test_csv_missing_image_file(tmp_path):
    base = _manifest_dir(tmp_path, ["a.png,x", "b.png,y"], header="path,label")
    (base / "b.png").unlink()
    with pytest.raises(InputError, match=r"line 3: image 'b\.png' not found"):
        load_dataset(base / "manifest.csv")


def test_aptos_style_manifest(tmp_path):
    root = tmp_path / "aptos"
    ids = ["000c1434d8d7", "001639a390f0", "0024cdab0c1e", "002c21358ce6"]
    for i, code in enumerate(ids):
        write_image(root / "train_images" / f"{code}.png", mode="RGB", seed=i)
        write_image(root / "test_images" / f"{code}.png", mode="RGB", seed=10 + i)  # same ids, other folder
    (root / "train.csv").write_text("id_code,diagnosis\n" + "\n".join(f"{c},{i % 5}" for i, c in enumerate(ids)))
    (root / "test.csv").write_text("id_code\n" + "\n".join(ids))  # no labels: not a manifest
    ds = load_dataset(root)
    assert ds.task.name == "dr-grading"
    assert ds.table["image_id"].tolist() == ids
    assert all("/train_images/" in p for p in ds.table["path"])
    assert ds.label_indices().tolist() == [0, 1, 2, 3]


def test_multilabel_manifest(tmp_path):
    base = tmp_path / "rfmid"
    for i in range(3):
        write_image(base / "Training" / f"{i + 1}.png", mode="RGB", seed=i)
    (base / "labels.csv").write_text("ID,DR,ARMD,MH\n1,1,0,1\n2,0,0,0\n3,0,1.0,0\n")
    ds = load_dataset(base / "labels.csv")
    assert ds.task.kind == "multilabel" and ds.task.classes == ("DR", "ARMD", "MH")
    assert ds.label_matrix().tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert ds.table["label"].tolist() == ["DR|MH", "", "ARMD"]
    assert ds.class_counts().loc["unsplit"].tolist() == [1, 1, 1]
    (base / "bad.csv").write_text("ID,DR,ARMD,MH,comment\n1,1,0,0,fine\n2,1,0,2,typo\n")
    with pytest.raises(InputError, match=r"bad\.csv, line 3: column 'MH' holds '2', expected 0 or 1"):
        load_dataset(base / "bad.csv")
    assert load_dataset(base / "bad.csv", skip_bad=True).task.classes == ("DR", "ARMD", "MH")


def test_multilabel_manifest_with_preset(tmp_path):
    base = tmp_path / "rfmid"
    write_image(base / "1.png", mode="RGB")
    classes = get_task("fundus-multilabel").classes
    (base / "labels.csv").write_text("ID,Disease_Risk," + ",".join(classes) + "\n1,1," + ",".join(
        "1" if c == "MYA" else "0" for c in classes) + "\n")
    ds = load_dataset(base / "labels.csv", task="fundus-multilabel")
    assert ds.table["label"].tolist() == ["MYA"]
    assert ds.label_matrix().shape == (1, len(classes))


def test_manifest_inside_zip_may_not_point_outside(tmp_path):
    outside = write_image(tmp_path / "secret.png")
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("manifest.csv", f"path,label\n{outside},a\nb.png,b\n")
        zf.write(write_image(tmp_path / "b.png"), "b.png")
    with pytest.raises(InputError, match="points outside the dataset folder"):
        load_dataset(z, extract_to=tmp_path / "t")


# A manifest on the server names files only inside its own folder or under a data root (issue 21, item 4).
def _reaching_manifest(tmp_path, reach: str):
    """A manifest folder with two good rows and, on line 4, a row naming the image outside it as `reach` says:
    absolute, ../ or through a symbolic link beside the manifest."""
    secret = write_image(tmp_path / "private" / "patient.png", seed=7)
    base = _manifest_dir(tmp_path, ["a.png,cat", "b.png,dog"], header="path,label")
    if reach == "symlink":
        (base / "link.png").symlink_to(secret)
    named = {"absolute": str(secret), "dotdot": "../private/patient.png", "symlink": "link.png"}[reach]
    with open(base / "manifest.csv", "a") as f:
        f.write(f"{named},dog\n")
    return base, named, secret


@pytest.mark.parametrize("reach", ["absolute", "dotdot", "symlink"])
def test_manifest_row_outside_its_folder_is_refused(tmp_path, monkeypatch, reach):
    monkeypatch.delenv("CORE_DATA_ROOTS", raising=False)
    base, named, secret = _reaching_manifest(tmp_path, reach)
    with pytest.raises(InputError) as err:
        load_dataset(base)
    message = str(err.value)
    assert f"manifest.csv: 1 row(s) name an image path that points outside the dataset folder and the data " \
           f"roots: line 4 ({named!r}). Refused: a manifest may name only files inside its own folder or under a " \
           f"data root of this server ($CORE_DATA_ROOTS)" in message, message
    ds = load_dataset(base, skip_bad=True)  # skipped, and said where
    assert sorted(ds.table["image_id"]) == ["a.png", "b.png"]
    assert str(secret) not in ds.table["path"].tolist()
    assert ds.problems == [f"{base / 'manifest.csv'}, line 4: image path {named!r} points outside the dataset "
                           "folder and the data roots; refused"]


def test_manifest_bare_id_found_through_a_symlink_out_is_refused(tmp_path, monkeypatch):
    """A bare id (APTOS style) found by the index beside the CSV is checked where it points, too."""
    monkeypatch.delenv("CORE_DATA_ROOTS", raising=False)
    secret = write_image(tmp_path / "private" / "patient.png", seed=7)
    base = _manifest_dir(tmp_path, ["a.png,cat", "b.png,dog"], header="path,label")
    (base / "img").mkdir()
    (base / "img" / "c.png").symlink_to(secret)
    (base / "manifest.csv").write_text("path,label\na,cat\nb,dog\nc,dog\n")
    with pytest.raises(InputError, match=r"line 4 \('c'\)\. Refused"):
        load_dataset(base)
    assert sorted(load_dataset(base, skip_bad=True).table["image_id"]) == ["a", "b"]


def test_manifest_refusal_reveals_nothing_about_files_outside(tmp_path, monkeypatch):
    """Outside paths are refused on the path alone: one that exists and one that does not read the same."""
    monkeypatch.delenv("CORE_DATA_ROOTS", raising=False)
    base, _, secret = _reaching_manifest(tmp_path, "absolute")
    ds = load_dataset(base, skip_bad=True)
    (base / "manifest.csv").write_text(f"path,label\na.png,cat\nb.png,dog\n{secret}.missing,dog\n")
    gone = load_dataset(base, skip_bad=True)
    assert [p.replace(".missing", "") for p in gone.problems] == ds.problems


def test_manifest_may_name_files_under_a_data_root(tmp_path, monkeypatch):
    """The data roots ($CORE_DATA_ROOTS) widen what a manifest may name; links inside its folder are fine."""
    base, named, secret = _reaching_manifest(tmp_path, "absolute")
    (base / "same.png").symlink_to(base / "a.png")
    with open(base / "manifest.csv", "a") as f:
        f.write("same.png,cat\n")
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path / "private"))
    ds = load_dataset(base)
    assert ds.table.set_index("image_id").loc[named, "path"] == str(secret.resolve())
    assert len(ds) == 4 and ds.problems == []


# -- MedMNIST .npz ----------------------------------------------------------------------------------
def _npz(path, labels_shape=(1,), n=(6, 2, 3), k=3, rgb=False, **extra):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, 8, 8, 3) if rgb else (count, 8, 8)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (rng.integers(0, k, (count, *labels_shape)) if labels_shape == (1,)
                                     else rng.integers(0, 2, (count, *labels_shape))).astype(np.uint8)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_generic_npz_multiclass(tmp_path):
    p = _npz(tmp_path / "organmnist.npz", k=3)
    ds = load_dataset(p)
    assert ds.task.kind == "multiclass" and ds.task.classes == ("0", "1", "2")
    assert ds.splits() == ["train", "val", "test"] and len(ds) == 11
    assert ds.table["path"].iloc[0] == f"npz:{p.resolve()}#train:0"
    with np.load(p) as data:
        assert np.array_equal(np.asarray(ds.load_image(7)), data["val_images"][1])
        assert ds.label_indices()[:6].tolist() == data["train_labels"][:, 0].tolist()


def test_npz_multilabel(tmp_path):
    p = _npz(tmp_path / "chestmnist.npz", labels_shape=(4,), rgb=True)
    ds = load_dataset(p)
    assert ds.task.kind == "multilabel" and len(ds.task.classes) == 4
    with np.load(p) as data:
        assert np.array_equal(ds.label_matrix()[:6], data["train_labels"])
    assert ds.load_image(0).mode == "RGB"


def test_npz_name_presets_and_task_checks(tmp_path):
    retina = _npz(tmp_path / "retinamnist_128.npz", k=5, rgb=True)
    assert load_dataset(retina).task.name == "dr-grading"
    pneu = _npz(tmp_path / "pneumoniamnist.npz", k=2)
    task = load_dataset(pneu).task
    assert task.kind == "binary" and task.classes == ("NORMAL", "PNEUMONIA")
    with pytest.raises(InputError, match=r"outside the 2 classes"):
        load_dataset(retina, task=task)
    with pytest.raises(InputError, match="does not fit task"):
        load_dataset(_npz(tmp_path / "ml.npz", labels_shape=(3,)), task="dr-grading")


def test_bad_npz_files(tmp_path):
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(InputError, match="has train_images but not train_labels"):
        load_dataset(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match=r"other\.npz: no MedMNIST arrays"):
        load_dataset(tmp_path / "other.npz")
    np.savez(tmp_path / "vol.npz", train_images=np.zeros((2, 4, 4, 4), np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(InputError, match="3-D volumes"):
        load_dataset(tmp_path / "vol.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"junk\.npz: not a readable"):
        load_dataset(tmp_path / "junk.npz")


def test_nested_dataset_copy_is_left_out(tmp_path):
    # Kaggle's chest_xray zip: chest_xray/{train,test} plus a full copy in chest_xray/chest_xray/.
    root = tmp_path / "chest_xray"
    for base in (root, root / "chest_xray"):
        write_image(base / "train" / "NORMAL" / "IM-0001-0001.jpeg")
        write_image(base / "train" / "PNEUMONIA" / "person1_virus_1.jpeg")
        write_image(base / "test" / "NORMAL" / "IM-0002-0001.jpeg")
    ds = load_dataset(root)
    assert len(ds) == 3 and not ds.table["image_id"].str.startswith("chest_xray/").any()


def test_two_datasets_side_by_side_are_not_two_classes(tmp_path):
    # Mendeley's CellData/{OCT,chest_xray}/train/...
    image_folder(tmp_path / "CellData" / "OCT", {"CNV": 1, "NORMAL": 1}, split="train")
    image_folder(tmp_path / "CellData" / "chest_xray", {"NORMAL": 1, "PNEUMONIA": 1}, split="train")
    with pytest.raises(InputError, match="datasets, not class folders"):
        load_dataset(tmp_path / "CellData")
    assert load_dataset(tmp_path / "CellData" / "OCT").task.name == "oct-kermany"


def test_semicolon_separated_manifest(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", seed=1)
    (tmp_path / "m.csv").write_text("path;label\na.png;x\nb.png;y\n")
    assert load_dataset(tmp_path / "m.csv").table["label"].tolist() == ["x", "y"]
