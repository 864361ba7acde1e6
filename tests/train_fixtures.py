"""Tiny image datasets for the training and inference tests: class-dependent patterns, Kermany file naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

OCT_CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
# What the tests train: the tiny random-init timm model on 32 px images, a few epochs.
TINY = dict(backbone="test_efficientnet", image_size=32, batch_size=8, num_workers=0)


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Tiny models on 32 px images gain nothing from a second thread, and on a busy 2-core machine waking it
    for every small operation makes a test many times slower. Restored afterwards for other tests."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("TORCH_NUM_THREADS", "1")  # read by the trainer and by launched run processes
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pattern_image(class_index: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A grey image whose bright band height and stripe pattern depend on the class (learnable, not trivial)."""
    img = rng.normal(60, 20, (size, size))
    y = int((class_index + 1) * size / (n_classes + 1))
    img[max(0, y - 2):y + 2, :] += 150
    if class_index % 2:
        img[:, ::4] += 60
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L")


def make_kermany_folder(root: Path, classes=OCT_CLASSES, per_class: int = 8, test_per_class: int = 2,
                        size: int = 32, seed: int = 0, counts: dict | None = None) -> Path:
    """train/CLASS/CLASS-PATIENT-N.jpeg and test/...; two images per patient; `counts` overrides per class."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, default_n in (("train", per_class), ("test", test_per_class)):
        for ci, cls in enumerate(classes):
            n = (counts or {}).get(cls, default_n) if split == "train" else default_n
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                patient = 1000 * (ci + 1) + i // 2 + (500 if split == "test" else 0)
                pattern_image(ci, len(classes), rng, size).save(folder / f"{cls}-{patient}-{i}.jpeg", quality=95)
    return root


def make_table_dataset(root: Path, task, per_class: int = 8, size: int = 32, seed: int = 0):
    """A Dataset built directly from a table: single-label (any task) or multi-label (label columns)."""
    from core.data import Dataset

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    k = len(task.classes)
    for ci, cls in enumerate(task.classes):
        for i in range(per_class):
            path = root / f"{ci}-{i}.png"
            if task.kind == "multilabel":
                # Positive for its own label and, every other image, the next label too.
                labels = {c: 0 for c in task.classes}
                labels[cls] = 1
                if i % 2:
                    labels[task.classes[(ci + 1) % k]] = 1
                img = np.clip(rng.normal(60, 20, (size, size)), 0, 255)
                for j, c in enumerate(task.classes):
                    if labels[c]:
                        y = int((j + 1) * size / (k + 1))
                        img[y - 2:y + 2, :] = 230
                Image.fromarray(img.astype(np.uint8), "L").save(path)
                rows.append({"image_id": path.name, "path": str(path), "label": "", "patient_id": f"p{ci}-{i // 2}",
                             "split": None, **labels})
            else:
                pattern_image(ci, k, rng, size).save(path)
                rows.append({"image_id": path.name, "path": str(path), "label": cls,
                             "patient_id": f"p{ci}-{i // 2}", "split": None})
    return Dataset(pd.DataFrame(rows), task, source=str(root))


def forked_gloo_ranks(work, args_by_rank: list[tuple], timeout: float = 120) -> dict:
    """{rank: work(rank, *args)} for a job of len(args_by_rank) CPU processes, each forked (torch is already
    imported: no interpreter start-up, unlike torchrun) with the environment torchrun would give it; an exception
    escaping `work` comes back as ("crashed", text), so the test's message shows it."""
    import multiprocessing
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world = len(args_by_rank)

    def run(rank: int, args: tuple, out) -> None:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        try:
            out.put((rank, work(rank, *args)))
        except BaseException as exc:  # noqa: BLE001 - anything else is the test's failure, shown in its message
            out.put((rank, ("crashed", f"{type(exc).__name__}: {exc}")))

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=run, args=(rank, args, out)) for rank, args in enumerate(args_by_rank)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    return results
