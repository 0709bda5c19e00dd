"""Argument checks shared by the public functions: each names the argument and the problem."""
from __future__ import annotations

import math
import numbers


def real_number(value, name: str) -> float:
    """value as a float; a string, a bool or anything else that is not a real number is a TypeError."""
    if isinstance(value, (str, bytes, bool)) or not (isinstance(value, numbers.Real) or _is_scalar_tensor(value)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def whole_number(value, name: str, minimum: int = 1) -> int:
    """value as an int, if it is a whole number >= minimum (2.0 is accepted, 2.5 is not)."""
    x = real_number(value, name)
    if not (math.isfinite(x) and x.is_integer() and x >= minimum):
        kind = {0: "a non-negative whole number", 1: "a positive whole number"}.get(minimum, f"a whole number >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(x)


def _is_scalar_tensor(value) -> bool:
    return hasattr(value, "dim") and hasattr(value, "item") and value.dim() == 0 and not value.dtype.is_complex
