"""GPU benchmark: our fine-tune and feature-extraction images/s vs timm-style raw model throughput (target >= 0.7).

timm's own benchmark.py is not in the pip package, so the reference is measured here the way it measures:
timm.create_model, random input already on the GPU, channels_last, AMP (bf16), the same batch size; inference
for feature extraction, forward + backward + SGD step for fine-tuning. Ours is the product's code path on real
JPEG files (synthetic demo images, 256 px): `extract_features` (DataLoader, decode, resize, forward) and a
`run_training` fine-tune run (augmentation, AMP, channels_last, warm-up schedule, events), same batch size.
Only runs when CUDA is available.

    .venv/bin/python benchmarks/bench_gpu.py [--batch-size 128] [--images-per-class 256]
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

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

BACKBONES = ("tf_efficientnet_lite0", "resnet50")


def _timed(fn, warmup: int, iters: int) -> float:
    """Seconds per call of fn on the GPU, after warm-up (cuDNN autotuning, allocator)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def reference(timm_name: str, batch: int, size: int, classes: int, iters: int) -> tuple[float, float]:
    """(inference images/s, training images/s) for the raw timm model, timm-benchmark style."""
    model = timm.create_model(timm_name, num_classes=classes).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device="cuda")
    model.eval()

    @torch.inference_mode()
    def infer():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x)

    infer_s = _timed(infer, 10, iters)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_s = _timed(train_step, 10, iters)
    return batch / infer_s, batch / train_s


def ours_extraction(backbone: str, ds, batch: int, workers: int) -> float:
    from core.models import build_transform, create_model, preprocess_config
    from core.train.features import extract_features

    model = create_model(backbone, 0).cuda().to(memory_format=torch.channels_last)
    transform = build_transform(preprocess_config(backbone), train=False)
    rows = np.arange(len(ds))
    kwargs = dict(batch_size=batch, num_workers=workers, amp_dtype=torch.bfloat16, channels_last=True)
    extract_features(model, ds, rows[: batch * 4], transform, torch.device("cuda"), **kwargs)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    extract_features(model, ds, rows, transform, torch.device("cuda"), **kwargs)
    torch.cuda.synchronize()
    return len(rows) / (time.perf_counter() - start)


def ours_finetune(backbone: str, data_dir: Path, ws, batch: int, workers: int) -> float:
    """Median images/s of the second epoch's step records of a real fine-tune run (the first warms up)."""
    from core.train import RunConfig, read_events, run_training

    run_dir = Path(tempfile.mkdtemp(prefix="bench-gpu-run-"))
    cfg = RunConfig(data=str(data_dir), mode="finetune", backbone=backbone, epochs=2, batch_size=batch,
                    num_workers=workers, val_fraction=0.0, evaluate_test=False, patience=0, device="cuda",
                    amp="bf16")
    run_training(cfg, run_dir, ws, log=lambda m: None)
    steps = [e for e in read_events(run_dir, "step") if e["epoch"] == 2 and e.get("images_per_s")]
    return statistics.median(e["images_per_s"] for e in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images-per-class", type=int, default=256)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: bench_gpu skipped")
        return
    torch.backends.cudnn.benchmark = True
    from core.data import load_dataset
    from core.data.synthetic import generate_demo_dataset
    from core.models import get_backbone
    from core.store import Workspace

    print(f"GPU: {torch.cuda.get_device_name()}, batch {args.batch_size}, bf16 autocast, channels_last, "
          f"{args.workers} DataLoader workers, torch {torch.__version__}, timm {timm.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        generate_demo_dataset(data, per_class=args.images_per_class, test_per_class=1, size=256, seed=0)
        ds = load_dataset(data).split_named("train")
        ws = Workspace.open(Path(tmp) / "ws")
        for backbone in BACKBONES:
            spec = get_backbone(backbone)
            ref_infer, ref_train = reference(spec.timm_name, args.batch_size, spec.default_size,
                                             ds.task.num_classes, args.iters)
            torch.cuda.empty_cache()  # the reference model is gone; give its memory back before ours runs
            extract = ours_extraction(backbone, ds, args.batch_size, args.workers)
            finetune = ours_finetune(backbone, data, ws, args.batch_size, args.workers)
            for what, ours, ref in (("feature extraction", extract, ref_infer), ("fine-tune", finetune, ref_train)):
                ratio = ours / ref
                verdict = "met" if ratio >= 0.7 else "NOT met"
                print(f"{backbone:22s} {what:18s} ours {ours:9.1f} img/s   timm-style {ref:9.1f} img/s   "
                      f"ratio {ratio:.2f} (target >= 0.7: {verdict})")


if __name__ == "__main__":
    main()
