"""Every notebook ends with graded exercises, each answer cell marked with its key in its
metadata; their solutions pass, and the student versions keep nothing of them but still run
up to the first unanswered exercise."""
import re
from pathlib import Path

import nbformat
import pytest

from mdmlib import exercises
from mdmlib.tools import grading, student

NOTEBOOKS = sorted(student.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"""^check\(\s*["'](\d\d\.\d+)["']""", re.M)  # only to cross-check the metadata


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _keys(nb) -> list[str]:
    """The exercises as the grader finds them: from the exercise section's cell metadata."""
    return [key for _, key in grading.exercise_cells(nb)[1] if key is not None]


def _solution_lines(source: str) -> list[str]:
    """The non-blank lines inside the solution markers."""
    lines, inside = [], False
    for line in source.split("\n"):
        if line.strip() == student.BEGIN:
            inside = True
        elif line.strip() == student.END:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def test_every_notebook_has_exercises_and_every_checker_an_exercise():
    assert NOTEBOOKS, "no notebooks found"
    used = []
    for path in NOTEBOOKS:
        nb = _read(path)
        keys = _keys(nb)  # raises without an exercise section
        number = path.name[:2]
        assert len(keys) >= 2, f"{path.name}: {len(keys)} graded exercises, expected at least 2"
        assert all(k.startswith(number + ".") for k in keys), f"{path.name}: exercise keys {keys} belong to another notebook"
        assert len(set(keys)) == len(keys), f"{path.name}: an exercise is checked twice: {keys}"
        used += keys
    assert sorted(used) == exercises.keys(), "checkers without an exercise, or exercises without a checker"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_every_check_call_sits_in_the_cell_marked_with_its_key(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            calls = CHECK_CALL.findall(cell.source)
            marked = grading.exercise_key(cell)
            assert calls == ([marked] if marked else []), f"{path.name}: a cell marked {marked} calls check for {calls}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_student_version_keeps_no_solution_and_nothing_else_changes(path):
    nb = _read(path)
    s = student.student_version(nb, path.name)
    assert len(s.cells) == len(nb.cells)
    solutions = 0
    for original, stripped in zip(nb.cells, s.cells):
        if original.cell_type == "code":
            hidden = _solution_lines(original.source)
            solutions += bool(hidden)
            for line in hidden:
                assert line not in stripped.source.split("\n") and line not in [x.strip() for x in stripped.source.split("\n")], f"{path.name}: solution line {line!r} survives"
            assert student.BEGIN not in stripped.source and student.END not in stripped.source
            if not hidden:
                assert stripped.source == original.source
            assert stripped.outputs == []
        elif student.is_solution_markdown(original):
            assert stripped.source == student.ANSWER_MARKDOWN
        else:
            assert stripped.source == original.source
    assert solutions >= 2, f"{path.name}: {solutions} solution cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_exercises_run_alone_solutions_pass_and_student_versions_stop_at_each(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path))  # nothing an exercise writes lands in figures/
    monkeypatch.setenv("MDMLIB_PROGRESS", "0")
    nb = _read(path)
    keys = _keys(nb)
    graded = grading.grade(path)
    assert [(key, outcome) for key, outcome, _ in graded.results] == [(key, "correct") for key in keys], graded.results
    blank = tmp_path / path.name
    nbformat.write(student.student_version(nb, path.name), blank)
    graded = grading.grade(blank)
    assert [(key, outcome) for key, outcome, _ in graded.results] == [(key, "not answered") for key in keys]
    for key, _, message in graded.results:
        assert f"exercise {key} is not implemented yet" in message
