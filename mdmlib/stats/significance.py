"""Tests whose thresholds come from the sample, and their power, on scipy.stats.

Goodness of fit (`chi_square_test`) and homogeneity of two samples
(`chi_square_two_sample`) are Pearson chi-square tests. The chi-square
approximation needs a few expected counts per bin, so classes expected fewer
than `min_expected` times are pooled, and the pool grows (smallest classes
first) until it is large enough too. When that leaves only two bins, the test
is exact instead: a binomial test (one sample) or Fisher's test (two samples).

A check that "finds no difference" is worth only its power: the chance it
would have found the difference from the nearest wrong law. `chi_square_power`,
`two_sample_power` and `binomial_power` compute it for the same binning and
the same test as above (noncentral chi-square for Pearson's test, exact tails
for the binomial test).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from mdmlib.infra.checks import real_number, whole_number

ALPHA = 1e-3  # the project's level for "agrees": a false alarm once in a thousand checks


@dataclass(frozen=True)
class TestResult:
    statistic: float
    dof: int
    p_value: float
    method: str  # "pearson", "binomial" or "fisher"


def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or an infinite value")
    if (a < 0).any():
        raise ValueError(f"{name} contains a negative value ({a.min():.3g})")
    return a


def _counts(x, name: str = "counts") -> np.ndarray:
    a = _vector(x, name)
    if (a != np.round(a)).any():
        raise ValueError(f"{name} must be whole numbers (class counts), got {a[a != np.round(a)][0]}")
    return a


def _law(x, name: str) -> np.ndarray:
    a = _vector(x, name)
    if a.sum() == 0:
        raise ValueError(f"{name} is all zero")
    return a / a.sum()


def _sample_size(n, name: str = "n") -> int:
    return whole_number(n, name)


def pooled_bins(expected: np.ndarray, min_expected: float) -> np.ndarray:
    """Bin label of each class: classes expected at least `min_expected` times keep
    their own bin; the others share one pool, which takes in the smallest remaining
    classes until it, too, is expected at least `min_expected` times."""
    if not min_expected > 0:
        raise ValueError(f"min_expected must be positive, got {min_expected}")
    labels = np.arange(expected.size)
    small = expected < min_expected
    if not small.any():
        return labels
    order = np.argsort(expected, kind="stable")
    pool = list(np.flatnonzero(small))
    total = expected[small].sum()
    for k in order:
        if total >= min_expected:
            break
        if not small[k]:
            pool.append(k)
            total += expected[k]
    labels[pool] = expected.size  # one shared label
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _binned(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, weights=x)


def bins_of_test(expected: np.ndarray, min_expected: float) -> np.ndarray:
    """The bins a test uses: `pooled_bins`, or, where pooling would leave a single
    bin, the small classes against the rest (with two classes: one against the other)."""
    labels = pooled_bins(expected, min_expected)
    if labels.max() >= 1:
        return labels
    small = expected < min_expected
    if small.all() and expected.size != 2:
        raise ValueError("too few draws to test: every class is expected fewer than min_expected times")
    return small.astype(np.int64) if small.any() and not small.all() else np.array([0, 1])


def _exact_binomial_p(k: float, n: int, p: float) -> float:
    """Two-sided exact binomial p-value: twice the smaller tail, at most 1."""
    if p == 0.0:
        return 1.0 if k == 0 else 0.0
    if p == 1.0:
        return 1.0 if k == n else 0.0
    return float(min(1.0, 2.0 * min(sps.binom.cdf(k, n, p), sps.binom.sf(k - 1, n, p))))


def chi_square_test(counts, probs, min_expected: float = 5.0) -> TestResult:
    """Do class counts come from the class probabilities `probs` (normalised here)?
    Pearson's chi-square on pooled bins, or the exact binomial test when pooling
    leaves two bins. A count in a class of probability 0 gives p_value = 0."""
    counts, law = _counts(counts), _law(probs, "probs")
    if counts.shape != law.shape:
        raise ValueError(f"counts {counts.shape} and probs {law.shape} differ in shape")
    n = counts.sum()
    if n == 0:
        raise ValueError("counts are all zero: nothing to test")
    if ((law == 0) & (counts > 0)).any():
        return TestResult(math.inf, int((law > 0).sum()) - 1, 0.0, "impossible class")
    expected = n * law
    labels = bins_of_test(expected, min_expected)
    if labels.max() == 1:
        k, q = _binned(counts, labels)[1], _binned(law, labels)[1]
        return TestResult(float(k), 1, float(_exact_binomial_p(k, int(n), float(q))), "binomial")
    obs, exp = _binned(counts, labels), _binned(expected, labels)
    stat, p = sps.chisquare(obs, exp)
    return TestResult(float(stat), obs.size - 1, float(p), "pearson")


def _two_sample_bins(a: np.ndarray, b: np.ndarray, min_expected: float) -> np.ndarray:
    """Bins for a 2 x K table: a column's smaller expected cell decides if it is pooled."""
    total = a + b
    smaller_row = min(a.sum(), b.sum()) / total.sum()
    return bins_of_test(total * smaller_row, min_expected)


def chi_square_two_sample(counts_a, counts_b, min_expected: float = 5.0) -> TestResult:
    """Do two sets of class counts come from one distribution? Pearson's chi-square
    on the 2 x K table of pooled bins (classes seen in neither sample dropped), or
    Fisher's exact test when pooling leaves two bins."""
    a, b = _counts(counts_a, "counts_a"), _counts(counts_b, "counts_b")
    if a.shape != b.shape:
        raise ValueError(f"the two count vectors differ in shape: {a.shape} and {b.shape}")
    if a.sum() == 0 or b.sum() == 0:
        raise ValueError("each sample needs at least one count")
    seen = (a + b) > 0
    a, b = a[seen], b[seen]
    if a.size < 2:
        return TestResult(0.0, 0, 1.0, "one class")  # both samples put everything in one class
    labels = _two_sample_bins(a, b, min_expected)
    if labels.max() == 1:
        table = np.stack([_binned(a, labels), _binned(b, labels)])
        stat, p = sps.fisher_exact(table)
        return TestResult(float(stat), 1, float(p), "fisher")
    table = np.stack([_binned(a, labels), _binned(b, labels)])
    stat, p, dof, _ = sps.chi2_contingency(table, correction=False)
    return TestResult(float(stat), int(dof), float(p), "pearson")


def _binomial_rejection(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The exact binomial test rejects k <= lo or k >= hi (lo = -1, hi = n + 1: never)."""
    lo = int(sps.binom.ppf(alpha / 2, n, p))  # smallest k with cdf >= alpha/2
    while lo >= 0 and sps.binom.cdf(lo, n, p) > alpha / 2:
        lo -= 1
    hi = int(sps.binom.isf(alpha / 2, n, p)) + 1
    while hi > 0 and sps.binom.sf(hi - 2, n, p) <= alpha / 2:
        hi -= 1
    while hi <= n and sps.binom.sf(hi - 1, n, p) > alpha / 2:
        hi += 1
    return lo, hi


def binomial_power(null_p: float, alternative_p: float, trials: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided exact binomial test of `null_p` when the truth is
    `alternative_p`, with `trials` draws."""
    n = _sample_size(trials, "trials")
    for name, v in (("null_p", null_p), ("alternative_p", alternative_p)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    if null_p in (0.0, 1.0):
        return float(1.0 - (1.0 - alternative_p if null_p == 0.0 else alternative_p) ** n)
    lo, hi = _binomial_rejection(n, null_p, alpha)
    return float((sps.binom.cdf(lo, n, alternative_p) if lo >= 0 else 0.0) + sps.binom.sf(hi - 1, n, alternative_p))


def chi_square_power(null, alternative, n, alpha: float = ALPHA, min_expected: float = 5.0) -> float:
    """Power of `chi_square_test(counts, null)` at level alpha when the n counts are
    drawn from `alternative`: noncentral chi-square with lambda = n sum (q - p)^2 / p
    over the test's own bins, or exact binomial tails when it uses two bins."""
    p, q, n = _law(null, "null"), _law(alternative, "alternative"), _sample_size(n)
    if p.shape != q.shape:
        raise ValueError(f"null {p.shape} and alternative {q.shape} differ in shape")
    if ((p == 0) & (q > 0)).any():
        # any draw of an impossible class rejects; other bins can only add power
        return float(max(-math.expm1(n * math.log1p(-q[p == 0].sum())) if q[p == 0].sum() < 1 else 1.0, 0.0))
    labels = bins_of_test(n * p, min_expected)
    if labels.max() == 1:
        return binomial_power(float(_binned(p, labels)[1]), float(_binned(q, labels)[1]), n, alpha)
    pb, qb = _binned(p, labels), _binned(q, labels)
    dof = pb.size - 1
    noncentrality = n * float(((qb - pb) ** 2 / pb).sum())
    return float(sps.ncx2.sf(sps.chi2.isf(alpha, dof), dof, noncentrality))


def two_sample_power(law_a, law_b, n_a, n_b, alpha: float = ALPHA, min_expected: float = 5.0) -> float:
    """Power of `chi_square_two_sample` at level alpha for n_a draws from law_a and
    n_b from law_b (noncentral chi-square on the test's bins at the expected counts;
    the normal approximation to Fisher's test when it uses two bins)."""
    p, q = _law(law_a, "law_a"), _law(law_b, "law_b")
    n_a, n_b = _sample_size(n_a, "n_a"), _sample_size(n_b, "n_b")
    if p.shape != q.shape:
        raise ValueError(f"law_a {p.shape} and law_b {q.shape} differ in shape")
    seen = (p + q) > 0
    p, q = p[seen], q[seen]
    if p.size < 2:
        return 0.0  # one class: the two laws are the same
    labels = _two_sample_bins(n_a * p, n_b * q, min_expected)
    pb, qb = _binned(p, labels), _binned(q, labels)
    r = (n_a * pb + n_b * qb) / (n_a + n_b)
    dof = pb.size - 1
    noncentrality = (n_a * n_b / (n_a + n_b)) * float(((pb - qb) ** 2 / r).sum())
    return float(sps.ncx2.sf(sps.chi2.isf(alpha, dof), dof, noncentrality))


def binomial_z(successes: int, trials: int, p: float) -> float:
    """z-score of `successes` in `trials` against success probability p."""
    trials = _sample_size(trials, "trials")
    if not 0 <= real_number(successes, "successes") <= trials or not float(successes).is_integer():
        raise ValueError(f"successes must be a whole number in [0, trials], got {successes}")
    if not 0 < real_number(p, "p") < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    return (successes - trials * p) / math.sqrt(trials * p * (1 - p))


def z_power(expected_z: float, threshold: float = 3.0, sd: float = 1.0) -> float:
    """Chance that |Z| > threshold for Z ~ N(expected_z, sd^2): the power of a
    |z| < threshold check against an alternative whose expected z is `expected_z`."""
    return float(sps.norm.sf((threshold - expected_z) / sd) + sps.norm.cdf((-threshold - expected_z) / sd))


def mean_and_se(x) -> tuple[float, float]:
    """Sample mean and its standard error (from the sample's own spread)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    if a.size < 2:
        raise ValueError("need at least two values for a standard error")
    if not np.isfinite(a).all():
        raise ValueError("values contain NaN or an infinite value")
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))
