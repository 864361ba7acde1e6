"""A test set's images by image_id, with the lesion boxes that belong to it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from core.errors import InputError
from core.explain.boxes import find_lesions_csv, match_boxes, read_boxes


class CaseImages:
    """A test set's images by image_id (the registered dataset, loaded as it was registered)."""

    def __init__(self, dataset, source: str | Path | None = None):
        self.dataset = dataset
        self.source = Path(source) if source else None

    @classmethod
    def from_workspace(cls, ws, test_set_id: str) -> "CaseImages":
        from core.data.ingest import load_registered

        record = ws.get_dataset(test_set_id)
        if record is None:
            raise InputError(f"test set {test_set_id!r} is not registered in this workspace")
        return cls(load_registered(ws, test_set_id), record.get("source"))

    @property
    def table(self) -> pd.DataFrame:
        return self.dataset.table

    def __contains__(self, image_id: str) -> bool:
        return self.dataset.row_of(image_id) is not None

    def image(self, image_id: str) -> Image.Image:
        row = self.dataset.row_of(image_id)
        if row is None:
            raise InputError(f"image {image_id!r} is not in this test set")
        return self.dataset.load_image(row)

    def lesions_csv(self) -> Path | None:
        """The lesion boxes CSV beside the test set (the demo's lesions.csv sits in the folder above test/)."""
        return find_lesions_csv(self.source) if self.source is not None else None

    def boxes(self, source=None, *, name: str | None = None) -> tuple[dict, list[str]]:
        """Boxes per image_id from a CSV (path, upload or DataFrame; default: lesions_csv()) and the box rows that
        match no image here. ({}, []) when there is no CSV."""
        if source is None:
            source = self.lesions_csv()
            if source is None:
                return {}, []
        table = read_boxes(source, name=name)
        base = Path(source).parent if isinstance(source, (str, Path)) else self.source
        return match_boxes(table, self.table, base_dir=base)
