"""Student versions of the notebooks: `python -m mdmlib.student [--out DIR]`.

Solutions are marked the way nbgrader marks them: in a code cell, the lines
between `### BEGIN SOLUTION` and `### END SOLUTION` (markers included) become
`raise NotImplementedError(...)` naming the exercise; a markdown cell tagged
"solution" becomes a blank answer. Outputs and execution counts are cleared.
Everything else is left as it is, so a student version runs exactly like the
instructor's notebook up to its first unanswered exercise. Default folder:
build/student/.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .results import _write_atomically

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "build" / "student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER_MARKDOWN = "*Your answer here.*"
_CHECK = re.compile(r"""check\(\s*["'](\d\d\.\d+)["']""")


def _exercise_key(source: str, notebook: str) -> str:
    found = _CHECK.search(source)
    return found.group(1) if found else f"in {notebook}"


def strip_code(source: str, notebook: str) -> str:
    """The cell with every solution region replaced by a NotImplementedError."""
    lines, out, inside = source.split("\n"), [], None
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside is not None:
                raise ValueError(f"{notebook}: a solution region opens inside another")
            inside = line[: len(line) - len(line.lstrip())]
            continue
        if stripped == END:
            if inside is None:
                raise ValueError(f"{notebook}: '{END}' without '{BEGIN}'")
            key = _exercise_key(source, notebook)
            out.append(f'{inside}raise NotImplementedError("exercise {key} is not implemented yet: write your answer here")')
            inside = None
            continue
        if inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{notebook}: '{BEGIN}' without '{END}'")
    return "\n".join(out)


def is_solution_markdown(cell) -> bool:
    return cell.cell_type == "markdown" and "solution" in cell.get("metadata", {}).get("tags", [])


def student_version(nb, notebook: str):
    """A copy of the notebook with solutions removed and outputs cleared."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_code(cell.source, notebook)
            cell.outputs, cell.execution_count = [], None
        elif is_solution_markdown(cell):
            cell.source = ANSWER_MARKDOWN
    nb.metadata.pop("widgets", None)
    return nb


def write_student_versions(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> list[Path]:
    written = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        nb = student_version(nbformat.read(path, as_version=4), path.name)
        written.append(_write_atomically(Path(out) / path.name, lambda tmp, nb=nb: nbformat.write(nb, tmp)))
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the student notebooks go (default: build/student)")
    args = parser.parse_args(argv)
    written = write_student_versions(args.out)
    print(f"wrote {len(written)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
