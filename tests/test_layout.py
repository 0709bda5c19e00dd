"""The package's architecture holds: sub-packages import only those before them (no back
arrows, no circles), every room is small, every package says what it holds, and the
set-up helper needs nothing installed."""
import ast
import sys
from collections import defaultdict

import pytest

from mdmlib.infra.fingerprint import _imported, _source, dependencies
from mdmlib.infra.paths import PACKAGE

# the order of the README's picture: a package may import only itself and those before it
LAYERS = ("infra", "precision", "stats", "mdm", "language", "models", "judging", "audit", "runs", "exercises", "tools")
MAX_LINES = 500


def _modules() -> list[str]:
    return sorted(".".join(("mdmlib", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                  for p in PACKAGE.rglob("*.py"))


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_lives_in_a_declared_package():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)
    assert [m for m in _modules() if _package(m) is None] == ["mdmlib"]


def test_imports_point_only_to_earlier_packages():
    back = []
    for module in _modules():
        here = _package(module)
        for target in _imported(module, _source(module)):
            there = _package(target)
            if here is None or there is None or _source(target) is None:
                continue
            if LAYERS.index(there) > LAYERS.index(here):
                back.append(f"{module} imports {target}")
    assert not back, "imports against the layering:\n" + "\n".join(back)


def _top_level_imports(module: str) -> set[str]:
    tree = ast.parse(_source(module).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdmlib"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mdmlib"))
    return {m for m in found if _source(m) is not None and m != module}


def test_no_module_imports_itself_in_a_circle():
    graph = {m: _top_level_imports(m) for m in _modules()}
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done

    def visit(m, path):
        state[m] = 1
        for n in graph.get(m, ()):
            if state[n] == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(n):] + [n]) if n in path else n)
            if state[n] == 0:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if state[m] == 0:
            visit(m, [m])


def test_every_room_is_small():
    large = {m: n for m in _modules() if (n := len(_source(m).read_text().splitlines())) > MAX_LINES}
    assert not large, f"modules over {MAX_LINES} lines: {large}"


@pytest.mark.parametrize("package", LAYERS)
def test_every_package_says_what_it_holds_and_may_import(package):
    init = PACKAGE / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and "May import" in doc, f"mdmlib/{package}/__init__.py needs a docstring that says what lives there and what it may import"


def test_the_set_up_helper_needs_nothing_installed():
    # python3 -m mdmlib.tools.bootstrap runs before torch or anything else is installed
    for module, path in dependencies("mdmlib.tools.bootstrap"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top == "mdmlib" or top in sys.stdlib_module_names or top == "__future__", f"{module} imports {name}"
