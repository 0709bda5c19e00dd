import math

import numpy as np
import pytest
import torch
from scipy import special
from scipy import stats as sps

from mdmlib.language.exact_laws import language_law, per_count_losses
from mdmlib.mdm.objectives import (
    Tempered,
    count_weights,
    count_weights_of_time_weighting,
    elbo_count_weights,
    exact_moments,
    masked_count_draw,
    masked_count_estimates,
    masked_count_terms,
    masked_nll,
    masking_times,
    time_estimates,
)
from mdmlib.mdm.schedules import LOGLINEAR_EPS, mask_probability
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test, z_power
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage


@pytest.fixture(scope="module")
def tiny():
    lang = MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))
    return lang, ExactDenoiser(lang, dtype=torch.float64)


class TimeRecorder:
    """A time-conditioned interface around a time-agnostic denoiser: records (x, t)."""

    def __init__(self, inner):
        self.inner, self.mask_id, self.calls = inner, inner.mask_id, []

    def __call__(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return self.inner(x, t)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_every_masked_count_has_weight_one(schedule):
    w, err = elbo_count_weights(12, schedule)
    assert ((w - 1).abs() <= err + 1e-12).all()


def test_loglinear_weights_fall_short_by_the_incomplete_beta():
    L = 12
    w, err = elbo_count_weights(L, "loglinear")
    n = np.arange(1, L + 1)
    assert np.allclose(w.numpy(), special.betainc(n, L - n + 1, 1 - LOGLINEAR_EPS), rtol=0, atol=float(err.max()) + 1e-12)


def test_weightings_of_the_masked_counts():
    L = 16
    assert torch.equal(count_weights("elbo", L), torch.ones(L, dtype=torch.float64))
    assert torch.allclose(count_weights("mlm", L), torch.tensor(sps.binom.pmf(np.arange(1, L + 1), L, 0.15)), rtol=1e-12, atol=0)
    w = count_weights("maskgit", L)
    assert (w > 0).all() and math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
    # MaskGIT's n = ceil(cos(pi u / 2) L), simulated; the wrong law is a uniform ratio
    n_draws = 100_000
    u = np.random.default_rng(0).random(n_draws)
    counts = np.bincount(np.ceil(np.cos(np.pi * u / 2) * L).astype(int), minlength=L + 1)[1:]
    assert chi_square_power(w, np.full(L, 1 / L), n_draws) >= 0.99
    assert chi_square_test(counts, w).p_value > ALPHA
    with pytest.raises(ValueError, match="unknown weighting"):
        count_weights("bert", L)


def test_time_weightings_become_positive_count_weights():
    L = 10
    for schedule in ("linear", "cosine"):
        assert torch.allclose(count_weights_of_time_weighting(lambda t: 1.0, L, schedule), torch.ones(L, dtype=torch.float64), rtol=1e-10, atol=0)
    # weight m(t) / m'(t) = t under the linear schedule (the loss without its 1/t): E[Beta(n, L-n+1)] = n / (L + 1)
    n = torch.arange(1, L + 1, dtype=torch.float64)
    assert torch.allclose(count_weights_of_time_weighting(lambda t: t, L, "linear"), n / (L + 1), rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="m\\(1\\) = 1"):
        count_weights_of_time_weighting(lambda t: 1.0, L, "loglinear")


def test_population_losses_sum_to_the_entropy_and_are_minimised_by_the_truth(tiny):
    lang, den = tiny
    L = 4
    p = language_law(lang, L)
    losses = per_count_losses(lang, den, L)
    assert math.isclose(float(losses.sum()), float(-(p * p.log()).sum()), rel_tol=1e-12)

    for T in (0.8, 1.25):  # Gibbs' inequality, term by term: any positive weighting has the same minimiser
        assert (per_count_losses(lang, Tempered(den, T), L) > losses + 1e-9).all()
    assert torch.allclose(per_count_losses(lang, Tempered(den, 1.0), L), losses, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="temperature"):
        Tempered(den, 0.0)


def test_exact_moments(tiny):
    lang, den = tiny
    x0 = lang.sample(1, 8, torch.Generator().manual_seed(0))[0]
    nll = -float(lang.log_likelihood(x0[None]))
    a = exact_moments(den, x0, "linear", [1e-5, 1e-7])
    assert math.isclose(a["elbo"], nll, rel_tol=1e-13) and math.isclose(a["elbo_time"], nll, rel_tol=1e-12)
    # linear: the second moment grows by sum_l S_l^2 per unit of log(1 / t_min), up to O(L t_min)
    slope = (a["time_second"][1] - a["time_second"][0]) / math.log(100)
    assert math.isclose(slope, a["one_masked_square_sum"], rel_tol=1e-3)
    # cosine: it converges, the decade below 1e-5 adding about a tenth of the one above
    c = exact_moments(den, x0, "cosine", [1e-4, 1e-5, 1e-6])
    assert math.isclose(c["elbo_time"], nll, rel_tol=1e-12)
    second = c["time_second"]
    assert 0 < second[2] - second[1] < 0.2 * (second[1] - second[0])
    assert a["count_second"] - nll**2 < second[2] - nll**2  # the masked-count estimator's variance is lower
    with pytest.raises(ValueError, match="t_min"):
        exact_moments(den, x0, "linear", [0.0])


@pytest.mark.parametrize("estimator", ["masked_count", "cosine"])
def test_estimators_have_mean_minus_log_likelihood(tiny, estimator):
    # (the linear time estimator has infinite variance: its standard error cannot be trusted)
    lang, den = tiny
    x0 = lang.sample(4, 8, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    draws = 60_000
    diffs, ses, nlls = [], [], []
    for x in x0:
        e = masked_count_estimates(den, x, draws, g) if estimator == "masked_count" else time_estimates(den, x, draws, g, "cosine")
        nll = -float(lang.log_likelihood(x[None]))
        diffs.append(float(e.mean()) - nll)
        ses.append(float(e.std()) / math.sqrt(draws))
        nlls.append(nll)
    se = math.sqrt(sum(s**2 for s in ses))
    assert z_power(0.01 * sum(nlls) / se) >= 0.99  # against an ELBO off by 1% of log p
    assert abs(sum(diffs) / se) < 3


def test_masked_count_estimator_calls_at_the_beta_time(tiny):
    # a time-conditioned network sees n masked tokens at a time with m ~ Beta(n, L - n + 1)
    lang, den = tiny
    L, draws, bins = 6, 30_000, 20
    rec = TimeRecorder(den)
    x0 = lang.sample(1, L, torch.Generator().manual_seed(3))[0]
    masked_count_estimates(rec, x0, draws, torch.Generator().manual_seed(4), schedule="cosine")
    x = torch.cat([c[0] for c in rec.calls])
    t = torch.cat([c[1] for c in rec.calls])
    n = (x == den.mask_id).sum(1).numpy()
    m = mask_probability("cosine", t).numpy()
    counts = np.histogram(sps.beta.cdf(m, n, L - n + 1), np.linspace(0, 1, bins + 1))[0]
    edges = np.linspace(0, 1, bins + 1)
    wrong = np.mean([np.diff(sps.beta(k + 1, L - k + 1).cdf(sps.beta(k, L - k + 1).ppf(edges))) for k in range(1, L + 1)], 0)
    assert chi_square_power(np.full(bins, 1 / bins), wrong, draws) >= 0.99
    assert chi_square_test(counts, np.full(bins, 1 / bins)).p_value > ALPHA


@pytest.mark.parametrize("draw", ["shared", "separate"])
def test_both_masked_count_draws_follow_the_same_law(draw):
    # n ~ U{1..L}, exactly n positions masked, each position alike, and m ~ Beta(n, L - n + 1)
    L, rows, bins = 6, 30_000, 20
    n, m, masked = masked_count_draw(rows, L, torch.Generator().manual_seed(6), draw)
    assert torch.equal(masked.sum(1), n)
    assert chi_square_test(torch.bincount(n - 1, minlength=L).numpy(), np.full(L, 1 / L)).p_value > ALPHA
    assert chi_square_test(masked.sum(0).numpy(), np.full(L, 1 / L)).p_value > ALPHA
    edges = np.linspace(0, 1, bins + 1)
    counts = np.histogram(sps.beta.cdf(m.numpy(), n.numpy(), L - n.numpy() + 1), edges)[0]
    wrong = np.mean([np.diff(sps.beta(k + 1, L - k + 1).cdf(sps.beta(k, L - k + 1).ppf(edges))) for k in range(1, L + 1)], 0)
    assert chi_square_power(np.full(bins, 1 / bins), wrong, rows) >= 0.99
    assert chi_square_test(counts, np.full(bins, 1 / bins)).p_value > ALPHA


def test_masked_nll_of_a_batch_is_that_of_each_sequence(tiny):
    # one x0 per row gives each row what its own sequence gives, with or without outputs_at
    lang, den = tiny
    x0 = lang.sample(5, 7, torch.Generator().manual_seed(7))
    xt = torch.where(torch.rand(5, 7, generator=torch.Generator().manual_seed(8)) < 0.5, den.mask_id, x0)
    t = torch.full((5,), 0.5, dtype=torch.float64)
    rows = torch.stack([masked_nll(den, x0[i], xt[i : i + 1], t[i : i + 1])[0] for i in range(5)])
    assert torch.equal(masked_nll(den, x0, xt, t), rows)
    assert torch.equal(masked_nll(TimeRecorder(den), x0, xt, t), rows)
    with pytest.raises(ValueError, match=r"x0 \(L,\) or \(R, L\)"):
        masked_nll(den, x0[:4], xt, t)


def test_masked_count_estimates_are_the_terms_of_shared_draws(tiny):
    # -ELBO estimates of one sequence: L S / n of masked_count_terms on its copies
    lang, den = tiny
    x = lang.sample(1, 8, torch.Generator().manual_seed(9))[0]
    estimates = masked_count_estimates(den, x, 500, torch.Generator().manual_seed(10), "cosine")
    s, n = masked_count_terms(den, x.expand(500, -1), torch.Generator().manual_seed(10), schedule="cosine", draw="shared")
    assert torch.equal(estimates, 8 / n.to(torch.float64) * s)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_masking_times_follow_the_beta_law(schedule):
    L, n_seq, bins = 10, 30_000, 20
    times = masking_times(n_seq, L, torch.Generator().manual_seed(5), schedule)
    assert (torch.diff(times, dim=1) > 0).all()
    edges = np.linspace(0, 1, bins + 1)
    for n in (1, 5, L):
        alpha = (1 - mask_probability(schedule, times[:, n - 1])).numpy()
        null = sps.beta(L - n + 1, n)
        wrong = np.diff(sps.beta(L - n + 1, n + 1).cdf(null.ppf(edges)))  # the posterior of t given n under a uniform prior
        assert chi_square_power(np.full(bins, 1 / bins), wrong, n_seq) >= 0.99
        assert chi_square_test(np.histogram(null.cdf(alpha), edges)[0], np.full(bins, 1 / bins)).p_value > ALPHA


def test_bad_input_is_named(tiny):
    lang, den = tiny
    g = torch.Generator()
    with pytest.raises(ValueError, match="m\\(1\\) = 1"):
        masked_count_estimates(den, torch.zeros(4, dtype=torch.int64), 10, g, schedule="loglinear")
    with pytest.raises(ValueError, match="unknown draw 'sorted'"):
        masked_count_draw(3, 4, g, "sorted")
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        masked_count_terms(den, torch.zeros(4, dtype=torch.int64), g)
    with pytest.raises(ValueError, match="clean tokens"):
        time_estimates(den, torch.tensor([0, 1, den.mask_id]), 10, g)
    with pytest.raises(ValueError, match="one sequence"):
        time_estimates(den, torch.zeros(2, 3, dtype=torch.int64), 10, g)

    def zero(x, t=None):
        return torch.zeros(*x.shape, 3, dtype=torch.float64)

    zero.mask_id = den.mask_id
    with pytest.raises(ValueError, match="probability zero"):
        masked_count_estimates(zero, torch.zeros(4, dtype=torch.int64), 10, g)
