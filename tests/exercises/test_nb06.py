"""The checkers of notebook 06's exercises accept right answers and reject plausible wrong ones."""
import math

import pytest
import torch

from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.exercises.nb06 import _entropy_cases, _log_moments
from mdmlib.stats.metrics import categorical_entropy, gen_ppl


def _slope(p):
    p = p[p > 0]
    log_p = p.log()
    return float((p * log_p**2).sum() - (p * log_p).sum() ** 2)


def test_06_1_reference_is_the_derivative():
    """The checker's closed form against a central difference of the tempered entropy."""
    for _, p in _entropy_cases():
        h = 1e-4
        entropy = lambda T: float(categorical_entropy(torch.softmax(torch.log(p) / T, -1)))
        numeric = (entropy(1 + h) - entropy(1 - h)) / (2 * h)
        assert math.isclose(numeric, _log_moments(p)[2], rel_tol=1e-6, abs_tol=1e-9)


def test_06_1_entropy_slope():
    assert "correct" in verify("06.1", _slope)
    h = 1e-5  # a numerical derivative is a right answer too
    assert "correct" in verify("06.1", lambda p: (float(categorical_entropy(torch.softmax(torch.log(p) / (1 + h), -1))) - float(categorical_entropy(torch.softmax(torch.log(p) / (1 - h), -1)))) / (2 * h))
    with pytest.raises(WrongAnswer, match="entropy itself"):
        check("06.1", lambda p: float(categorical_entropy(p)))
    with pytest.raises(WrongAnswer, match="sign"):
        check("06.1", lambda p: -_slope(p))
    with pytest.raises(WrongAnswer, match="Centre it"):
        check("06.1", lambda p: float((p[p > 0] * p[p > 0].log() ** 2).sum()))
    with pytest.raises(WrongAnswer, match="probability 0"):  # log 0 = -inf makes NaN
        check("06.1", lambda p: float((p * p.log() ** 2).sum() - (p * p.log()).sum() ** 2))


def test_06_2_gen_ppl_with_se():
    assert "correct" in verify("06.2", lambda x: (gen_ppl(x).mean, gen_ppl(x).se))
    with pytest.raises(WrongAnswer, match="Jensen"):
        check("06.2", lambda x: (float(x.exp().mean()), gen_ppl(x).se))
    with pytest.raises(WrongAnswer, match="delta method"):
        check("06.2", lambda x: (gen_ppl(x).mean, float(x.std()) / math.sqrt(x.numel())))
    with pytest.raises(WrongAnswer, match="n - 1"):
        check("06.2", lambda x: (gen_ppl(x).mean, gen_ppl(x).mean * float(x.std(correction=0)) / math.sqrt(x.numel())))
    with pytest.raises(WrongAnswer, match="two numbers"):
        check("06.2", lambda x: gen_ppl(x).mean)
