"""Notebook 04's exercise checks accept the right answers and reject plausible wrong ones."""
import math

import pytest
import sympy as sp
import torch

from mdmlib.exercises import WrongAnswer, check, verify

V, delta = sp.symbols("V delta", positive=True)


def test_04_1_half_rate_step():
    assert "correct" in verify("04.1", V / (V + 1 + sp.log(2) / delta))
    with pytest.raises(WrongAnswer, match="not 1/2"):  # the small-step approximation V delta / log 2
        check("04.1", V * delta / sp.log(2))
    with pytest.raises(WrongAnswer, match="only the symbols"):
        check("04.1", sp.Symbol("h"))


def _spread_step(e_max):
    e_min = (1e-10 - torch.log(torch.tensor(1 - 2.0**-24, dtype=torch.float32) + 1e-10)).item()
    c = 50_256 / 0.1 * e_min / e_max  # a token's h * 0.1 / 50,256 against the mask's (1 - h) e_min / e_max
    return c / (1 + c)


def test_04_2_peaked_spread_step():
    e_max = (1e-10 - torch.log(torch.tensor(0.0) + 1e-10)).item()
    assert "correct" in verify("04.2", _spread_step(e_max))
    with pytest.raises(WrongAnswer, match="too large"):  # the smallest nonzero uniform instead of u = 0
        check("04.2", _spread_step(-math.log(2.0**-24)))
    with pytest.raises(WrongAnswer, match="too small"):
        check("04.2", 1e-3)
