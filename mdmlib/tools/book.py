"""The reading version of the notebooks: `python -m mdmlib.tools.book [--out DIR]`.

The book is declared in the project's book/ folder: conf.py (Sphinx's settings) and
index.md, whose toctrees list the parts of the paper and their notebooks in reading
order. Sphinx with myst-nb renders the committed notebooks with their outputs (nothing
is executed again), with math set by a local copy of MathJax (sphinx-mathjax-offline),
so the pages need no network. The Sphinx source is put together in a temporary folder:
book/, the notebooks without their progress bars, and the claims summary of the last
run (figures/claims.md) where there is one. The HTML goes to build/book/ (open
build/book/index.html). A notebook that no part lists, or a part's entry with no
notebook, is an error.

The output folder is replaced only if this tool made it (it leaves a marker file in
it): `--out` on the project's root, on `.`, on a folder above the project or on a
non-empty folder of anything else is refused before any work starts.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from mdmlib.infra.outputs import OutputError, replacing
from mdmlib.infra.outputs import check_out as check_output_folder
from mdmlib.infra.paths import require_project_root
from mdmlib.infra.results import figures_dir

ROOT = require_project_root("mdmlib.tools.book")
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"  # conf.py, index.md (the parts), favicon.svg
DEFAULT_OUT = ROOT / "build" / "book"
MARKER = ".mdmlib-book"  # in every folder this tool built; only such a folder is replaced
MARKER_NOTE = "built by python -m mdmlib.tools.book; this folder is replaced by the next build\n"
_TOCTREE = re.compile(r"```\{toctree\}\n(?P<body>.*?)```", re.S)


class BookError(ValueError):
    pass


def parts(index: Path = BOOK / "index.md") -> list[tuple[str, list[str]]]:
    """The parts of the book as book/index.md declares them: (caption, notebook stems)."""
    if not index.is_file():
        raise BookError(f"no book declared: {index} is missing")
    found = []
    for block in _TOCTREE.finditer(index.read_text()):
        lines = block["body"].splitlines()
        caption = next((line.split(":caption:", 1)[1].strip().strip('"') for line in lines if line.startswith(":caption:")), None)
        entries = [line.strip() for line in lines if line.strip() and not line.startswith(":")]
        if caption is None:
            raise BookError(f"a toctree in {index} has no :caption: (the part's title)")
        found.append((caption, entries))
    if not found:
        raise BookError(f"{index} declares no parts (no toctree)")
    return found


def _checked_parts(notebooks: Path) -> list[tuple[str, list[str]]]:
    if not notebooks.is_dir():
        raise BookError(f"no notebooks folder at {notebooks}")
    declared = parts()
    present = {p.stem for p in notebooks.glob("[0-9][0-9]_*.ipynb")}
    listed = [s for _, stems in declared for s in stems]
    missing = [s for s in listed if s not in present]
    if missing:
        raise BookError(f"book/index.md lists notebooks that are not in {notebooks}: {missing}")
    orphans = sorted(present - set(listed))
    if orphans:
        raise BookError(f"notebooks {orphans} belong to no part of the book: add them to a toctree in book/index.md")
    return declared


def _without_progress_bars(notebook: Path) -> str:
    """The notebook's JSON without widget outputs: they are the progress bars of the run,
    and showing them would load the widget scripts from the network."""
    nb = json.loads(notebook.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    return json.dumps(nb)


def assemble(source: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Write the Sphinx source folder; return the page names in reading order."""
    declared = _checked_parts(notebooks)
    claims = figures_dir() / "claims.md"
    shutil.copytree(BOOK, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    for _, stems in declared:
        for stem in stems:
            (source / f"{stem}.ipynb").write_text(_without_progress_bars(notebooks / f"{stem}.ipynb"))
    if claims.exists():
        # figures are linked relative to figures/; the book keeps its own copies
        text = re.sub(r"\]\((?:\.\./)?figures/", "](figures/", claims.read_text())
        (source / "claims.md").write_text(text)
        shutil.copytree(figures_dir(), source / "figures", ignore=shutil.ignore_patterns("*.json", "*.md", "*_full.*", "*_paper.*"))
        with open(source / "index.md", "a") as f:
            f.write('\n```{toctree}\n:caption: "Results"\n:maxdepth: 1\n\nclaims\n```\n')
    return ["index"] + [s for _, stems in declared for s in stems] + (["claims"] if claims.exists() else [])


def check_out(out: Path) -> Path:
    """`out` resolved, if this tool may write there: a new folder, an empty one, or one it
    built before (mdmlib.infra.outputs). Anything else is refused with the reason."""
    return check_output_folder(out, MARKER)


def build(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Build the HTML book into `out` (replaced whole, only after a successful build, and
    only if this tool made it); return the page names in reading order. Warnings are errors."""
    from sphinx.cmd.build import build_main

    out = check_out(out)
    _checked_parts(notebooks)  # before Sphinx starts
    with tempfile.TemporaryDirectory(prefix="mdmlib-book-") as tmp, replacing(out, MARKER, MARKER_NOTE) as staged:
        source, html = Path(tmp) / "source", Path(tmp) / "html"
        pages = assemble(source, notebooks)
        status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-d", str(Path(tmp) / "doctrees"), str(source), str(html)])
        if status != 0:
            raise RuntimeError(f"the book did not build (sphinx exit status {status}); its messages are above")
        shutil.copytree(html, staged, dirs_exist_ok=True)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the HTML goes (default: build/book)")
    args = parser.parse_args(argv)
    try:
        pages = build(args.out)
    except (BookError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    where = args.out.resolve()
    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    print(f"built {len(pages)} pages; open {shown / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
