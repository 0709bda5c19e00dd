"""The exact law of an argmax sampler as actually run in a low-precision dtype.

The closed form (`truncation.truncated_law`) treats u as continuous on
[0, 1 - eps]. A real sampler's u takes finitely many values, and its score (p / (1e-10 - log(u + 1e-10)) for the
exponential race, log p - log(-log u) for Gumbel-max) is rounded in the same dtype, so scores tie and
`argmax` breaks ties toward the first index. When every class's score takes
finitely many values with known probabilities, the law of the argmax is a
finite sum, computed here exactly (up to float64 rounding).

The uniforms are those of PyTorch's CPU generator: float32 is k * 2^-24 with k
a uniform 24-bit integer; float16 and bfloat16 are such a float32 rounded to
the nearest value of the format, with a result of 1.0 replaced by 0. This is
a model of the generator, checked against draws of torch.rand by
tests/test_grid_law.py; other generators (CUDA) have other grids.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from .categorical import SCORES, check_probabilities
from .precision import as_dtype


def rand_grid(dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct values of torch.rand(dtype) on the CPU, ascending, and
    the probability of each (float64). Do not modify them: they are cached."""
    return _rand_grid(as_dtype(dtype))


@lru_cache(maxsize=None)
def _rand_grid(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if dtype == torch.float64:
        raise ValueError(
            "float64 uniforms take 2^53 values, too many to enumerate; their grid "
            "matters only for probabilities near 1e-16: use truncation.truncated_law"
        )
    # k * 2^-24 rounded into the format is non-decreasing in k: count runs, no sort needed
    u = (torch.arange(1 << 24, dtype=torch.float64) * 2.0**-24).to(torch.float32).to(dtype)
    values, counts = torch.unique_consecutive(u, return_counts=True)
    if values[-1] == 1:  # rounded up to 1.0: the generator returns 0 instead
        counts[0] += counts[-1]
        values, counts = values[:-1], counts[:-1]
    return values, counts.to(torch.float64) / (1 << 24)


def _score_law(score_fn, p: torch.Tensor, values: torch.Tensor, weights: torch.Tensor):
    """Distinct scores of one class (ascending, float64), with the probability
    of each and of scores strictly above it."""
    score = score_fn(p.expand_as(values), values).to(torch.float64)
    # -inf (Gumbel-max at u = 0) is a real score: it loses to any finite one.
    distinct, inverse = torch.unique(score, return_inverse=True)
    prob = torch.zeros_like(distinct).index_add_(0, inverse, weights)
    above = torch.flip(torch.cumsum(torch.flip(prob, [0]), 0), [0]) - prob  # P(score > v)
    return distinct, prob, above.clamp_(min=0.0)


def law_on_grid(p, dtype, sampler: str = "exponential_race", copies=None) -> torch.Tensor:
    """Exact law of `categorical.<sampler>(p, dtype=dtype)` on the CPU, for
    sampler "exponential_race" or "gumbel_max".

    p: a probability vector of length B (need not sum to 1).
    copies: optional positive integers of length B; class block i is then
        copies[i] identical classes of probability p[i], the blocks laid out
        one after another in index order (for example 10,000 flat tokens
        followed by a mask class), and the result is the probability that the
        winner lies in each block.
    Returns float64 probabilities of length B.

    With F_j(v) = P(score_j <= v) and F_j(v-) = P(score_j < v), the first
    maximal index lies in block i with value v iff the blocks before i are all
    below v, the blocks after are at most v, and block i's maximum is v:
        P(i) = sum_v [F_i(v)^c_i - F_i(v-)^c_i] prod_{j<i} F_j(v-)^c_j prod_{j>i} F_j(v)^c_j.
    Cost: one evaluation of the score per grid value and block (2^24 for float32).
    """
    dtype = as_dtype(dtype)
    if sampler not in SCORES:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {sorted(SCORES)}")
    p = check_probabilities(p)
    if p.dim() != 1:
        raise ValueError(f"p must be one probability vector, got shape {tuple(p.shape)}")
    copies = torch.ones(p.shape, dtype=torch.float64) if copies is None else torch.as_tensor(copies, dtype=torch.float64)
    if copies.shape != p.shape or not torch.isfinite(copies).all() or (copies < 1).any() or (copies != copies.round()).any():
        raise ValueError("copies must be positive integers, one per entry of p")
    values, weights = rand_grid(dtype)
    p_dtype = p.to(dtype)
    if (p_dtype == 0).all():
        raise ValueError(f"probabilities underflow to zero in {dtype}")
    laws = [_score_law(SCORES[sampler], p_dtype[i], values, weights) for i in range(p.numel())]
    out = torch.zeros(p.numel(), dtype=torch.float64)
    for i, (v, prob_i, above_i) in enumerate(laws):
        if p_dtype[i] == 0:
            continue  # a zero-probability class never wins (its score is masked to -inf)
        log_rest = torch.zeros_like(v)
        for j, (v_j, prob_j, above_j) in enumerate(laws):
            if j == i or p_dtype[j] == 0:
                continue
            # P(score_j >= v) for blocks before i (they must stay strictly below v),
            # P(score_j > v) for blocks after i (they may tie, and lose the tie).
            k = torch.searchsorted(v_j, v, right=(j > i))
            tail = torch.where(k < v_j.numel(), (above_j + prob_j)[k.clamp(max=v_j.numel() - 1)], torch.zeros_like(v)).clamp(max=1.0)
            log_rest += copies[j] * torch.log1p(-tail)
        log_le = torch.log1p(-above_i)  # log P(score_i <= v)
        log_lt = torch.log1p(-(above_i + prob_i).clamp(max=1.0))  # log P(score_i < v)
        own = torch.exp(copies[i] * log_le) * -torch.expm1(copies[i] * (log_lt - log_le))
        out[i] = (own * torch.exp(log_rest)).sum()
    return out
