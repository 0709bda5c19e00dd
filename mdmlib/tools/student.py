"""Student versions of the notebooks: `python -m mdmlib.tools.student [--out DIR]`.

Solutions are marked the way nbgrader marks them: in a code cell, the lines
between `### BEGIN SOLUTION` and `### END SOLUTION` (markers included) become
`raise NotImplementedError(...)` naming the exercise; a markdown cell tagged
"solution" becomes a blank answer. Outputs and execution counts are cleared.
Everything else is left as it is, so a student version runs exactly like the
instructor's notebook up to its first unanswered exercise. Default folder:
build/student/.

`python -m mdmlib.tools.student --grade ANSWERED.ipynb ...` grades answered notebooks: it
runs each one's first code cell and its exercise section (which run on their own)
in a fresh kernel and reports every exercise as correct, wrong (with the check's
message), not answered, or failing with another error. Grading runs the answers'
code, as any notebook grader does: run it where that is acceptable.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mdmlib.infra.paths import require_project_root

import nbformat
from nbclient import NotebookClient

from mdmlib.infra.results import write_atomically

ROOT = require_project_root("mdmlib.tools.student")
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
        written.append(write_atomically(Path(out) / path.name, lambda tmp, nb=nb: nbformat.write(nb, tmp)))
    return written


def exercise_section(nb):
    """The notebook's first code cell and its '## Exercises' section, nothing between."""
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("## Exercises")), None)
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if start is None or first is None:
        raise ValueError("the notebook has no '## Exercises' section or no code cell")
    part = nbformat.v4.new_notebook(metadata=nb.metadata)
    part.cells = [nbformat.from_dict(first)] + [nbformat.from_dict(c) for c in nb.cells[start:]]
    return part


def _outcome(cell, key: str) -> tuple[str, str]:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    if not errors:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        return ("correct", "") if f"Exercise {key}: correct." in text else ("error", "the cell ran but its check printed nothing")
    error = errors[0]
    if error.ename == "NotImplementedError":
        return "not answered", error.evalue
    if error.ename == "WrongAnswer":
        return "wrong", error.evalue
    return "error", f"{error.ename}: {error.evalue}"


def grade(path: Path, timeout: int = 600) -> list[tuple[str, str, str]]:
    """(exercise, outcome, message) for each graded exercise of an answered notebook."""
    nb = exercise_section(nbformat.read(path, as_version=4))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    results = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for key in _CHECK.findall(cell.source):
                results.append((key, *_outcome(cell, key)))
    if not results:
        raise ValueError(f"{path}: no graded exercise (no check(\"NN.k\", ...) call) in its exercise section")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the student notebooks go (default: build/student)")
    parser.add_argument("--grade", type=Path, nargs="+", metavar="NOTEBOOK", help="grade answered notebooks instead")
    args = parser.parse_args(argv)
    if args.grade:
        for path in args.grade:
            results = grade(path)
            right = sum(outcome == "correct" for _, outcome, _ in results)
            print(f"{path.name}: {right} of {len(results)} exercises correct")
            for key, outcome, message in results:
                print(f"  {key}  {outcome}" + (f": {message}" if message and outcome != "not answered" else ""))
        return 0
    written = write_student_versions(args.out)
    print(f"wrote {len(written)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
