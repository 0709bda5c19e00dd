"""Sample sizes of the exact binomial test reach the power asked, and no more than needed;
the detectable bias matches."""
import math

from mdmlib.stats.intervals import detectable_bias, sample_size
from mdmlib.stats.significance import binomial_power


def test_sample_size_reaches_the_power_it_is_asked_for():
    for h in (0.1, 1e-3):
        n = sample_size(h, 0.1, 0.99)
        assert binomial_power(h, 0.9 * h, n) >= 0.99 and binomial_power(h, 1.1 * h, n) >= 0.99
        assert binomial_power(h, 0.9 * h, int(n / 1.2)) < 0.99 or binomial_power(h, 1.1 * h, int(n / 1.2)) < 0.99
        assert detectable_bias(h, n, 0.99) <= 0.1 < detectable_bias(h, n // 4, 0.99)
    assert detectable_bias(1e-4, 10, 0.99) == math.inf
