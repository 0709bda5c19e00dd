"""Floating-point formats and the cap they put on a Gumbel variable.

A format with f fraction bits spaces its numbers in [1/2, 1) by 2^-(f+1), so
the largest value below 1 is 1 - eps with eps = 2^-(f+1): the paper's epsilon,
called `gap_below_one` here. It is half of `torch.finfo(dtype).eps`, which is
the gap just *above* 1 (2^-f); the two are easy to confuse, hence the name.
A uniform u stored in that format can never exceed 1 - eps, hence
g = -log(-log u) can never exceed M = -log(-log(1 - eps)): the Gumbel variable
is truncated at M.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mdmlib.infra.checks import real_number, whole_number

_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def as_dtype(dtype) -> torch.dtype:
    """torch.float32 or 'float32' -> torch.float32; anything else is an error."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(_DTYPES)}")


def gumbel_cap(eps: float) -> float:
    """M = -log(-log(1 - eps)), the largest Gumbel value a uniform capped at 1 - eps gives."""
    eps = real_number(eps, "eps")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return -math.log(-math.log1p(-eps))


# e^-M must stay finite: the truncation shift delta = e^-M multiplies every term of the law
_MIN_CAP = -math.log(torch.finfo(torch.float64).max)


def check_cap(M: float) -> float:
    """M as a float: a real number above -log(float64 max) ~ -709.8 (+inf: no truncation)."""
    M = real_number(M, "the Gumbel cap M")
    if math.isnan(M):
        raise ValueError("the Gumbel cap M is NaN")
    if not M > _MIN_CAP:
        raise ValueError(f"the Gumbel cap M = {M} is below {_MIN_CAP:.1f}: e^-M (the truncation shift) overflows")
    return M


@dataclass(frozen=True)
class FloatFormat:
    name: str
    dtype: torch.dtype
    fraction_bits: int

    @property
    def gap_below_one(self) -> float:
        """The paper's epsilon, 2^-(f+1): 1 minus the largest value below 1
        (half of torch.finfo(dtype).eps, the gap above 1)."""
        return 2.0 ** -(self.fraction_bits + 1)

    @property
    def largest_below_one(self) -> float:
        return 1.0 - self.gap_below_one

    @property
    def gumbel_cap(self) -> float:
        return gumbel_cap(self.gap_below_one)


def float_format(dtype) -> FloatFormat:
    """The format of a dtype; its fraction bits are read from torch.finfo
    (finfo.eps is the spacing just above 1, i.e. 2^-f)."""
    dtype = as_dtype(dtype)
    bits = -math.log2(torch.finfo(dtype).eps)
    name = next(k for k, v in _DTYPES.items() if v == dtype)
    return FloatFormat(name, dtype, int(round(bits)))


FORMATS = tuple(float_format(d) for d in _DTYPES)


@dataclass(frozen=True)
class RandProbe:
    """What n draws of torch.rand(dtype) actually contained."""

    dtype: torch.dtype
    n: int
    largest: float  # the largest value seen
    spacing_below_largest: float  # gap between the two largest distinct values
    zeros: int  # how many draws were exactly 0
    smallest_positive: float

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.n


def probe_rand(dtype, n: int, generator: torch.Generator, chunk: int = 1 << 22) -> RandProbe:
    """Draw n uniforms with torch.rand in `dtype` (on the generator's device)
    and report their largest value, the spacing just below it, and how often 0
    came out. Only the observed values are reported: nothing is assumed."""
    dtype = as_dtype(dtype)
    n = whole_number(n, "n", minimum=2)
    chunk = whole_number(chunk, "chunk")
    device = generator.device
    tops: list[float] = []  # the two largest distinct values of each chunk
    zeros, smallest = 0, math.inf
    done = 0
    while done < n:
        m = min(chunk, n - done)
        u = torch.rand(m, generator=generator, dtype=dtype, device=device).double()
        zeros += int((u == 0).sum())
        pos = u[u > 0]
        if pos.numel():
            smallest = min(smallest, float(pos.min()))
        largest = u.max()
        below = u[u < largest]
        tops += [float(largest)] + ([float(below.max())] if below.numel() else [])
        done += m
    largest = max(tops)
    below = [t for t in tops if t < largest]
    gap = largest - max(below) if below else math.nan
    return RandProbe(dtype, n, largest, gap, zeros, smallest)
