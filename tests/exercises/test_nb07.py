"""The checkers of notebook 07's exercises accept right answers and reject plausible wrong ones."""
import pytest
import sympy as sp

from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.exercises.nb07 import _masked_sum_without_one_over_n
from mdmlib.mdm.objectives import exact_moments

n, L = sp.symbols("n L")


def test_07_1_inverse_time():
    assert "correct" in verify("07.1", (L + 1) / n)
    assert "correct" in verify("07.1", sp.gamma(L + 2) / sp.gamma(L + 1) / n)  # any form that equals it
    with pytest.raises(WrongAnswer, match="Beta\\(n \\+ 1"):
        check("07.1", L / n)
    with pytest.raises(WrongAnswer, match="Jensen"):
        check("07.1", (L + 2) / (n + 1))
    with pytest.raises(WrongAnswer, match="only n, L"):
        check("07.1", (L + 1) / sp.Symbol("k"))


def test_07_2_count_elbo():
    assert "correct" in verify("07.2", lambda d, x: exact_moments(d, x, "linear", [0.5])["elbo"])
    with pytest.raises(WrongAnswer, match="only the exact denoiser"):
        # returns -log p(x0) whatever the denoiser: right for the exact one only
        check("07.2", lambda d, x: float(-getattr(d, "denoiser", d).language.log_likelihood(x[None])[0]))
    with pytest.raises(WrongAnswer, match="1/n"):
        check("07.2", _masked_sum_without_one_over_n)
