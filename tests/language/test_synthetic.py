import itertools
import math

import pytest
import torch

from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from power_checks import check_sampling_follows_the_chain, require_z_power


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
    check_sampling_follows_the_chain(MarkovLanguage(LanguageSpec(vocab_size=6, num_classes=3, seed=3)))


def test_zipf_base_without_spread_is_exact():
    # With no log-normal spread every class emits the base itself, so pi is the Zipf law.
    spec = LanguageSpec(vocab_size=500, num_classes=4, seed=0, emission_spread=0.0)
    lang = MarkovLanguage(spec)
    zipf = torch.arange(1, 501, dtype=torch.float64) ** -spec.zipf_exponent
    zipf /= zipf.sum()
    # a normalised product of H + V float64 terms: a few hundred ulp at most
    assert torch.allclose(lang.pi, zipf, rtol=(spec.vocab_size + spec.num_classes) * 2.0**-52, atol=0)


def test_zipf_base_with_spread():
    # log B[h, v] = -s log v + spread Z[h, v] - log(row normaliser), Z iid standard normal:
    # per class, the least-squares slope of log B[h, v] on log v is exactly normal with
    # mean -s and variance spread^2 / Sxx; the mean over the H classes has spread^2 / (H Sxx).
    spec = LanguageSpec(vocab_size=1000, num_classes=16, seed=0)
    lang = MarkovLanguage(spec)
    x = torch.log(torch.arange(1, spec.vocab_size + 1, dtype=torch.float64))
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    slopes = (torch.log(lang.B) * xc).sum(1) / sxx
    sd = spec.emission_spread / math.sqrt(spec.num_classes * sxx)
    z = (slopes.mean().item() + spec.zipf_exponent) / sd
    require_z_power(0.1 / sd, 3, "a Zipf exponent off by 0.1")
    assert abs(z) < 3, z



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_denoiser_outputs_pass_the_samplers_check(dtype):
    # the project's own denoiser at the quick language's size: every masked row a law within
    # 2 V eps (mdmlib.mdm.denoiser_outputs), through all three ways the samplers read it
    from mdmlib.mdm.denoiser_outputs import check_laws, row_statistics

    lang = MarkovLanguage(LanguageSpec(vocab_size=2048, num_classes=32))
    den = ExactDenoiser(lang, dtype)
    g = torch.Generator().manual_seed(3)
    x = lang.sample(8, 64, g)
    x_old = torch.where(torch.rand(x.shape, generator=g) < 0.8, lang.mask_id, x)
    x_new = torch.where(torch.rand(x.shape, generator=g) < 0.5, x, x_old)
    rows, cols = torch.nonzero(x_new == lang.mask_id, as_tuple=True)
    for mu, read in ((den(x_new), x_new == lang.mask_id), (den.changed_outputs(x_old, x_new)[2], None), (den.outputs_at(x_new, rows, cols), None)):
        total, low, _ = row_statistics(mu)
        check_laws(total, low, dtype, 2048, read=read)


def test_a_language_too_large_for_memory_is_refused_before_it_is_built(monkeypatch):
    from mdmlib.infra.memory import BUDGET_VARIABLE

    monkeypatch.setenv(BUDGET_VARIABLE, "1e9")
    with pytest.raises(MemoryError, match="a language of 10,000,000 tokens and 100 classes .* would need at least 24.0 GB, more than 1.0 GB"):
        MarkovLanguage(LanguageSpec(vocab_size=10**7, num_classes=100))
    lang = MarkovLanguage(LanguageSpec(vocab_size=50, num_classes=4))
    x = torch.full((1, 1), lang.mask_id).expand(10**6, 10)  # 10^7 masked positions, a view
    with pytest.raises(MemoryError, match="exact denoiser's output for 1,000,000 x 10 positions of 50 tokens would need at least 4.0 GB"):
        ExactDenoiser(lang)(x)
