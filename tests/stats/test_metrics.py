import math

import pytest
import torch

from mdmlib.stats.metrics import mean_log_mu, sentence_entropy, summarize, temperature_of_mean, temperature_with_entropy


def test_sentence_entropy_of_known_histograms():
    x = torch.tensor([[3, 3, 3, 3], [0, 1, 2, 3], [5, 5, 7, 7]])
    assert torch.allclose(sentence_entropy(x), torch.tensor([0.0, math.log(4), math.log(2)], dtype=torch.float64), atol=1e-15)


def test_summarize_a_run():
    run = {"nll": [1.0, 2.0, 3.0], "entropy": [4.0, 4.0, 5.0], "nfe": [10, 12, 14]}
    s = summarize(run)
    se = 1 / math.sqrt(3)  # sample sd 1 over 3 sequences
    assert (s["nll"].mean, s["nll"].se) == pytest.approx((2.0, se), rel=1e-15)
    assert (s["gen_ppl"].mean, s["gen_ppl"].se) == pytest.approx((math.exp(2), math.exp(2) * se), rel=1e-15)
    assert s["entropy"].mean == pytest.approx(13 / 3, rel=1e-15)
    assert (s["nfe"].mean, s["nfe"].se) == pytest.approx((12.0, 2 * se), rel=1e-15)
    assert "nfe" not in summarize({"nll": run["nll"], "entropy": run["entropy"]})


def test_temperature_with_entropy_inverts_tempering():
    mu = torch.softmax(torch.randn(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    tempered = torch.softmax(torch.log(mu) / 0.7, -1)
    target = float(-(tempered * torch.log(tempered)).sum())
    # bisection to float64 resolution; the entropy itself carries ~1e-15 relative rounding
    assert temperature_with_entropy(mu, target) == pytest.approx(0.7, abs=1e-12)


def test_temperature_of_the_mean_inverts_it():
    w = torch.arange(1, 1_001, dtype=torch.float64) ** -1.1  # the audit's Zipf mu on 1,000 tokens
    log_mu = torch.log(w / w.sum())
    for T in (0.3, 0.86, 1.0, 2.0):
        assert temperature_of_mean(log_mu, mean_log_mu(log_mu, T)) == pytest.approx(T, rel=1e-9)
    assert temperature_of_mean(log_mu, float(log_mu.max())) == 0.0  # only the likeliest token
