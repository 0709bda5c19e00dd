"""Checks for the exercises of notebook 02 (the closed form of the truncated sampler)."""
from __future__ import annotations

import math

import sympy as sp
import torch

from mdmlib.precision.formats import FORMATS
from mdmlib.precision.symbolic import delta
from mdmlib.precision.truncation import truncated_law
from mdmlib.exercises import WrongAnswer, exercise


def _cases() -> list[tuple[list[float], float, str]]:
    gen = torch.Generator().manual_seed(2)
    cases = [
        ([0.1, 0.2, 0.3, 0.4], 2.0, "a sorted vector"),
        ([0.4, 0.05, 0.3, 0.25], 1.0, "an unsorted vector"),
        ([0.3, 0.2, 0.3, 0.2], 1.5, "a vector with ties"),
        ([0.25, 0.25, 0.25, 0.25], 0.5, "four equal classes"),
        ([1e-9, 1e-3, 1.0 - 1e-3 - 1e-9], 16.6355, "a class far below e^-M"),
        ([2.0, 1.0, 5.0], 3.0, "unnormalised rates"),
        ([0.2, 0.8], math.inf, "no truncation (M = inf)"),
    ]
    for _ in range(5):
        p = (torch.rand(6, generator=gen, dtype=torch.float64) ** 3).tolist()
        cases.append((p, 6 * torch.rand(1, generator=gen, dtype=torch.float64).item(), "a random vector"))
    return cases


@exercise("02.1")
def paper_law(answer) -> str:
    """answer(p, M) -> list of K probabilities: Prop. 5.2 for any (unsorted, unnormalised) p."""
    if not callable(answer):
        raise WrongAnswer("Exercise 02.1 asks for a function: paper_law(p, M) -> the K probabilities pi'")
    for p, M, what in _cases():
        expected = truncated_law(torch.tensor(p, dtype=torch.float64), M)
        try:
            got = torch.as_tensor([float(x) for x in answer(list(p), M)], dtype=torch.float64)
        except Exception as error:
            raise WrongAnswer(f"paper_law({p}, {M}) raised {type(error).__name__}: {error}"
                              + (" (with pi_0 = 0 the second exponential of beta(1) is e^-inf = 0: treat i = 1 on its own)" if isinstance(error, ZeroDivisionError) else "")) from error
        if got.shape != expected.shape:
            raise WrongAnswer(f"paper_law on {what} returned {got.numel()} probabilities, expected {expected.numel()}")
        worst = (got - expected).abs().max().item()
        if not worst < 1e-12:
            total = got.sum().item()
            hint = (f" Your law sums to {total:.6f}, not 1: check the exponent (K + 1 - i) and S_i = sum over k >= i." if abs(total - 1) > 1e-9
                    else " It sums to 1 but puts the mass on the wrong classes: sort p, apply the formula, and return the result in p's original order.")
            raise WrongAnswer(f"paper_law on {what} (p = {[round(x, 4) for x in p]}, M = {M}) is off by up to {worst:.2e} from the "
                              f"truncated sampler's law {expected.numpy().round(6).tolist()}.{hint}")
    return f"Prop. 5.2 as written matches mdmlib.precision.truncation.truncated_law on {len(_cases())} vectors (ties, unsorted, unnormalised, M = inf)."


@exercise("02.2")
def halving_probability(answer) -> str:
    """answer: the p (a SymPy expression in delta) at which a two-class draw [p, 1 - p]
    under truncation gives the smaller class p / 2."""
    try:
        expr = sp.sympify(answer)
    except (TypeError, ValueError, sp.SympifyError) as error:
        raise WrongAnswer("Exercise 02.2 asks for a SymPy expression in symbolic.delta") from error
    if not expr.free_symbols <= {delta}:
        raise WrongAnswer(f"the answer must be an expression in delta (mdmlib.precision.symbolic.delta) alone, it has {sorted(map(str, expr.free_symbols))}")
    value = sp.lambdify(delta, expr, "math")
    for fmt in FORMATS[:3]:  # float16, bfloat16, float32: the cap bites at visible p
        d = math.exp(-fmt.gumbel_cap)
        p = float(value(d))
        if not 0 < p < 0.5:
            raise WrongAnswer(f"at {fmt.name}'s delta = {d:.3e} your p = {p:.4g}; the smaller class needs 0 < p < 1/2")
        kept = truncated_law(torch.tensor([p, 1 - p], dtype=torch.float64), fmt.gumbel_cap)[0].item() / p
        if abs(kept - 0.5) > 1e-9:
            raise WrongAnswer(f"at {fmt.name}'s delta = {d:.4e} your p = {p:.6e} keeps {kept:.9f} of its probability, not 1/2. "
                              "Start from the K = 2 law pi'_1 = p exp(-delta (1 - 2p) / p) and solve exactly (no small-delta approximation)")
    return "p = delta / (log 2 + 2 delta): the cap halves a class about 1.44 e^-M likely."
