"""The checkers of notebook 08's exercises accept right answers and reject plausible wrong ones."""
import pytest
import sympy as sp

from mdmlib.mdm.cost import categorical_draws
from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.exercises.nb08 import speedup_at
from mdmlib.mdm.schedules import mask_probability, mask_time

N, L = sp.symbols("N L")


def test_08_1_next_time():
    assert "correct" in verify("08.1", lambda tau, n, u, s: mask_time(s, u ** (1 / n) * mask_probability(s, tau)))
    with pytest.raises(WrongAnswer, match="linear schedule's rule"):
        check("08.1", lambda tau, n, u, s: tau * u ** (1 / n))
    with pytest.raises(WrongAnswer, match="u\\^\\(1/n\\), not u\\^n"):
        check("08.1", lambda tau, n, u, s: mask_time(s, u**n * mask_probability(s, tau)))
    with pytest.raises(WrongAnswer, match="shape"):
        check("08.1", lambda tau, n, u, s: mask_time(s, u ** (1 / n) * mask_probability(s, tau)).sum())


def test_08_2_several_in_one_step():
    assert "birthday" in verify("08.2", 1 - sp.ff(N, L) / N**L)
    assert "correct" in verify("08.2", 1 - sp.factorial(N) / (sp.factorial(N - L) * N**L))
    with pytest.raises(WrongAnswer, match="union bound"):
        check("08.2", L * (L - 1) / (2 * N))
    with pytest.raises(WrongAnswer, match="given step"):
        check("08.2", 1 - (1 - 1 / N) ** L)


def test_08_3_cost_ratio():
    V, length, steps = 50_257, 1_024, 10_000
    right = (categorical_draws("ancestral", length, V, steps) - 17 * categorical_draws("first_hitting", length, V)) / (V * (17 * length - 973))
    assert abs(speedup_at(right) - 17) < 1e-9
    assert "622" in verify("08.3", right)
    with pytest.raises(WrongAnswer, match=r"\|V\| \+ 1"):
        check("08.3", length * (steps - 17) / (17 * length - 973))  # the by-hand form with N L |V| draws
    with pytest.raises(WrongAnswer, match="not 17"):
        check("08.3", steps * length / (17 * length))  # the FHS categorical term and the NFE dropped
    with pytest.raises(WrongAnswer, match="positive"):
        check("08.3", -622.0)
