"""Benchmark: end-to-end predict() images/s on each engine (torch, ONNX Runtime) vs model-only forward (>= 0.85).

Both use tf_efficientnet_lite0 at 224 px with the same batch size, on the same machine in the same run. The
end-to-end figure is `core.infer.predict` with its cache off (JPEG decode, preprocessing, DataLoader, forward,
softmax, parquet write); the model-only figure is the same model's forward on a ready-made random batch.

    .venv/bin/python benchmarks/bench_predict.py [--images-per-class 64] [--batch-size 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.data.synthetic import generate_demo_dataset  # noqa: E402
from core.infer import predict  # noqa: E402
from core.models import create_model, save_checkpoint  # noqa: E402
from core.store import Workspace  # noqa: E402
from core.train.features import auto_workers  # noqa: E402

BACKBONE = "tf_efficientnet_lite0"


def model_only_images_per_s(model: torch.nn.Module, input_size, n: int, batch_size: int) -> float:
    """Forward + softmax on a ready-made batch, as many images as the end-to-end pass."""
    x = torch.randn(batch_size, *input_size)
    with torch.inference_mode():
        for _ in range(2):
            model(x)  # warm-up: the allocator settles on this batch shape
        start = time.perf_counter()
        done = 0
        while done < n:
            torch.softmax(model(x), dim=1)
            done += batch_size
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed passes, each")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: predict's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        generate_demo_dataset(data, per_class=args.images_per_class, test_per_class=1, size=256, seed=0)
        ws = Workspace.open(Path(tmp) / "ws")
        ds = load_dataset(data)
        _ = ds.fingerprint  # computed once here, as the dashboard does when a dataset is registered
        model = create_model(BACKBONE, ds.task.num_classes)
        checkpoint = save_checkpoint(model, Path(tmp) / "ckpt", {"task": ds.task.to_dict(),
                                                                 "classes": list(ds.task.classes)})
        from core.models import load_checkpoint

        reference, card = load_checkpoint(checkpoint)
        engines = ("torch", "onnx")
        for engine in engines:  # warm-up: the ONNX export (once per backbone) and each engine's first batch
            frame = predict(checkpoint, ds, ws, batch_size=args.batch_size, use_cache=False,
                            num_workers=args.workers, engine=engine)
            print(f"engine {engine}: {frame.attrs['meta']['inference']['engine_reason']}")
        # The same model as a model trained elsewhere: exported to ONNX and imported as a run (core.infer.
        # model_exchange); predict runs the whole file with ONNX Runtime.
        from core.infer.model_exchange import export_run, import_model

        exported = export_run(checkpoint, Path(tmp) / "exported", ws, data=ds)
        imported = import_model(exported.model_path, exported.card_path, ws, name="imported ONNX").run_id
        predict(imported, ds, ws, batch_size=args.batch_size, use_cache=False, num_workers=args.workers)
        imported_rates = []
        # Interleaved passes, best of each: on a shared machine the load drifts, and both sides see the same drift.
        e2e, model_only = {e: [] for e in engines}, []
        for _ in range(args.repeats):
            for engine in engines:
                start = time.perf_counter()
                frame = predict(checkpoint, ds, ws, batch_size=args.batch_size, use_cache=False,
                                num_workers=args.workers, engine=engine)
                e2e[engine].append(len(frame) / (time.perf_counter() - start))
            start = time.perf_counter()
            frame = predict(imported, ds, ws, batch_size=args.batch_size, use_cache=False, num_workers=args.workers)
            imported_rates.append(len(frame) / (time.perf_counter() - start))
            model_only.append(model_only_images_per_s(reference, card["preprocessing"]["input_size"], len(ds),
                                                      args.batch_size))
        model_only = max(model_only)
    workers = auto_workers(len(ds)) if args.workers is None else args.workers
    print(f"{len(ds)} images (256 px JPEG) -> {BACKBONE} at 224 px, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {workers} DataLoader worker(s), {os.cpu_count()} CPUs")
    for engine in engines:
        print(f"end-to-end predict(), {engine:5s} engine: {max(e2e[engine]):.1f} images/s")
    print(f"end-to-end predict(), imported ONNX run (same model): {max(imported_rates):.1f} images/s "
          f"(export checked: largest probability difference {exported.max_abs_difference:.1e})")
    print(f"model-only forward (torch eager fp32): {model_only:.1f} images/s")
    print(f"ratio imported ONNX run / torch run on the same model: x{max(imported_rates) / max(e2e['torch']):.2f}")
    print(f"ratio predict ONNX / predict torch: x{max(e2e['onnx']) / max(e2e['torch']):.2f}")
    ratio = max(e2e["onnx"]) / model_only
    print(f"ratio end-to-end (ONNX) / model-only: {ratio:.3f}  (target >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'})")


if __name__ == "__main__":
    main()
