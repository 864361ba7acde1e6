"""Small image, folder and archive builders shared by the core.data tests (not a test module)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(32, 24), mode="L", fmt=None, value=None, seed=0) -> Path:
    """A small random image (or a flat one with `value`) saved in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if value is not None:
        im = Image.new(mode, size, value)
    else:
        rng = np.random.default_rng(seed)
        channels = {"L": 1, "RGB": 3}[mode]
        arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        im = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
    im.save(path, format=fmt)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def image_folder(root: Path, layout: dict[str, int], split: str | None = None, name=lambda cls, i: f"{cls}-{i}-1.png",
                 size=(24, 20)) -> Path:
    """root[/split]/CLASS/<name> with `layout[CLASS]` images each."""
    base = root / split if split else root
    seed = 0
    for cls, n in layout.items():
        (base / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            write_image(base / cls / name(cls, i), size=size, seed=seed + zlib.crc32(str(base).encode()) % 1000)
    return root
