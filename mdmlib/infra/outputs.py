"""Output folders a tool may replace: a new or empty folder, or one the same tool made before.

`check_out(out, marker)` runs before any work: it refuses the current folder, the project's
root or any folder above it, a file, and a non-empty folder without the tool's marker file,
and checks that the folder (or its nearest existing parent) can be written.
`replacing(out, marker, note)` gives a staging folder beside `out` to build into; only when
the build succeeds is `out` replaced by it (marker written), otherwise `out` is left as it was.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mdmlib.infra.paths import project_root


class OutputError(ValueError):
    """An output folder the tool must not write to or replace."""


def check_out(out: Path, marker: str) -> Path:
    """`out` resolved, if a tool whose marker file is `marker` may write there."""
    out = Path(out).resolve()
    root = project_root()
    if out == Path.cwd().resolve() or (root is not None and (out == root or out in root.parents)):
        raise OutputError(f"refusing --out {out}: it is the project, a folder above it or the current folder; "
                          "give a folder of its own, e.g. one under build/")
    if out.exists() and not out.is_dir():
        raise OutputError(f"refusing --out {out}: it is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise OutputError(f"refusing --out {out}: the folder holds files this tool did not write (no {marker} marker); "
                          "give an empty or new folder")
    probe = out if out.is_dir() else next(p for p in out.parents if p.exists())
    if not probe.is_dir() or not _writable(probe):
        raise OutputError(f"refusing --out {out}: cannot write to {probe}")
    return out


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@contextmanager
def replacing(out: Path, marker: str, note: str) -> Iterator[Path]:
    """A staging folder to build into; on success it becomes `out`, with `marker` holding `note`."""
    out = check_out(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staged
        (staged / marker).write_text(note)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staged, 0o777 & ~umask)  # mkdtemp's 0700 is not what the user's own folders get
        check_out(out, marker)  # still empty or ours: nothing appeared there while building
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / out.name)
        try:
            staged.rename(out)
        except BaseException:
            if old is not None:
                (old / out.name).rename(out)  # the previous build back in its place
            raise
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
