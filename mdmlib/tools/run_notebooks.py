"""Execute every notebook in notebooks/, in order, writing outputs in place.

`python -m mdmlib.tools.run_notebooks [--out DIR] [NAME_FRAGMENT ...]` runs all
notebooks (or those whose file names contain one of the fragments) at the scale
set by MDMLIB_SCALE (default quick). A notebook is written only after it has
run to the end without an error, so a failure leaves the committed one intact.
With --out, the executed copies go to DIR and notebooks/ is left as it is
(useful for a full-scale run beside the committed quick-scale outputs).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from mdmlib.infra.paths import require_project_root

import nbformat
from nbclient import NotebookClient

from mdmlib.infra.claims import summarize
from mdmlib.infra.progress import progress
from mdmlib.infra.scale import current_scale

NOTEBOOKS = require_project_root("mdmlib.tools.run_notebooks") / "notebooks"


def run_notebook(path: Path, out: Path, timeout: int = 3600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    with progress(total=code_cells, desc=path.stem, unit="cell", leave=False) as cells:
        client.on_cell_executed = lambda **_: cells.update()
        client.execute()
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, out / path.name)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = NOTEBOOKS
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv):
            print("--out needs a folder")
            return 2
        out = Path(argv[i + 1]).resolve()
        argv = argv[:i] + argv[i + 2 :]
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if argv:
        paths = [p for p in paths if any(a in p.name for a in argv)]
    if not paths:
        print("no notebooks matched", argv)
        return 1
    print(f"scale: {current_scale()}  notebooks: {len(paths)}")
    start = time.time()
    with progress(paths, unit="notebook", desc="notebooks") as bar:
        for path in bar:
            seconds = run_notebook(path, out)
            bar.write(f"{path.name}: {seconds:.0f} s")
    print(f"\nall {len(paths)} notebooks ran in {(time.time() - start) / 60:.1f} min\n")
    print(summarize())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
