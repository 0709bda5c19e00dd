"""The exact law of an argmax over many classes whose scores take finitely many values.

`grid_law.law_on_grid` compares every block of classes with every other at every grid
value: O(B^2 G) work for B blocks and G grid values, fine for a flat or peaked
distribution (two or three blocks), hopeless for 50,257 distinct token probabilities.
Here the law comes from one sweep over the score values of all blocks together, sorted
once: O(N log N) for N atoms (block, score value). In the masked-diffusion regime only
the few grid values near the top of each token's range can reach the mask's score, so N
stays near the size of the grid.

Atoms. Block b holds c_b identical classes, laid out in index order. Its score takes
value v with probability count / D (counts are integers over a common denominator D, so
that every cumulative sum below is exact). Only the atoms in a window [lo, hi) are
listed; `below[b]` counts the block's mass below lo. With F_b(v) = P(score_b <= v) and
F_b(v-) = P(score_b < v), the first maximal index (torch.argmax) lies in block b with
value v in [lo, hi) with probability

    [F_b(v)^c_b - F_b(v-)^c_b] * prod_{a<b} F_a(v-)^c_a * prod_{a>b} F_a(v)^c_a,

and every F here is known from the atoms of the window and the counts below it.

`argmax_law` sums this over the listed atoms. `law_of_grid_line` builds the atoms of a
line whose score is combine(x_b, noise_k), non-decreasing in the grid index k, and
resolves the law window by window: first above the highest score that some block is
sure to reach (the mask's lowest finite score), then, for the events where that block
scores -inf (Gumbel noise at u = 0), below it, and so on while the mass left matters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from mdmlib.infra.timing import one_thread
from mdmlib.precision.truncation import _cumsum

_MAX_DENOMINATOR = 1 << 53  # counts / D stay exact in float64


def _log_cdf(cnt: torch.Tensor, denominator: int) -> torch.Tensor:
    """log(cnt / D), accurate both for small cnt and for cnt close to D."""
    gap = (denominator - cnt).to(torch.float64) / denominator
    near_one = gap < 0.5
    out = torch.where(near_one, torch.log1p(-gap.clamp(max=0.5)), torch.log(cnt.clamp(min=1).to(torch.float64) / denominator))
    return torch.where(cnt > 0, out, torch.full_like(out, -math.inf))


def argmax_law(values, counts, blocks, below, denominator: int, copies=None) -> torch.Tensor:
    """P(the first maximal class lies in block b and its score is listed), for each block.

    values: float64 (N,) score values; counts: int64 (N,) their probabilities times D;
    blocks: int64 (N,) the block of each atom (no block lists a value twice).
    below: int64 (B,) each block's count below the listed window; D = denominator.
    copies: positive integers (B,), the classes in each block (default 1).
    Returns float64 (B,). One minus their sum is the probability that the winner's
    score lies outside the listed window."""
    values = torch.as_tensor(values, dtype=torch.float64)
    counts = torch.as_tensor(counts, dtype=torch.int64)
    blocks = torch.as_tensor(blocks, dtype=torch.int64)
    below = torch.as_tensor(below, dtype=torch.int64)
    n_blocks = below.numel()
    copies = torch.ones(n_blocks, dtype=torch.float64) if copies is None else torch.as_tensor(copies, dtype=torch.float64)
    if not 1 <= denominator <= _MAX_DENOMINATOR:
        raise ValueError(f"the denominator must lie in [1, 2^53], got {denominator}")
    if not (values.shape == counts.shape == blocks.shape) or values.dim() != 1:
        raise ValueError("values, counts and blocks must be vectors of one length")
    if copies.shape != below.shape or (copies < 1).any() or (copies != copies.round()).any():
        raise ValueError("copies must be positive integers, one per block")
    if torch.isnan(values).any() or (counts <= 0).any() or (below < 0).any():
        raise ValueError("values must not be NaN and counts must be positive")
    if blocks.numel() and (blocks.min() < 0 or blocks.max() >= n_blocks):
        raise ValueError(f"block indices must lie in [0, {n_blocks})")
    if ((below + torch.zeros(n_blocks, dtype=torch.int64).index_add_(0, blocks, counts)) > denominator).any():
        raise ValueError("a block's counts add up to more than the denominator")
    out = torch.zeros(n_blocks, dtype=torch.float64)
    if values.numel() == 0:
        return out

    # Each block's CDF at its own atoms: sort by (block, value); cumulative counts are exact integers.
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(blocks[order], stable=True)]
    v, q, b = values[order], counts[order], blocks[order]
    run = torch.cumsum(q, 0)
    start = torch.ones_like(b, dtype=torch.bool)
    start[1:] = b[1:] != b[:-1]
    if ((v[1:] == v[:-1]) & ~start[1:]).any():
        raise ValueError("a block lists the same value twice")
    offset = torch.cummax(torch.where(start, run - q, torch.zeros_like(run)), 0).values
    le = below[b] + run - offset  # count of score <= v
    lt = le - q  # count of score < v
    log_le, log_lt = _log_cdf(le, denominator), _log_cdf(lt, denominator)
    c = copies[b]
    zero_lt = lt == 0
    own = torch.exp(c * log_le) * -torch.expm1(c * (log_lt - log_le))  # F(v)^c - F(v-)^c

    # Sweep in (value, block) order: S(v-) = sum_a c_a log F_a(v-), with the blocks whose
    # F(v-) is 0 counted apart (Z) so that no -inf enters a sum.
    order2 = torch.argsort(v, stable=True)  # v is grouped by block in block order: ties stay in block order
    v, b, c, log_le, log_lt, zero_lt, own = (t[order2] for t in (v, b, c, log_le, log_lt, zero_lt, own))
    inc = c * log_le - torch.where(zero_lt, torch.zeros_like(log_lt), c * log_lt)
    inc_zero = zero_lt.to(torch.float64)  # a block leaves Z at its first atom
    listed_below = torch.zeros(n_blocks, dtype=torch.bool).index_fill_(0, b, True)
    base_zero = float(((below == 0) & listed_below).sum())
    has_below = below > 0
    base = float((copies[has_below] * _log_cdf(below[has_below], denominator)).sum())
    if ((below == 0) & ~listed_below).any():
        return out  # a block with no mass anywhere in reach: impossible input
    cum = _cumsum(inc)
    cum_zero = torch.cumsum(inc_zero, 0)
    group_start = torch.ones_like(b, dtype=torch.bool)
    group_start[1:] = v[1:] != v[:-1]
    group = torch.cumsum(group_start, 0) - 1
    index = torch.arange(v.numel())
    first = torch.zeros(int(group[-1]) + 1, dtype=torch.int64).scatter_reduce_(0, group, index, "amin", include_self=False)[group]
    last = torch.zeros(int(group[-1]) + 1, dtype=torch.int64).scatter_reduce_(0, group, index, "amax", include_self=False)[group]
    before = torch.where(first > 0, cum[(first - 1).clamp(min=0)], torch.zeros_like(cum))  # increments at values < v
    before_zero = torch.where(first > 0, cum_zero[(first - 1).clamp(min=0)], torch.zeros_like(cum_zero))
    later = cum[last] - cum  # increments of later blocks at the same value
    later_zero = cum_zero[last] - cum_zero
    log_others = base + before - torch.where(zero_lt, torch.zeros_like(log_lt), c * log_lt) + later
    zeros = base_zero - before_zero - zero_lt.to(torch.float64) - later_zero
    p = torch.where(zeros < 0.5, own * torch.exp(log_others), torch.zeros_like(own))
    return out.index_add_(0, b, p)


@dataclass(frozen=True)
class GridLaw:
    """The law of the winning block, and how much of it is left unresolved (an upper
    bound on the probability of the events not computed, all of them -inf scores)."""

    law: torch.Tensor
    unresolved: float


def _first_at_least(x: torch.Tensor, noise: torch.Tensor, combine, level: torch.Tensor) -> torch.Tensor:
    """For each block, the first grid index k with combine(x, noise_k) >= level (G if none),
    by bisection: the score is non-decreasing in k."""
    G = noise.numel()
    lo = torch.zeros(x.numel(), dtype=torch.int64)
    hi = torch.full((x.numel(),), G, dtype=torch.int64)
    while bool((lo < hi).any()):
        mid = (lo + hi) // 2
        active = lo < hi
        s = combine(x, noise[mid.clamp(max=G - 1)]).to(torch.float64)
        go_right = active & (s < level)
        lo = torch.where(go_right, mid + 1, lo)
        hi = torch.where(active & ~go_right, mid, hi)
    return lo


def _atoms(x, noise, counts, combine, k_lo, k_hi):
    """Distinct scores of each block over grid indices [k_lo, k_hi), with summed counts."""
    sizes = (k_hi - k_lo).clamp(min=0)
    block = torch.repeat_interleave(torch.arange(x.numel()), sizes)
    k = torch.arange(block.numel()) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes) + k_lo[block]
    score = combine(x[block], noise[k]).to(torch.float64)
    if ((score[1:] < score[:-1]) & (block[1:] == block[:-1])).any():
        raise ValueError("the score is not non-decreasing along the grid: the law cannot be swept")
    key_change = torch.ones_like(block, dtype=torch.bool)
    key_change[1:] = (score[1:] != score[:-1]) | (block[1:] != block[:-1])
    group = torch.cumsum(key_change, 0) - 1
    merged = torch.zeros(int(key_change.sum()), dtype=torch.int64).index_add_(0, group, counts[k])
    return score[key_change], merged, block[key_change]


def _lumped_atoms(x_b, noise, counts_prefix, combine, k_lo: int, k_hi: int, others: torch.Tensor):
    """The atoms of one block over grid indices [k_lo, k_hi), lumped between the sorted
    distinct values `others` of all other blocks: within such a gap every other block's CDF
    is constant, so the block's own term telescopes and one atom per gap (at any of its
    values) gives the same law. Values equal to one of `others` stay apart (ties decide by
    index). The gaps are found by bisection, so the block's grid is never walked through.
    counts_prefix[k] is the count of grid indices below k."""
    if k_hi <= k_lo:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    score = combine(x_b, noise[k_lo:k_hi])  # one pass, to check the bisection's premise
    if (score[1:] < score[:-1]).any():
        raise ValueError("the score is not non-decreasing along the grid: the law cannot be swept")
    x = x_b.reshape(1).expand(others.numel())
    first_ge = _first_at_least(x, noise, combine, others).clamp(k_lo, k_hi)
    first_gt = _first_at_least(x, noise, combine, others.nextafter(torch.tensor(math.inf, dtype=torch.float64))).clamp(k_lo, k_hi)
    edges = torch.unique(torch.cat([torch.tensor([k_lo, k_hi]), first_ge, first_gt]))  # sorted segment boundaries
    lo, hi = edges[:-1], edges[1:]
    merged = counts_prefix[hi] - counts_prefix[lo]
    value = combine(x_b.reshape(1).expand(hi.numel()), noise[hi - 1]).to(torch.float64)  # the segment's largest value
    return value, merged


def law_of_grid_line(
    x: torch.Tensor,
    noise: torch.Tensor,
    counts: torch.Tensor,
    denominator: int,
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    copies=None,
    tol: float = 1e-12,
    max_atoms: int = 40_000_000,
) -> GridLaw:
    """Exact law of argmax_b combine(x_b, noise_k(b)) where each class draws its own grid
    index k with probability counts[k] / D, and combine(x, noise_k) is non-decreasing in k.

    x: (B,) block parameters as the line holds them (its dtype); noise: (G,) the line's
    noise at each grid value; copies: classes per block. The law is resolved window by
    window (see the module docstring) until the unresolved mass is below `tol` or the
    next window would need more than `max_atoms` grid evaluations."""
    # one thread: the sweep makes hundreds of operations on ~50,000 entries, just above torch's
    # grain for splitting work; on a busy 2-core machine each waited ~15 ms for its threads
    # (18.7 s for a Zipf probe at GPT-2's vocabulary against 1.5 s on one thread)
    with one_thread():
        return _law_of_grid_line(x, noise, counts, denominator, combine, copies, tol, max_atoms)


def _law_of_grid_line(x, noise, counts, denominator, combine, copies, tol, max_atoms) -> GridLaw:
    B = x.numel()
    copies = torch.ones(B, dtype=torch.float64) if copies is None else torch.as_tensor(copies, dtype=torch.float64)
    counts = torch.as_tensor(counts, dtype=torch.int64)
    if counts.shape != noise.shape or int(counts.sum()) != denominator:
        raise ValueError("counts must match the noise and add up to the denominator")
    prefix = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    first = combine(x[:1].expand(noise.numel()), noise).to(torch.float64)  # the bisections below rely on this
    if (first[1:] < first[:-1]).any():
        raise ValueError("the score is not non-decreasing along the grid: the law cannot be swept")
    # each block's lowest finite score, and the count of its -inf scores
    k_finite = _first_at_least(x, noise, combine, torch.tensor(-math.inf, dtype=torch.float64).expand(B).nextafter(torch.tensor(0.0, dtype=torch.float64)))
    reachable = k_finite < noise.numel()
    low = torch.full((B,), -math.inf, dtype=torch.float64)
    low[reachable] = combine(x[reachable], noise[k_finite[reachable]]).to(torch.float64)
    minus_inf = prefix[k_finite].to(torch.float64) / denominator  # P(one class scores -inf)
    law = torch.zeros(B, dtype=torch.float64)
    hi_level = torch.tensor(math.inf, dtype=torch.float64)
    k_hi = torch.full((B,), noise.numel(), dtype=torch.int64)
    unresolved = 1.0
    anchors = [a for a in torch.argsort(low, descending=True, stable=True).tolist() if reachable[a]]
    for anchor in anchors:
        if unresolved < tol:
            break
        level = low[anchor]
        if level >= hi_level:  # an anchor tied with the previous one adds no new window
            unresolved *= float(minus_inf[anchor]) ** float(copies[anchor])
            continue
        k_lo = _first_at_least(x, noise, combine, level.expand(B))
        sizes = (k_hi - k_lo).clamp(min=0)
        big = int(sizes.argmax())  # the block with the most grid values in the window is lumped
        rest = sizes.clone()
        rest[big] = 0
        if int(rest.sum()) > max_atoms:
            break
        values, atom_counts, blocks = _atoms(x, noise, counts, combine, k_lo, k_lo + rest)
        if int(sizes[big]) > 0:
            big_values, big_counts = _lumped_atoms(x[big], noise, prefix, combine, int(k_lo[big]), int(k_hi[big]), torch.unique(values))
            values = torch.cat([values, big_values])
            atom_counts = torch.cat([atom_counts, big_counts])
            blocks = torch.cat([blocks, torch.full_like(big_counts, big)])
        law += argmax_law(values, atom_counts, blocks, prefix[k_lo], denominator, copies)
        unresolved *= float(minus_inf[anchor]) ** float(copies[anchor])
        hi_level, k_hi = level, k_lo
    else:  # what is left is every class scoring -inf, and argmax then returns the first index
        law[0] += unresolved
        unresolved = 0.0
    return GridLaw(law, unresolved)
