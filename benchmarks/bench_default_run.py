"""Benchmark: where a default features-mode run's time goes, and the whole run projected to its image count.

The default recipe (core.train.config: the Lite0+1+2 feature ensemble, 3 acquisition views per training image,
the logistic probe) on ../shared/data's 750-image chest X-ray sample (else the synthetic demo). Measured on a
sample of --sample images and scaled to the set: decoding (one per image per view: each view re-reads its file),
the acquisition views' resampling and JPEG re-encoding, the eval transform, each member's forward pass on torch
(the product's autocast path) and the ensemble on ONNX Runtime (one exported graph, as the product runs it), and
the probe's fit on a feature matrix of the run's real shape. Torch and ONNX are timed in this one process, so
their ratio holds on a busy machine; absolute times do not. The eval transform is timed twice, interleaved: the
product's (core.models.preprocess.EvalTransform) against timm's own transform it reproduces (the path before it),
on the stored images (greyscale) and on their acquisition views (RGB), at this process's torch threads and at one
(as in a DataLoader worker).

    .venv/bin/python benchmarks/bench_default_run.py [--sample 48] [--batch 32] [--full]

--full also times one real default run end to end (python -m core train's code path, on the measured engine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.models import build_transform, create_model, preprocess_config  # noqa: E402
from core.models.precision import frozen_forward, inference_precision  # noqa: E402
from core.models.preprocess import (  # noqa: E402
    DEFAULT_FRAMING,
    acquisition_view,
    timm_eval_transform,
    to_8bit,
    to_rgb,
)
from core.train.config import DEFAULT_VIEWS, FEATURES_BACKBONE  # noqa: E402

CXR = ROOT.parent / "shared" / "data" / "chest_xray_sample"


def _dataset(tmp: Path):
    if CXR.exists():
        return load_dataset(CXR), "chest X-ray sample (../shared/data)"
    from core.data.synthetic import generate_demo_dataset

    generate_demo_dataset(tmp / "demo", per_class=190, test_per_class=0, size=512, seed=0)
    return load_dataset(tmp / "demo"), "synthetic demo (../shared/data absent)"


def _per_image(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / max(1, len(items))


def _interleaved(fns, items, rounds: int = 3) -> list[float]:
    """Per-item seconds of each of `fns` over `items`, alternating them round by round and keeping each one's best
    round, so load that comes and goes on a shared machine falls on both alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            best[k] = min(best[k], _per_image(fn, items))
    return best


def _before_after(images, config, views: int) -> dict:
    """{stage: (before s, after s)} per item, timed interleaved on `images` and checked to give the same pixels:
    the acquisition views (before: computed on each image's RGB copy; after: on its own 8-bit plane(s)) and the eval
    transform (before: timm's after to_rgb; after: EvalTransform) on the stored images and on their views, at this
    process's torch threads and at one (as in a DataLoader worker)."""
    hw = tuple(config["input_size"][1:])
    old_in, new_in = [to_rgb(im) for im in images], [to_8bit(im) for im in images]
    pick = range(len(images))
    out = {"acquisition views: resample + JPEG re-encode": [t / views for t in _interleaved(
        [lambda k, src=src: [acquisition_view(src[k], v, hw) for v in range(1, views + 1)]
         for src in (old_in, new_in)], pick)]}
    old_views = [acquisition_view(old_in[k], 1 + k % views, hw) for k in pick]
    new_views = [acquisition_view(new_in[k], 1 + k % views, hw) for k in pick]
    reference, product = timm_eval_transform(config), build_transform(config, train=False)
    for old, new in zip(images + old_views, images + new_views, strict=True):
        if not torch.equal(reference(old), product(new)):
            raise SystemExit("the product's views or eval transform differ from before: the comparison is void")
    threads = torch.get_num_threads()
    for n_threads in dict.fromkeys((threads, 1)):
        torch.set_num_threads(n_threads)
        out[f"eval transform, stored images, {n_threads} thread(s)"] = _interleaved(
            (lambda k: reference(images[k]), lambda k: product(images[k])), pick)
        out[f"eval transform, acquisition views, {n_threads} thread(s)"] = _interleaved(
            (lambda k: reference(old_views[k]), lambda k: product(new_views[k])), pick)
    torch.set_num_threads(threads)
    return out


def _best_seconds(fn, x, repeats: int = 2) -> float:
    fn(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=48, help="images to time the per-image stages on")
    parser.add_argument("--batch", type=int, default=32, help="forward-pass batch size")
    parser.add_argument("--full", action="store_true", help="also run one real default run end to end")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count()))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ds, what = _dataset(tmp)
        n, views = len(ds), DEFAULT_VIEWS
        rows = np.random.default_rng(0).choice(n, size=min(args.sample, n), replace=False)
        config = preprocess_config(FEATURES_BACKBONE, framing=DEFAULT_FRAMING)
        size = config["input_size"]
        print(f"{what}: {n} images, default recipe {FEATURES_BACKBONE} at {size[-1]} px, {views} acquisition views, "
              f"logistic probe; {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; per-image stages timed "
              f"on {len(rows)} images")

        images = [ds.load_image(int(i)) for i in rows]
        decode = _per_image(lambda i: ds.load_image(int(i)), rows)
        timed = _before_after(images, config, views)
        reencode_old, reencode = timed["acquisition views: resample + JPEG re-encode"]
        main = torch.get_num_threads()
        stored_old, stored = timed[f"eval transform, stored images, {main} thread(s)"]
        views_old, views_new = timed[f"eval transform, acquisition views, {main} thread(s)"]
        transform = (stored + views * views_new) / (1 + views)  # per extracted image: one stored, `views` views
        transform_old = (stored_old + views * views_old) / (1 + views)
        evaluation = build_transform(config, train=False)
        x = torch.stack([evaluation(im) for im in images[:args.batch]])

        ensemble = create_model(FEATURES_BACKBONE, 0).eval()
        amp, channels_last = inference_precision(torch.device("cpu"))
        members = []
        for member, native in zip(ensemble.members, ensemble.native_sizes):
            xm = F.interpolate(x, size=(native, native), mode="bilinear", antialias=True, align_corners=False)
            net = member.to(memory_format=torch.channels_last) if channels_last else member
            xm = xm.contiguous(memory_format=torch.channels_last) if channels_last else xm

            def run(inp, net=net):
                with torch.inference_mode(), torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                    return net(inp)
            members.append((f"{type(member).__name__.lower()} {native} px", _best_seconds(run, xm) / len(x)))
        ensemble.to(memory_format=torch.contiguous_format)
        started = time.perf_counter()
        onnx = frozen_forward(ensemble, size, torch.device("cpu"), engine="onnx", cache_dir=tmp / "onnx",
                              framing=config.get("framing"))
        export_s = time.perf_counter() - started
        onnx_s = _best_seconds(onnx, x) / len(x) if onnx.engine == "onnx" else float("nan")
        torch_engine = frozen_forward(ensemble, size, torch.device("cpu"), engine="torch")
        torch_s = _best_seconds(torch_engine, x) / len(x)
        drift = float(((onnx(x) - torch_engine(x)).norm() / torch_engine(x).norm())) if onnx.engine == "onnx" \
            else float("nan")

        from core.train.probe import fit_logistic_probe

        rng = np.random.default_rng(0)
        targets = rng.integers(0, 2, n)
        feats = rng.normal(size=(n, ensemble.num_features)).astype(np.float32) + targets[:, None] * 0.05
        x_fit = np.concatenate([feats + rng.normal(scale=0.1, size=feats.shape).astype(np.float32)
                                for _ in range(1 + views)])
        groups = np.tile(np.arange(n) // 2, 1 + views)
        original = np.concatenate([np.ones(n, bool)] + [np.zeros(n, bool)] * views)
        started = time.perf_counter()
        fit_logistic_probe(x_fit, np.tile(targets, 1 + views), groups, num_classes=2, original=original)
        fit_s = time.perf_counter() - started

    extracted = n * (1 + views)  # every image once, and each view of every training image (all are training here)
    split = [("decode (once per image per view)", decode * extracted),
             ("acquisition views: resample + JPEG re-encode", reencode * n * views),
             ("eval transform (resize, normalise)", transform * extracted)]
    before = {"eval transform (resize, normalise)": transform_old * extracted,
              "acquisition views: resample + JPEG re-encode": reencode_old * n * views}
    split += [(f"forward torch {amp and 'bf16' or 'fp32'}: {name}", s * extracted) for name, s in members]
    split += [("probe fit (patient-grouped CV + refit)", fit_s)]
    torch_total = sum(s for _, s in split)
    onnx_total = torch_total - sum(s * extracted for _, s in members) + onnx_s * extracted
    print(f"\nprojected split of the default run ({extracted} extracted images), torch engine:")
    for name, seconds in split:
        print(f"  {name:52s} {seconds:7.1f} s  ({100 * seconds / torch_total:4.1f}%)")
    print(f"  {'total (single process, no DataLoader overlap)':52s} {torch_total:7.1f} s")
    print("\nper image, before -> after (interleaved in this process; the same pixels, checked):")
    for what, (old, new) in timed.items():
        print(f"  {what:52s} {1000 * old:6.2f} ms -> {1000 * new:6.2f} ms (x{old / new:.2f})")
    print(f"\nensemble forward per image: torch {1000 * torch_s:.1f} ms, ONNX Runtime {1000 * onnx_s:.1f} ms "
          f"(x{torch_s / onnx_s:.2f}; ONNX vs torch features rel L2 {drift:.1e}; export once {export_s:.0f} s)")
    print(f"  forward on ONNX replaces {sum(s for _, s in members) * extracted:.0f} s of member forwards by "
          f"{onnx_s * extracted:.0f} s; projected total on ONNX {onnx_total:.0f} s "
          f"({onnx_total / 60:.1f} min; target <= 5 min: {'met' if onnx_total <= 300 else 'NOT met'})")
    onnx_split = [(name, s) for name, s in split if not name.startswith("forward")]
    onnx_split.insert(3, ("forward ONNX Runtime: the ensemble", onnx_s * extracted))
    old_total = onnx_total + sum(seconds for _, seconds in before.items()) - sum(
        seconds for name, seconds in split if name in before)
    print("\nprojected split on ONNX Runtime, before (timm's transform, views on RGB copies) -> after:")
    for name, seconds in onnx_split:
        old = before.get(name, seconds)
        print(f"  {name:52s} {old:7.1f} s ({100 * old / old_total:4.1f}%) -> {seconds:7.1f} s "
              f"({100 * seconds / onnx_total:4.1f}%)")
    print(f"  {'total':52s} {old_total:7.1f} s          -> {onnx_total:7.1f} s")
    if args.full:
        _full_run(n)


def _full_run(n: int) -> None:
    from core.store import Workspace
    from core.train import RunConfig, run_training

    with tempfile.TemporaryDirectory() as tmp:
        data = CXR if CXR.exists() else None
        if data is None:
            print("--full needs ../shared/data/chest_xray_sample")
            return
        cfg = RunConfig(data=str(data), mode="features", evaluate_test=False)
        started = time.perf_counter()
        summary = run_training(cfg, Path(tmp) / "run", Workspace.open(Path(tmp) / "ws"), log=lambda m: print(" ", m))
        print(f"\nfull default run on {n} images: {time.perf_counter() - started:.0f} s wall "
              f"(extraction {summary['feature_cache']['seconds']:.0f} s, probe fit {summary['fit_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
