"""The fingerprint of the code a result depends on, read from the code itself.

A cached result stays valid only while the code that computed it is unchanged. The code
is not a hand-kept list of files (such lists go stale): it is the module that computes
the result and every mdmlib module it imports, directly or through others, found by
reading their `import` statements (those inside functions too) with `ast`, with the
`__init__.py` of every package on the way, since importing a module runs them.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

from mdmlib.infra.paths import PACKAGE

ROOT_PACKAGE = "mdmlib"


def _source(module: str) -> Path | None:
    """The source file of an mdmlib module, found in the package folder without importing
    it, or None where `module` names no module (`from mdmlib.models import DiTConfig`
    imports a name, not a module)."""
    parts = module.split(".")[1:]
    for path in (PACKAGE.joinpath(*parts, "__init__.py"), PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py") if parts else None):
        if path is not None and path.is_file():
            return path
    return None


def _packages_of(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(module: str, path: Path) -> set[str]:
    """The mdmlib modules (and candidate modules) that `path` imports anywhere."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # names that are submodules
    return {name for name in found if name == ROOT_PACKAGE or name.startswith(ROOT_PACKAGE + ".")}


@lru_cache(maxsize=None)
def dependencies(module: str) -> tuple[tuple[str, Path], ...]:
    """Every mdmlib module that importing `module` can run, `module` included, sorted."""
    if not (module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + ".")):
        raise ValueError(f"{module!r} is not a module of {ROOT_PACKAGE}")
    if _source(module) is None:
        raise ValueError(f"no source file for module {module!r}")
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _source(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_packages_of(name))
        todo.extend(_imported(name, path))
    return tuple(sorted(seen.items()))


def code_fingerprint(*modules: str) -> str:
    """A hash of the source of `modules` and of everything they import from mdmlib: part of
    a cache key, so that a change to any code a result depends on invalidates it."""
    if not modules:
        raise ValueError("name at least one module to fingerprint, e.g. code_fingerprint(__name__)")
    files = {name: path for module in modules for name, path in dependencies(module)}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def package_fingerprint() -> str:
    """A hash of every module of the package: the key for code that is not an mdmlib module
    (a notebook's cell), whose imports cannot be read."""
    modules = sorted(
        ".".join((ROOT_PACKAGE, *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for path in PACKAGE.rglob("*.py")
    )
    return code_fingerprint(*modules)
