"""What the checkers accept as an answer: a real number, a function, a SymPy expression.

Each turns a student's answer into something the checker can compare, or raises
WrongAnswer saying what kind of answer the exercise wants.
"""
from __future__ import annotations

import math

import sympy

from mdmlib.exercises import WrongAnswer


def number(answer, key: str) -> float:
    """A finite real number (a Python, NumPy or SymPy number, or a one-element tensor)."""
    if isinstance(answer, (str, bytes)):
        raise WrongAnswer(f"Exercise {key} wants a number, got the text {answer!r}")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise WrongAnswer(f"Exercise {key} wants a number, got {type(answer).__name__}") from None
    if not math.isfinite(value):
        raise WrongAnswer(f"Exercise {key} wants a finite number, got {value}")
    return value


def function(answer, key: str):
    if not callable(answer):
        raise WrongAnswer(f"Exercise {key} wants a function (def ...), got {type(answer).__name__}")
    return answer


def expression(answer, key: str, allowed: tuple[sympy.Symbol, ...]) -> sympy.Expr:
    """A SymPy expression whose free symbols are among `allowed` (matched by name, so
    a student's own `sympy.symbols("N L")` works)."""
    try:
        expr = sympy.sympify(answer)
    except (sympy.SympifyError, TypeError):
        raise WrongAnswer(f"Exercise {key} wants a SymPy expression in {', '.join(map(str, allowed))}, got {answer!r}") from None
    by_name = {s.name: s for s in allowed}
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in by_name)
    if unknown:
        raise WrongAnswer(f"Exercise {key}: the answer may use only {', '.join(by_name)}; it also has {', '.join(unknown)}")
    return expr.xreplace({s: by_name[s.name] for s in expr.free_symbols})


def value_at(expr: sympy.Expr, values: dict, key: str) -> float:
    """The expression's value at a point, as a float; WrongAnswer if it is not finite there."""
    point = ", ".join(f"{k} = {v}" for k, v in values.items())
    try:
        result = complex(sympy.N(expr.subs(values), 30))
    except (TypeError, ValueError, ZeroDivisionError):
        raise WrongAnswer(f"Exercise {key}: the answer has no finite value at {point}") from None
    if not (math.isfinite(result.real) and abs(result.imag) <= 1e-12 * max(1.0, abs(result.real))):
        raise WrongAnswer(f"Exercise {key}: the answer is {result} at {point}, not a finite real number")
    return result.real
