"""ImageTableDataset: picklable, decodes in DataLoader workers, int targets or float multi-label vectors."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from torch.utils.data import DataLoader

from core.data import load_dataset
from core.data.torch_data import ImageTableDataset
from tests._data_files import image_folder


def to_small_tensor(image):
    """Module-level (picklable) transform: 8x8 float tensor, RGB."""
    arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def test_dataloader_with_workers(tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", {"a": 3, "b": 2, "c": 1}))
    data = ImageTableDataset(ds, to_small_tensor, indices=[5, 0, 1, 3])
    assert len(data) == 4 and data.row_ids == ds.table["image_id"].iloc[[5, 0, 1, 3]].tolist()
    pickle.loads(pickle.dumps(data))
    loader = DataLoader(data, batch_size=2, num_workers=2)
    xs, ys = zip(*loader)
    assert torch.cat(xs).shape == (4, 3, 8, 8)
    assert torch.cat(ys).tolist() == ds.label_indices()[[5, 0, 1, 3]].tolist()


def test_without_transform_gives_uint8_tensor(tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", {"a": 1, "b": 1}, size=(10, 6)))
    x, y = ImageTableDataset(ds)[1]
    assert x.dtype == torch.uint8 and x.shape == (1, 6, 10) and y == 1


def test_multilabel_targets_are_float_vectors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "chestmnist.npz", train_images=rng.integers(0, 255, (4, 6, 6), dtype=np.uint8),
             train_labels=np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.uint8))
    ds = load_dataset(tmp_path / "chestmnist.npz")
    data = ImageTableDataset(ds, to_small_tensor)
    batch = next(iter(DataLoader(data, batch_size=4, num_workers=1)))
    assert batch[1].dtype == torch.float32 and batch[1].tolist() == ds.label_matrix().tolist()
