"""Hostile and careless input to the student tool and its grader, one row per case.

A row of CASES is one of two kinds:
  Cell  an answer cell. All Cell rows are the exercise cells of one answered notebook, graded
        once in one kernel (a timeout or a death restarts it, first cell again); the row names
        the outcome the grader must give its exercise and words of the message, and may check
        a safe behaviour afterwards (no file written, no connection made). A row that needs a
        limit this machine cannot apply (switching user, a network namespace) is skipped with
        the reason the grader printed.
  Call  a call and the error it must raise (type, words of the message); or None when it must
        return, having checked the safe behaviour itself.
Every exercise here has one checker: the answer must be 42 (a function's answer is called first,
and its failures caught with `except Exception`, as the real checkers do).
"""
import os
import pwd  # noqa: F401  (imported before any fork: a child must not import)
import resource  # noqa: F401
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat
import pytest

from mdmlib.exercises import WrongAnswer, wire
from mdmlib.infra.outputs import OutputError
from mdmlib.tools import grading, sandbox, student
from mdmlib.tools.grading_kernel import Limits

LIMITS = Limits(timeout=3, memory=2**30)


@dataclass
class Cell:
    source: str | None  # "KEY" stands for the row's exercise; None: the exercise's cell was deleted
    outcome: str
    words: str = ""
    marked: bool = True  # False: the cell carries no exercise key in its metadata
    safe: Callable | None = None  # a check on the Context after grading
    needs: str | None = None  # a limit that must hold for the row to mean anything


@dataclass
class Call:
    call: Callable
    error: type | None
    words: str = ""


def _is_42(answer):
    if callable(answer):
        try:
            answer = answer()
        except Exception as error:  # the answer's failure is a wrong answer, never more
            raise WrongAnswer(f"the answer's function raised {type(error).__name__}: {error}") from None
    if answer != 42:
        raise WrongAnswer(f"expected 42, got {answer!r}")
    return "42"


CASES = [
    pytest.param(Cell('print("Exercise KEY: correct. 42")', "error", "did not call check"), id="forged print, no answer"),
    pytest.param(Cell('print("Exercise KEY: correct.")\ncheck(KEY, 41)', "wrong", "got 41"), id="forged print, wrong answer"),
    pytest.param(Cell('import mdmlib.exercises as ex\nex.verify = lambda *a, **k: "Exercise KEY: correct."\ncheck(KEY, 41)', "wrong", "got 41"),
                 id="verify replaced in the kernel"),
    pytest.param(Cell('import mdmlib.exercises as ex\nex._CHECKERS[KEY] = lambda answer: "fine"\ncheck(KEY, 41)', "wrong", "got 41"),
                 id="checker replaced in the kernel"),
    pytest.param(Cell('import mdmlib.exercises as ex\nex.check = lambda key, answer: print(f"Exercise {key}: correct.")\nex.check(KEY, 41)',
                      "error", "did not call check"), id="check replaced by a printer"),
    pytest.param(Cell("# check(KEY, 42)", "error", "did not call check"), id="commented-out check"),
    pytest.param(Cell("check(KEY, 42)", "missing", "no cell", marked=False), id="key only in the text of an unmarked cell"),
    pytest.param(Cell(None, "missing", "was it deleted"), id="deleted exercise"),
    pytest.param(Cell("check('00.0', 42)", "error", "it checked 00.0"), id="checks another exercise"),
    pytest.param(Cell("raise NotImplementedError('this exercise is not implemented yet')", "not answered", "not implemented"), id="unanswered"),
    pytest.param(Cell("while True:\n    pass", "timed out", "--timeout"), id="infinite loop in the cell"),
    pytest.param(Cell("check(KEY, 42)", "correct", "42"), id="graded after a timeout"),
    pytest.param(Cell("def f():\n    while True:\n        pass\ncheck(KEY, f)", "timed out", "--timeout"), id="infinite loop in the answer's function"),
    pytest.param(Cell("import os\nos._exit(3)", "kernel died", "exited with status 3"), id="kernel exits in the cell"),
    pytest.param(Cell("import os\ncheck(KEY, lambda: os._exit(4))", "kernel died", "exited with status 4"), id="kernel exits in the function"),
    pytest.param(Cell("def f():\n    raise SystemExit(0)\ncheck(KEY, f)", "wrong", "raised SystemExit"), id="SystemExit from the function"),
    pytest.param(Cell("raise KeyboardInterrupt", "error", "KeyboardInterrupt"), id="KeyboardInterrupt in the cell"),
    pytest.param(Cell("x = bytearray(2 * 2**30)\ncheck(KEY, 42)", "error", "MemoryError", needs="memory"), id="memory over --memory"),
    pytest.param(Cell('import os, sys\nrc = os.system(f"{sys.executable} -c \\"import socket; socket.create_connection((\'127.0.0.1\', PORT), '
                      'timeout=5)\\"")\ncheck(KEY, 42 if rc == 0 else rc)', "wrong", "expected 42", safe=lambda ctx: ctx.connections == 0,
                      needs="network"), id="os.system reaching the network"),
    pytest.param(Cell('import os\nos.system("touch OUTSIDE/written")\ncheck(KEY, 42)', "correct", "",
                      safe=lambda ctx: not (ctx.outside / "written").exists(), needs="user"),
                 id="os.system writing outside"),
    pytest.param(Cell('import json, os, sys\nos.write(json.loads(sys.argv[1])["write"], b"\\xff" * 64)\ncheck(KEY, 42)', "error",
                      "broke the grading format"), id="junk on the grading pipe"),
    pytest.param(Cell('import json, os, sys\nfrom mdmlib.exercises import wire\nos.write(json.loads(sys.argv[1])["write"], '
                      'wire.frame({"error": None, "answers": {}, "outcome": "correct"}))\ncheck(KEY, 41)', "error", "does not answer"),
                 id="forged reply claiming the outcome"),
    pytest.param(Cell("check(KEY, \"__import__('os').system('touch OUTSIDE/text-ran')\")", "wrong", "text",
                      safe=lambda ctx: not (ctx.outside / "text-ran").exists()), id="text answer that would run as code"),
    pytest.param(Cell("import sympy as sp\ncheck(KEY, sp.Function('system')(sp.Symbol('x')))", "wrong", "not one of SymPy's own"),
                 id="made-up SymPy function"),
    pytest.param(Cell("check(KEY, object())", "wrong", "cannot take"), id="an object the grader cannot take"),
]


@dataclass
class Context:
    results: dict
    confinement: dict
    outside: Path
    connections: int = 0


def _cells():
    return [(i, p.values[0]) for i, p in enumerate(CASES, 1) if isinstance(p.values[0], Cell)]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grading")
    outside = Path(tempfile.mkdtemp(dir=folder))  # 0700: only the grader's user may write here
    listener = socket.create_server(("127.0.0.1", 0))
    ctx = Context({}, {}, outside)

    def accept():
        try:
            while True:
                listener.accept()[0].close()
                ctx.connections += 1
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    cells = [nbformat.v4.new_code_cell("from mdmlib.exercises import check"), nbformat.v4.new_markdown_cell("## Exercises")]
    for i, row in _cells():
        if row.source is not None:
            source = (row.source.replace("KEY", f"'99.{i}'").replace("PORT", str(listener.getsockname()[1]))
                      .replace("OUTSIDE", str(outside)))
            cells.append(nbformat.v4.new_code_cell(source, metadata={"mdmlib": {"exercise": f"99.{i}"}} if row.marked else {}))
    path = folder / "99_hostile.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    try:
        result = grading.grade(path, LIMITS, {f"99.{i}": _is_42 for i, _ in _cells()})
    finally:
        listener.close()
    ctx.results = {key: (outcome, message) for key, outcome, message in result.results}
    ctx.confinement = result.confinement
    return ctx


def _refuses_out(where: Path | str):
    def call():
        student.write_student_versions(Path(where))
    return call


def _foreign_folder_survives():
    folder = Path(tempfile.mkdtemp())
    (folder / "notes.txt").write_text("keep me")
    try:
        student.write_student_versions(folder)
    finally:
        assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "keep me"


def _notebook_file(name: str, text: str | None):
    def call():
        path = Path(tempfile.mkdtemp()) / name
        if text is not None:
            path.write_text(text)
        grading.grade(path)
    return call


def _as_nobody_in_a_fork(act) -> int:
    """The exit status of a forked child that drops to nobody (as the kernel does) and then acts."""
    if os.geteuid() != 0:
        pytest.skip("only root can switch user")
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no return
        try:
            applied, _ = sandbox._drop_user("nobody", "")
            os._exit(act() if applied else 2)
        except BaseException:
            os._exit(3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _nobody_cannot_write_the_graders_files():
    folder = Path(tempfile.mkdtemp())  # 0700, root's

    def write() -> int:
        try:
            (folder / "x").write_text("")
        except PermissionError:
            return 0
        return 1

    assert _as_nobody_in_a_fork(write) == 0 and not (folder / "x").exists()


CASES += [
    pytest.param(Call(_refuses_out("."), OutputError, "refusing"), id="student --out . (the current folder)"),
    pytest.param(Call(_refuses_out(student.ROOT), OutputError, "refusing"), id="student --out the project"),
    pytest.param(Call(_refuses_out(student.ROOT.parent), OutputError, "refusing"), id="student --out above the project"),
    pytest.param(Call(_foreign_folder_survives, OutputError, "did not write"), id="student --out a folder of other files"),
    pytest.param(Call(_refuses_out(student.ROOT / "pyproject.toml"), OutputError, "is a file"), id="student --out a file"),
    pytest.param(Call(lambda: student.write_student_versions(Path(tempfile.mkdtemp()) / "out", Path("no-such-folder")), FileNotFoundError,
                      "no notebooks"), id="student with no notebooks"),
    pytest.param(Call(_notebook_file("answers.ipynb", "{}"), ValueError, "cannot tell which notebook"), id="grade a notebook without a number"),
    pytest.param(Call(_notebook_file("04_gone.ipynb", None), FileNotFoundError, "no notebook at"), id="grade a missing file"),
    pytest.param(Call(_notebook_file("04_bad.ipynb", "{not json"), ValueError, "not a notebook"), id="grade a file that is not JSON"),
    pytest.param(Call(lambda: Limits(timeout=0), ValueError, "timeout"), id="--timeout 0"),
    pytest.param(Call(lambda: Limits(timeout=float("nan")), ValueError, "timeout"), id="--timeout nan"),
    pytest.param(Call(lambda: Limits(memory=2**20), ValueError, "256 MiB"), id="--memory too small to start"),
    pytest.param(Call(lambda: grading.parse_memory("lots"), ValueError, "not a size"), id="--memory not a size"),
    pytest.param(Call(lambda: wire.Decoder({}, trusted=False)({"type": "pickle", "data": "gASV"}), wire.WireError, "unknown value type"),
                 id="a pickle offered as a value"),
    pytest.param(Call(_nobody_cannot_write_the_graders_files, None), id="the user drop: nobody cannot write the grader's files"),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_grading(case, request):
    if isinstance(case, Call):
        if case.error is None:
            case.call()
        else:
            with pytest.raises(case.error, match=case.words):
                case.call()
        return
    ctx = request.getfixturevalue("graded")
    key = f"99.{next(i for i, row in _cells() if row is case)}"
    if case.needs and not ctx.confinement.get(case.needs, (False, "no kernel"))[0]:
        pytest.skip(f"{case.needs} not applied here: {ctx.confinement.get(case.needs, (False, 'no kernel'))[1]}")
    outcome, message = ctx.results[key]
    assert outcome == case.outcome and case.words in message, (outcome, message)
    if case.safe is not None:
        assert case.safe(ctx)


def test_the_table_has_a_row_for_every_case_of_the_issue():
    names = {p.id for p in CASES}
    for case in ("forged print, no answer", "verify replaced in the kernel", "commented-out check", "infinite loop in the cell",
                 "kernel exits in the cell", "os.system reaching the network", "os.system writing outside", "deleted exercise"):
        assert case in names
