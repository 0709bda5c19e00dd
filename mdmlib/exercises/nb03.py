"""Checks for the exercises of notebook 03 (Monte Carlo verification)."""
from __future__ import annotations

import math

import sympy as sp
import torch

from mdmlib.precision.grid_law import law_on_grid
from mdmlib.precision.formats import float_format
from mdmlib.stats.significance import ALPHA, binomial_power, binomial_z, chi_square_test
from mdmlib.exercises import WrongAnswer, exercise


def _flat_leave(q: float, V: int, eps: float) -> float:
    from mdmlib.precision.truncation import truncated_law

    categories = torch.cat([torch.full((V,), q / V, dtype=torch.float64), torch.tensor([1 - q], dtype=torch.float64)])
    return truncated_law(categories, eps=eps)[:-1].sum().item()


@exercise("03.1")
def flat_closed_form(answer) -> str:
    """answer: P(leave the mask) under truncation for a flat mu over V tokens and leave
    probability q, a SymPy expression in symbols named q, V and delta."""
    try:
        expr = sp.sympify(answer)
    except (TypeError, ValueError, sp.SympifyError) as error:
        raise WrongAnswer("Exercise 03.1 asks for a SymPy expression in q, V and delta") from error
    names = {s.name: s for s in expr.free_symbols}
    if not set(names) <= {"q", "V", "delta"}:
        raise WrongAnswer(f"the answer may use only the symbols q, V and delta, it has {sorted(names)}")
    value = sp.lambdify([names.get(k, sp.Symbol(k)) for k in ("q", "V", "delta")], expr, "math")
    for dtype in ("bfloat16", "float16", "float32"):
        eps = float_format(dtype).gap_below_one
        d = -math.log1p(-eps)
        cases = [(0.1, 10), (0.01, 100), (0.3, 1000)] + ([(1000 * d / 1.5, 1000)] if 1000 * d / 1.5 < 0.5 else [])  # notebook 03's step
        for q, V in cases:
            exact = _flat_leave(q, V, eps)
            got = float(value(q, V, d))
            if not abs(got - exact) <= 1e-9 * exact + 1e-300:
                raise WrongAnswer(f"at {dtype}'s delta = {d:.3e}, q = {q:.3g}, V = {V}: your expression gives {got:.6e}, the closed form "
                                  f"(truncated_law) gives {exact:.6e}, a ratio of {got / exact if exact else math.inf:.6f}. The flat tokens "
                                  "are tied, so only beta(1) and beta(V + 1) survive: work out beta(1) exactly, without approximating "
                                  "1 - q by 1 or dropping the +1")
    return "P(leave) = q exp(-delta (V (1 - q) / q - 1)), about q e^{-delta V / q} for small q."


@exercise("03.2")
def ties_in_bfloat16(answer) -> str:
    """answer = (estimate of P(class 0), number of draws n) for gumbel_max in bfloat16 on four
    equal classes."""
    try:
        estimate, n = float(answer[0]), int(answer[1])
    except (TypeError, ValueError, IndexError) as error:
        raise WrongAnswer("Exercise 03.2 asks for a pair (estimate of P(class 0), number of draws)") from error
    if n <= 0 or not 0 <= estimate <= 1:
        raise WrongAnswer(f"({estimate}, {n}) is not a frequency and a positive number of draws")
    exact = law_on_grid(torch.full((4,), 0.25, dtype=torch.float64), torch.bfloat16, "gumbel_max")[0].item()
    power = binomial_power(exact, 0.25, n)
    if power < 0.99:
        raise WrongAnswer(f"{n:,} draws tell the sampler's P(class 0) from 1/4 with probability {power:.3f} only; draw enough that "
                          "this power is at least 0.99 (mdmlib.stats.significance.binomial_power tells you how many)")
    k = round(estimate * n)
    p_value = chi_square_test(torch.tensor([k, n - k]), torch.tensor([exact, 1 - exact])).p_value
    if p_value <= ALPHA:
        z_quarter = binomial_z(k, n, 0.25)
        hint = (" Your estimate is what exact sampling gives: did you draw in bfloat16, with gumbel_max?" if abs(z_quarter) < 3
                else " Draw with mdmlib.stats.montecarlo.count_classes(gumbel_max, ..., dtype=torch.bfloat16) and seed the generator.")
        raise WrongAnswer(f"an estimate of {estimate:.5f} from {n:,} draws does not agree with the sampler's exact law on bfloat16's grid "
                          f"(p = {p_value:.1e}, z = {binomial_z(k, n, exact):+.1f}).{hint}")
    return f"the first class wins ties: P(class 0) = {exact:.5f}, not 1/4 (power {power:.3f} against 1/4 at n = {n:,})."
