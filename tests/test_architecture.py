"""The layering rules from ARCHITECTURE.md, checked on the source."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit():
    offenders = [p for p in (ROOT / "core").rglob("*.py") if "streamlit" in _imports(p)]
    assert offenders == []


def test_metrics_never_import_torch():
    offenders = [p for p in (ROOT / "core" / "metrics").rglob("*.py") if _imports(p) & {"torch", "torchvision"}]
    assert offenders == []


def test_pages_never_compute_metrics_themselves():
    # Pages call core; they do not reach for sklearn/scipy/statsmodels directly.
    offenders = [p for p in (ROOT / "pages").rglob("*.py")
                 if _imports(p) & {"sklearn", "scipy", "statsmodels", "torch"}]
    assert offenders == []


def test_every_listed_page_has_its_file_and_every_page_file_is_listed():
    from dashboard.common import PAGES

    listed = {filename for _, filename, _, _ in PAGES}
    on_disk = {p.name for p in (ROOT / "pages").glob("*.py")}
    assert listed == on_disk
