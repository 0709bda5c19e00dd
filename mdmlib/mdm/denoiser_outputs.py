"""Denoiser outputs checked before a sampler draws from them.

A sampler's law assumes that the output at every masked position is a law over the V
tokens: floating, finite, non-negative and summing to one. An output ten times too large
makes the ancestral step leave the mask about five times too often (its categories are
[mu (m_t - m_s), m_s]); an all-zero output keeps a position masked to the end, so mask ids
come back as tokens. `check_laws` refuses such rows, naming the row, its sum and the
tolerance. It costs one pass over the output (its row sums, minima and maxima); an
expanded tensor is reduced over its stored rows only, not over every copy in the view.

Tolerance: |sum - 1| <= 2 V eps, eps = torch.finfo(dtype).eps = 2u, at most 1/2.
A denoiser that normalises in its own dtype, mu_i = fl(w_i / fl(sum_j w_j)) (a softmax,
or weights over their sum), has sum_i mu_i = 1 + d with |d| <= gamma_(V-1) + u to first
order: the recursive summation bound gamma_n = n u / (1 - n u), whatever the order of the
additions, and one rounding per quotient. Summing the row again in that dtype, as the
check does, adds at most gamma_(V-1). While V u <= 1/2, gamma_n <= 2 n u, so the two
together stay below 4 V u = 2 V eps. Beyond that (half formats with V in the hundreds)
the bound says nothing, and the cap of 1/2 keeps an all-zero or doubled output refused
in every format.
"""
from __future__ import annotations

import torch

MAX_TOLERANCE = 0.5


def sum_tolerance(vocab: int, dtype: torch.dtype) -> float:
    """How far from 1 the sum of a correctly normalised row of `vocab` entries in `dtype`
    can be: 2 V eps, at most 1/2 (module docstring)."""
    return min(2 * vocab * torch.finfo(dtype).eps, MAX_TOLERANCE)


def _stored_rows(mu: torch.Tensor) -> torch.Tensor:
    """mu without the copies of an expanded view: every dimension of stride 0 (but the
    last) cut to one entry. Statistics of the result broadcast back to mu's rows."""
    for d in range(mu.dim() - 1):
        if mu.stride(d) == 0 and mu.shape[d] > 1:
            mu = mu.narrow(d, 0, 1)
    return mu


def row_statistics(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum, min, max) of every row of mu (..., V), each of shape mu.shape[:-1], computed
    once per stored row. NaN propagates into all three; an infinite entry into the sum."""
    if mu.dim() == 0 or mu.shape[-1] == 0:
        raise ValueError(f"denoiser outputs need a non-empty last (token) dimension, got shape {tuple(mu.shape)}")
    base = _stored_rows(mu)
    shape = mu.shape[:-1]
    return tuple(s.expand(shape) for s in (base.sum(-1), base.amin(-1), base.amax(-1)))


def check_output_shape(mu, shape: tuple, what: str = "the denoiser") -> torch.Tensor:
    """mu, if it is a floating tensor of the expected shape."""
    if not isinstance(mu, torch.Tensor):
        raise TypeError(f"{what} must return a tensor of probabilities, got {type(mu).__name__}")
    if tuple(mu.shape) != tuple(shape):
        raise ValueError(f"{what} returned shape {tuple(mu.shape)}, expected {tuple(shape)} (batch, length, mask_id)"
                         if len(shape) == 3 else f"{what} returned shape {tuple(mu.shape)}, expected {tuple(shape)}")
    if not mu.is_floating_point():
        raise ValueError(f"{what} returned {mu.dtype} values: probabilities must be floating-point")
    return mu


def _sequence_position(index: tuple) -> str:
    return f"sequence {index[0]}, position {index[1]}"


def check_laws(total: torch.Tensor, low: torch.Tensor, dtype: torch.dtype, vocab: int, read: torch.Tensor | None = None,
               what: str = "the denoiser's output", where=_sequence_position) -> None:
    """Refuse any row, among those where `read` is True (all rows if None), whose entries
    are not a law: NaN, negative, infinite, or summing to other than 1 within
    sum_tolerance(vocab, dtype). total, low: the rows' sums and minima (row_statistics);
    where(index) names a row by its index. One host synchronisation when every row is
    good; the first bad row is named."""
    tol = sum_tolerance(vocab, dtype)
    bad = ~(low >= 0) | ~((total.to(torch.float64) - 1).abs() <= tol)  # NaN fails both comparisons
    if read is not None:
        bad = bad & read
    if not bool(bad.any()):
        return
    index = tuple(torch.nonzero(bad)[0].tolist())
    s, m = float(total[index]), float(low[index])
    at = f"{what} at {where(index)}"
    if s != s or m != m:
        raise ValueError(f"{at} holds NaN")
    if m < 0:
        raise ValueError(f"{at} holds a negative value ({m:.3g}): probabilities are non-negative")
    if s == float("inf"):
        raise ValueError(f"{at} holds an infinite value")
    raise ValueError(f"{at} sums to {s:.6g}, not 1: a law over the {vocab} tokens ({dtype}) must sum to 1 within "
                     f"2 V eps = {tol:.3g}; unnormalised or all-zero outputs change the sampler's law")
