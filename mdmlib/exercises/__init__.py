"""Graded exercises: `check("05.2", answer)` tells a student whether an answer is right.

Each notebook ends with exercises. An answer cell holds the instructor's solution
between nbgrader's markers, then calls `check`:

    ### BEGIN SOLUTION
    def leave_rate(h, V): ...
    ### END SOLUTION
    check("04.1", leave_rate)

`python -m mdmlib.tools.student` writes the student versions, where each marked region
becomes `raise NotImplementedError(...)` and markdown cells tagged "solution" become
a blank answer. The checkers live in this sub-package, one module per notebook
(`nb04.py` holds exercise "04.1", ...), registered with `@exercise("04.1")`. A checker
raises `WrongAnswer` with a message that helps (what was expected, where the answer
goes wrong) and returns a one-line confirmation when the answer is right.
In grading (mdmlib.tools.grading) `check` only hands the answer over: the checker runs in
the grader's own process, on the answer's data (mdmlib.exercises.wire), never in the kernel.
May import: every idea package and mdmlib.runs; never mdmlib.tools.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

_CHECKERS: dict[str, Callable] = {}


class WrongAnswer(AssertionError):
    """An answer that does not pass its exercise's check."""


def exercise(key: str):
    """Register a checker for exercise `key` ("NN.k")."""

    def register(fn: Callable) -> Callable:
        if key in _CHECKERS:
            raise ValueError(f"exercise {key} has two checkers")
        _CHECKERS[key] = fn
        return fn

    return register


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{module.name}")


def keys() -> list[str]:
    _load_all()
    return sorted(_CHECKERS)


def checkers() -> dict[str, Callable]:
    """Every exercise's checker, by key (a copy: the grader may be given others)."""
    _load_all()
    return dict(_CHECKERS)


def verify(key: str, answer, registry: dict[str, Callable] | None = None) -> str:
    """The confirmation for a right answer; raises WrongAnswer for a wrong one. `registry`:
    the checkers to use instead of the registered ones."""
    if registry is None:
        _load_all()
        registry = _CHECKERS
    if key not in registry:
        raise ValueError(f"unknown exercise {key!r}; known: {sorted(registry)}")
    if answer is None or answer is Ellipsis:
        raise WrongAnswer(f"Exercise {key}: no answer yet")
    return f"Exercise {key}: correct. {registry[key](answer)}".strip()


def check(key: str, answer) -> None:
    """Check an answer in a notebook: print the confirmation, or raise WrongAnswer.
    It returns nothing, so the confirmation shows once as a cell's last line."""
    print(verify(key, answer))
