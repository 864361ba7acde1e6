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


def _core_edges() -> dict[str, set[str]]:
    """package -> the other core packages it imports (module level or inside functions), e.g. core.report ->
    {core.metrics, ...}. core/__main__.py (the command-line hub) and core/errors.py are not packages."""
    edges: dict[str, set[str]] = {}
    for path in (ROOT / "core").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if len(parts) < 3:
            continue
        package = ".".join(parts[:2])
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                target = name.split(".")
                if target[0] == "core" and len(target) > 1 and ".".join(target[:2]) != package:
                    edges.setdefault(package, set()).add(".".join(target[:2]))
    return edges


def _module_imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / Path(*package.split("."))).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def test_metrics_import_no_other_core_package_but_errors_and_the_task_schema():
    outside = {name for name in _module_imports("core.metrics")
               if name.startswith("core") and not name.startswith("core.metrics")}
    assert outside <= {"core.errors", "core.data.tasks"}, outside


def test_no_import_cycle_between_core_packages():
    import graphlib

    edges = _core_edges()
    try:
        order = list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"core packages import each other in a circle: {exc.args[1]}") from None
    # The check sees the real packages (not an empty graph that would pass whatever the code does).
    assert {"core.metrics", "core.readers", "core.report", "core.infer", "core.data"} <= set(order)
