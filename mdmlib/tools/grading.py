"""Grading answered notebooks: the checkers, run by the grader, judge the answers' data.

`grade(path)` reads the notebook's exercise section: its first code cell, then the code cells
from '## Exercises' on. Which exercises there are comes from the checkers (notebook NN's are
"NN.k", NN from the file's name); which cell answers one comes from the cell's metadata
(`{"mdmlib": {"exercise": "NN.k"}}`, which the student versions keep), never from its text.
The cells run in order in a confined kernel of the notebook's own (mdmlib.tools.grading_kernel).
After an exercise's cell the grader takes the answer its `check` recorded, as data, and runs
the checker in its own process: printed text is never read, and nothing the cell replaces in
the kernel (check, verify, the checkers) takes part.
Each exercise ends as correct, wrong (with the check's message), not answered, error (the cell
or the check failed otherwise), timed out, kernel died, or missing (no cell is marked for it).
After a timeout or a dead kernel a fresh kernel runs the first cell again and grading goes on.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from mdmlib import exercises
from mdmlib.exercises import WrongAnswer
from mdmlib.tools.grading_kernel import (
    Allowance,
    Kernel,
    KernelLost,
    Limits,
    TimedOut,
    rebuilt_error,
    decode,
)

OUTCOMES = ("correct", "wrong", "not answered", "error", "timed out", "kernel died", "missing")
_KEY = re.compile(r"\d\d\.\d+")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.I)


def exercise_key(cell) -> str | None:
    """The exercise a cell answers, from its metadata; None for any other cell."""
    marked = cell.get("metadata", {}).get("mdmlib", {})
    key = marked.get("exercise") if isinstance(marked, dict) else None
    return key if isinstance(key, str) and _KEY.fullmatch(key) else None


def exercise_cells(nb) -> tuple[str, list[tuple[str, str | None]]]:
    """The notebook's first code cell's source, and (source, exercise key or None) for each code
    cell of its '## Exercises' section."""
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("## Exercises")), None)
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if start is None or first is None:
        raise ValueError("the notebook has no '## Exercises' section or no code cell")
    return first.source, [(c.source, exercise_key(c)) for c in nb.cells[start:] if c.cell_type == "code"]


def notebook_number(path: Path) -> str:
    found = re.match(r"(\d\d)_", Path(path).name)
    if not found:
        raise ValueError(f"{path}: cannot tell which notebook this is: its name should start with the notebook's number, "
                         "as in 04_one_diffusion_step.ipynb")
    return found.group(1)


def parse_memory(text: str) -> int:
    """Bytes from '8G', '512M', '2.5GiB' or a plain number of bytes."""
    found = _SIZE.fullmatch(str(text).strip())
    if not found:
        raise ValueError(f"--memory {text!r} is not a size: write it as 8G, 512M or a number of bytes")
    return int(float(found.group(1)) * 1024 ** " KMGT".index(found.group(2).upper()))


@dataclass
class Graded:
    notebook: Path
    results: list[tuple[str, str, str]]  # (exercise, outcome, message), in the exercises' order
    confinement: dict[str, tuple[bool, str]] = field(default_factory=dict)  # what held in the kernel

    @property
    def correct(self) -> int:
        return sum(outcome == "correct" for _, outcome, _ in self.results)


class _Session:
    """One notebook's kernel, restarted (first cell again) after a timeout or a death."""

    def __init__(self, first: str, limits: Limits):
        self.first, self.limits = first, limits
        self.kernel, self.broken, self.confinement = None, None, {}

    def __enter__(self):
        self.scratch = tempfile.mkdtemp(prefix="mdmlib-grading-")
        if os.geteuid() == 0 and self.limits.user:
            import pwd

            try:
                entry = pwd.getpwnam(self.limits.user)
                os.chown(self.scratch, entry.pw_uid, entry.pw_gid)  # the kernel's home, once it drops to this user
            except KeyError:
                pass  # the kernel stays root and says so
        return self

    def __exit__(self, *exc):
        if self.kernel is not None:
            self.kernel.close()
        shutil.rmtree(self.scratch, ignore_errors=True)  # made above; the kernel's links are removed, not followed

    def _ready(self) -> Kernel:
        if self.kernel is None or not self.kernel.alive:
            try:
                self.kernel = Kernel(self.limits, self.scratch)
            except (TimedOut, KernelLost) as lost:
                raise KernelLost("error", f"the grading kernel could not start: {lost}") from None
            self.confinement = self.kernel.confinement
            try:
                self.kernel.ask({"op": "run", "source": self.first}, {}, Allowance(self.limits.timeout))
            except TimedOut as late:
                raise TimedOut(f"in the notebook's first code cell: its code {late}") from None
            except KernelLost as lost:
                raise KernelLost(lost.outcome, f"in the notebook's first code cell: {lost}") from None
        return self.kernel

    def run(self, source: str, key: str | None = None, checker=None) -> tuple[str, str] | None:
        """Run a cell; for an exercise's cell, its (outcome, message)."""
        if self.broken is not None:
            return self.broken if key else None
        try:
            kernel = self._ready()
        except (TimedOut, KernelLost) as lost:  # every later exercise would meet the same fate: say so once each
            self.broken = (lost.outcome if isinstance(lost, KernelLost) else "timed out", str(lost))
            return self.broken if key else None
        allowance = Allowance(self.limits.timeout)
        try:
            reply, tensors = kernel.ask({"op": "run", "source": source}, {}, allowance)
            return _outcome(kernel, reply, tensors, key, checker, allowance) if key else None
        except TimedOut as late:
            return ("timed out", f"its code {late}") if key else None
        except KernelLost as lost:
            kernel.close()
            return (lost.outcome, str(lost)) if key else None


def _outcome(kernel, reply: dict, tensors: dict, key: str, checker, allowance) -> tuple[str, str]:
    if reply.get("error") is not None:
        raised = rebuilt_error(reply["error"])
        if isinstance(raised, NotImplementedError):
            return "not answered", str(raised)
        return "error", f"{type(raised).__name__}: {raised}"
    answers = reply.get("answers")
    if not isinstance(answers, dict):
        raise KernelLost("error", "the kernel's reply holds no answers")
    if key not in answers:
        others = sorted(str(k)[:8] for k in answers)[:5]
        return "error", f'the cell ran but did not call check("{key}", ...)' + (f" (it checked {', '.join(others)})" if others else "")
    try:
        return "correct", exercises.verify(key, decode(answers[key], tensors, kernel, allowance), {key: checker})
    except WrongAnswer as wrong:
        return "wrong", str(wrong)
    except NotImplementedError as unanswered:
        return "not answered", str(unanswered)
    except Exception as error:  # the check failed on this answer: the grade says so
        return "error", f"{type(error).__name__}: {error}"


def grade(path: Path, limits: Limits = Limits(), checkers: dict | None = None) -> Graded:
    """Every exercise of an answered notebook, each with its outcome."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    checkers = exercises.checkers() if checkers is None else checkers
    number = notebook_number(path)
    expected = sorted((k for k in checkers if k.startswith(f"{number}.")), key=lambda k: int(k.split(".")[1]))
    if not expected:
        raise ValueError(f"{path}: there are no exercises for a notebook {number}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # whatever is wrong with the file, it is not a notebook to grade
        raise ValueError(f"{path}: not a notebook that can be read ({type(error).__name__}: {error})") from None
    first, cells = exercise_cells(nb)
    results: dict[str, tuple[str, str]] = {}
    with _Session(first, limits) as session:
        for source, key in cells:
            graded = key in expected and key not in results  # a second cell marked the same runs as any other
            outcome = session.run(source, key if graded else None, checkers.get(key))
            if graded:
                results[key] = outcome
    missing = ("missing", "no cell of the notebook is marked as this exercise's answer (was it deleted?)")
    return Graded(path, [(k, *results.get(k, missing)) for k in expected], session.confinement)


def report(graded: Graded, limits: Limits) -> list[str]:
    """The lines the command prints for one notebook: the grades, then what confined the kernel."""
    lines = [f"{graded.notebook.name}: {graded.correct} of {len(graded.results)} exercises correct"]
    lines += [f"  {key}  {outcome}" + (f": {message}" if message else "") for key, outcome, message in graded.results]
    held = [f"time: applied ({limits.timeout:g} s per exercise, kept by the grader)"]
    held += [f"{name}: {'applied' if applied else 'NOT applied'} ({how})" for name, (applied, how) in graded.confinement.items()]
    if not graded.confinement:
        held.append("no kernel was started")
    return lines + ["  limits on its kernel:"] + [f"    {line}" for line in held]
