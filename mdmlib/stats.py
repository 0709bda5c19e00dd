"""Tests whose tolerances come from the sample size."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    dof: int
    p_value: float


def _chi_square(stat: float, dof: int) -> ChiSquare:
    """The statistic with its upper-tail p-value, Q(dof / 2, stat / 2)."""
    p_value = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64))
    return ChiSquare(stat, dof, float(p_value))


def chi_square_test(counts, probs, min_expected: float = 5.0) -> ChiSquare:
    """Pearson's goodness-of-fit test of observed class counts against class
    probabilities. Classes expected fewer than `min_expected` times are pooled
    into one bin (the chi-square approximation needs a few counts per bin).
    A count in a class of probability 0 gives p_value = 0."""
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    probs = torch.as_tensor(probs, dtype=torch.float64).flatten()
    if counts.shape != probs.shape:
        raise ValueError(f"counts {tuple(counts.shape)} and probs {tuple(probs.shape)} differ in shape")
    if (probs < 0).any() or not torch.isfinite(probs).all():
        raise ValueError("probs must be finite and non-negative")
    n = counts.sum()
    probs = probs / probs.sum()
    if ((probs == 0) & (counts > 0)).any():
        return ChiSquare(math.inf, int((probs > 0).sum()) - 1, 0.0)
    expected = n * probs
    small = expected < min_expected
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    dof = obs.numel() - 1
    if dof < 1:
        raise ValueError("need at least two bins with expected counts to test")
    return _chi_square(float(((obs - exp) ** 2 / exp).sum()), dof)


def binomial_z(successes: int, trials: int, p: float) -> float:
    """z-score of `successes` in `trials` against success probability p."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    return (successes - trials * p) / math.sqrt(trials * p * (1 - p))


def mean_and_se(x) -> tuple[float, float]:
    """Sample mean and its standard error (from the sample's own spread)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if x.numel() < 2:
        raise ValueError("need at least two values for a standard error")
    return float(x.mean()), float(x.std(unbiased=True) / math.sqrt(x.numel()))


def chi_square_two_sample(counts_a, counts_b) -> ChiSquare:
    """Test that two sets of class counts come from the same distribution
    (chi-square test of homogeneity; classes with no counts in either are dropped)."""
    a = torch.as_tensor(counts_a, dtype=torch.float64).flatten()
    b = torch.as_tensor(counts_b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"the two count vectors differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    if a.numel() < 2:
        raise ValueError("need at least two observed classes to test")
    na, nb = a.sum(), b.sum()
    pooled = (a + b) / (na + nb)
    stat = float((((a - na * pooled) ** 2) / (na * pooled) + ((b - nb * pooled) ** 2) / (nb * pooled)).sum())
    return _chi_square(stat, a.numel() - 1)
