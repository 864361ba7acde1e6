"""Files the product writes: atomic writes (write beside the target and rename, so a crash never leaves a
half-written file in place). CSV exports that a spreadsheet cannot run as formulas: core.store.csv_safe."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temporary file in the target's folder, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid in the name lets `python -m core doctor` (and startup) remove it once this process is gone.
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
