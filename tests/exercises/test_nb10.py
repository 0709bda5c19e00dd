"""Notebook 10's exercise checkers accept the right answers and reject the plausible wrong ones with a hint."""
import math

import pytest

from mdmlib.exercises import WrongAnswer, check, verify

STEPS = (100, 500, 1000, 2048, 5000, 10000)


def _nfe(n, length):
    return n * (1 - (1 - 1 / n) ** length)


def _hours(call, step, nfe=_nfe):
    grid = [(n, 2) for n in STEPS] + [(2048, 1)]  # (steps, how many precisions run it)
    return sum(k * (64 * nfe(n, 1024) * call + 8 * n * step) for n, k in grid) / 3600


def test_10_1_calls_per_sample():
    assert "806" in verify("10.1", _nfe)
    with pytest.raises(WrongAnswer, match="one call per step"):
        check("10.1", lambda n, length: n)
    with pytest.raises(WrongAnswer, match="at least one"):
        check("10.1", lambda n, length: min(n, length))
    with pytest.raises(WrongAnswer, match="function"):
        check("10.1", 806)


def test_10_2_pooled_gen_ppl():
    check("10.2", lambda s, c: math.exp(float(s.sum() / c.sum())))
    with pytest.raises(WrongAnswer, match="mean of per-sequence perplexities"):
        check("10.2", lambda s, c: float((s / c).exp().mean()))
    with pytest.raises(WrongAnswer, match="every token alike"):
        check("10.2", lambda s, c: math.exp(float((s / c).mean())))


def test_10_3_paper_grid_hours():
    check("10.3", _hours)
    with pytest.raises(WrongAnswer, match="network calls"):
        check("10.3", lambda call, step: _hours(call, step, nfe=lambda n, length: n))  # a call every step
    with pytest.raises(WrongAnswer, match="categorical steps"):
        check("10.3", lambda call, step: _hours(call, step / 8))  # the steps counted once, not per shard
