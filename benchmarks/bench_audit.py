"""Benchmark: the dataset audit on the 750 real chest X-rays of ../shared/data (pixels only, then with backbone
features against a squashed 224 x 224 copy of a fifth of them), printing seconds and images per second.

The pixel pass decodes every image once (digest, pHash, properties); the feature pass embeds both sides with
tf_efficientnet_lite0 through the workspace feature cache (a second run reads the cache), then fits the
cross-validated domain classifier.

    .venv/bin/python benchmarks/bench_audit.py [--data ../shared/data/chest_xray_sample]
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

from PIL import Image  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.audit import AuditOptions, run_audit  # noqa: E402
from core.store import Workspace  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_sample"


def squashed_copy(source: Path, target: Path, every: int = 5) -> Path:
    for path in sorted(source.rglob("*.jpeg"))[::every]:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).resize((224, 224)).save(out, quality=90)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "workspace")
        ds = load_dataset(args.data)
        start = time.perf_counter()
        run_audit(ds, workspace=ws, options=AuditOptions(features=False))
        pixels = time.perf_counter() - start
        print(f"pixel audit: {len(ds)} images in {pixels:.1f} s ({len(ds) / pixels:.0f} images/s)")
        test = load_dataset(squashed_copy(args.data, Path(tmp) / "squashed"))
        for label in ("features computed", "features from the cache"):
            start = time.perf_counter()
            report = run_audit(test, ds, workspace=ws)
            seconds = time.perf_counter() - start
            n = len(ds) + len(test)
            print(f"full audit ({label}): {n} images in {seconds:.1f} s ({n / seconds:.1f} images/s); "
                  f"domain AUC {report['shift']['domain_classifier']['auc']:.3f}; flagged {report['shift']['flagged']}")


if __name__ == "__main__":
    main()
