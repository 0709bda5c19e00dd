"""Where results go, written whole or not at all.

Figures and tables go to the project's figures/ folder (or $MDMLIB_FIGURES);
expensive computations are cached in .cache/ (or $MDMLIB_CACHE), keyed by a
hash of their parameters, of the code that computes them (the fingerprint of the
computing module and everything it imports from mdmlib, `mdmlib.infra.fingerprint`;
no hand-kept list of files) and of the environment that computed them
(`mdmlib.infra.provenance.environment`: the PyTorch version, the platform, the CPU's
vector instructions and the thread count, any of which can change the last bits of
a float and so the samples drawn after it). Every file is written to a temporary name in the
same folder and then renamed, so a crash never leaves half a file behind; it gets the mode a
plain open() would give (the umask's), or keeps the mode of the file it replaces.

Cache entries carry a SHA-256 of their content: one that is edited, truncated or not JSON,
or written without a checksum by an older version, is recomputed with a `CacheWarning`
naming its file. A tool checks where it will write before any work (`check_output_file`:
it overwrites only a file it wrote itself, marked "written_by"), and a long run keeps each
finished part as it ends (`KeptParts`), so that an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable

from mdmlib.infra.fingerprint import ROOT_PACKAGE, code_fingerprint, package_fingerprint
from mdmlib.infra.outputs import OutputError  # the one error of a place a tool may not write
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


def _private_temp(path: Path) -> tuple[str, int]:
    """A new temporary file beside `path`, private (0600) while it is written, and the mode a
    plain open() would have given it (made with 0o666, so the OS applies the umask)."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        try:
            mode = os.fstat(fd).st_mode & 0o777
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        return tmp, mode


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp) on a private temporary file beside `path`, then rename it to `path`:
    the file is there whole or not at all, with the mode of the file it replaces or, for a
    new file, the mode a plain open() would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _private_temp(path)
    try:
        if path.is_file():
            mode = os.stat(path).st_mode & 0o777
        write(tmp)
        os.chmod(tmp, mode)
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


def result_name(name: str) -> str:
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
    return write_json(obj, figures_dir() / f"{result_name(name)}.json")


def save_text(text: str, name: str, suffix: str = ".md") -> Path:
    """Write text as figures/<name><suffix> (<name>_<scale><suffix> outside the quick scale)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return write_atomically(figures_dir() / f"{result_name(name)}{suffix}", write)


def write_figure(fig, path, dpi: int = 120) -> Path:
    """Write a matplotlib figure as a PNG at `path`, whole or not at all."""
    # Metadata without the Software/date stamps keeps reruns byte-identical.
    return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None}))


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write a matplotlib figure as figures/<name>.png (<name>_<scale>.png outside the quick scale)."""
    return write_figure(fig, figures_dir() / f"{result_name(name)}.png", dpi)


# --- where a tool may write ---------------------------------------------------------------------
WRITTEN_BY = "written_by"  # the key that marks a result file as the named tool's own


def written_by(path, tool: str) -> bool:
    """Whether `path` is a regular file holding a JSON object that `tool` wrote (its "written_by")."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get(WRITTEN_BY) == tool


def check_output_file(path, tool: str) -> Path:
    """`path` checked, before any work, as the result file of `tool`: its folder exists and
    is writable, and it is neither a folder nor a file that `tool` did not write (which is
    never overwritten). Returns the path."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"the output {path} is a folder: name a file in it to write")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"the output's folder {folder} does not exist: create it or choose another output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {folder} (no permission): choose another output")
    if (path.exists() or path.is_symlink()) and not written_by(path, tool):
        raise OutputError(f"{path} exists and was not written by {tool}: it is left as it is; move it or choose another output")
    return path


# --- sealed entries: a checksum of the content, checked when read ----------------------------------
class CacheWarning(UserWarning):
    """A stored entry was not used (damaged, edited, of an older format or of other parameters)."""


def _digest(entry: dict) -> str:
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def _sealed_text(entry: dict) -> str:
    return json.dumps({**entry, "sha256": _digest(entry)}, sort_keys=True)


def _not_used(path: Path, problem: str) -> None:
    warnings.warn(f"{path} {problem}: not used, computing it again", CacheWarning, stacklevel=4)


def _read_sealed(path: Path) -> dict | None:
    """The entry stored in `path`, or None (with a CacheWarning naming the file) when it
    cannot be read, is not JSON, has no checksum or fails it."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return _not_used(path, f"cannot be read as JSON ({type(err).__name__}: {err})")
    if not isinstance(stored, dict) or "sha256" not in stored:
        return _not_used(path, "has no checksum (written by an older version, or not an entry of this project)")
    checksum = stored.pop("sha256")
    if checksum != _digest(stored):
        return _not_used(path, "fails its checksum (edited or damaged)")
    return stored


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
    if not (path.exists() or path.is_symlink()):
        return None
    stored = _read_sealed(path)
    if stored is None:
        return None
    if stored.get("params") != _to_json(keyed) or not isinstance(stored.get("result"), dict):
        return _not_used(path, "holds another computation's parameters or no result")
    return stored


def is_cached(name: str, params: dict, *, code: str | None) -> bool:
    """Whether `cached(name, params, compute)` with a `compute` of module `code` would read its result from disk."""
    with warnings.catch_warnings():  # cached() reports a bad entry when it computes it again
        warnings.simplefilter("ignore", CacheWarning)
        return _stored(*reversed(_keyed(name, params, code))) is not None


def cached(name: str, params: dict, compute: Callable[[], dict]) -> dict:
    """Return compute()'s result for these parameters, from disk if it was computed
    before by the same code (compute's module and all it imports from mdmlib) in the
    same environment (see `environment`) and its entry is whole (its checksum holds;
    otherwise it is computed again, with a CacheWarning naming the file). The result must
    be a dict of JSON values or tensors; tensors come back as lists."""
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
    text = _sealed_text({"params": _to_json(keyed), "result": result})
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return result


# --- the finished parts of a long run ------------------------------------------------------------
class KeptParts:
    """The finished parts of a long run (one setting, the Monte Carlo's progress so far),
    each kept in a sealed file of `folder` as it finishes, with the parameters of the run
    that made it: a rerun with the same parameters reuses it, one with other parameters
    computes it again. The folder is marked as `tool`'s own; `clear` removes what it wrote."""

    MARKER = ".written_by"

    def __init__(self, folder, tool: str):
        self.folder, self.tool = Path(folder).expanduser(), tool

    def check(self) -> KeptParts:
        """Refuse (OutputError), before any work, a folder that `tool` did not make."""
        marker = self.folder / self.MARKER
        if self.folder.exists() or self.folder.is_symlink():
            if self.folder.is_symlink() or not self.folder.is_dir() or not marker.is_file() or marker.read_text().strip() != self.tool:
                raise OutputError(f"{self.folder} exists and was not made by {self.tool} to keep finished results: "
                                  "it is left as it is; move it or choose another output")
        elif not self.folder.parent.is_dir() or not os.access(self.folder.parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot make {self.folder} to keep finished results: its folder is missing or not writable")
        return self

    def _file(self, name: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"

    def get(self, name: str, run: dict):
        """The kept result of part `name`, if a run with the parameters `run` made it and its
        file is whole; None otherwise (a file of other parameters or a bad one with a CacheWarning)."""
        path = self._file(name)
        if not path.is_file():
            return None
        stored = _read_sealed(path)
        if stored is None:
            return None
        run = _to_json(run)
        made = stored.get("run") if isinstance(stored.get("run"), dict) else {}
        if stored.get("name") != name or made != run:
            differ = sorted(k for k in set(made) | set(run) if made.get(k) != run.get(k))
            return _not_used(path, f"was made by a run with other parameters ({', '.join(differ) or 'its name'})")
        return stored.get("result")

    def put(self, name: str, run: dict, result) -> Path:
        """Keep part `name`'s result (JSON values or tensors), written whole."""
        self.folder.mkdir(exist_ok=True)
        marker = self.folder / self.MARKER
        if not marker.is_file():
            write_atomically(marker, lambda tmp: Path(tmp).write_text(self.tool + "\n"))
        text = _sealed_text({"name": name, "run": _to_json(run), "result": _to_json(result)})
        return write_atomically(self._file(name), lambda tmp: Path(tmp).write_text(text))

    def clear(self) -> None:
        """Remove the kept parts and the marker (files of this class only) and the folder if it is then empty."""
        if not (self.folder / self.MARKER).is_file():
            return
        for path in self.folder.glob("*.json"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheWarning)
                stored = _read_sealed(path)
            if stored is not None and "run" in stored and "name" in stored:
                path.unlink()
        if not any(self.folder.glob("*.json")):
            (self.folder / self.MARKER).unlink()
            try:
                self.folder.rmdir()
            except OSError:  # something else is in it: it stays
                pass
