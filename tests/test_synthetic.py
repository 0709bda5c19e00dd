import itertools
import math

import pytest
import torch

from mdmlib.stats import chi_square_test
from mdmlib.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage


@pytest.fixture(scope="module")
def tiny():
    return MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=1))


def _all_sequences(lang, L):
    xs = torch.tensor(list(itertools.product(range(lang.vocab_size), repeat=L)))
    return xs, torch.exp(lang.log_likelihood(xs))


def test_brute_force_likelihood_and_entropy(tiny):
    L = 5
    xs, p = _all_sequences(tiny, L)
    assert abs(p.sum().item() - 1) < 1e-12
    assert math.isclose(tiny.entropy_rate(L), float(-(p * p.log()).sum() / L), rel_tol=1e-12)
    # the chain is stationary: every position has marginal pi
    for l in range(L):
        marginal = torch.zeros(3, dtype=torch.float64).index_add_(0, xs[:, l], p)
        assert torch.allclose(marginal, tiny.pi, atol=1e-12)


def test_brute_force_denoiser(tiny):
    L = 5
    xs, p = _all_sequences(tiny, L)
    den = ExactDenoiser(tiny, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        truth = xs[torch.multinomial(p, 1, generator=g)].reshape(1, L)
        masked = torch.rand(1, L, generator=g) < 0.6
        x = torch.where(masked, tiny.mask_id, truth)
        mu = den(x)[0]
        consistent = ((xs == x[0]) | masked[0]).all(1)  # sequences agreeing with every unmasked token
        for l in range(L):
            if masked[0, l]:
                want = torch.zeros(3, dtype=torch.float64).index_add_(0, xs[consistent, l], p[consistent])
                assert torch.allclose(mu[l], want / want.sum(), atol=1e-12)
            else:
                assert mu[l, x[0, l]] == 1 and mu[l].sum() == 1


def test_changed_outputs_update_to_a_fresh_call():
    lang = MarkovLanguage(LanguageSpec(vocab_size=50, num_classes=4, seed=2))
    den = ExactDenoiser(lang, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    truth = lang.sample(4, 40, g)
    x_old = torch.where(torch.rand(4, 40, generator=g) < 0.8, lang.mask_id, truth)
    x_new = torch.where(torch.rand(4, 40, generator=g) < 0.2, truth, x_old)  # unmask a few more
    mu = den(x_old)
    rows, cols, out = den.changed_outputs(x_old, x_new)
    mu[rows, cols] = out
    masked = x_new == lang.mask_id
    assert torch.allclose(mu[masked], den(x_new)[masked], atol=1e-12, rtol=0)
    assert rows.numel() < masked.sum()  # some outputs were reused, not recomputed


def test_sampling_follows_the_chain():
    lang = MarkovLanguage(LanguageSpec(vocab_size=6, num_classes=3, seed=3))
    x = lang.sample(20_000, 6, torch.Generator().manual_seed(2))
    first = torch.bincount(x[:, 0], minlength=6)
    assert chi_square_test(first, lang.pi).p_value > 1e-3
    pairs = torch.bincount(x[:, 2] * 6 + x[:, 3], minlength=36)
    joint = (lang.pi[:, None] * lang.transition_rows(torch.arange(6))).flatten()
    assert chi_square_test(pairs, joint).p_value > 1e-3


def test_heavy_tailed_frequencies():
    spec = LanguageSpec(vocab_size=1000, num_classes=16, seed=0)
    lang = MarkovLanguage(spec)
    ranked = torch.sort(lang.pi, descending=True).values
    # Zipf-like: log frequency falls linearly in log rank with slope close to -zipf_exponent
    log_rank = torch.log(torch.arange(1, 1001, dtype=torch.float64))
    slope = torch.linalg.lstsq(torch.stack([log_rank, torch.ones_like(log_rank)], 1), torch.log(ranked)[:, None]).solution[0].item()
    assert abs(slope + spec.zipf_exponent) < 0.25, slope
    assert abs(lang.pi.sum().item() - 1) < 1e-12


def test_bad_inputs():
    lang = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2))
    with pytest.raises(ValueError, match="masked positions have no likelihood"):
        lang.log_likelihood(torch.tensor([[0, lang.mask_id]]))
    with pytest.raises(ValueError, match="shape"):
        lang.log_likelihood(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="vocab_size"):
        MarkovLanguage(LanguageSpec(vocab_size=1, num_classes=2))
