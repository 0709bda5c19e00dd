"""Checks for the exercises of notebook 04 (one masked-diffusion step in float32)."""
from __future__ import annotations

import math

import sympy as sp
import torch

from mdmlib.precision.grid_law import law_on_grid
from mdmlib.mdm.step import step_categories
from mdmlib.precision.formats import float_format
from mdmlib.precision.truncation import truncated_law
from mdmlib.exercises import WrongAnswer, exercise

GPT2_VOCAB = 50_257


@exercise("04.1")
def half_rate_step(answer) -> str:
    """answer: the step size h (a SymPy expression in symbols named V and delta) at which a
    flat position leaves the mask at half the exact rate under truncation."""
    try:
        expr = sp.sympify(answer)
    except (TypeError, ValueError, sp.SympifyError) as error:
        raise WrongAnswer("Exercise 04.1 asks for a SymPy expression in V and delta") from error
    names = {s.name: s for s in expr.free_symbols}
    if not set(names) <= {"V", "delta"}:
        raise WrongAnswer(f"the answer may use only the symbols V and delta, it has {sorted(names)}")
    value = sp.lambdify([names.get("V", sp.Symbol("V")), names.get("delta", sp.Symbol("delta"))], expr, "math")
    for dtype in ("float32", "float16", "bfloat16"):
        fmt = float_format(dtype)
        d = math.exp(-fmt.gumbel_cap)
        for V in (100, 1000, GPT2_VOCAB):
            h = float(value(V, d))
            if not 0 < h < 1:
                raise WrongAnswer(f"at {dtype}'s delta = {d:.3e} and V = {V} your step is h = {h:.4g}; a step size lies in (0, 1)")
            categories = torch.cat([torch.full((V,), h / V, dtype=torch.float64), torch.tensor([1 - h], dtype=torch.float64)])
            ratio = truncated_law(categories, fmt.gumbel_cap)[:-1].sum().item() / h
            if abs(ratio - 0.5) > 1e-9:
                raise WrongAnswer(f"at {dtype}'s delta = {d:.4e}, V = {V:,}: your h = {h:.6e} leaves at {ratio:.9f} of the exact rate, not 1/2. "
                                  "Use the exact flat-step law q exp(-delta (V (1 - q) / q - 1)) of exercise 03.1 with q = h, and solve without "
                                  "approximating")
    d32 = math.exp(-float_format("float32").gumbel_cap)
    return (f"h = V / (V + 1 + log 2 / delta): in float32 {float(value(GPT2_VOCAB, d32)):.2g} at V = 50,257 and "
            f"{float(value(1000, d32)):.2g} at V = 1,000.")


def _peaked_law(h: float) -> torch.Tensor:
    """The real float32 line's exact law for the peaked output (0.9 on token 0, the rest flat)
    at step h, as blocks: [token 0, one of the other tokens, the mask]."""
    V = GPT2_VOCAB
    mu = torch.cat([torch.tensor([0.9], dtype=torch.float64), torch.full((V - 1,), 0.1 / (V - 1), dtype=torch.float64)])
    categories = step_categories(mu[None], 1.0, 1.0 - h, "float32")[0].to(torch.float64)
    return law_on_grid(categories[[0, 1, V]], torch.float32, copies=[1, V - 1, 1])


@exercise("04.2")
def peaked_spread_step(answer) -> str:
    """answer: the smallest step size h at which a peaked position (0.9 on one token, the rest
    flat over GPT-2's vocabulary) can leave the mask into a token other than its top one, in
    MDLM's float32 line."""
    try:
        h = float(answer)
    except (TypeError, ValueError) as error:
        raise WrongAnswer("Exercise 04.2 asks for a number: the step size h") from error
    if not 0 < h < 0.5:
        raise WrongAnswer(f"h = {h} is not a small step size in (0, 0.5)")
    below, above = _peaked_law(h * 0.99), _peaked_law(h * 1.01)
    if below[1] > 0:
        raise WrongAnswer(f"h = {h:.4g} is too large: at 0.99 h the other tokens already win sometimes (exact law of the float32 line)")
    if above[1] == 0:
        raise WrongAnswer(f"h = {h:.4g} is too small: at 1.01 h the other tokens still never win. Each of them has probability "
                          "h * 0.1 / 50,256; compare its best score (largest uniform) with the mask's worst (u = 0, where the guard "
                          "1e-10 caps -log(u + 1e-10) at about 23)")
    return f"below h = {h:.3g} a peaked position leaves the mask only into its top token (temperature 0), whatever the step count."
