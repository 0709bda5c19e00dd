"""SymPy versions of the truncated sampler's law, for exact proofs (notebook 02).

Probabilities are ordered by construction: pi_1 = x1, pi_2 = x1 + x2, ...
with every x_j > 0, and delta = e^-M > 0. They need not sum to 1 (a race
only compares rates).
"""
from __future__ import annotations

import sympy as sp

from mdmlib.infra.checks import whole_number

delta, t = sp.symbols("delta t", positive=True)
_EXP = sp.Function("E")  # an opaque stand-in for exp, so SymPy cannot move it around


def ordered_probabilities(K: int) -> list[sp.Expr]:
    K = whole_number(K, "K")
    xs = sp.symbols(f"x1:{K + 1}", positive=True)
    return [sum(xs[: j + 1]) for j in range(K)]


def law_from_definition(K: int) -> tuple[list[sp.Expr], list[sp.Expr]]:
    """P(class n wins), n = 1..K, straight from the definition: class n's
    firing density times every other class's survival function, integrated
    by SymPy over each interval between the clocks' start times
    a_n = delta / pi_n (a_1 >= ... >= a_K). Before its start a clock survives
    with probability 1; after it, with exp(-pi_k (t - a_k))."""
    K = whole_number(K, "K")
    pis = ordered_probabilities(K)
    a = [delta / p for p in pis]
    law = []
    for n in range(K):
        total = 0
        for m in range(n + 1):  # on [a[m], a[m-1]) the clocks m..K-1 have started, n among them
            end = sp.oo if m == 0 else a[m - 1]
            integrand = pis[n] * sp.exp(-pis[n] * (t - a[n]))
            for k in range(m, K):
                if k != n:
                    integrand *= sp.exp(-pis[k] * (t - a[k]))
            total += sp.integrate(integrand, (t, a[m], end))
        law.append(total)
    return pis, law


def law_from_paper(pis: list[sp.Expr]) -> list[sp.Expr]:
    """The paper's Prop. 5.2, written as printed, with e^-M = delta:
    pi'_n = pi_n sum_{i<=n} beta(i), and the pi_0 = 0 term of beta(1) is e^-inf = 0."""
    K = len(pis)
    if K == 0:
        raise ValueError("law_from_paper needs at least one probability")
    law = []
    for n in range(1, K + 1):
        total = 0
        for i in range(1, n + 1):
            S_i = sum(pis[i - 1 :])
            first = sp.exp((K + 1 - i - S_i / pis[i - 1]) * delta)
            second = 0 if i == 1 else sp.exp((K + 1 - i - S_i / pis[i - 2]) * delta)
            total += (first - second) / S_i
        law.append(pis[n - 1] * total)
    return law


def is_zero_exp_polynomial(expr: sp.Expr) -> bool:
    """Decide that a sum of rational functions times exponentials is identically 0.

    `simplify` gives up on these. Instead: over a common denominator, expand
    the numerator, merge the exponentials in each term into one exp(sum of
    exponents), group terms by their (cancelled) exponent, and require every
    group's coefficient to cancel to 0. A True answer is a proof; a False one
    could only mean two different-looking exponents are equal."""
    expr = expr.replace(sp.exp, lambda arg: _EXP(sp.cancel(arg)))
    numerator = sp.expand(sp.numer(sp.together(expr)))
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(numerator):
        coeff, exponent = sp.S.One, sp.S.Zero
        for factor in sp.Mul.make_args(term):
            if isinstance(factor, _EXP):
                exponent += factor.args[0]
            elif factor.is_Pow and isinstance(factor.base, _EXP):
                exponent += factor.base.args[0] * factor.exp
            else:
                coeff *= factor
        key = sp.cancel(exponent)
        groups[key] = groups.get(key, 0) + coeff
    return all(sp.cancel(c) == 0 for c in groups.values())
