"""The reading version of the notebooks: `python -m mdmlib.tools.book [--out DIR]`.

Sphinx with myst-nb renders the committed notebooks with their outputs (nothing
is executed again), in the order of the paper's ideas (`PARTS`), with math set
by a local copy of MathJax (sphinx-mathjax-offline), so the pages need no
network. The Sphinx source folder is put together in a temporary folder: a
generated conf.py and index page, the notebooks, and the claims summary of the
last run (figures/claims.md) where there is one. The HTML goes to build/book/
(open build/book/index.html). A notebook that no part lists is an error, so a new
notebook cannot be left out of the book by accident.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from mdmlib.infra.paths import require_project_root

from mdmlib.infra.results import figures_dir

ROOT = require_project_root("mdmlib.tools.book")
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "build" / "book"

PARTS = (
    ("Part I: sampling precision", ("01", "02", "03", "04", "05", "06")),
    ("Part II: time-agnostic masked models", ("07", "08")),
    ("Part III: real networks", ("09", "10")),
    ("Part IV: your own sampler", ("11",)),
)

CONF = '''\
project = "Masked diffusion models and inaccurate categorical sampling"
author = "the mdmlib authors"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # the committed outputs are the book's content
nb_ipywidgets_js = {}  # progress bars are removed; no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "sphinx_book_theme"
html_theme_options = {"show_toc_level": 2}
html_context = {"default_mode": "light"}
html_favicon = "favicon.svg"
html_title = "Executable companion to arXiv 2409.02908"
exclude_patterns = ["_build"]
'''

FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" fill="#1f4e79"/></svg>\n'

INTRO = """\
# Masked diffusion models and inaccurate categorical sampling

The reading version of the notebooks that accompany Zheng et al., *Masked Diffusion Models
are Secretly Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling*
(ICLR 2025, [arXiv:2409.02908](https://arxiv.org/abs/2409.02908)). Every page is a notebook
as the project's run command executed it, outputs included; every claim is followed by a
check that would have failed the run. The parts follow the paper's ideas.
"""


def _notebooks_by_part(notebooks: Path) -> list[tuple[str, list[str]]]:
    found = {p.name[:2]: p.stem for p in sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))}
    listed = {n for _, numbers in PARTS for n in numbers}
    orphans = sorted(set(found) - listed)
    if orphans:
        raise ValueError(f"notebooks {[found[n] for n in orphans]} belong to no part of the book: add them to mdmlib.tools.book.PARTS")
    return [(title, [found[n] for n in numbers if n in found]) for title, numbers in PARTS]


def _without_progress_bars(notebook: Path) -> str:
    """The notebook's JSON without widget outputs: they are the progress bars of the run,
    and showing them would load the widget scripts from the network."""
    nb = json.loads(notebook.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    return json.dumps(nb)


def _index(parts: list[tuple[str, list[str]]], with_claims: bool) -> str:
    text = [INTRO]
    for title, stems in parts:
        if stems:
            text += ["```{toctree}", f':caption: "{title}"', ":maxdepth: 1", "", *stems, "```", ""]
    if with_claims:
        text += ["```{toctree}", ':caption: "Results"', ":maxdepth: 1", "", "claims", "```", ""]
    return "\n".join(text)


def assemble(source: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Write the Sphinx source folder; return the page names in reading order."""
    parts = _notebooks_by_part(notebooks)
    claims = figures_dir() / "claims.md"
    source.mkdir(parents=True, exist_ok=True)
    (source / "conf.py").write_text(CONF)
    (source / "favicon.svg").write_text(FAVICON)
    for _, stems in parts:
        for stem in stems:
            (source / f"{stem}.ipynb").write_text(_without_progress_bars(notebooks / f"{stem}.ipynb"))
    if claims.exists():
        # figures are linked relative to figures/; the book keeps its own copies
        text = re.sub(r"\]\((?:\.\./)?figures/", "](figures/", claims.read_text())
        (source / "claims.md").write_text(text)
        shutil.copytree(figures_dir(), source / "figures", ignore=shutil.ignore_patterns("*.json", "*.md", "*_full.*", "*_paper.*"))
    (source / "index.md").write_text(_index(parts, claims.exists()))
    return ["index"] + [s for _, stems in parts for s in stems] + (["claims"] if claims.exists() else [])


def build(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Build the HTML book into `out` (replaced whole, only after a successful build);
    return the page names in reading order. Warnings are errors."""
    from sphinx.cmd.build import build_main

    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="mdmlib-book-") as tmp:
        source, html = Path(tmp) / "source", Path(tmp) / "html"
        pages = assemble(source, notebooks)
        status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-d", str(Path(tmp) / "doctrees"), str(source), str(html)])
        if status != 0:
            raise RuntimeError(f"the book did not build (sphinx exit status {status}); its messages are above")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(html, out)
    return pages


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the HTML goes (default: build/book)")
    args = parser.parse_args(argv)
    pages = build(args.out)
    where = args.out.resolve()
    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    print(f"built {len(pages)} pages; open {shown / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
