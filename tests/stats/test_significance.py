import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from scipy.optimize import brentq

from mdmlib.stats.significance import (
    binomial_power,
    chi_square_power,
    chi_square_test,
    chi_square_two_sample,
    mean_and_se,
    two_sample_power,
    z_power,
)
from power_checks import require_z_power


def test_two_classes_use_the_exact_binomial_test():
    # P(X >= 7) for Bin(10, 1/2) is 176/1024; two-sided: twice that
    res = chi_square_test([3, 7], [0.5, 0.5])
    assert res.method == "binomial" and res.p_value == pytest.approx(352 / 1024, rel=1e-12)


def test_a_tiny_expected_count_is_not_blown_up():
    # one draw of a class expected 0.01 times happens about 1% of the time; the old
    # pooling (a bin of expected count 0.01) called it p = 4e-23
    res = chi_square_test([999, 1], [1 - 1e-5, 1e-5])
    assert res.p_value == pytest.approx(2 * -math.expm1(1000 * math.log1p(-1e-5)), rel=1e-9)


def test_dof2_closed_form():
    # for 2 degrees of freedom the p-value is exp(-X^2/2)
    res = chi_square_test([30, 40, 30], [1 / 3, 1 / 3, 1 / 3])
    assert res.method == "pearson" and res.dof == 2
    assert math.isclose(res.p_value, math.exp(-res.statistic / 2), rel_tol=1e-12)


def test_small_classes_are_pooled_until_the_pool_is_large_enough():
    # expected 900, 90, 9, 0.9, 0.1: the last two (1.0 together) take in the 9
    res = chi_square_test([900, 90, 9, 1, 0], [0.9, 0.09, 0.009, 0.0009, 0.0001])
    assert res.dof == 2 and res.p_value == pytest.approx(1.0)
    assert chi_square_test([10, 1], [1.0, 0.0]).p_value == 0.0


def _rejection_rate(draw, test, reps, alpha, seed):
    rng = np.random.default_rng(seed)
    return np.mean([test(*draw(rng)) < alpha for _ in range(reps)])


def test_goodness_of_fit_holds_its_level_with_tiny_classes():
    # Under the null, p < alpha must happen at most about alpha of the time.
    law = np.array([0.9, 0.09, 0.009, 0.0009, 0.0001])
    reps, alpha = 4000, 0.01
    rate = _rejection_rate(lambda rng: (rng.multinomial(1000, law), law), lambda c, p: chi_square_test(c, p).p_value, reps, alpha, 0)
    assert rate < alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps), rate


def _require_power_to_tell_wrong_dof(power: float, dof: int, alpha: float, reps: int, what: str) -> None:
    """The simulated rejection rate must tell the power from that of a formula with the degrees
    of freedom off by one (the same non-centrality, found from the power itself)."""
    lam = brentq(lambda l: sps.ncx2.sf(sps.chi2.isf(alpha, dof), dof, l) - power, 1e-9, 1e4)
    for d in (dof - 1, dof + 1):
        wrong = sps.ncx2.sf(sps.chi2.isf(alpha, d), d, lam)
        require_z_power((wrong - power) / math.sqrt(power * (1 - power) / reps), 4, f"{what}: {d} degrees of freedom")


def test_power_agrees_with_simulation():
    # the noncentral chi-square power against the rejection rate of the real test
    null = np.array([0.4, 0.3, 0.2, 0.1])
    alt = np.array([0.43, 0.28, 0.19, 0.10])
    n, reps, alpha = 2500, 4000, 1e-2
    power = chi_square_power(null, alt, n, alpha)
    assert 0.3 < power < 0.9  # a regime where a wrong power formula shows
    _require_power_to_tell_wrong_dof(power, 3, alpha, reps, "goodness-of-fit power")
    rate = _rejection_rate(lambda rng: (rng.multinomial(n, alt), null), lambda c, p: chi_square_test(c, p).p_value, reps, alpha, 1)
    assert abs(rate - power) < 4 * math.sqrt(power * (1 - power) / reps), (rate, power)


def test_two_sample_power_agrees_with_simulation():
    a, b = np.array([0.5, 0.3, 0.2]), np.array([0.45, 0.33, 0.22])
    n, reps, alpha = 2000, 4000, 1e-2
    power = two_sample_power(a, b, n, n, alpha)
    assert 0.3 < power < 0.9
    _require_power_to_tell_wrong_dof(power, 2, alpha, reps, "two-sample power")
    rate = _rejection_rate(lambda rng: (rng.multinomial(n, a), rng.multinomial(n, b)), lambda x, y: chi_square_two_sample(x, y).p_value, reps, alpha, 2)
    assert abs(rate - power) < 4 * math.sqrt(power * (1 - power) / reps), (rate, power)


def test_binomial_power_is_exact():
    # Bin(20, 1/2), alpha = 0.05: the central exact test rejects k <= 5 or k >= 15
    lo = sum(math.comb(20, k) for k in range(6)) / 2**20
    assert 2 * lo <= 0.05 < 2 * (lo + math.comb(20, 6) / 2**20)
    q = 0.8
    want = sum(math.comb(20, k) * q**k * (1 - q) ** (20 - k) for k in list(range(6)) + list(range(15, 21)))
    assert binomial_power(0.5, q, 20, alpha=0.05) == pytest.approx(want, rel=1e-10)
    assert binomial_power(0.5, 0.5, 20, alpha=0.05) <= 0.05


def test_two_sample_homogeneity():
    res = chi_square_two_sample([5000, 3000, 2000], [5000, 3000, 2000])
    assert res.method == "pearson" and res.p_value == pytest.approx(1.0)
    assert chi_square_two_sample([5000, 3000, 2000], [4000, 3500, 2500]).p_value < 1e-20
    # two bins left: Fisher's exact test
    assert chi_square_two_sample([100, 0], [90, 3]).method == "fisher"


def test_z_power():
    assert z_power(0.0) == pytest.approx(2 * 0.0013498980316301, rel=1e-9)
    assert z_power(6.0) > 0.99 and z_power(-6.0) > 0.99


def test_mean_and_se():
    m, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and math.isclose(se, math.sqrt(5 / 3) / 2)
