"""Student versions of the notebooks: `python -m mdmlib.tools.student [--out DIR]`.

Solutions are marked the way nbgrader marks them: in a code cell, the lines
between `### BEGIN SOLUTION` and `### END SOLUTION` (markers included) become
`raise NotImplementedError(...)` naming the exercise (from the cell's metadata, which stays);
a markdown cell tagged "solution" becomes a blank answer. Outputs and execution counts are
cleared. Everything else is left as it is, so a student version runs exactly like the
instructor's notebook up to its first unanswered exercise. Default folder: build/student/,
replaced only if this tool made it (mdmlib.infra.outputs).

`python -m mdmlib.tools.student --grade ANSWERED.ipynb ... [--timeout S] [--memory SIZE]`
grades answered notebooks (mdmlib.tools.grading): each in a confined kernel of its own, every
exercise reported as correct, wrong (with the check's message), not answered, error, timed
out, kernel died or missing, and the limits that held.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from mdmlib.infra.outputs import OutputError, check_out, replacing
from mdmlib.infra.paths import require_project_root
from mdmlib.tools.grading import exercise_key, grade, parse_memory, report
from mdmlib.tools.grading_kernel import Limits

ROOT = require_project_root("mdmlib.tools.student")
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "build" / "student"
MARKER = ".mdmlib-student"  # in every folder this tool wrote; only such a folder is replaced
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER_MARKDOWN = "*Your answer here.*"


def strip_code(source: str, notebook: str, key: str | None = None) -> str:
    """The cell with every solution region replaced by a NotImplementedError naming exercise `key`."""
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
            out.append(f'{inside}raise NotImplementedError("exercise {key or "in " + notebook} is not implemented yet: write your answer here")')
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
            cell.source = strip_code(cell.source, notebook, exercise_key(cell))
            cell.outputs, cell.execution_count = [], None
        elif is_solution_markdown(cell):
            cell.source = ANSWER_MARKDOWN
    nb.metadata.pop("widgets", None)
    return nb


def write_student_versions(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Write every notebook's student version into `out`, replaced whole (only if this tool made it)."""
    check_out(out, MARKER)  # before any work
    paths = sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks (NN_*.ipynb) in {notebooks}")
    versions = [(path.name, student_version(nbformat.read(path, as_version=4), path.name)) for path in paths]
    with replacing(out, MARKER, "written by python -m mdmlib.tools.student; replaced by the next run\n") as staged:
        for name, nb in versions:
            nbformat.write(nb, staged / name)
    return [Path(out).resolve() / name for name, _ in versions]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the student notebooks go (default: build/student)")
    parser.add_argument("--grade", type=Path, nargs="+", metavar="NOTEBOOK", help="grade answered notebooks instead")
    parser.add_argument("--timeout", type=float, default=Limits.timeout, metavar="SECONDS",
                        help=f"the most an exercise's code may run, its cell and the calls its check makes (default {Limits.timeout:g})")
    parser.add_argument("--memory", default="8G", metavar="SIZE", help="the kernel's address space, e.g. 8G or 512M (default 8G)")
    args = parser.parse_args(argv)
    if args.grade:
        try:
            limits = Limits(timeout=args.timeout, memory=parse_memory(args.memory))
        except ValueError as err:
            parser.error(str(err))
        failed = 0
        for path in args.grade:
            try:
                print("\n".join(report(grade(path, limits), limits)), flush=True)
            except (FileNotFoundError, ValueError) as err:  # this notebook cannot be graded; the next one can
                print(f"{path.name}: not graded: {err}", file=sys.stderr, flush=True)
                failed += 1
        return 1 if failed else 0
    try:
        written = write_student_versions(args.out)
    except (OutputError, FileNotFoundError, ValueError) as err:  # refused folders, missing notebooks, unbalanced markers
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
