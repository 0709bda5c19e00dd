"""Where results go, written whole or not at all.

Figures and tables go to the project's figures/ folder (or $MDMLIB_FIGURES);
expensive computations are cached in .cache/ (or $MDMLIB_CACHE), keyed by a
hash of their parameters, of the code that computes them (the fingerprint of the
computing module and everything it imports from mdmlib, `mdmlib.infra.fingerprint`;
no hand-kept list of files) and of the environment that computed them
(`mdmlib.infra.provenance.environment`: the PyTorch version, the platform, the CPU's
vector instructions and the thread count, any of which can change the last bits of
a float and so the samples drawn after it). Every file is written to a temporary name in the
same folder and then renamed, so a crash never leaves half a file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from mdmlib.infra.fingerprint import ROOT_PACKAGE, code_fingerprint, package_fingerprint
from mdmlib.infra.paths import project_root
from mdmlib.infra.provenance import environment
from mdmlib.infra.scale import current_scale


def _project_dir(env: str, name: str) -> Path:
    if os.environ.get(env):
        path = Path(os.environ[env])
    elif project_root() is not None:  # an editable install of the project
        path = project_root() / name
    else:
        path = Path.cwd() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    return _project_dir("MDMLIB_FIGURES", "figures")


def cache_dir() -> Path:
    return _project_dir("MDMLIB_CACHE", ".cache")


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _to_json(obj: Any) -> Any:
    """Tensors, numpy values and tuples become plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    return obj


def _checked_name(name: str) -> str:
    """A result's name becomes a file name in one folder: letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"a result name must be a plain file name (letters, digits, '.', '_', '-'; no folders), got {name!r}")
    return name


def _scaled(name: str) -> str:
    """Results of the default (quick) scale keep their name; others get the scale as suffix,
    so a full-scale run never overwrites the figures the notebooks show."""
    scale = current_scale()
    name = _checked_name(name)
    return name if scale == "quick" else f"{name}_{scale}"


def write_json(obj: Any, path) -> Path:
    """Write `obj` as JSON to `path`, whole or not at all."""
    text = json.dumps(_to_json(obj), indent=2, sort_keys=True, allow_nan=False)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text + "\n")

    return write_atomically(Path(path), write)


def save_json(obj: Any, name: str) -> Path:
    """Write `obj` as figures/<name>.json (<name>_<scale>.json outside the quick scale)."""
    return write_json(obj, figures_dir() / f"{_scaled(name)}.json")


def save_text(text: str, name: str, suffix: str = ".md") -> Path:
    """Write text as figures/<name><suffix> (<name>_<scale><suffix> outside the quick scale)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return write_atomically(figures_dir() / f"{_scaled(name)}{suffix}", write)


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write a matplotlib figure as figures/<name>.png (<name>_<scale>.png outside the quick scale)."""
    # Metadata without the Software/date stamps keeps reruns byte-identical.
    return write_atomically(
        figures_dir() / f"{_scaled(name)}.png",
        lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None}),
    )


def cache_key(params: dict) -> str:
    if not isinstance(params, dict):
        raise ValueError(f"cache parameters must be a dict, got {type(params).__name__}")
    try:
        blob = json.dumps(_to_json(params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cache parameters must be JSON values (numbers, strings, lists, dicts, tensors): {err}") from err
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _code_of(module: str | None) -> str:
    """The code fingerprint of a cached computation: of its mdmlib module and everything
    that module imports, or of the whole package for code outside it (a notebook's cell)."""
    if module is not None and (module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + ".")):
        return code_fingerprint(module)
    return package_fingerprint()


_ADDED = ("environment", "code")  # the keys every cache entry gets here


def _check_params(params) -> None:
    if isinstance(params, dict) and any(k in params for k in _ADDED):
        raise ValueError(f"{' and '.join(repr(k) for k in _ADDED)} are added to the cache parameters here; choose other names")


def cache_folder(name: str, params: dict, *, code: str) -> Path:
    """A folder of the cache for results that are more than one json (a checkpoint):
    .cache/<name>-<key of params, the code of module `code` and the environment>/, created if needed."""
    _check_params(params)
    if not isinstance(params, dict):
        raise ValueError(f"cache parameters must be a dict, got {type(params).__name__}")
    path = cache_dir() / f"{_checked_name(name)}-{cache_key({**params, 'code': _code_of(code), 'environment': environment()})}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _keyed(name: str, params: dict, code: str | None) -> tuple[dict, Path]:
    _check_params(params)
    keyed = {**params, "code": _code_of(code), "environment": environment()} if isinstance(params, dict) else params
    return keyed, cache_dir() / f"{_checked_name(name)}-{cache_key(keyed)}.json"


def _stored(path: Path, keyed: dict):
    if path.exists():
        with open(path) as f:
            stored = json.load(f)
        if stored.get("params") == _to_json(keyed):
            return stored
    return None


def is_cached(name: str, params: dict, *, code: str | None) -> bool:
    """Whether `cached(name, params, compute)` with a `compute` of module `code` would read its result from disk."""
    return _stored(*reversed(_keyed(name, params, code))) is not None


def cached(name: str, params: dict, compute: Callable[[], dict]) -> dict:
    """Return compute()'s result for these parameters, from disk if it was computed
    before by the same code (compute's module and all it imports from mdmlib) in the
    same environment (see `environment`). The result must be a dict of JSON values
    or tensors; tensors come back as lists."""
    if not callable(compute):
        raise TypeError(f"compute must be a function of no arguments, got {type(compute).__name__}")
    keyed, path = _keyed(name, params, getattr(compute, "__module__", None))
    stored = _stored(path, keyed)
    if stored is not None:
        return stored["result"]
    result = compute()
    if not isinstance(result, dict):
        raise ValueError(f"compute() must return a dict, got {type(result).__name__}")
    result = _to_json(result)
    text = json.dumps({"params": _to_json(keyed), "result": result}, sort_keys=True)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    write_atomically(path, write)
    return result
