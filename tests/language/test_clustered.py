"""The clustered language: its fast exact quantities against MarkovLanguage's general ones
and against brute force, its sampler's law, and its refusals."""
import itertools
import math

import pytest
import torch

from mdmlib.language.clustered import ClusteredLanguage, ClusteredSpec, chain_noise, emissions
from mdmlib.language.synthetic import MarkovLanguage
from mdmlib.infra.memory import BUDGET_VARIABLE
from power_checks import check_sampling_follows_the_chain


@pytest.fixture(scope="module")
def tiny():
    return ClusteredLanguage(ClusteredSpec(vocab_size=6, num_classes=3, seed=1, zipf_exponent=0.7, emission_spread=1.0, transition_spread=1.5))


def test_it_is_a_markov_language_with_class_structure(tiny):
    # A = T[c(u)], B block-disjoint: B @ A is T, each token emitted by its own class only
    assert isinstance(tiny, MarkovLanguage)
    assert torch.equal((tiny.B > 0).sum(0), torch.ones(6, dtype=torch.int64))
    assert torch.allclose(tiny.B @ tiny.A, tiny.transition, atol=1e-15)
    assert torch.allclose(tiny.pi @ tiny.transition_rows(torch.arange(6)), tiny.pi, atol=1e-15)  # stationary


def test_likelihood_and_entropy_rate_by_brute_force(tiny):
    L = 5
    xs = torch.tensor(list(itertools.product(range(6), repeat=L)))
    logp = tiny.log_likelihood(xs)
    assert torch.allclose(logp, MarkovLanguage.log_likelihood(tiny, xs), atol=1e-12, rtol=0)
    p = torch.exp(logp)
    assert abs(float(p.sum()) - 1) < 1e-12
    assert math.isclose(tiny.entropy_rate(L), float(-(p * logp).sum() / L), rel_tol=1e-12)


def test_entropy_rate_equals_the_general_v_by_v_computation():
    lang = ClusteredLanguage(ClusteredSpec(vocab_size=300, num_classes=7, seed=4))
    for L in (1, 2, 64):
        assert math.isclose(lang.entropy_rate(L), MarkovLanguage.entropy_rate(lang, L), rel_tol=1e-12)


def test_sampling_follows_the_chain(tiny):
    check_sampling_follows_the_chain(tiny)  # its own sampler (class path, then tokens), against the chain's law


def test_emissions_are_laws_per_class_and_their_entropy_falls_with_the_exponent():
    noise = chain_noise(1000, 10, 0)
    previous = None
    for s in (0.0, 0.5, 1.0, 2.0):
        e = emissions(noise, s, 1.8 * s)
        totals = torch.zeros(10, dtype=torch.float64).index_add_(0, e.token_class, e.probability)
        assert torch.allclose(totals, torch.ones(10, dtype=torch.float64), atol=1e-13)
        if s == 0.0:  # no Zipf weight and no spread: each class uniform over its 100 tokens
            assert torch.allclose(e.entropy, torch.full((10,), math.log(100), dtype=torch.float64))
        if previous is not None:
            assert (e.entropy < previous).all()
        previous = e.entropy


@pytest.mark.parametrize("bad, match", [
    (dict(vocab_size=1), "vocab_size"),
    (dict(vocab_size=4, num_classes=5), "cannot exceed"),
    (dict(vocab_size=4, emission_spread=-1.0), "emission_spread"),
    (dict(vocab_size=4, transition_spread=float("nan")), "transition_spread"),
    (dict(vocab_size=4, zipf_exponent=float("inf")), "zipf_exponent"),
])
def test_bad_specs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ClusteredSpec(**({"num_classes": 2} | bad))


def test_refusals(monkeypatch, tiny):
    with pytest.raises(TypeError, match="ClusteredSpec"):
        ClusteredLanguage(object())
    with pytest.raises(TypeError, match="ClusteredSpec"):
        ClusteredLanguage.from_matrices(tiny.A, tiny.B)
    with pytest.raises(ValueError, match="masked positions have no likelihood"):
        tiny.log_likelihood(torch.full((1, 3), tiny.mask_id))
    monkeypatch.setenv(BUDGET_VARIABLE, "1e8")
    with pytest.raises(MemoryError, match="10,000,000 tokens and 32 classes .* would need at least 5.4 GB, more than 100.0 MB"):
        ClusteredLanguage(ClusteredSpec(vocab_size=10**7))
