"""Notebook 02's exercise checks accept the right answers and reject plausible wrong ones."""
import math

import pytest
import sympy as sp

from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.precision.symbolic import delta


def paper_law(p, M, shift=1):
    """Prop. 5.2 as printed; shift=0 gives the wrong exponent K - i."""
    d = math.exp(-M)
    order = sorted(range(len(p)), key=lambda k: p[k])
    s = [p[k] for k in order]
    K = len(s)
    beta = []
    for i in range(1, K + 1):
        S = sum(s[i - 1 :])
        first = math.exp((K + shift - i - S / s[i - 1]) * d)
        second = 0.0 if i == 1 else math.exp((K + shift - i - S / s[i - 2]) * d)
        beta.append((first - second) / S)
    law = [s[n] * sum(beta[: n + 1]) for n in range(K)]
    out = [0.0] * K
    for rank, k in enumerate(order):
        out[k] = law[rank]
    return out


def test_02_1_paper_law():
    assert "correct" in verify("02.1", paper_law)
    with pytest.raises(WrongAnswer, match="sums to"):
        check("02.1", lambda p, M: paper_law(p, M, shift=0))
    with pytest.raises(WrongAnswer, match="original order"):  # sorted, but not put back
        check("02.1", lambda p, M: paper_law(sorted(p), M))


def test_02_2_halving():
    assert "correct" in verify("02.2", delta / (sp.log(2) + 2 * delta))
    with pytest.raises(WrongAnswer, match="not 1/2"):  # the small-delta approximation
        check("02.2", delta / sp.log(2))
    with pytest.raises(WrongAnswer, match="alone"):
        check("02.2", sp.Symbol("p"))
