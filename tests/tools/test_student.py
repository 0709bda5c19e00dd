"""Student versions: solutions removed, nothing else changed; exercise checks work."""
import nbformat
import pytest

from mdmlib import exercises

from mdmlib.tools import student


def test_solution_regions_become_not_implemented():
    source = "import math\n    ### BEGIN SOLUTION\n    x = 42\n    ### END SOLUTION\ncheck(\"03.2\", x)"
    out = student.strip_code(source, "demo")
    assert "42" not in out and "SOLUTION" not in out
    assert '    raise NotImplementedError("exercise 03.2 is not implemented yet' in out
    assert out.startswith("import math\n") and out.endswith('check("03.2", x)')


@pytest.mark.parametrize("source, message", [("### BEGIN SOLUTION\nx = 1", "without"), ("x = 1\n### END SOLUTION", "without"), ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside")])
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(ValueError, match=message):
        student.strip_code(source, "demo")


def test_student_version_blanks_tagged_markdown_and_clears_outputs():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("The derivation gives $e^{-a}$.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Question: derive it."),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION\ncheck('01.1', answer)", execution_count=3, outputs=[nbformat.v4.new_output("stream", text="hi")]),
    ]
    s = student.student_version(nb, "demo")
    assert s.cells[0].source == student.ANSWER_MARKDOWN and s.cells[1].source == "Question: derive it."
    assert s.cells[2].outputs == [] and s.cells[2].execution_count is None and "answer = 1" not in s.cells[2].source


def test_check_names_unknown_exercises_and_missing_answers():
    with pytest.raises(ValueError, match="unknown exercise"):
        exercises.check("00.0", 1)


def test_grade_tells_correct_wrong_unanswered_and_broken_answers(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from mdmlib.exercises import WrongAnswer"),
        nbformat.v4.new_markdown_cell("skipped: not part of the exercise section"),
        nbformat.v4.new_code_cell("raise RuntimeError('the body is not run when grading')"),
        nbformat.v4.new_markdown_cell("## Exercises"),
        nbformat.v4.new_code_cell("print('Exercise 99.1: correct. fine')  # check(\"99.1\", x)"),
        nbformat.v4.new_code_cell("raise WrongAnswer('Exercise 99.2: off by one')  # check(\"99.2\", x)"),
        nbformat.v4.new_code_cell("raise NotImplementedError('exercise 99.3 is not implemented yet')  # check(\"99.3\", x)"),
        nbformat.v4.new_code_cell("1 / 0  # check(\"99.4\", x)"),
    ]
    path = tmp_path / "99_demo.ipynb"
    nbformat.write(nb, path)
    assert student.grade(path) == [
        ("99.1", "correct", ""),
        ("99.2", "wrong", "Exercise 99.2: off by one"),
        ("99.3", "not answered", "exercise 99.3 is not implemented yet"),
        ("99.4", "error", "ZeroDivisionError: division by zero"),
    ]
    with pytest.raises(ValueError, match="Exercises"):
        student.exercise_section(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]))
