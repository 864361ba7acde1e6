"""Occlusion speed: seconds per map, and the ratio to the model-only forward time for the same number of windows.

Target (issue "core/explain"): ratio <= 1.2, i.e. Captum's batching costs at most 20% over the forward passes
themselves. Both numbers are measured in the same run, on the same device, with the same batch size: each map is
followed by a model-only forward of as many images as it has windows.

    .venv/bin/python benchmarks/bench_occlusion.py                       # CPU, strides 20 10 4
    .venv/bin/python benchmarks/bench_occlusion.py --skip-slow           # CPU, strides 20 10
    .venv/bin/python benchmarks/bench_occlusion.py --device cuda --strides 20 10 4 1 --repeats 3

Gallery mode (issue 22 item 13): N cases on the default run's model (core.train.config.default_backbone, the
Lite0+1+2 ensemble where its weights are installed) at its default size with the default window, once with every
window position at the fine stride (refine_regions=0, before) and once coarse-to-fine (the default, after), the
ratio measured in one run:

    .venv/bin/python benchmarks/bench_occlusion.py --gallery 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
import torch  # noqa: E402

from core.explain import explain, window_count  # noqa: E402
from core.explain.model_state import ClassProbabilities  # noqa: E402
from core.explain.occlusion import auto_perturbations_per_eval  # noqa: E402

SLOW_ON_CPU = 1500  # windows; stride 4 at 224 px is 2,704 (minutes on a laptop CPU)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(model, image: torch.Tensor, n_images: int, batch: int) -> float:
    """Model-only time (softmax included, as occlusion evaluates it) for n_images in batches of `batch`."""
    scorer = ClassProbabilities(model)
    full = image.expand(batch, *image.shape[1:]).contiguous()
    with torch.no_grad():
        sync(image.device)
        started = time.perf_counter()
        for first in range(0, n_images, batch):
            scorer(full[: min(batch, n_images - first)])
        sync(image.device)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--strides", type=int, nargs="+", default=[20, 10, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-slow", action="store_true",
                        help=f"on CPU, skip strides needing more than {SLOW_ON_CPU} windows")
    parser.add_argument("--repeats", type=int, default=1,
                        help="map + forward pairs per stride (medians are reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--gallery", type=int, default=0, metavar="N",
                        help="time a gallery of N cases on the default model, full grid vs coarse-to-fine")
    args = parser.parse_args(argv)
    if args.gallery:
        return gallery(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weights do not matter for speed: random init on purpose
        model = timm.create_model(args.model, pretrained=False, num_classes=4).eval().to(device)
    image = torch.randn(1, 3, args.size, args.size, device=device)
    ppe = auto_perturbations_per_eval(model, image, n_windows=10**9)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model} at {args.size} px on {device} ({name}); window {args.window} px; "
          f"perturbations_per_eval {ppe}")
    explain(model, image, 0, "occlusion", window=args.window, stride=args.window)  # warm-up
    forward_seconds(model, image, ppe, ppe)
    # Each map is followed by the model-only forward of the same number of images in the same batches, and the
    # medians are compared: on a machine whose load drifts (shared CPUs) both halves see the same conditions.
    print(f"{'stride':>6} {'windows':>8} {'s/map':>9} {'fwd img/s':>10} {'ideal s':>9} {'ratio':>6}  target <= 1.2")
    worst = 0.0
    for stride in args.strides:
        windows = window_count((args.size, args.size), args.window, stride)
        if args.skip_slow and device.type == "cpu" and windows > SLOW_ON_CPU:
            print(f"{stride:>6} {windows:>8}  skipped (--skip-slow)")
            continue
        maps, forwards = [], []
        for _ in range(max(1, args.repeats)):
            sync(device)
            started = time.perf_counter()
            explain(model, image, 0, "occlusion", window=args.window, stride=stride)
            sync(device)
            maps.append(time.perf_counter() - started)
            forwards.append(forward_seconds(model, image, windows, ppe))
        per_map, ideal = statistics.median(maps), statistics.median(forwards)
        ratio = per_map / ideal
        worst = max(worst, ratio)
        print(f"{stride:>6} {windows:>8} {per_map:>9.3f} {windows / ideal:>10.1f} {ideal:>9.3f} {ratio:>6.2f}  "
              f"{'ok' if ratio <= 1.2 else 'ABOVE TARGET'}", flush=True)
    print(f"worst ratio {worst:.2f} ({'meets' if worst <= 1.2 else 'misses'} the <= 1.2 target)")
    return 0


def gallery(args) -> int:
    """N maps (distinct random images: no map cache) with refine_regions=0 and with the default, alternating per
    case so both halves see the same load; seconds per gallery and the ratio."""
    from core.explain.windows import DEFAULT_REFINE_REGIONS, DEFAULT_WINDOW, default_stride, occlusion_plan
    from core.models import create_model, get_backbone
    from core.train.config import default_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = default_backbone("features")
    size = get_backbone(name).default_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # speed only: random weights when the offline ones are missing is fine
        model = create_model(name, num_classes=3, pretrained=False).eval().to(device)
    plan = occlusion_plan((size, size), DEFAULT_WINDOW, default_stride(DEFAULT_WINDOW), DEFAULT_REFINE_REGIONS)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"gallery of {args.gallery} cases: {name} at {size} px on {device} ({where}); window {DEFAULT_WINDOW}, "
          f"stride {default_stride(DEFAULT_WINDOW)}; full grid {plan['full_windows']} windows, coarse-to-fine at "
          f"most {plan['most_windows']} ({DEFAULT_REFINE_REGIONS} regions, coarse window {plan['coarse_window']})")
    generator = torch.Generator().manual_seed(0)
    explain(model, torch.rand(1, 3, size, size, generator=generator).to(device), 0, "occlusion",
            window=size // 2, stride=size // 2)  # warm-up (engine, allocation)
    seconds = {"full grid (before)": 0.0, "coarse-to-fine (after)": 0.0}
    windows = dict.fromkeys(seconds, 0)
    for case in range(args.gallery):
        image = torch.rand(1, 3, size, size, generator=generator).to(device)
        for label, regions in (("full grid (before)", 0), ("coarse-to-fine (after)", DEFAULT_REFINE_REGIONS)):
            sync(device)
            started = time.perf_counter()
            amap = explain(model, image, case % 3, "occlusion", refine_regions=regions)
            sync(device)
            seconds[label] += time.perf_counter() - started
            windows[label] += amap.info["windows"]
        print(f"  case {case + 1}/{args.gallery}: engine {amap.info.get('engine')}, "
              + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), flush=True)
    before, after = seconds.values()
    for label in seconds:
        print(f"{label:>24}: {seconds[label]:8.1f} s for {args.gallery} maps ({seconds[label] / args.gallery:.2f} s "
              f"per map, {windows[label] / args.gallery:.0f} windows per map)")
    print(f"speed-up {before / after:.2f}x (before / after, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
