"""Benchmark: a head epoch on cached features vs an epoch that runs the frozen backbone (target >= 100x), and
the speed of feature extraction on this CPU by execution path (eager fp32 NCHW, channels-last, bf16 autocast,
torch.compile, ONNX Runtime through the product's engine core.models.onnx_runtime), each path's features compared
with fp32 (relative L2), all measured in one run, with the ONNX / torch ratios. The product runs frozen models on
core.models.precision.frozen_forward: ONNX Runtime or torch autocast, whichever this machine measured faster.

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
    cfg = RunConfig(data=str(data_dir), mode="features", head_fit="adam", backbone=BACKBONE, batch_size=batch_size,
                    epochs=epochs,
                    val_fraction=0.0, evaluate_test=False, patience=0)
    start = time.perf_counter()
    run_training(cfg, None, ws, log=lambda m: None)  # fills the cache
    fill_s = time.perf_counter() - start
    run_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    run_training(cfg, run_dir, ws, log=lambda m: None)
    epochs_done = [e for e in read_events(run_dir, "epoch") if e["split"] == "train"]
    n = len(load_dataset(data_dir).split_named("train"))
    return statistics.median(n / e["images_per_s"] for e in epochs_done), fill_s, n


def _onnx_session(model: torch.nn.Module, example: torch.Tensor, folder: Path):
    """The product's ONNX engine for the model (core.models.onnx_runtime: export + ONNX Runtime session), or the
    reason there is none."""
    from core.errors import InputError
    from core.models import onnx_runtime

    if not onnx_runtime.available():
        return None, "onnxruntime is not installed (pip install -r requirements.txt to measure it)"
    try:
        path, _ = onnx_runtime.cached_export(model, tuple(example.shape[1:]), folder)
        return onnx_runtime.OnnxModel(path), ""
    except InputError as exc:
        return None, str(exc)


def extraction_paths(backbone: str, batch_size: int, repeats: int) -> list[dict]:
    """Images/s and feature drift (relative L2 vs fp32) of each execution path, same input, one run."""
    from core.models.precision import cpu_has_native_bf16

    model = create_model(backbone, 0).eval()
    size = preprocess_config(backbone)["input_size"][-1]
    x = torch.randn(batch_size, 3, size, size)

    def timed(fn) -> tuple[float, torch.Tensor]:
        out = fn()  # warm-up (and compilation)
        best = min(_seconds(fn) for _ in range(repeats))
        return batch_size / best, out

    def bf16(net):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x_cl).float()
        return run

    rows = []

    def measure(label: str, fn) -> None:
        ips, out = timed(fn)
        rows.append({"path": label, "images_per_s": ips, "rel_l2": _drift(out, ref)})

    with torch.inference_mode():
        _, ref = timed(lambda: model(x))
        measure("eager fp32 NCHW", lambda: model(x))
        cl_model = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        measure("fp32 channels-last", lambda: cl_model(x_cl))
        native = "native" if cpu_has_native_bf16() else "emulated"
        measure(f"bf16 autocast channels-last ({native})", bf16(cl_model))
    try:
        compiled = torch.compile(cl_model)
        with torch.inference_mode():
            measure("torch.compile fp32 channels-last", lambda: compiled(x_cl))
            measure("torch.compile bf16 channels-last", bf16(compiled))
    except Exception as exc:  # inductor needs a C compiler; report, do not fail the benchmark
        rows.append({"path": "torch.compile", "images_per_s": float("nan"), "rel_l2": float("nan"),
                     "note": f"failed: {str(exc).splitlines()[0][:120]}"})
    with tempfile.TemporaryDirectory() as tmp:
        session, why = _onnx_session(model.to(memory_format=torch.contiguous_format), x[:1], Path(tmp))
        if session is None:
            rows.append({"path": "ONNX Runtime CPU", "images_per_s": float("nan"), "rel_l2": float("nan"),
                         "note": why})
        else:
            measure("ONNX Runtime CPU fp32 (the product's engine)", lambda: session(x))
    return rows


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _drift(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).norm() / ref.norm())


def print_extraction(backbones: list[str], batch_size: int, repeats: int) -> None:
    from core.models.precision import inference_precision

    dtype, channels_last = inference_precision(torch.device("cpu"))
    print(f"\nextraction paths ({torch.get_num_threads()} threads, batch {batch_size}, random input, best of "
          f"{repeats}); the product's torch path: {str(dtype or torch.float32).replace('torch.', '')}"
          f"{' channels-last' if channels_last else ''}; its engine (core.models.precision.frozen_forward) picks "
          "ONNX Runtime or that path, whichever it measured faster on this machine")
    for backbone in backbones:
        rows = extraction_paths(backbone, batch_size, repeats)
        base = rows[0]["images_per_s"]
        by_path = {row["path"]: row["images_per_s"] for row in rows}
        for row in rows:
            ratio = row["images_per_s"] / base if base else float("nan")
            note = f"  ({row['note']})" if row.get("note") else ""
            print(f"  {backbone:24s} {row['path']:42s} {row['images_per_s']:7.1f} img/s  x{ratio:4.2f}  "
                  f"rel L2 {row['rel_l2']:.4f}{note}")
        onnx = next((v for k, v in by_path.items() if k.startswith("ONNX Runtime CPU fp32")), float("nan"))
        bf16 = next((v for k, v in by_path.items() if k.startswith("bf16 autocast channels-last")), float("nan"))
        print(f"  {backbone:24s} ONNX Runtime / torch bf16 channels-last: x{onnx / bf16:.2f}   "
              f"ONNX Runtime / eager fp32: x{onnx / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="cached epochs to take the median over")
    parser.add_argument("--extraction-only", action="store_true", help="only the extraction-path comparison")
    parser.add_argument("--backbones", default=BACKBONE, help="comma-separated, for the extraction comparison")
    parser.add_argument("--extraction-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count()))
    if args.extraction_only:
        print_extraction(args.backbones.split(","), args.extraction_batch, args.repeats)
        return
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
    print_extraction(args.backbones.split(","), args.extraction_batch, args.repeats)


if __name__ == "__main__":
    main()
