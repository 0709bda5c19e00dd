"""The exact law of an argmax sampler as actually run in a low-precision dtype.

The closed form (`truncation.truncated_law`) treats u as continuous on
[0, 1 - eps]. A real sampler's u takes finitely many values, and its score
(p / (1e-10 - log(u + 1e-10)) for the exponential race, log p - log(-log u) for
Gumbel-max) is rounded in the same dtype, so scores tie and `argmax` breaks ties
toward the first index. When every class's score takes finitely many values with
known probabilities, the law of the argmax is a finite sum, computed here exactly
(up to float64 rounding).

The generators' lattices (`rand_grid(dtype, device)`):

CPU. float32 is k * 2^-24 with k a uniform 24-bit integer; float16 and bfloat16
are such a float32 rounded to the nearest value of the format, with a result of
1.0 replaced by 0. Checked against draws of torch.rand by tests/test_grid_law.py.

CUDA, worked out from PyTorch's source. `torch.rand` is `uniform_(0, 1)`; on CUDA
`uniform_kernel` (aten/src/ATen/native/cuda/DistributionUniform.cu) calls
`templates::cuda::uniform_kernel` (aten/src/ATen/native/cuda/DistributionTemplates.h).
There `uniform_and_transform` draws with `curand_uniform4` (four floats per Philox
call) for every dtype but float64, and with `curand_uniform2_double` for float64.
curand maps a 32-bit integer x to x * 2^-32 + 2^-33 in float arithmetic
(`_curand_uniform4`, curand_philox4x32_x.h: x is converted to float, rounding to
nearest even, then scaled, a value in (0, 1]); for doubles two integers make
z = x ^ (y << 21), 53 uniform bits, and z * 2^-53 + 2^-54 in double
(`_curand_uniform_double_hq`, curand_uniform.h). The kernel's transform multiplies
by the range (1) and adds `from` (0) in float (double for float64), casts to the
dtype (round to nearest even: c10/util/Half.h, c10/util/BFloat16-inl.h), and
replaces a value equal to `to` (1) by `from` (0), "reversing the bounds".
What follows (`_CudaFloat32`; tests/test_cuda_grid.py checks it):
- float32: the largest value is 1 - 2^-24, as on the CPU. In [1/2, 1) the values are
  spaced 2^-24 as on the CPU, but their probabilities alternate 257 and 255 times
  2^-32 (integers rounded to float tie to even), the largest having 255 * 2^-32.
  The top 128 integers round to 1.0, so P(0) = 2^-25 (CPU: 2^-24). Below 2^-8
  the lattice is finer than the CPU's, down to 2^-33.
- float16, bfloat16: that float32 rounded to the format. The values are the CPU's
  (bfloat16 adds finer ones below 2^-16, 5e-6 of the mass) and each probability
  differs from the CPU's by at most 2^-24.
- float64: z * 2^-53 + 2^-54 is a tie in [1/2, 1), rounded to even, so the values
  there are spaced 2^-52, the largest is 1 - 2^-52, and P(0) = 2^-53. As on the CPU,
  too many values to enumerate.
Scores are evaluated with this machine's float arithmetic; a GPU's `log` may round
differently in the last bit (mdmlib.tools.gpu_check compares the model with real draws).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from mdmlib.precision.categorical import SCORES, check_probabilities, check_scores_fit
from mdmlib.precision.formats import as_dtype, float_format

DEVICES = ("cpu", "cuda")
_CHUNK = 1 << 22  # lattice points scored at once: bounds the memory of a law


def _as_device(device) -> str:
    name = device.type if isinstance(device, torch.device) else device
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    return name


# ---------------------------------------------------------------- lattices


class _Lattice:
    """The values of torch.rand(dtype) on a device as n points in ascending order
    (a value may repeat over consecutive points), with the probability of each."""

    n: int

    def points(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values and probabilities (float64) of the points with indices idx."""
        raise NotImplementedError

    def mass_below(self, idx: torch.Tensor) -> torch.Tensor:
        """Total probability of the points with index < idx (float64)."""
        raise NotImplementedError

    def chunks(self, lo: int = 0):
        for start in range(lo, self.n, _CHUNK):
            yield self.points(torch.arange(start, min(start + _CHUNK, self.n)))


class _Explicit(_Lattice):
    def __init__(self, values: torch.Tensor, probs: torch.Tensor):
        self.values, self.probs = values.to(torch.float64), probs.to(torch.float64)
        self.n = values.numel()
        self.cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(self.probs, 0)])

    def points(self, idx):
        return self.values[idx], self.probs[idx]

    def mass_below(self, idx):
        return self.cumulative[idx]


class _CpuFloat32(_Lattice):
    """k * 2^-24, k = 0 .. 2^24 - 1, each with probability 2^-24."""

    n = 1 << 24

    def points(self, idx):
        return idx.to(torch.float64) * 2.0**-24, torch.full(idx.shape, 2.0**-24, dtype=torch.float64)

    def mass_below(self, idx):
        return idx.to(torch.float64) * 2.0**-24


class _CudaFloat32(_Lattice):
    """curand's float: u = fl(fl(x) * 2^-32 + 2^-33) for a uniform 32-bit x, 1 -> 0.

    The points are the distinct values y of fl(x) (exact below 2^24; in [2^k, 2^(k+1)),
    k = 24..31, the floats spaced 2^(k-23); and 2^32), ascending; the count of
    integers x rounding to y is b(next y) - b(y), b(y) = the smallest x with fl(x) >= y.
    y = 2^32 gives u = 1, which torch returns as 0: it comes first. Consecutive points
    may share a value u (in [2^-9, 2^-8] a tie rounds pairs of y together)."""

    _EXACT = 1 << 24
    _TOP = (1 << 24) + (8 << 23)  # the y-index of 2^32
    n = _TOP + 1

    @classmethod
    def _y(cls, j: np.ndarray) -> np.ndarray:
        r = np.maximum(j - cls._EXACT, 0)
        k = 24 + r // (1 << 23)
        spaced = (np.int64(1) << k) + (r % (1 << 23)) * (np.int64(1) << (k - 23))
        return np.where(j < cls._EXACT, j, spaced)

    @staticmethod
    def _b(y: np.ndarray) -> np.ndarray:
        """Smallest integer x with fl(x) >= y, for y a float32 value that is an integer."""
        below = np.nextafter(y.astype(np.float32), np.float32(0)).astype(np.int64)
        candidate = y - (y - below) // 2  # the midpoint to the float below (a tie if the gap is even)
        b = candidate + (candidate.astype(np.float32).astype(np.int64) != y)
        return np.where(y == 0, 0, b)

    def _top_count(self) -> int:
        return (1 << 32) - int(self._b(np.array([1 << 32], dtype=np.int64))[0])

    def points(self, idx):
        i = idx.numpy().astype(np.int64)
        j = np.where(i == 0, self._TOP, i - 1)
        y = self._y(j)
        count = np.where(j == self._TOP, (1 << 32) - self._b(y), self._b(self._y(np.minimum(j + 1, self._TOP))) - self._b(y))
        u = (y.astype(np.float64) * 2.0**-32 + 2.0**-33).astype(np.float32).astype(np.float64)
        u[j == self._TOP] = 0.0
        return torch.from_numpy(u), torch.from_numpy(count.astype(np.float64) * 2.0**-32)

    def chunks(self, lo: int = 0):
        """As points(), computing b(y) once per point: the counts are its differences."""
        for start in range(lo, self.n, _CHUNK):
            i = np.arange(start, min(start + _CHUNK, self.n), dtype=np.int64)
            if start == 0:
                yield self.points(torch.from_numpy(i))
                continue
            y = self._y(np.append(i - 1, i[-1]))  # the chunk's y values and the next one
            count = np.diff(self._b(y))
            u = (y[:-1].astype(np.float64) * 2.0**-32 + 2.0**-33).astype(np.float32).astype(np.float64)
            yield torch.from_numpy(u), torch.from_numpy(count.astype(np.float64) * 2.0**-32)

    def mass_below(self, idx):
        i = idx.numpy().astype(np.int64)
        below = np.where(i == 0, 0, self._top_count() + np.where(i > self._TOP, 1 << 32, self._b(self._y(np.maximum(i - 1, 0)))))
        return torch.from_numpy(np.minimum(below, 1 << 32).astype(np.float64) * 2.0**-32)


def _first_at_least(lattice: _Lattice, v: torch.Tensor) -> torch.Tensor:
    """Index of the first lattice point with value >= v, for each v (bisection)."""
    lo = torch.zeros(v.shape, dtype=torch.int64)
    hi = torch.full(v.shape, lattice.n, dtype=torch.int64)
    while (lo < hi).any():
        mid = (lo + hi) // 2
        below = lattice.points(mid.clamp(max=lattice.n - 1))[0] < v
        lo, hi = torch.where((lo < hi) & below, mid + 1, lo), torch.where((lo < hi) & ~below, mid, hi)
    return lo


def _rounded(source: _Lattice, dtype: torch.dtype) -> _Explicit:
    """A float32 lattice rounded to float16/bfloat16 (nearest, ties to even), 1 -> 0.
    Each value h of the format in [0, 1] receives the source's mass in [B(h), B(h+)),
    B(h) the smallest float32 that rounds to h or above."""
    h = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(dtype)
    h = torch.unique(h[torch.isfinite(h) & (h >= 0) & (h <= 1)].to(torch.float64))  # ascending, 0 .. 1
    mid = ((h[1:] + h[:-1]) / 2).to(torch.float32)  # exact: the format has fewer bits than float32
    up = mid.to(dtype).to(torch.float64) != h[1:]  # a tie that rounds down: h starts just above it
    start = torch.where(up, torch.nextafter(mid, torch.tensor(2.0)), mid).to(torch.float64)
    edges = source.mass_below(_first_at_least(source, start))
    mass = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), edges, torch.ones(1, dtype=torch.float64)]))
    mass[0] += mass[-1]  # a draw that rounds to 1.0 is returned as 0
    values, mass = h[:-1], mass[:-1]
    keep = (mass > 0) | (values == 0)
    return _Explicit(values[keep], mass[keep])


@lru_cache(maxsize=None)
def _lattice(dtype: torch.dtype, device: str) -> _Lattice:
    if dtype == torch.float64:
        raise ValueError(
            "float64 uniforms take 2^53 values, too many to enumerate; their grid "
            "matters only for probabilities near 1e-16: use truncation.truncated_law"
        )
    base = _CpuFloat32() if device == "cpu" else _CudaFloat32()
    return base if dtype == torch.float32 else _rounded(base, dtype)


def rand_grid(dtype, device="cpu", top: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct values of torch.rand(dtype) on `device` ("cpu" or "cuda"),
    ascending (in dtype), and the probability of each (float64); with `top`, only
    the `top` largest. CUDA float32 has about 7.9e7 values (about 1 GB in full)."""
    lattice = _lattice(as_dtype(dtype), _as_device(device))
    if top is not None and not (isinstance(top, int) and top >= 1):
        raise ValueError(f"top must be a positive integer, got {top!r}")
    lo = 0 if top is None else max(0, lattice.n - 2 * top - 2)  # points repeat at most in pairs
    values, probs = lattice.points(torch.arange(lo, lattice.n))
    values, inverse = torch.unique_consecutive(values, return_inverse=True)
    probs = torch.zeros_like(values).index_add_(0, inverse, probs)
    if top is not None:
        values, probs = values[-top:], probs[-top:]
    return values.to(as_dtype(dtype)), probs


def zero_probability(dtype, device="cpu") -> float:
    """P(torch.rand(dtype) == 0) on `device`, from the modelled lattice."""
    values, probs = _lattice(as_dtype(dtype), _as_device(device)).points(torch.tensor([0]))
    return float(probs[0]) if values[0] == 0 else 0.0


# ---------------------------------------------------------------- the law


def _scores(score_fn, p: torch.Tensor, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    u = values.to(dtype)
    return score_fn(p.expand_as(u), u).to(torch.float64)


def _group_sums(block: torch.Tensor, score: torch.Tensor, prob: torch.Tensor):
    """Distinct (block, score) pairs, sorted by block then score, with summed probabilities."""
    if block.numel() and bool((block == block[0]).all()):  # one block: one sort
        distinct, inverse = torch.unique(score, return_inverse=True)
        return block[: distinct.numel()], distinct, torch.zeros_like(distinct).index_add_(0, inverse, prob)
    order = torch.argsort(score, stable=True)
    block, score, prob = block[order], score[order], prob[order]
    order = torch.argsort(block, stable=True)
    block, score, prob = block[order], score[order], prob[order]
    new = torch.ones_like(block, dtype=torch.bool)
    new[1:] = (block[1:] != block[:-1]) | (score[1:] != score[:-1])
    group = torch.cumsum(new, 0) - 1
    return block[new], score[new], torch.zeros(int(new.sum()), dtype=torch.float64).index_add_(0, group, prob)


def _suffix_starts(score_fn, p: torch.Tensor, lattice: _Lattice, floor: float, dtype) -> torch.Tensor:
    """For each class probability p (in dtype), the first point whose score reaches
    `floor`, by bisection (the score grows with u up to rounding)."""
    lo = torch.zeros(p.shape, dtype=torch.int64)
    hi = torch.full(p.shape, lattice.n, dtype=torch.int64)
    while (lo < hi).any():
        open_ = lo < hi
        mid = (lo + hi) // 2
        values, _ = lattice.points(mid.clamp(max=lattice.n - 1))
        reach = _scores(score_fn, p, values, dtype) >= floor
        hi = torch.where(open_ & reach, mid, hi)
        lo = torch.where(open_ & ~reach, mid + 1, lo)
    return lo


def _supports_above(score_fn, p: torch.Tensor, blocks: torch.Tensor, lattice: _Lattice, floor: float, dtype):
    """The score law of each class (probability p[r], block id blocks[r]) at and
    above `floor`, and its mass below (its atom).

    Each class is scored on the top of the lattice only: from the bisection's start
    minus a margin (1/64 of the suffix, at least 16 points) that absorbs rounding;
    the lowest quarter of the margin must lie below the floor, or the margin doubles."""
    start = _suffix_starts(score_fn, p, lattice, floor, dtype)
    margin = torch.maximum(torch.full_like(start, 16), (lattice.n - start) // 64)
    found, atoms = [], torch.zeros(p.shape, dtype=torch.float64)
    todo = torch.arange(p.numel())
    while todo.numel():
        first = (start[todo] - margin[todo]).clamp(min=0)
        band_end = first + (margin[todo] // 4).clamp(min=1)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lattice.n - first, 0)])
        below = torch.zeros(todo.numel(), dtype=torch.float64)
        clean = torch.ones(todo.numel(), dtype=torch.bool)
        batches = []
        for t0 in range(0, int(offsets[-1]), _CHUNK):  # all suffixes laid end to end, in chunks
            t = torch.arange(t0, min(t0 + _CHUNK, int(offsets[-1])))
            row = torch.searchsorted(offsets, t, right=True) - 1
            idx = first[row] + (t - offsets[row])
            values, probs = lattice.points(idx)
            score = _scores(score_fn, p[todo[row]], values, dtype)
            reach = score >= floor
            below.index_add_(0, row[~reach], probs[~reach])
            clean[row[reach & (idx < band_end[row]) & (first[row] > 0)]] = False
            batches.append((row[reach], score[reach], probs[reach]))
        atoms[todo[clean]] = lattice.mass_below(first[clean]) + below[clean]
        for row, score, probs in batches:
            keep = clean[row]
            found.append((todo[row[keep]], score[keep], probs[keep]))
        margin[todo[~clean]] *= 2
        todo = todo[~clean]
    if not found:
        empty = torch.empty(0, dtype=torch.float64)
        return empty.long(), empty, empty, atoms
    row, score, prob = (torch.cat(x) for x in zip(*found))
    row, score, prob = _group_sums(row, score, prob)
    return blocks[row], score, prob, atoms


def _compressed_support(score_fn, p: torch.Tensor, lattice: _Lattice, breakpoints: torch.Tensor, dtype):
    """The score law of one class over the whole lattice, with its mass between two
    consecutive breakpoints (the other classes' scores) moved to one point of that
    gap: no comparison with another class changes, so neither does the law."""
    n_b = breakpoints.numel()
    hit = torch.zeros(n_b, dtype=torch.float64)
    gap = torch.zeros(n_b + 1, dtype=torch.float64)
    where = torch.zeros(n_b + 1, dtype=torch.float64)  # a score inside each gap that has mass
    for values, probs in lattice.chunks():
        score = _scores(score_fn, p, values, dtype)
        pos = torch.searchsorted(breakpoints, score)
        on = (pos < n_b) & (breakpoints[pos.clamp(max=max(n_b - 1, 0))] == score) if n_b else torch.zeros_like(pos, dtype=torch.bool)
        hit.index_add_(0, pos[on], probs[on])
        gap.index_add_(0, pos[~on], probs[~on])
        where[pos[~on]] = score[~on]  # any score inside a gap will do
    score = torch.stack([where[:-1], breakpoints], 1).flatten()
    prob = torch.stack([gap[:-1], hit], 1).flatten()
    score, prob = torch.cat([score, where[-1:]]), torch.cat([prob, gap[-1:]])
    keep = prob > 0
    return score[keep], prob[keep]


def _law_from_supports(block, score, prob, atom, copies, n_blocks) -> torch.Tensor:
    """P(the first maximal score lies in block i), from each block's score law.

    With F_j(v) = P(score_j <= v) and F_j(v-) = P(score_j < v), block i wins at its
    score v iff its copies' maximum is v, the blocks before i are all below v and
    the blocks after are at most v:
        P(i) = sum_v [F_i(v)^c_i - F_i(v-)^c_i] prod_{j<i} F_j(v-)^c_j prod_{j>i} F_j(v)^c_j.
    All blocks' score values are events sorted by (v, block); sum_j c_j log F_j(v) is
    minus the sum of the jumps c_j [log F_j(w) - log F_j(w-)] of events above v,
    and the blocks before i at the same v take their jump off. Infinite jumps (a
    block with no mass below w) are counted apart, so that no inf - inf arises."""
    # per block: F(v) and F(v-) at each of its score values (block, then score, ascending)
    c = copies[block]
    start = torch.ones_like(block, dtype=torch.bool)
    start[1:] = block[1:] != block[:-1]
    seg = torch.cumsum(start, 0) - 1
    first = torch.nonzero(start).flatten()
    cum = torch.cumsum(prob, 0)
    base = (cum - prob)[first]  # cumulative mass before each block
    below_incl = atom[block] + cum - base[seg]  # F(v)
    below_excl = below_incl - prob  # F(v-)
    total = torch.zeros(first.numel(), dtype=torch.float64).index_add_(0, seg, prob)
    above_excl = total[seg] - (cum - base[seg])  # P(score > v) among kept values
    above_incl = above_excl + prob
    log_le = torch.where(below_incl < 0.5, torch.log(below_incl), torch.log1p(-above_excl.clamp(max=1.0)))
    first_of_block = start & (atom[block] == 0)
    log_lt = torch.where(below_excl < 0.5, torch.log(below_excl.clamp(min=0)), torch.log1p(-above_incl.clamp(max=1.0)))
    log_lt = torch.where(first_of_block, -torch.inf, log_lt)
    lf, lfm = c * log_le, c * log_lt
    own = torch.exp(lf) * -torch.expm1(lfm - lf)
    jump = lf - lfm
    # events in (v, block) order
    order = torch.argsort(score, stable=True)  # the input is in block order already
    v, blk, lf, jump, own = score[order], block[order], lf[order], jump[order], own[order]
    infinite = torch.isinf(jump)
    finite = torch.where(infinite, 0.0, jump)
    suffix = torch.flip(torch.cumsum(torch.flip(finite, [0]), 0), [0])
    suffix_inf = torch.flip(torch.cumsum(torch.flip(infinite.long(), [0]), 0), [0])
    n = v.numel()
    new = torch.ones(n, dtype=torch.bool)
    new[1:] = v[1:] != v[:-1]
    group = torch.cumsum(new, 0) - 1
    group_start = torch.nonzero(new).flatten()
    group_end = torch.cat([group_start[1:], torch.tensor([n])])
    pad, pad_inf = torch.cat([suffix, torch.zeros(1, dtype=torch.float64)]), torch.cat([suffix_inf, torch.zeros(1, dtype=torch.long)])
    above_fin, above_inf = pad[group_end[group]], pad_inf[group_end[group]]
    before_fin = pad[group_start[group]] - suffix  # jumps of earlier blocks at the same v
    before_inf = pad_inf[group_start[group]] - suffix_inf
    term = own * torch.exp(-above_fin - lf - before_fin)
    term = torch.where((above_inf == 0) & (before_inf == 0), term, torch.zeros_like(term))
    return torch.zeros(n_blocks, dtype=torch.float64).index_add_(0, blk, term)


def law_on_grid(p, dtype, sampler: str = "exponential_race", copies=None, device="cpu") -> torch.Tensor:
    """Exact law of `categorical.<sampler>(p, dtype=dtype)` with torch.rand's
    uniforms on `device` ("cpu", or "cuda": the lattice modelled above; scores are
    still evaluated here), for sampler "exponential_race" or "gumbel_max".

    p: a probability vector of length B (need not sum to 1).
    copies: optional positive integers of length B; class block i is then
        copies[i] identical classes of probability p[i], the blocks laid out
        one after another in index order (for example 10,000 flat tokens
        followed by a mask class), and the result is the probability that the
        winner lies in each block.
    Returns float64 probabilities of length B.

    How it stays cheap: the class of largest probability always scores at least
    its smallest score, the floor, so below the floor no other class can win and
    the others are scored only on the top of the lattice (a few points for a token
    far less likely than the mask); the largest class is scored on the whole
    lattice, streamed, and kept only between the others' score values. The cost is
    one pass over the lattice (2^24 points on the CPU in float32) plus the points
    above the floor, so a Zipf law over 50,257 distinct tokens takes seconds.
    """
    dtype = as_dtype(dtype)
    device = _as_device(device)
    if sampler not in SCORES:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {sorted(SCORES)}")
    p = check_probabilities(p)
    if p.dim() != 1:
        raise ValueError(f"p must be one probability vector, got shape {tuple(p.shape)}")
    copies = torch.ones(p.shape, dtype=torch.float64) if copies is None else torch.as_tensor(copies, dtype=torch.float64)
    if copies.shape != p.shape or not torch.isfinite(copies).all() or (copies < 1).any() or (copies != copies.round()).any():
        raise ValueError("copies must be positive integers, one per entry of p")
    lattice = _lattice(dtype, device)
    score_fn = SCORES[sampler]
    p_dtype = p.to(dtype)
    check_scores_fit(p_dtype, score_fn, float_format(dtype).largest_below_one, f"{sampler} ({dtype})")  # the line refuses them too
    if (p_dtype == 0).all():
        raise ValueError(f"probabilities underflow to zero in {dtype}")
    out = torch.zeros(p.numel(), dtype=torch.float64)
    live = torch.nonzero(p_dtype > 0).flatten()  # a zero-probability class never wins
    big = int(live[torch.argmax(p_dtype[live].to(torch.float64))])
    others = live[live != big]
    if others.numel() == 0:
        out[big] = 1.0
        return out
    floor = min(float(_scores(score_fn, p_dtype[big], values, dtype).min()) for values, _ in lattice.chunks())
    block, score, prob, atoms = _supports_above(score_fn, p_dtype[others], others, lattice, floor, dtype)
    big_score, big_prob = _compressed_support(score_fn, p_dtype[big], lattice, torch.unique(score), dtype)
    block = torch.cat([block.long(), torch.full(big_score.shape, big, dtype=torch.int64)])
    score, prob = torch.cat([score.to(torch.float64), big_score]), torch.cat([prob.to(torch.float64), big_prob])
    atom = torch.zeros(p.numel(), dtype=torch.float64)
    atom[others] = atoms
    order = torch.argsort(block, stable=True)  # blocks in order; scores stay ascending within each
    return _law_from_supports(block[order], score[order], prob[order], atom, copies, p.numel())
