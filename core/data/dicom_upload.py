"""De-identifying a DICOM upload: every file under the extracted folder (core.data.dicom's PS3.15 profile, renamed
by its new SOP Instance UID) and the label CSVs beside them, read as the DICOM reader reads them (core.data.readers)
and rewritten to name the files as stored. Called at ingestion (core.data.ingest)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.data.dicom import (DEFAULT_OPTIONS, BurnedInRefused, DicomOptions, deidentify_file, dicom_files,
                             hash_patient_id, is_patient_pseudonym, remap_uid)
from core.data.readers.dicom import read_label_table
from core.errors import SKIP_BAD_HINT, InputError
from core.store.csv_safe import csv_bytes
from core.store.files import write_atomically


@dataclass
class Deidentified:
    """What deidentify_tree did: problems (files removed), the files kept with burned-in annotation (relative
    posix paths, as stored) and the renames (old relative path -> new)."""

    problems: list[str] = field(default_factory=list)
    burned_in: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)


def deidentify_tree(folder: str | Path, key: bytes, skip_bad: bool = False,
                    options: DicomOptions | None = None) -> Deidentified:
    """De-identify every DICOM file under `folder`, each renamed by its new SOP Instance UID (so a file name such
    as DOE_JOHN_MRN-123456.dcm stays nowhere), and make the label CSVs beside them name the new files. A file
    that cannot be read, or (by default) has burned-in annotation, is deleted (its header must not stay behind)
    and listed in the problems; without skip_bad that is an InputError."""
    folder = Path(folder)
    keep = (options or DEFAULT_OPTIONS).burned_in == "keep"
    done = Deidentified()
    for path in dicom_files(folder):
        rel = Path(path).relative_to(folder).as_posix()
        try:
            target, flagged = deidentify_file(path, key, keep_burned_in=keep)
        except InputError as exc:
            os.unlink(path)
            text = str(exc)
            done.problems.append(f"{text if text.startswith(path) else f'{path}: {text}'} "
                                 + ("(left out)" if isinstance(exc, BurnedInRefused)
                                    else "(removed: it could not be de-identified)"))
            continue
        new_rel = target.relative_to(folder).as_posix()
        done.renamed[rel] = new_rel
        if flagged:
            done.burned_in.append(new_rel)
    if done.problems and not skip_bad:
        raise InputError(f"{len(done.problems)} DICOM file(s) could not be added: {'; '.join(done.problems[:5])}. "
                         f"{SKIP_BAD_HINT}.")
    if done.renamed:
        _rename_in_label_csvs(folder, done.renamed, key)
    return done


def _rename_in_label_csvs(folder: Path, renamed: dict[str, str], key: bytes) -> None:
    """A CSV that labels DICOM files (a label column and SOP Instance UIDs or file names) is rewritten to name them
    as stored: UIDs re-mapped, names renamed, patients hashed, and only the columns the DICOM reader uses kept."""
    for csv_path in sorted(folder.rglob("*.csv")):
        if csv_path.name.startswith("."):
            continue
        read = read_label_table(csv_path)
        if read is None:
            continue
        table, cols = read
        sop = cols["sop"]
        base = csv_path.parent.relative_to(folder).as_posix()
        names: dict[str, str] = {}
        for old, new in renamed.items():
            if base != "." and not old.startswith(base + "/"):
                continue
            old_rel, new_rel = (old, new) if base == "." else (old[len(base) + 1:], new[len(base) + 1:])
            new_name = new_rel.rsplit("/", 1)[-1]
            old_name = old_rel.rsplit("/", 1)[-1]
            for key_name, value in ((old_rel, new_rel), (os.path.splitext(old_rel)[0], new_rel),
                                    (old_name, new_name), (os.path.splitext(old_name)[0], new_name)):
                names.setdefault(key_name, value)
        paths = cols["path"]
        names_files = paths is not None and table[paths].str.strip().str.replace("\\", "/").isin(names).any()
        if not cols["label"] or not (sop or names_files):
            continue
        out = pd.DataFrame(index=table.index)
        if sop:
            out[sop] = [remap_uid(v, key) if v.strip() else "" for v in table[sop]]
        if paths:
            out[paths] = [names.get(v.strip().replace("\\", "/"), v) for v in table[paths]]
        for role in ("label", "split"):
            if cols[role]:
                out[cols[role]] = table[cols[role]]
        if cols["patient"]:
            out[cols["patient"]] = [hash_patient_id(v.strip(), key) if v.strip() and not is_patient_pseudonym(v.strip())
                                    else v for v in table[cols["patient"]]]
        # The one CSV writer (a rewritten upload may be opened in a spreadsheet like any export).
        write_atomically(csv_path, lambda tmp: Path(tmp).write_bytes(csv_bytes(out)))
