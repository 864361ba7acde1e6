"""A torch Dataset over a Dataset's table: images are decoded in the DataLoader worker, not up front."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms.functional import pil_to_tensor

from core.data.dataset import Dataset
from core.data.images import open_image
from core.errors import InputError


class ImageTableDataset(TorchDataset):
    """(tensor, target) pairs for training and inference.

    target: the int class index, or a float32 0/1 vector for multi-label tasks. Holds only plain
    lists and arrays (paths, targets, row ids) so it pickles cheaply into DataLoader workers.
    transform: PIL image -> tensor (from core.models.build_transform); None gives a uint8 CHW tensor.
    """

    def __init__(self, ds: Dataset, transform: Callable | None = None, indices=None):
        rows = np.arange(len(ds)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        table = ds.table.iloc[rows]
        self.paths: list[str] = table["path"].tolist()
        self.row_ids: list[str] = table["image_id"].tolist()
        self.multilabel = ds.is_multilabel
        labels = ds.label_matrix() if self.multilabel else ds.label_indices()
        self.targets = np.ascontiguousarray(labels[rows], dtype=np.float32 if self.multilabel else np.int64)
        self.transform = transform
        self.max_pixels = ds.max_pixels
        self.dicom = ds.dicom

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = open_image(self.paths[i], max_pixels=self.max_pixels, dicom=self.dicom)
        x = self.transform(image) if self.transform is not None else pil_to_tensor(image)
        target = torch.from_numpy(self.targets[i]) if self.multilabel else int(self.targets[i])
        return x, target


class InferenceImages(ImageTableDataset):
    """(tensor, problem) pairs for inference. An image that cannot be decoded gives a blank tensor and its
    problem text instead of stopping the whole set; the caller drops those rows and reports them."""

    def __getitem__(self, i: int):
        try:
            image = open_image(self.paths[i], max_pixels=self.max_pixels, dicom=self.dicom, verify=True)
            problem = ""
        except InputError as exc:
            image, problem = Image.new("RGB", (8, 8)), str(exc)
        x = self.transform(image) if self.transform is not None else pil_to_tensor(image)
        return x, problem
