"""How precise a binomial count is: its exact (Clopper-Pearson) interval, the draws the
exact binomial test needs to detect a relative bias with a given power and the smallest
bias it detects at a given number of draws, and maximum likelihood over a grid of
binomial rates (log-likelihood, likelihood interval, deviance goodness of fit). The
tests themselves and their power are in `significance`."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from mdmlib.stats.significance import ALPHA, binomial_power


def clopper_pearson(k: int, n: int, confidence: float = 0.99) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion, from scipy."""
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def sample_size(h: float, bias: float, power: float, alpha: float = ALPHA) -> int:
    """The smallest n at which the exact binomial test of rate h detects a leave rate
    (1 - bias) h, and (1 + bias) h, each with probability >= power."""
    if not 0 < bias <= 1 or not 0 < power < 1:
        raise ValueError(f"bias must lie in (0, 1] and power in (0, 1), got {bias} and {power}")
    z = sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power)
    n = max(16, int(z * z * h * (1 - h) / (bias * h) ** 2 * 0.9))
    while min(binomial_power(h, h * (1 - bias), n, alpha), binomial_power(h, min(1.0, h * (1 + bias)), n, alpha)) < power:
        n = int(n * 1.05) + 1
    return n


def detectable_bias(h: float, n: int, power: float, alpha: float = ALPHA) -> float:
    """The smallest relative bias b such that leave rates (1 - b) h and (1 + b) h are both
    detected with probability >= power at n draws (inf when none is)."""
    if n < 1:
        return math.inf

    def ok(b: float) -> bool:
        return min(binomial_power(h, max(0.0, h * (1 - b)), n, alpha), binomial_power(h, min(1.0, h * (1 + b)), n, alpha)) >= power

    hi = 1.0
    while not ok(hi):
        hi *= 2
        if hi > 1 / h:
            return math.inf
    lo = 0.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def binomial_log_likelihood(k: np.ndarray, n: np.ndarray, r: np.ndarray) -> float:
    """Log-likelihood of counts k in n draws at rates r, summed (up to the binomial
    coefficients, which no fit depends on); rates are kept inside (0, 1)."""
    r = np.clip(r, 1e-300, 1 - 1e-16)
    return float((k * np.log(r) + (n - k) * np.log1p(-r)).sum())


def likelihood_interval(lls: np.ndarray, confidence: float) -> tuple[int, list[int]]:
    """The best of a grid of candidates by log-likelihood, and the candidates inside its
    likelihood-ratio interval at `confidence` (chi-square, one degree of freedom)."""
    lls = np.asarray(lls, dtype=np.float64)
    best = int(np.argmax(lls))
    limit = sps.chi2.ppf(confidence, 1)  # once: computing it per candidate cost seconds over 10^5 candidates
    inside = np.flatnonzero(2 * (lls[best] - lls) <= limit).tolist()
    return best, inside


def binomial_deviance_p(k: np.ndarray, n: np.ndarray, r: np.ndarray) -> float:
    """Goodness of fit of rates r to counts k in n draws: the deviance against the
    saturated model, as chi-square with one degree of freedom per count but one (at least one)."""
    sat = binomial_log_likelihood(k, n, np.where(n > 0, k / np.maximum(n, 1), 0.5))
    dev = 2 * (sat - binomial_log_likelihood(k, n, r))
    return float(sps.chi2.sf(max(dev, 0.0), max(len(k) - 1, 1)))
