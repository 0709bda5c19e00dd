"""Where results go, written whole or not at all.

Figures and tables go to the project's figures/ folder (or $MDMLIB_FIGURES);
expensive computations are cached in .cache/ (or $MDMLIB_CACHE), keyed by a
hash of their parameters (which include, where it matters, a fingerprint of the
library code the result depends on, `code_fingerprint`) and of the environment
that computed them (`environment`: the PyTorch version, the platform, the CPU's
vector instructions and the thread count, any of which can change the last bits
of a float and so the samples drawn after it). Every file is written to a temporary name in the
same folder and then renamed, so a crash never leaves half a file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from .scale import current_scale

_ROOT = Path(__file__).resolve().parent.parent


def _project_dir(env: str, name: str) -> Path:
    if os.environ.get(env):
        path = Path(os.environ[env])
    elif (_ROOT / "pyproject.toml").exists():  # an editable install of the project
        path = _ROOT / name
    else:
        path = Path.cwd() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    return _project_dir("MDMLIB_FIGURES", "figures")


def cache_dir() -> Path:
    return _project_dir("MDMLIB_CACHE", ".cache")


def _write_atomically(path: Path, write: Callable[[str], None]) -> Path:
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

    return _write_atomically(Path(path), write)


def save_json(obj: Any, name: str) -> Path:
    """Write `obj` as figures/<name>.json (<name>_<scale>.json outside the quick scale)."""
    return write_json(obj, figures_dir() / f"{_scaled(name)}.json")


def save_text(text: str, name: str, suffix: str = ".md") -> Path:
    """Write text as figures/<name><suffix> (<name>_<scale><suffix> outside the quick scale)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return _write_atomically(figures_dir() / f"{_scaled(name)}{suffix}", write)


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write a matplotlib figure as figures/<name>.png (<name>_<scale>.png outside the quick scale)."""
    # Metadata without the Software/date stamps keeps reruns byte-identical.
    return _write_atomically(
        figures_dir() / f"{_scaled(name)}.png",
        lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None}),
    )


def environment() -> dict:
    """What besides the parameters decides a seeded result's last bits: the same seed gives
    identical numbers only with the same PyTorch, platform, CPU vector unit and threads."""
    import torch  # here, so that importing results stays light

    return {
        "torch": torch.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def cache_key(params: dict) -> str:
    if not isinstance(params, dict):
        raise ValueError(f"cache parameters must be a dict, got {type(params).__name__}")
    try:
        blob = json.dumps(_to_json(params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cache parameters must be JSON values (numbers, strings, lists, dicts, tensors): {err}") from err
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_fingerprint(files) -> str:
    """A hash of the named source files of mdmlib (paths relative to the package,
    e.g. "sampling.py", "models/dit.py"): part of a cache key, so that a change to
    the code a result depends on invalidates it."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in files:
        path = here / name
        if not path.is_file():
            raise ValueError(f"no source file mdmlib/{name} to fingerprint")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_folder(name: str, params: dict) -> Path:
    """A folder of the cache for results that are more than one json (a checkpoint):
    .cache/<name>-<key of params and the environment>/, created if needed."""
    if "environment" in params:
        raise ValueError("'environment' is added to the cache parameters here; choose another name")
    path = cache_dir() / f"{_checked_name(name)}-{cache_key({**params, 'environment': environment()})}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _keyed(name: str, params: dict) -> tuple[dict, Path]:
    if isinstance(params, dict) and "environment" in params:
        raise ValueError("'environment' is added to the cache parameters here; choose another name")
    keyed = {**params, "environment": environment()} if isinstance(params, dict) else params
    return keyed, cache_dir() / f"{_checked_name(name)}-{cache_key(keyed)}.json"


def _stored(path: Path, keyed: dict):
    if path.exists():
        with open(path) as f:
            stored = json.load(f)
        if stored.get("params") == _to_json(keyed):
            return stored
    return None


def is_cached(name: str, params: dict) -> bool:
    """Whether `cached(name, params, ...)` would read its result from disk."""
    return _stored(*reversed(_keyed(name, params))) is not None


def cached(name: str, params: dict, compute: Callable[[], dict]) -> dict:
    """Return compute()'s result for these parameters, from disk if it was
    computed before in the same environment (see `environment`). The result
    must be a dict of JSON values or tensors; tensors come back as lists."""
    if not callable(compute):
        raise TypeError(f"compute must be a function of no arguments, got {type(compute).__name__}")
    keyed, path = _keyed(name, params)
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

    _write_atomically(path, write)
    return result
