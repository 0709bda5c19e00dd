"""Notebook 01's exercise checks accept the right answers and reject plausible wrong ones."""
import math

import pytest
import sympy as sp
import torch

from mdmlib.exercises import WrongAnswer, check, verify

eps = sp.Symbol("epsilon", positive=True)


def cap(f):
    e = 2.0 ** -(f + 1)
    return e, -math.log(-math.log1p(-e))


def test_01_1_cap():
    assert "correct" in verify("01.1", cap)
    with pytest.raises(WrongAnswer, match="gap \\*above\\* 1"):
        check("01.1", lambda f: (2.0**-f, -math.log(-math.log1p(-(2.0**-f)))))
    with pytest.raises(WrongAnswer, match="log1p"):  # the naive log(1 - eps) breaks beyond float64
        check("01.1", lambda f: (2.0 ** -(f + 1), -math.log(-math.log(1 - 2.0 ** -(f + 1)))))


def test_01_2_tail_and_series():
    assert "correct" in verify("01.2", (eps, eps + eps**2 / 2))
    assert "correct" in verify("01.2", (1 - sp.exp(sp.log(1 - eps)), sp.series(-sp.log(1 - eps), eps, 0, 3)))
    with pytest.raises(WrongAnswer, match="second order"):
        check("01.2", (eps, eps))
    with pytest.raises(WrongAnswer, match="not the Gumbel's tail"):
        check("01.2", (-sp.log(1 - eps), eps + eps**2 / 2))


def _threshold(p_mask, e_max):
    e_min = 1e-10 - torch.log(torch.tensor(1 - 2.0**-24, dtype=torch.float32) + 1e-10)
    return p_mask * e_min.item() / e_max


def test_01_3_smallest_winner():
    e_max = (1e-10 - torch.log(torch.tensor(0.0) + 1e-10)).item()
    assert "correct" in verify("01.3", lambda p: _threshold(p, e_max))
    with pytest.raises(WrongAnswer, match="every class can win"):
        check("01.3", lambda p: 0.0)
    with pytest.raises(WrongAnswer, match="too large"):  # the smallest nonzero uniform 2^-24 instead of u = 0
        check("01.3", lambda p: _threshold(p, -math.log(2.0**-24)))
