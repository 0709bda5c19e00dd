import math

import pytest
import torch

from mdmlib.stats import binomial_z, chi_square_test, mean_and_se


def test_chi_square_two_bins_matches_the_normal_approximation():
    # With two bins, X^2 = z^2 and the p-value is the two-sided normal tail.
    res = chi_square_test([5300, 4700], [0.5, 0.5])
    z = binomial_z(5300, 10000, 0.5)
    assert math.isclose(res.statistic, z * z, rel_tol=1e-12)
    assert math.isclose(res.p_value, math.erfc(abs(z) / math.sqrt(2)), rel_tol=1e-9)


def test_chi_square_dof2_closed_form():
    # For 2 degrees of freedom the p-value is exp(-X^2/2).
    res = chi_square_test([30, 40, 30], [1 / 3, 1 / 3, 1 / 3])
    assert res.dof == 2
    assert math.isclose(res.p_value, math.exp(-res.statistic / 2), rel_tol=1e-12)


def test_small_bins_are_pooled_and_impossible_counts_fail():
    res = chi_square_test([1000, 1, 2], [0.998, 0.001, 0.001])
    assert res.dof == 1
    assert chi_square_test([10, 1], [1.0, 0.0]).p_value == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        chi_square_test([1, 2], [1.0])


def test_mean_and_se():
    m, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and math.isclose(se, math.sqrt(5 / 3) / 2)
