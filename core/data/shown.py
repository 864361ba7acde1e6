"""How messages name a dataset's files: by the dataset's own folder name and the path inside it
("chest_xray/PNEUMONIA/x.png"), never by the server path the folder lives under (issue 22: server paths showed to
dashboard users in messages). Enough to find the file; the same words on the dashboard and the command line."""

from __future__ import annotations

import os
from pathlib import Path


def within_folder(message, folder, label: str | None = None) -> str:
    """`message` with every mention of `folder` (absolute: as given, expanded, its symbolic links followed) replaced
    by `label` (default: the folder's own name): "/srv/data/chest/PNEUMONIA/x.png: ..." becomes
    "chest/PNEUMONIA/x.png: ...". The longest form is replaced first, so no form is left half-replaced."""
    text = str(message)
    if not folder:
        return text
    given = str(folder)
    forms = {given, os.path.expanduser(given), os.path.realpath(os.path.expanduser(given))}
    # Only absolute forms: a relative one ("data") could match ordinary words; the root itself names no dataset.
    forms = {form.rstrip(os.sep) for form in forms if os.path.isabs(form)} - {""}
    if not forms:
        return text
    name = label or Path(os.path.realpath(os.path.expanduser(given))).name or Path(given).name
    for full in sorted(forms, key=len, reverse=True):
        text = text.replace(full, name)
    return text


def dataset_folder(source) -> Path:
    """The folder a dataset's messages are named from: `source` itself when it is a folder, else the folder of the
    file (a manifest, a MedMNIST .npz) it was read from."""
    path = Path(str(source)).expanduser()
    return path if path.is_dir() or not path.suffix else path.parent
