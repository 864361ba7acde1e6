"""Benchmark: a head epoch on cached features vs an epoch that runs the frozen backbone (target >= 100x).

Both epochs train the same head on the same images with the same batch size. The backbone epoch decodes each
image, runs the frozen tf_efficientnet_lite0 (offline ImageNet weights) and takes a head step per batch; the
cached epoch is what `python -m core train --mode features` does once the feature cache is warm (its own
timing, read back from the run's events.jsonl).

    .venv/bin/python benchmarks/bench_features_cache.py [--images-per-class 32] [--batch-size 64] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.data.synthetic import generate_demo_dataset  # noqa: E402
from core.data.torch_data import ImageTableDataset  # noqa: E402
from core.models import build_transform, create_head, create_model, preprocess_config  # noqa: E402
from core.store import Workspace  # noqa: E402
from core.train import RunConfig, read_events, run_training  # noqa: E402
from core.train.features import auto_workers  # noqa: E402

BACKBONE = "tf_efficientnet_lite0"


def backbone_epoch_seconds(data_dir: Path, batch_size: int) -> tuple[float, int]:
    """One epoch that runs the frozen backbone: decode + preprocess + forward + head step, per batch."""
    ds = load_dataset(data_dir).split_named("train")
    extractor = create_model(BACKBONE, 0).eval()
    head = create_head(extractor.num_features, ds.task.num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    loader = DataLoader(ImageTableDataset(ds, build_transform(preprocess_config(BACKBONE))), batch_size=batch_size,
                        shuffle=True, num_workers=auto_workers(len(ds)))
    start = time.perf_counter()
    for x, y in loader:
        with torch.inference_mode():
            features = extractor(x)
        loss = torch.nn.functional.cross_entropy(head(features.clone()), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, len(ds)


def cached_epoch_seconds(data_dir: Path, ws: Workspace, batch_size: int, epochs: int) -> tuple[float, float, int]:
    """(median seconds per head epoch on cached features, seconds of the run that filled the cache, images)."""
    cfg = RunConfig(data=str(data_dir), mode="features", backbone=BACKBONE, batch_size=batch_size, epochs=epochs,
                    val_fraction=0.0, evaluate_test=False, patience=0)
    start = time.perf_counter()
    run_training(cfg, None, ws, log=lambda m: None)  # fills the cache
    fill_s = time.perf_counter() - start
    run_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    run_training(cfg, run_dir, ws, log=lambda m: None)
    epochs_done = [e for e in read_events(run_dir, "epoch") if e["split"] == "train"]
    n = len(load_dataset(data_dir).split_named("train"))
    return statistics.median(n / e["images_per_s"] for e in epochs_done), fill_s, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="cached epochs to take the median over")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count()))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        generate_demo_dataset(data, per_class=args.images_per_class, test_per_class=1, size=256, seed=0)
        ws = Workspace.open(Path(tmp) / "ws")
        cached_s, fill_s, n = cached_epoch_seconds(data, ws, args.batch_size, args.epochs)
        backbone_s, _ = backbone_epoch_seconds(data, args.batch_size)
    print(f"images per epoch: {n}, batch size {args.batch_size}, backbone {BACKBONE}, "
          f"{torch.get_num_threads()} threads")
    print(f"epoch running the frozen backbone: {backbone_s:.3f} s ({n / backbone_s:.1f} images/s)")
    print(f"head epoch on cached features:     {cached_s * 1000:.3f} ms (median of {args.epochs} epochs)")
    print(f"(filling the cache once took {fill_s:.1f} s, including model load and dataset fingerprint)")
    ratio = backbone_s / cached_s
    verdict = "met" if ratio >= 100 else "NOT met"
    print(f"ratio backbone epoch / cached epoch: {ratio:.0f}x  (target >= 100x: {verdict})")


if __name__ == "__main__":
    main()
