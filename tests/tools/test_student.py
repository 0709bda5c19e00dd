"""Student versions: solutions removed, nothing else changed, written only where the tool may;
grading: outcomes from the checkers in the grader's process, exercises from the notebook's
structure, each notebook in a confined kernel of its own."""

import nbformat
import pytest
import torch

from mdmlib import exercises
from mdmlib.exercises import WrongAnswer
from mdmlib.infra.outputs import OutputError
from mdmlib.tools import grading, student
from mdmlib.tools.grading_kernel import Limits


def test_solution_regions_become_not_implemented():
    source = "import math\n    ### BEGIN SOLUTION\n    x = 42\n    ### END SOLUTION\ncheck(\"03.2\", x)"
    out = student.strip_code(source, "demo", "03.2")
    assert "42" not in out and "SOLUTION" not in out
    assert '    raise NotImplementedError("exercise 03.2 is not implemented yet' in out
    assert out.startswith("import math\n") and out.endswith('check("03.2", x)')
    assert 'exercise in demo is not implemented' in student.strip_code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "demo")


@pytest.mark.parametrize("source, message", [("### BEGIN SOLUTION\nx = 1", "without"), ("x = 1\n### END SOLUTION", "without"), ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside")])
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(ValueError, match=message):
        student.strip_code(source, "demo")


def test_student_version_blanks_tagged_markdown_clears_outputs_and_keeps_the_exercise_key():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("The derivation gives $e^{-a}$.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Question: derive it."),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION\ncheck('01.1', answer)", execution_count=3,
                                  outputs=[nbformat.v4.new_output("stream", text="hi")], metadata={"mdmlib": {"exercise": "01.1"}}),
    ]
    s = student.student_version(nb, "demo")
    assert s.cells[0].source == student.ANSWER_MARKDOWN and s.cells[1].source == "Question: derive it."
    assert s.cells[2].outputs == [] and s.cells[2].execution_count is None and "answer = 1" not in s.cells[2].source
    assert "exercise 01.1 is not implemented" in s.cells[2].source and grading.exercise_key(s.cells[2]) == "01.1"


def test_check_names_unknown_exercises_and_missing_answers():
    with pytest.raises(ValueError, match="unknown exercise"):
        exercises.check("00.0", 1)


def _notebooks(folder, names=("01_a.ipynb", "02_b.ipynb")):
    folder.mkdir()
    for name in names:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")]), folder / name)
    return folder


def test_student_versions_go_only_where_the_tool_may_write(tmp_path, monkeypatch):
    source = _notebooks(tmp_path / "notebooks")
    out = tmp_path / "student"
    assert [p.name for p in student.write_student_versions(out, source)] == ["01_a.ipynb", "02_b.ipynb"]
    assert (out / student.MARKER).is_file() and "x = 1" not in (out / "01_a.ipynb").read_text()
    (source / "02_b.ipynb").unlink()
    student.write_student_versions(out, source)  # its own folder: replaced whole
    assert sorted(p.name for p in out.iterdir()) == [student.MARKER, "01_a.ipynb"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    for where, words in ((student.ROOT, "refusing"), (tmp_path, "current folder"), (foreign, "did not write"), (foreign / "notes.txt", "is a file")):
        with pytest.raises(OutputError, match=words):
            student.write_student_versions(where, source)
        assert student.main(["--out", str(where)]) == 2
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        student.write_student_versions(tmp_path / "new", tmp_path / "nothing")
    assert not (tmp_path / "new").exists()


def _exercise(source: str, key: str | None):
    return nbformat.v4.new_code_cell(source, metadata={"mdmlib": {"exercise": key}} if key else {})


def _answered(path, cells, first="from mdmlib.exercises import check, WrongAnswer"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(first), nbformat.v4.new_markdown_cell("not part of the exercise section"),
                nbformat.v4.new_code_cell("raise RuntimeError('the body is not run when grading')"),
                nbformat.v4.new_markdown_cell("## Exercises")] + cells
    nbformat.write(nb, path)
    return path


def _is_42(answer):
    if answer != 42:
        raise WrongAnswer(f"expected 42, got {answer!r}")
    return "42 it is"


def test_grade_tells_correct_wrong_unanswered_broken_and_missing_answers(tmp_path):
    path = _answered(tmp_path / "97_demo.ipynb", [
        _exercise("check('97.1', 6 * 7)", "97.1"),
        _exercise("check('97.2', 41)", "97.2"),
        _exercise("raise NotImplementedError('exercise 97.3 is not implemented yet')", "97.3"),
        _exercise("1 / 0\ncheck('97.4', 42)", "97.4"),
    ])
    graded = grading.grade(path, Limits(timeout=60), {f"97.{k}": _is_42 for k in range(1, 6)})
    assert graded.results == [
        ("97.1", "correct", "Exercise 97.1: correct. 42 it is"),
        ("97.2", "wrong", "expected 42, got 41"),
        ("97.3", "not answered", "exercise 97.3 is not implemented yet"),
        ("97.4", "error", "ZeroDivisionError: division by zero"),
        ("97.5", "missing", "no cell of the notebook is marked as this exercise's answer (was it deleted?)"),
    ]
    assert graded.correct == 1 and graded.confinement["memory"][0] and graded.confinement["privileges"][0]
    lines = grading.report(graded, Limits(timeout=60))
    assert lines[0] == "97_demo.ipynb: 1 of 5 exercises correct" and "    time: applied (60 s per exercise, kept by the grader)" in lines
    limits = lines[lines.index("  limits on its kernel:") + 1:]
    assert [line.split(":")[0].strip() for line in limits] == ["time", "memory", "files", "user", "network", "privileges"]
    assert all(": applied (" in line or ": NOT applied (" in line for line in limits)


def test_the_command_reports_a_deleted_exercise_as_missing_and_goes_on_past_unreadable_files(tmp_path, capsys):
    # notebook 04's exercises, with every exercise cell deleted: no kernel is needed to say so
    path = _answered(tmp_path / "04_answered.ipynb", [])
    (tmp_path / "05_broken.ipynb").write_text("{not json")
    assert student.main(["--grade", str(tmp_path / "05_broken.ipynb"), str(path), "--timeout", "5", "--memory", "1G"]) == 1
    out, err = capsys.readouterr()
    assert "05_broken.ipynb: not graded: " in err and "not a notebook" in err
    assert "04_answered.ipynb: 0 of 2 exercises correct" in out and out.count("missing") == 2 and "no kernel was started" in out
    for bad in (["--timeout", "0"], ["--memory", "lots"], ["--memory", "1K"]):
        with pytest.raises(SystemExit):
            student.main(["--grade", str(path), *bad])
    for name, words in (("notes.ipynb", "cannot tell which notebook"), ("98_none.ipynb", "no exercises")):
        _answered(tmp_path / name, [])
        with pytest.raises(ValueError, match=words):
            grading.grade(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no notebook"):
        grading.grade(tmp_path / "04_gone.ipynb")


@pytest.mark.parametrize("text, size", [("8G", 8 * 2**30), ("512M", 512 * 2**20), ("2.5GiB", int(2.5 * 2**30)), ("1000", 1000)])
def test_memory_sizes(text, size):
    assert grading.parse_memory(text) == size


def test_exercises_come_from_cell_metadata_not_from_text():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("## Exercises"),
                                         _exercise("# check('04.1', h)", "04.1"), _exercise("check('04.2', h)", None),
                                         nbformat.v4.new_code_cell("", metadata={"mdmlib": {"exercise": "print('hi')"}})])
    first, cells = grading.exercise_cells(nb)
    assert first == "x = 1" and [key for _, key in cells] == ["04.1", None, None]
    with pytest.raises(ValueError, match="Exercises"):
        grading.exercise_cells(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]))


# answers to the real checkers, as a student's cells would give them: lists, text and infinity
# as arguments, exact denoisers and a network handed to the answer's function, a generator that
# must go on where the function left it, SymPy answers with assumptions
_REAL = {
    "02.1": "import math\n\ndef paper_law(p, M):\n    from mdmlib.precision.truncation import truncated_law\n    import torch\n"
            "    return truncated_law(torch.tensor(p, dtype=torch.float64), M).tolist()\ncheck(KEY, paper_law)",
    "05.2": "from mdmlib.mdm.samplers import expected_nfe\ncheck(KEY, lambda steps, length, schedule: expected_nfe(steps, length, schedule))",
    "07.2": "from mdmlib.mdm.objectives import exact_moments\ncheck(KEY, lambda d, x: exact_moments(d, x, 'linear', [0.5])['elbo'])",
    "09.2": "from mdmlib.models import AutoregressiveModel\ncheck(KEY, lambda network, x: AutoregressiveModel(network).nll_per_token(x))",
    "01.2": "import sympy as sp\neps = sp.Symbol('epsilon', positive=True)\ncheck(KEY, (eps, sp.series(-sp.log(1 - eps), eps, 0, 3)))",
    "08.2": "import sympy as sp\nN, L = sp.symbols('N L', positive=True, integer=True)\ncheck(KEY, 1 - sp.factorial(N) / (sp.factorial(N - L) * N**L))",
    "draws": "import torch\ndef draw(n, generator):\n    return torch.rand(n, generator=generator, dtype=torch.float64)\ncheck(KEY, draw)",
}


def _same_draws_as_here(draw):
    g, here = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for n in (2, 5):
        if not torch.equal(draw(n, g), torch.rand(n, generator=here, dtype=torch.float64)):
            raise WrongAnswer("the generator did not go on where the answer's function left it")
    return "same draws"


def test_the_real_checkers_judge_answers_whose_functions_stay_in_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_PROGRESS", "0")
    real = exercises.checkers()
    checkers = {f"96.{i}": real.get(name, _same_draws_as_here) for i, name in enumerate(_REAL, 1)}
    cells = [_exercise(source.replace("KEY", f"'96.{i}'"), f"96.{i}") for i, source in enumerate(_REAL.values(), 1)]
    graded = grading.grade(_answered(tmp_path / "96_real.ipynb", cells), Limits(timeout=300), checkers)
    assert [(name, outcome) for name, (_, outcome, _) in zip(_REAL, graded.results)] == [(name, "correct") for name in _REAL], graded.results


def test_a_first_cell_that_never_ends_marks_every_exercise_without_restarting_for_each(tmp_path):
    path = _answered(tmp_path / "95_stuck.ipynb", [_exercise("check('95.1', 42)", "95.1"), _exercise("check('95.2', 42)", "95.2")],
                     first="while True:\n    pass")
    graded = grading.grade(path, Limits(timeout=2), {"95.1": _is_42, "95.2": _is_42})
    assert [outcome for _, outcome, _ in graded.results] == ["timed out", "timed out"]
    assert all("first code cell" in message for _, _, message in graded.results)
