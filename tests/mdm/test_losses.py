"""Tests for mdmlib.mdm.losses: each loss against its known answer, and the ELBO weights."""
import pytest
import torch
from scipy import integrate, stats as sps

from mdmlib.judging.judges import Scores
from mdmlib.mdm import losses
from mdmlib.mdm.objectives import count_weights
from mdmlib.mdm.schedules import mask_probability
from mdmlib.language.synthetic import LanguageSpec, MarkovLanguage
from power_checks import require_power, require_z_power
from tiny_training import TINY_LENGTH, ExactNetwork, enumerated, tiny_language


@pytest.fixture(scope="module")
def tiny():
    return enumerated()


def test_enumeration_is_an_any_order_factorisation(tiny):
    # with exact conditionals the masked-count ELBO is log p exactly (Prop. 3.1), so the
    # enumeration's E[S_n] must give the language's entropy: a check of the fixture itself
    language, expected_S, entropy = tiny
    n = torch.arange(1, TINY_LENGTH + 1, dtype=torch.float64)
    assert float((expected_S / n).sum()) == pytest.approx(entropy, rel=1e-12)
    assert entropy / TINY_LENGTH == pytest.approx(language.entropy_rate(TINY_LENGTH), rel=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "loglinear", "cosine"])
@pytest.mark.parametrize("t_min", [0.0, 1e-3, 0.2])
def test_elbo_weight_integrates_to_the_masked_count_weights(schedule, t_min):
    # int_{t_min}^1 w(t) P(n of L masked at t) dt, by quadrature, against the closed form;
    # with t_min = 0 and m(1) = 1 that is the ELBO's 1/n
    L = 6
    closed = losses.masked_count_weights(schedule, L, t_min)
    m1 = float(mask_probability(schedule, torch.tensor(1.0)))
    for n in range(1, L + 1):
        def integrand(t):
            t = torch.tensor(t, dtype=torch.float64)
            return float(losses.elbo_weight(schedule, t)) * sps.binom.pmf(n, L, float(mask_probability(schedule, t)))

        value, err = integrate.quad(integrand, t_min, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200)
        assert value == pytest.approx(float(closed[n - 1]), rel=1e-8, abs=10 * err)
        if t_min == 0.0 and m1 == 1.0:
            assert float(closed[n - 1]) == pytest.approx(1 / n, rel=1e-12)


def _check_against(estimate, expected: float, alternative: float) -> None:
    """|z| < 3 against the known answer, and power >= 0.99 to see `alternative` instead."""
    z = (estimate.mean - expected) / estimate.se
    require_z_power((alternative - expected) / estimate.se, 3.0, f"the mean {alternative:.5f}")
    assert abs(z) < 3, f"{estimate} against the expected {expected} (z = {z:.2f})"


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
@pytest.mark.parametrize("antithetic", [False, True])
def test_mdm_loss_with_exact_conditionals_has_the_predicted_mean(tiny, schedule, antithetic):
    # E[loss] = (1/L) sum_n c_n E[S_n] (the factor 1 - t_min of t = t_min + (1 - t_min) u
    # makes the loss the integral over [t_min, 1], which c_n is); the alternative is the same loss with the cosine
    # weight on the log-linear masks (or the reverse): a weight for the wrong schedule.
    # (Antithetic times: the i.i.d. standard error overstates the spread, so |z| < 3 is safe.)
    language, expected_S, _ = tiny
    L, t_min = TINY_LENGTH, 1e-3
    network = ExactNetwork(language, L)
    x0 = language.sample(40_000, L, torch.Generator().manual_seed(0))
    numerator, denominator = losses.mdm_loss_terms(network, x0, torch.Generator().manual_seed(1), schedule=schedule, t_min=t_min, antithetic=antithetic)
    estimate = Scores(numerator.double(), denominator).nll()
    expected = float((losses.masked_count_weights(schedule, L, t_min) * expected_S).sum()) / L
    other = "cosine" if schedule == "loglinear" else "loglinear"
    # the wrong weight's mean: sum_n E[S_n] int w_other(t) P(n | m_schedule(t)) dt
    f64 = lambda t: torch.tensor(t, dtype=torch.float64)
    wrong = [integrate.quad(lambda t: float(losses.elbo_weight(other, f64(t))) * sps.binom.pmf(n, L, float(mask_probability(schedule, f64(t)))), t_min, 1, limit=200)[0] for n in range(1, L + 1)]
    alternative = float((torch.tensor(wrong) * expected_S).sum()) * (1 - t_min) / L
    _check_against(estimate, expected, alternative)


def test_maskgit_masked_counts_follow_the_cosine_law():
    L = 10
    law = count_weights("maskgit", L)
    assert float(law.sum()) == pytest.approx(1.0, rel=1e-12)
    network = ExactNetwork(tiny_language(), L)
    x0 = torch.zeros(20_000, L, dtype=torch.int64)
    _, n = losses.maskgit_loss_terms(network, x0, torch.Generator().manual_seed(2))
    counts = torch.bincount(n - 1, minlength=L)
    from mdmlib.stats.significance import chi_square_power, chi_square_test

    linear = torch.full((L,), 1 / L, dtype=torch.float64)  # n = ceil(u L): a uniform ratio, the nearest other law
    require_power(chi_square_power(law, linear, int(counts.sum())), "a uniform mask ratio")
    assert chi_square_test(counts, law).p_value > 1e-3


def test_maskgit_loss_with_exact_conditionals_has_the_predicted_mean(tiny):
    # pooled over masked tokens: E = sum_n P(n) E[S_n] / sum_n P(n) n; the alternative is
    # the per-sequence mean (each sequence's masked tokens weighted 1/n), sum_n P(n) E[S_n]/n
    language, expected_S, _ = tiny
    L = TINY_LENGTH
    network = ExactNetwork(language, L)
    x0 = language.sample(40_000, L, torch.Generator().manual_seed(3))
    numerator, denominator = losses.maskgit_loss_terms(network, x0, torch.Generator().manual_seed(4))
    estimate = Scores(numerator.double(), denominator).nll()
    law, n = count_weights("maskgit", L), torch.arange(1, L + 1, dtype=torch.float64)
    expected = float((law * expected_S).sum() / (law * n).sum())
    alternative = float((law * expected_S / n).sum())
    _check_against(estimate, expected, alternative)


def test_ar_loss_with_exact_conditionals_is_the_exact_nll():
    # no randomness: per sequence, the AR loss of the exact conditionals is -log p(x)
    language = MarkovLanguage(LanguageSpec(vocab_size=7, num_classes=3, seed=2))
    L = 9
    x0 = language.sample(500, L, torch.Generator().manual_seed(5))
    numerator, denominator = losses.ar_loss_terms(ExactNetwork(language, L, kind="ar"), x0)
    exact = -language.log_likelihood(x0)
    assert torch.equal(denominator, torch.full((500,), L))
    # float32 logits: each of the L terms is off by a few float32 ulps of its size
    tolerance = L * 8 * torch.finfo(torch.float32).eps * float(exact.abs().max())
    assert (numerator.double() - exact).abs().max() < tolerance


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown objective"):
        losses.loss_terms("bert", None, torch.zeros(1, 1, dtype=torch.int64), torch.Generator())
    with pytest.raises(ValueError, match="unknown schedule"):
        losses.elbo_weight("geometric", torch.tensor(0.5))
    with pytest.raises(ValueError, match="t_min must lie in"):
        losses.masked_count_weights("linear", 4, 1.0)
