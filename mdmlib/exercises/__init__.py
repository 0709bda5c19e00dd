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


def verify(key: str, answer) -> str:
    """The confirmation for a right answer; raises WrongAnswer for a wrong one."""
    _load_all()
    if key not in _CHECKERS:
        raise ValueError(f"unknown exercise {key!r}; known: {sorted(_CHECKERS)}")
    if answer is None or answer is Ellipsis:
        raise WrongAnswer(f"Exercise {key}: no answer yet")
    return f"Exercise {key}: correct. {_CHECKERS[key](answer)}".strip()


def check(key: str, answer) -> None:
    """Check an answer in a notebook: print the confirmation, or raise WrongAnswer.
    It returns nothing, so the confirmation shows once as a cell's last line."""
    print(verify(key, answer))
