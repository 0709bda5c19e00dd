"""Checks for the exercises of notebook 01 (Gumbel-max and floating point)."""
from __future__ import annotations

import math

import sympy as sp
import torch

from mdmlib.precision.grid_law import law_on_grid
from mdmlib.precision.formats import gumbel_cap
from mdmlib.exercises import WrongAnswer, exercise

# a FP8 format (E4M3: 3 fraction bits), the four torch formats, and formats finer than float64,
# where 1 - eps rounds to 1 in float64 and the naive log(1 - eps) breaks down
_FRACTION_BITS = (3, 7, 10, 23, 52, 63, 112)


@exercise("01.1")
def cap_of_format(answer) -> str:
    """answer(f) -> (eps, M) for a format with f fraction bits."""
    if not callable(answer):
        raise WrongAnswer("Exercise 01.1 asks for a function: cap(fraction_bits) -> (eps, M)")
    for f in _FRACTION_BITS:
        eps, M = 2.0 ** -(f + 1), gumbel_cap(2.0 ** -(f + 1))
        try:
            got = tuple(float(x) for x in answer(f))
        except Exception as error:  # the student's code failed: say where
            raise WrongAnswer(f"cap({f}) raised {type(error).__name__}: {error}. Hint: for f > 52, 1 - eps is 1 in float64; "
                              "compute -log(1 - eps) with math.log1p(-eps)") from error
        if len(got) != 2:
            raise WrongAnswer(f"cap({f}) should return two numbers (eps, M), got {len(got)}")
        if got[0] == 2.0 * eps:
            raise WrongAnswer(f"cap({f}) returned eps = 2^-{f} = {got[0]:.3e}: that is torch.finfo's eps, the gap *above* 1. "
                              f"The largest value below 1 is 1 - 2^-(f+1), so eps = {eps:.3e}")
        if got[0] != eps:
            raise WrongAnswer(f"cap({f}) returned eps = {got[0]!r}, expected 2^-(f+1) = {eps!r}")
        if not math.isfinite(got[1]) or abs(got[1] - M) > 1e-12 * abs(M):
            raise WrongAnswer(f"cap({f}) returned M = {got[1]!r}, expected -log(-log(1 - eps)) = {M!r}"
                              + (" (1 - eps rounds to 1 in float64 here: use math.log1p(-eps))" if f > 52 else ""))
    return f"eps and M are right for {len(_FRACTION_BITS)} formats, from FP8 E4M3 (eps = 2^-4, M = {gumbel_cap(2.0**-4):.4f}) to 112 fraction bits."


@exercise("01.2")
def tail_and_series(answer) -> str:
    """answer = (P(g > M), e^-M to second order in eps), SymPy expressions in eps."""
    eps = sp.Symbol("epsilon", positive=True)
    try:
        tail, series = (sp.sympify(x) for x in answer)
    except (TypeError, ValueError, sp.SympifyError) as error:
        raise WrongAnswer("Exercise 01.2 asks for two SymPy expressions in epsilon: (tail, series)") from error
    tail, series = (e.removeO() if e.has(sp.Order) else e for e in (tail, series))
    for name, e in (("tail", tail), ("series", series)):
        if not e.free_symbols <= {eps}:
            raise WrongAnswer(f"the {name} must be an expression in epsilon = sp.Symbol('epsilon', positive=True) alone, "
                              f"it has {sorted(map(str, e.free_symbols))}")
    if sp.simplify(tail - eps) != 0:
        hint = " (that is e^-M = -log(1 - eps), not the Gumbel's tail mass)" if sp.simplify(tail + sp.log(1 - eps)) == 0 else ""
        raise WrongAnswer(f"P(g > M) = 1 - exp(-e^-M) with e^-M = -log(1 - eps); your {tail} is not equal to it{hint}")
    expected = eps + eps**2 / 2
    difference = sp.expand(series - expected)
    if difference != 0:
        first = sp.expand(series).coeff(eps, 1)
        if first != 1:
            raise WrongAnswer(f"the first-order term of e^-M = -log(1 - eps) should be eps; yours has coefficient {first}")
        raise WrongAnswer(f"e^-M = -log(1 - eps) to second order: your series differs from the right one by {difference}; "
                          "expand log(1 - x) = -x - x^2/2 - ...")
    return "P(g > M) = eps exactly, and e^-M = eps + eps^2/2 + O(eps^3)."


@exercise("01.3")
def smallest_winner(answer) -> str:
    """answer(p_mask) -> the smallest token probability that can ever beat a mask of
    probability p_mask in MDLM's float32 line (token listed before the mask)."""
    if not callable(answer):
        raise WrongAnswer("Exercise 01.3 asks for a function: smallest_winner(p_mask) -> a probability")
    for p_mask in (0.5, 0.999, 1 - 1e-4):
        try:
            threshold = float(answer(p_mask))
        except Exception as error:
            raise WrongAnswer(f"smallest_winner({p_mask}) raised {type(error).__name__}: {error}") from error
        if not threshold > 0:
            raise WrongAnswer(f"smallest_winner({p_mask}) = {threshold}: in the truncation model every class can win, but the real "
                              "line's guard 1e-10 also caps -log(u + 1e-10) *above*, at u = 0")
        # the exact law of the line on PyTorch's float32 grid: a token 0.5% below the answer
        # must never win, one 0.5% above must win sometimes
        law = law_on_grid(torch.tensor([threshold * 0.995, threshold * 1.005, p_mask], dtype=torch.float64), torch.float32)
        below, above = law[0].item(), law[1].item()
        if below > 0 or above == 0:
            side = "too large: a token 0.5% below it still wins sometimes" if below > 0 else "too small: a token 0.5% above it never wins"
            raise WrongAnswer(f"smallest_winner({p_mask}) = {threshold:.4e} is {side} (exact law of the float32 line on "
                              "PyTorch's grid). The token's best score uses the largest uniform 1 - 2^-24; the mask's worst "
                              "score uses u = 0, where -log(u + 1e-10) is largest")
    return "the line's own arithmetic decides it: below about 2.6e-9 times the mask's probability, a token can never win."
