"""Load: 5 readers grading a study and 3 researchers moving the threshold and editing penalties at once for about a
minute, on the real server in headless Chromium (tests/_load.py drives them). Prints answers stored per second, p95
from click to stored answer, page rerun p95 per kind of interaction, and the exactly-once check.

    python -m benchmarks.bench_load [--readers 5] [--researchers 3] [--seconds 60] [--keep DIR]

The figures depend on the machine (and on what else runs on it); report them with its core count."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests._load import LoadPlan, run_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=5)
    parser.add_argument("--researchers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--keep", type=Path, default=None, help="keep the workspace, log and screenshots here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        result = run_load(root / "workspace", LoadPlan(args.readers, args.researchers, args.seconds),
                          root / "server.log", screenshots=root / "screenshots" if args.keep else None)
    print(f"machine: {os.cpu_count()} CPU cores")
    print(result.summary())
    for error in result.page_errors:
        print("error:", error)
    ok = not (result.missing or result.duplicated or result.page_errors or result.unacknowledged_rows)
    print("exactly once: " + ("yes, every acknowledged answer is stored once" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
