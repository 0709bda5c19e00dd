"""Sample sizes of the exact binomial test reach the power asked, and no more than needed;
the detectable bias matches."""
import math

import numpy as np
from scipy import stats as sps

from mdmlib.stats.intervals import detectable_bias, likelihood_interval, sample_size
from mdmlib.stats.significance import binomial_power


def test_sample_size_reaches_the_power_it_is_asked_for():
    for h in (0.1, 1e-3):
        n = sample_size(h, 0.1, 0.99)
        assert binomial_power(h, 0.9 * h, n) >= 0.99 and binomial_power(h, 1.1 * h, n) >= 0.99
        assert binomial_power(h, 0.9 * h, int(n / 1.2)) < 0.99 or binomial_power(h, 1.1 * h, int(n / 1.2)) < 0.99
        assert detectable_bias(h, n, 0.99) <= 0.1 < detectable_bias(h, n // 4, 0.99)
    assert detectable_bias(1e-4, 10, 0.99) == math.inf


def test_the_likelihood_interval_holds_the_candidates_within_the_chi_square_limit():
    """Candidates within chi2.ppf(confidence, 1) / 2 of the best log-likelihood are inside,
    others (and impossible ones, -inf) are not; the limit's edge is inside."""
    limit = sps.chi2.ppf(0.99, 1) / 2
    lls = np.array([-np.inf, -10 - limit - 1e-9, -10 - limit, -10.5, -10.0, -14.0, -np.inf])
    best, inside = likelihood_interval(lls, 0.99)
    assert best == 4 and inside == [2, 3, 4]
    assert likelihood_interval(lls, 0.5)[1] == [4]  # narrower at lower confidence: chi2.ppf(0.5, 1) / 2 = 0.23 < 0.5
