"""The checkers of notebook 05's exercises accept right answers and reject plausible wrong ones."""
import math

import pytest
import torch

from mdmlib.exercises import WrongAnswer, check, verify
from mdmlib.stats.metrics import sentence_entropy
from mdmlib.mdm.samplers import expected_nfe


def test_05_1_sentence_entropy():
    assert "correct" in verify("05.1", sentence_entropy)
    with pytest.raises(WrongAnswer, match="bits"):
        check("05.1", lambda x: sentence_entropy(x) / math.log(2))
    with pytest.raises(WrongAnswer, match="whole batch"):
        check("05.1", lambda x: sentence_entropy(x.reshape(1, -1)).expand(x.shape[0]))
    # a fixed vocabulary (the quick language's 2,048 tokens) fails on larger ids
    with pytest.raises(WrongAnswer, match="raised"):
        check("05.1", lambda x: -(lambda p: (p * torch.log(p.clamp(min=1e-300))).sum(1))(torch.nn.functional.one_hot(x, 2048).double().mean(1)))
    with pytest.raises(WrongAnswer, match="wants a function"):
        check("05.1", 4.2)


def test_05_1_lets_not_implemented_through():
    def unanswered(x):
        raise NotImplementedError("exercise 05.1 is not implemented yet")

    with pytest.raises(NotImplementedError, match="05.1"):
        check("05.1", unanswered)


def test_05_2_expected_calls():
    assert "973.4" in verify("05.2", expected_nfe)
    with pytest.raises(WrongAnswer, match="linear schedule's count"):
        check("05.2", lambda n, L, schedule="linear": n * (1 - (1 - 1 / n) ** L))
    with pytest.raises(WrongAnswer, match="without caching"):
        check("05.2", lambda n, L, schedule="linear": float(n) if L > 1 else 1.0)
    from mdmlib.mdm.schedules import mask_probability, time_grid

    def unnormalised(n, L, schedule="linear"):
        m = mask_probability(schedule, time_grid(n))
        return float((1 - (1 - (m[:-1] - m[1:])) ** L).sum())

    with pytest.raises(WrongAnswer, match="m\\(1\\)"):
        check("05.2", unnormalised)


def test_05_3_one_step_nll():
    assert "0.870461" in verify("05.3", 0.8704606554627978)
    with pytest.raises(WrongAnswer, match="data's own NLL"):
        check("05.3", 0.7984689779092687)
    with pytest.raises(WrongAnswer, match="sampler's own law"):
        check("05.3", 0.8334072765336492)
    with pytest.raises(WrongAnswer, match="per sequence"):
        check("05.3", 4 * 0.8704606554627978)
    with pytest.raises(WrongAnswer, match="wants a number"):
        check("05.3", "0.87")
