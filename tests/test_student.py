"""Student versions: solutions removed, nothing else changed; exercise checks work."""
import nbformat
import pytest

from mdmlib import exercises, student


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
