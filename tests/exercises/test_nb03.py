"""Notebook 03's exercise checks accept the right answers and reject plausible wrong ones."""
import pytest
import sympy as sp
import torch

from mdmlib.precision.categorical import gumbel_max
from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.stats.montecarlo import count_classes

q, V, delta = sp.symbols("q V delta", positive=True)


def test_03_1_flat_closed_form():
    assert "correct" in verify("03.1", q * sp.exp(-delta * (V * (1 - q) / q - 1)))
    with pytest.raises(WrongAnswer, match="ratio"):  # the small-q approximation
        check("03.1", q * sp.exp(-delta * V / q))
    with pytest.raises(WrongAnswer, match="only the symbols"):
        check("03.1", sp.Symbol("h") * q)


def test_03_2_ties_in_bfloat16():
    n = 2_000_000
    pi = torch.full((4,), 0.25, dtype=torch.float64)
    counts = count_classes(gumbel_max, pi, n, torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    assert "correct" in verify("03.2", (counts[0].item() / n, n))
    with pytest.raises(WrongAnswer, match="what exact sampling gives"):  # exact sampling: no ties
        exact = count_classes(gumbel_max, pi, n, torch.Generator().manual_seed(5), dtype=torch.float64)
        check("03.2", (exact[0].item() / n, n))
    with pytest.raises(WrongAnswer, match="power"):
        check("03.2", (counts[0].item() / n, 10_000))
