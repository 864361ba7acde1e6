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


# -- circles between modules of one package (lazy imports inside functions count) -------------------------------
def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str) -> str:
    """core.readers.study -> core.readers; dashboard.reader_ui -> dashboard."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "core" and len(parts) > 2 else parts[0]


def _module_edges(root: Path, tops: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules of its own package it imports, from every Import/ImportFrom node anywhere in the file
    (inside functions too), relative imports resolved; `from package import name` counts name's module when it is
    one, else the package's __init__."""
    paths = {_module_name(p, root): p for top in tops for p in (root / top).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for module, path in paths.items():
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        for target in targets:
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != module and _package_of(target) == _package_of(module):
                edges.setdefault(module, set()).add(target)
    return edges


def _circle(edges: dict[str, set[str]]) -> list[str] | None:
    import graphlib

    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def test_no_import_circle_between_modules_of_one_package():
    edges = _module_edges(ROOT, ("core", "dashboard"))
    assert _circle(edges) is None, f"modules import each other in a circle: {_circle(edges)}"
    # The check sees the real modules, lazy imports included (the reading screen imports the aided study's rules).
    assert "core.readers.blinding" in edges["core.readers.study"]
    assert "core.readers.study" in edges["core.readers.aided_study"]


def test_the_circle_check_sees_an_import_inside_a_function(tmp_path):
    package = tmp_path / "core" / "things"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("from core.things.two import B\nA = 1\n")
    (package / "two.py").write_text("B = 2\n\ndef late():\n    from .one import A  # lazy\n    return A\n")
    assert _circle(_module_edges(tmp_path, ("core",))) is not None
    (package / "two.py").write_text("B = 2\n")
    assert _circle(_module_edges(tmp_path, ("core",))) is None


# -- session keys: declared in dashboard/state.py, never typed as literals elsewhere --------------------------
_STATE_METHODS = {"get", "pop", "setdefault"}


def _is_session_state(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "session_state"


def _literal_session_keys(source: str) -> list[tuple[int, str]]:
    """(line, key) of each session_state key written as a literal (a string, an f-string, a keyword of update(),
    an attribute, or a module-level name bound to a string) instead of coming from dashboard.state. A key held in a
    local variable (a module's own widget key, also passed as `key=`) is the module's own."""
    tree = ast.parse(source)
    literal_names = {target.id for node in tree.body if isinstance(node, ast.Assign)
                     and isinstance(node.value, (ast.Constant, ast.JoinedStr))
                     and (not isinstance(node.value, ast.Constant) or isinstance(node.value.value, str))
                     for target in node.targets if isinstance(target, ast.Name)}

    def literal(key) -> bool:
        return (isinstance(key, ast.Constant) and isinstance(key.value, str)) or isinstance(key, ast.JoinedStr) \
            or (isinstance(key, ast.Name) and key.id in literal_names)

    found = []
    for node in ast.walk(tree):
        keys = []
        if isinstance(node, ast.Subscript) and _is_session_state(node.value):
            keys = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_session_state(node.func.value):
            if node.func.attr in _STATE_METHODS and node.args:
                keys = [node.args[0]]
            elif node.func.attr == "update":
                found += [(node.lineno, k.arg) for k in node.keywords if k.arg]
                keys = [k for arg in node.args if isinstance(arg, ast.Dict) for k in arg.keys]
        elif isinstance(node, ast.Compare) and any(_is_session_state(c) for c in node.comparators):
            keys = [node.left]
        elif isinstance(node, ast.Attribute) and _is_session_state(node.value) and node.attr not in \
                {*_STATE_METHODS, "update", "keys", "items", "values", "clear"}:
            found.append((node.lineno, node.attr))
        found += [(node.lineno, ast.unparse(k)) for k in keys if literal(k)]
    return found


def test_session_keys_come_from_the_state_module():
    offenders = {}
    for path in [*(ROOT / "dashboard").rglob("*.py"), *(ROOT / "pages").rglob("*.py")]:
        if path.name == "state.py":
            continue
        found = _literal_session_keys(path.read_text())
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, f"session_state keys typed outside dashboard/state.py: {offenders}"


def test_the_session_key_check_sees_each_way_of_typing_a_key():
    source = '''
import streamlit as st
from dashboard import state
DONE = "done"
def f(key):
    own = f"{key}_chart"
    st.session_state[own] = 1                      # a module's own widget key: fine
    st.session_state[state.RUN_ID] = 2             # declared in state.py: fine
    st.session_state["run_id"] = 3
    st.session_state.get(f"{key}_threshold")
    st.session_state.pop(DONE, None)
    st.session_state.update(rs_confirm_end=True)
    if "x" in st.session_state:
        st.session_state.flash
'''
    assert [line for line, _ in _literal_session_keys(source)] == [9, 10, 11, 12, 13, 14]
