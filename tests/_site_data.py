"""A test set from another "site" for the site-check tests: synthetic B-scans drawn by the product's own generator,
exported at another size (128 px against the training images' 64 px), registered, run through the seeded model and
audited against the training data (pixels only) by the product's own audit: the shift is real, not written in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SITE_COUNTS = {"CNV": 18, "DME": 18, "DRUSEN": 3, "NORMAL": 3}  # 42 images (label-free adaptation needs 30)


def site_folder(folder: Path, size: int = 128, counts: dict | None = None, seed: int = 7) -> Path:
    from core.data.synthetic import render_bscan

    rng = np.random.default_rng(seed)
    for label, n in (counts or SITE_COUNTS).items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, _ = render_bscan(label, rng, size=size)
            Image.fromarray(image).save(folder / label / f"site-{label.lower()}-{i:02d}.png")
    return folder


def audit_against_training(ws, test_set_id: str, training_id: str) -> dict:
    """The pixel audit of the test set against the training dataset, computed now and cached in the workspace."""
    from core.audit.jobs import PIXELS_ONLY
    from core.audit.report import cached_audit
    from core.data.ingest import load_registered

    return cached_audit(ws, load_registered(ws, test_set_id), load_registered(ws, training_id), None, PIXELS_ONLY)


def shifted_test_set(seeded: dict, folder: Path) -> str:
    """Register a 128-px "other site" test set in the seeded workspace copy, predict the seeded run on it and audit
    it against the training data; returns its id."""
    from core.data.ingest import register_folder
    from core.infer import predict
    from core.store import Workspace

    ws = Workspace.open(seeded["root"])
    added = register_folder(ws, site_folder(folder), role="test_set", task="oct-kermany", name="Other site")
    predict(seeded["run_id"], added.dataset_id, workspace=ws, dataset_id=added.dataset_id, num_workers=0)
    audit = audit_against_training(ws, added.dataset_id, seeded["dataset_id"])
    assert audit["shift"]["flagged"], audit["shift"]  # the construction holds: the audit sees the other export
    return added.dataset_id


def adapted_run(seeded: dict, test_set_id: str) -> str:
    """A run adapted without labels to the test set by the real core.infer.recalibrate.adapt_unlabelled, with its
    predictions on it; returns the new run's id."""
    from core.infer.site_check import adapt_to_test_set
    from core.store import Workspace

    return adapt_to_test_set(Workspace.open(seeded["root"]), seeded["run_id"], test_set_id).run_id
