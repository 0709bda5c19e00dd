"""Categorical samplers, written the way they are used in practice.

All take probabilities `p` of shape (..., K) (they need not sum to 1), a
`torch.Generator`, and return the sampled class indices, shape (...).

gumbel_max         argmax(log p + g), g = -log(-log u), u ~ torch.rand(dtype)
exponential_race   argmax(p / (1e-10 - log(u + 1e-10))), exactly the MDLM/SEDD line
truncated_race     64-bit uniforms scaled into [0, 1 - eps]: the truncation of
                   any format, without its coarse grid (the paper's ablation)
inverse_cdf        the exact sampler: one float64 uniform against the cumulative sum

The first two are the same sampler: log p + g > log q + h  <=>  p / (-log u) > q / (-log v).

Overflow. The lines run in a dtype, and weights too large for it (beyond the dtype's
largest value once cast, or with a race score p / (-log u) that overflows: above about
2e31 in float32) score inf, tie, and argmax returns the first such class whatever the
noise: a law the weights do not state. The lines refuse such weights (`check_scores_fit`)
rather than rescale them, since rescaling would hide that the line, run as written,
overflows on them; divide them by their maximum first (the law they state is the same).
The exact sampler `inverse_cdf` has no line to be faithful to, so it rescales by the
maximum when the cumulative sum would overflow float64 (the law is unchanged).
"""
from __future__ import annotations

import torch

from mdmlib.infra.checks import real_number, whole_number
from mdmlib.precision.formats import as_dtype, float_format


def check_probabilities(p) -> torch.Tensor:
    """Validate unnormalised probabilities; return them as a floating tensor."""
    if not isinstance(p, torch.Tensor):
        try:
            p = torch.as_tensor(p, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"probabilities must be a tensor or a nested list of numbers, got {type(p).__name__}") from err
    if not p.is_floating_point():
        raise ValueError(f"probabilities must be a floating-point tensor, got dtype {p.dtype}")
    if p.dim() == 0 or p.shape[-1] == 0:
        raise ValueError(f"probabilities need a non-empty last (class) dimension, got shape {tuple(p.shape)}")
    if torch.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    if torch.isinf(p).any():
        raise ValueError("probabilities contain an infinite value")
    if (p < 0).any():
        raise ValueError(f"probabilities contain a negative value ({p.min().item():.3g})")
    if (p.sum(-1) == 0).any():
        raise ValueError("a row of probabilities is all zero")
    return p


def _uniform(p: torch.Tensor, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(p.shape, generator=generator, dtype=dtype, device=p.device)


def _argmax_of_positive(score: torch.Tensor, p_in_dtype: torch.Tensor) -> torch.Tensor:
    """argmax over classes, where classes of zero probability can never win."""
    if (p_in_dtype.sum(-1) == 0).any():
        raise ValueError(f"probabilities underflow to zero in {p_in_dtype.dtype}")
    return torch.where(p_in_dtype > 0, score, -torch.inf).argmax(-1)


def check_scores_fit(p_in_dtype: torch.Tensor, score, u_top: float, line: str) -> None:
    """Refuse weights (held in the line's dtype) whose score can overflow it: a score is
    largest for the largest weight and the largest uniform u_top, so one row maximum tells."""
    top = p_in_dtype.amax(-1)
    worst = score(top, torch.tensor(u_top, dtype=p_in_dtype.dtype, device=top.device).expand_as(top))
    if not bool(torch.isfinite(worst).all()):
        largest = float(top.max())
        raise ValueError(f"the weights overflow {p_in_dtype.dtype} in {line}: the largest, {largest:.3g}, scores inf, and classes at inf tie "
                         "(argmax returns the first whatever the noise); divide the weights by their maximum first (the same law)")


def _largest_uniform(dtype: torch.dtype) -> float:
    return float_format(dtype).largest_below_one


def gumbel_score(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log p + g with g = -log(-log u), in the dtype of p and u."""
    return torch.log(p) - torch.log(-torch.log(u))


def race_score(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The MDLM/SEDD score p / (1e-10 - log(u + 1e-10)), in the dtype of p and u."""
    return p / (1e-10 - torch.log(u + 1e-10))


def gumbel_max(p, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """argmax(log p + g) with the Gumbel noise computed in `dtype`."""
    dtype = as_dtype(dtype)
    p = check_probabilities(p).to(dtype)
    check_scores_fit(p, gumbel_score, _largest_uniform(dtype), "gumbel_max")
    return _argmax_of_positive(gumbel_score(p, _uniform(p, generator, dtype)), p)


def exponential_race(p, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """The exponential race as MDLM and SEDD write it, in `dtype`."""
    dtype = as_dtype(dtype)
    p = check_probabilities(p).to(dtype)
    check_scores_fit(p, race_score, _largest_uniform(dtype), "exponential_race")
    return _argmax_of_positive(race_score(p, _uniform(p, generator, dtype)), p)


def truncated_race(p, generator: torch.Generator, eps: float) -> torch.Tensor:
    """The race in float64 with uniforms scaled into [0, 1 - eps]: a Gumbel
    capped at M = -log(-log(1 - eps)) on a 2^-53 grid, i.e. the truncation of
    a low-precision format without its discreteness."""
    eps = real_number(eps, "eps")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    p = check_probabilities(p).to(torch.float64)
    check_scores_fit(p, lambda q, u: q / -torch.log(u), _largest_uniform(torch.float64) * (1.0 - eps), "truncated_race")
    u = _uniform(p, generator, torch.float64) * (1.0 - eps)
    return _argmax_of_positive(p / -torch.log(u), p)


def inverse_cdf(p, generator: torch.Generator, sample_shape: tuple = ()) -> torch.Tensor:
    """Exact categorical sampling in float64: the first class whose cumulative
    probability exceeds u * total. Zero-probability classes add nothing to the
    cumulative sum, so they can never be chosen. For a single probability vector,
    `sample_shape` draws that many samples from it (its cumulative sum is built once)."""
    p = check_probabilities(p).to(torch.float64)
    sample_shape = tuple(whole_number(s, "sample_shape entries", minimum=0) for s in sample_shape)
    if sample_shape and p.dim() != 1:
        raise ValueError("sample_shape is for a single probability vector")
    cdf = torch.cumsum(p, -1)
    if not bool(torch.isfinite(cdf[..., -1]).all()):  # weights near float64's largest: their sum overflows
        p = p / p.amax(-1, keepdim=True)  # the same law, drawn exactly
        cdf = torch.cumsum(p, -1)
    u = torch.rand(tuple(sample_shape) + p.shape[:-1] + (1,), generator=generator, dtype=torch.float64, device=p.device)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1)
    # u * total < total, so idx < K but for the last float64 rounding: then
    # the answer is the last class of positive probability.
    last_positive = p.shape[-1] - 1 - (p > 0).flip(-1).int().argmax(-1)
    return torch.minimum(idx, last_positive)


# The two argmax samplers by name, with the score each takes the argmax of.
SCORES = {"gumbel_max": gumbel_score, "exponential_race": race_score}
SAMPLERS = {"gumbel_max": gumbel_max, "exponential_race": exponential_race}
