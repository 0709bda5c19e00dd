import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from mdmlib.language.exact_laws import (
    all_sequences,
    ancestral_law,
    first_hitting_law,
    language_law,
    ordered_partitions,
    sequence_counts,
    several_per_step_probability,
)
from mdmlib.mdm.samplers import CACHING, ancestral_sample, expected_nfe, first_hitting_sample, nfe_standard_deviation
from mdmlib.mdm.schedules import SCHEDULES, mask_probability, time_grid
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test, z_power
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

L = 4  # 3^4 = 81 sequences: every one of them is listed


@pytest.fixture(scope="module")
def tiny():
    lang = MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))  # strongly correlated tokens
    return lang, ExactDenoiser(lang, dtype=torch.float64)


class Plain:
    """Only the required interface (no shortcuts); records the times it is called at."""

    def __init__(self, inner):
        self.inner, self.mask_id, self.times = inner, inner.mask_id, []

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],)
        self.times.append(t.clone())
        return self.inner(x, t)


class ChangedOnly(Plain):
    """The interface plus changed_outputs, without outputs_at."""

    def changed_outputs(self, x_old, x_new):
        return self.inner.changed_outputs(x_old, x_new)


# --- the law of the first-hitting sampler ------------------------------------------------
def test_enumerated_first_hitting_law_is_the_language(tiny):
    # every order of conditionals multiplies out to p(x): the exact denoiser is consistent
    lang, den = tiny
    assert torch.allclose(first_hitting_law(den, 3, L), language_law(lang, L), rtol=1e-12, atol=0)


@pytest.mark.parametrize("precision", ["float64", "exact", "float32"])
def test_first_hitting_samples_the_language(tiny, precision):
    # float32 too: a token drawn straight from mu is barely touched by truncation
    lang, den = tiny
    n = 200_000
    out = first_hitting_sample(den, n, L, precision, torch.Generator().manual_seed(0), progress=False)
    p = language_law(lang, L)
    nearest_wrong = ancestral_law(den, 3, L, 16)  # total variation 1.5% from p
    assert chi_square_power(p, nearest_wrong, n) >= 0.99
    assert chi_square_test(sequence_counts(out.tokens, 3), p).p_value > ALPHA
    assert (out.nfe == L).all()


def test_ancestral_code_has_its_enumerated_law_and_it_is_not_the_language(tiny):
    lang, den = tiny
    n, steps = 40_000, 3
    out = ancestral_sample(den, n, L, steps, "float64", torch.Generator().manual_seed(1), progress=False)
    law, p = ancestral_law(den, 3, L, steps), language_law(lang, L)
    counts = sequence_counts(out.tokens, 3)
    assert chi_square_power(law, p, n) >= 0.99
    assert chi_square_power(p, law, n, alpha=1e-9) >= 1 - 1e-9  # a miss of the difference below is negligible
    assert chi_square_test(counts, law).p_value > ALPHA
    assert chi_square_test(counts, p).p_value < 1e-6


def test_ancestral_law_limits(tiny):
    lang, den = tiny
    p = language_law(lang, L)
    one_step = ancestral_law(den, 3, L, 1)  # every token at once, from its marginal
    X = all_sequences(3, L)
    assert torch.allclose(one_step, lang.pi[X].prod(1), rtol=1e-12, atol=0)
    tv = [0.5 * float((ancestral_law(den, 3, L, n) - p).abs().sum()) for n in (2, 8, 64, 1000)]
    assert all(a > b for a, b in zip(tv, tv[1:]))
    # given that no step unmasks two tokens, the order is uniform: the first-hitting law
    for n, d in zip((2, 8, 64, 1000), tv):
        assert d <= several_per_step_probability(L, n) + 1e-12


def test_partition_counts_and_coupling_probability():
    assert [len(ordered_partitions(n)) for n in (1, 2, 3, 4)] == [1, 3, 13, 75]  # Fubini numbers
    # two tokens, N steps: they share a step with probability 1/N
    for n in (1, 2, 5, 100):
        assert math.isclose(several_per_step_probability(2, n), 1 / n, rel_tol=1e-12)


# --- the unmasking times ------------------------------------------------------------------
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_unmasking_times_follow_their_law(tiny, schedule):
    # With n tokens masked, the next event has m(tau)/m(1) ~ Beta(n, L - n + 1): the n-th
    # smallest of L uniforms. The likeliest bug, u^(1/(n+1)), gives Beta(n + 1, L - n + 1).
    _, den = tiny
    length, n_seq, bins = 12, 40_000, 20
    out = first_hitting_sample(den, n_seq, length, "float64", torch.Generator().manual_seed(2), schedule=schedule, progress=False)
    top = mask_probability(schedule, torch.ones((), dtype=torch.float64))
    ordered = torch.sort(out.times, dim=1, descending=True).values  # event k had length - k tokens masked
    assert (torch.diff(ordered, dim=1) < 0).all()  # one token per event
    edges = np.linspace(0, 1, bins + 1)
    for n in (length, 6, 1):
        m = (mask_probability(schedule, ordered[:, length - n]) / top).numpy()
        null = sps.beta(n, length - n + 1)
        counts = np.histogram(null.cdf(m), edges)[0]
        wrong = np.diff(sps.beta(n + 1, length - n + 1).cdf(null.ppf(edges)))
        assert chi_square_power(np.full(bins, 1 / bins), wrong, n_seq) >= 0.99
        assert chi_square_test(counts, np.full(bins, 1 / bins)).p_value > ALPHA


# --- any denoiser, the right times, L calls ------------------------------------------------
def test_every_denoiser_interface_gives_the_same_samples_and_the_event_times(tiny):
    lang, den = tiny
    runs = {}
    for name, d in (("outputs_at", den), ("changed", ChangedOnly(den)), ("plain", Plain(den))):
        runs[name] = (first_hitting_sample(d, 64, 7, "float64", torch.Generator().manual_seed(3), schedule="cosine", progress=False), d)
    ref = runs["outputs_at"][0]
    for name in ("changed", "plain"):
        assert torch.equal(runs[name][0].tokens, ref.tokens) and torch.equal(runs[name][0].times, ref.times)
        assert (runs[name][0].nfe == 7).all()
    # a time-conditioned network is called at tau_{n-1}, the time of the token it fills
    plain = runs["plain"][1]
    assert len(plain.times) == 7
    expected = torch.sort(ref.times, dim=1, descending=True).values
    for k, t in enumerate(plain.times):
        assert torch.equal(t, expected[:, k])


# --- caching ------------------------------------------------------------------------------
def test_caching_modes_sample_alike_and_count_as_named(tiny):
    _, den = tiny
    runs = {c: ancestral_sample(ChangedOnly(den), 6, 5, 30, "float64", torch.Generator().manual_seed(4), caching=c, progress=False) for c in CACHING}
    for c in CACHING:  # the denoiser is time-agnostic: the cache changes the cost, not the samples
        assert torch.equal(runs[c].tokens, runs["per_sequence"].tokens)
    batch_nfe = runs["per_batch"].nfe
    assert (batch_nfe == batch_nfe[0]).all()
    assert (runs["per_sequence"].nfe <= batch_nfe).all()
    assert (runs["none"].nfe >= runs["per_sequence"].nfe).all()


def test_no_caching_calls_at_every_step_with_the_step_time(tiny):
    _, den = tiny
    plain = Plain(den)
    out = ancestral_sample(plain, 3, 4, 10, "float64", torch.Generator().manual_seed(5), caching="none", progress=False)
    grid = time_grid(10)
    for n, t in enumerate(plain.times):
        assert (t == grid[n]).all()
    assert int(out.nfe.max()) == len(plain.times)


@pytest.mark.parametrize("caching, batch, runs", [("per_sequence", 16, 20), ("per_batch", 4, 120)])
def test_nfe_matches_its_formula(tiny, caching, batch, runs):
    # The nearest wrong count is one call more: an evaluation after the last token
    # unmasked, such as MDLM's final denoising call after its loop.
    _, den = tiny
    length, steps = 8, 40
    tokens = length if caching == "per_sequence" else batch * length
    mean, sd = expected_nfe(steps, tokens), nfe_standard_deviation(steps, tokens)
    g = torch.Generator().manual_seed(6)
    nfe = torch.cat([ancestral_sample(den, batch, length, steps, "float64", g, caching=caching, progress=False).nfe for _ in range(runs)])
    values = nfe if caching == "per_sequence" else nfe[::batch]  # per batch: one value per run
    se = sd / math.sqrt(values.numel())
    assert z_power(1 / se) >= 0.99
    assert abs(float(values.double().mean()) - mean) < 3 * se


def test_expected_nfe_exact_small_cases():
    # N = 2 steps, 3 tokens: one step holds them all with probability 2 / 8
    assert math.isclose(expected_nfe(2, 3), 1.75, rel_tol=1e-14)
    assert math.isclose(nfe_standard_deviation(2, 3), math.sqrt(3 / 16), rel_tol=1e-12)
    assert expected_nfe(1, 5) == 1.0 and nfe_standard_deviation(1, 5) == 0.0
    mean = expected_nfe(10_000, 1_024)
    assert math.isclose(mean, 10_000 * (1 - (1 - 1e-4) ** 1_024), rel_tol=1e-10)  # the paper's ~973


def test_expected_nfe_spread_against_simulation():
    rng = np.random.default_rng(7)
    steps, tokens, runs = 12, 9, 40_000
    k = np.array([len(np.unique(r)) for r in rng.integers(0, steps, (runs, tokens))])
    mean, sd = expected_nfe(steps, tokens), nfe_standard_deviation(steps, tokens)
    assert abs(k.mean() - mean) < 3 * sd / math.sqrt(runs)
    # the sample variance's standard error, from the sample's fourth moment
    centred = k - k.mean()
    se_var = math.sqrt((np.mean(centred**4) - np.var(k) ** 2) / runs)
    assert abs(np.var(k) - sd**2) < 3 * se_var


# --- bad input ----------------------------------------------------------------------------
def test_bad_input_is_named(tiny):
    _, den = tiny
    g = torch.Generator()
    with pytest.raises(ValueError, match="precision"):
        first_hitting_sample(den, 2, 3, "bfloat16", g, progress=False)
    with pytest.raises(ValueError, match="caching"):
        ancestral_sample(den, 2, 3, 4, "float64", g, caching="per_token", progress=False)
    with pytest.raises(ValueError, match="positive"):
        first_hitting_sample(den, 0, 3, "float64", g, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        first_hitting_sample(den, 2, 3, "float64", g, schedule="sigmoid", progress=False)

    class Broken(Plain):
        def __call__(self, x, t):
            return super().__call__(x, t) * float("nan")

    with pytest.raises(ValueError, match="NaN"):
        first_hitting_sample(Broken(den), 2, 3, "float64", g, progress=False)
