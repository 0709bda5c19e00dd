"""The exact law of a Gumbel-max (exponential race) sampler truncated at M.

Race picture. With u_i ~ U(0, 1 - eps), E_i = -log u_i is an Exp(1) variable
conditioned on E_i >= delta, delta = -log(1 - eps) = e^{-M}; by memorylessness
E_i = delta + Exp(1). The sampler returns argmax_i pi_i / E_i = argmin_i T_i with
T_i = E_i / pi_i = delta / pi_i + Exp(rate pi_i): class i starts its clock at
a_i = delta / pi_i. Sorting pi_1 <= ... <= pi_K (a_1 >= ... >= a_K), on the time
interval [a_i, a_{i-1}) exactly the classes i..K are running, and integrating
the first-firing density piece by piece gives the paper's Prop. 5.2:

    pi'_n = pi_n * sum_{i<=n} beta(i),
    beta(i) = [exp((K+1-i - S_i/pi_i) delta) - exp((K+1-i - S_i/pi_{i-1}) delta)] / S_i,
    S_i = sum_{k>=i} pi_k,  pi_0 = 0.

`truncated_law` evaluates this stably in O(K log K); `truncated_law_reference`
integrates the sampler's definition numerically, for testing.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mdmlib.precision.categorical import check_probabilities
from mdmlib.infra.checks import real_number
from mdmlib.precision.formats import check_cap, gumbel_cap


def _cap_to_delta(M: float | None, eps: float | None) -> float:
    if (M is None) == (eps is None):
        raise ValueError("give exactly one of M (the Gumbel cap) or eps (the uniform's gap below 1)")
    if eps is not None:
        M = gumbel_cap(eps)
    return math.exp(-check_cap(M))


def _cumsum(x: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Cumulative sum along the last dimension in two levels (within blocks of
    `block`, then across block totals): the rounding error grows like
    block + K/block instead of K, which keeps sums of 1e5 terms within ~1e-13."""
    K = x.shape[-1]
    if K <= block:
        return torch.cumsum(x, -1)
    pad = (-K) % block
    xb = torch.nn.functional.pad(x, (0, pad)).reshape(*x.shape[:-1], -1, block)
    within = torch.cumsum(xb, -1)
    offsets = torch.cumsum(within[..., -1], -1) - within[..., -1]
    return (within + offsets[..., None]).reshape(*x.shape[:-1], -1)[..., :K]


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(_cumsum(torch.flip(x, [-1])), [-1])


def truncated_law(p, M: float | None = None, *, eps: float | None = None) -> torch.Tensor:
    """Law of argmax(log p + g) with g a Gumbel truncated at M (or: with
    uniforms capped at 1 - eps), for probabilities p of shape (..., K).

    Returns float64 probabilities of the same shape, summing to 1 along the
    last dimension. Zero-probability classes get exactly 0.

    Stability: every exponent (K+1-i - S_i/pi_i) delta = -delta D_i / pi_i is
    <= 0, with D_i = sum_{k>=i} (pi_k - pi_i) built from non-negative gaps (no
    cancellation); the difference of exponentials is exp(A) * -expm1(B - A).
    """
    delta = _cap_to_delta(M, eps)
    p = check_probabilities(p).to(torch.float64)
    p = p / p.sum(-1, keepdim=True)
    if delta == 0.0:  # M = +inf: no truncation
        return p.clone()
    s, order = torch.sort(p, dim=-1)
    K = s.shape[-1]
    tail = _reverse_cumsum(s)  # S_i
    # D_i = D_{i+1} + (number of classes above i) * (pi_{i+1} - pi_i)
    above = torch.arange(K - 1, 0, -1, dtype=s.dtype, device=s.device)
    steps = torch.diff(s, dim=-1) * above
    D = torch.zeros_like(s)
    D[..., :-1] = _reverse_cumsum(steps)
    prev = torch.cat([torch.zeros_like(s[..., :1]), s[..., :-1]], -1)
    positive = s > 0
    safe_s = torch.where(positive, s, torch.ones_like(s))
    A = -delta * D / safe_s
    # B - A = -delta S_i (1/pi_{i-1} - 1/pi_i); written to avoid overflow of pi_i pi_{i-1}
    gap = delta * tail * ((s - prev) / safe_s) / prev  # prev = 0 gives +inf: the whole first term
    beta = torch.exp(A) * -torch.expm1(-gap) / torch.where(positive, tail, torch.ones_like(tail))
    beta = torch.where(positive, beta, torch.zeros_like(beta))
    law_sorted = s * _cumsum(beta)
    return torch.empty_like(law_sorted).scatter_(-1, order, law_sorted)


_GL_NODES, _GL_WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(20))


def truncated_law_reference(p, M: float | None = None, *, eps: float | None = None, decades: float = 60.0) -> torch.Tensor:
    """Slow, independent reference for `truncated_law` (one probability vector).

    From the definition: u_n ~ U(0, 1 - eps); class n wins iff every other class
    has p_k / (-log u_k) < p_n / (-log u_n), i.e. u_k < u_n^(p_k/p_n), which
    happens with probability min(u_n^(p_k/p_n) / (1 - eps), 1). With
    -log u_n = delta + x (x >= 0) and 1 - eps = e^-delta,

        P(n) = int_0^inf prod_{k} min(e^{delta - (delta + x) p_k/p_n}, 1) dx

    (the k = n factor, e^{-x}, is the density of -log u_n shifted by delta). Factor k starts
    to bite at x_k = delta (p_n - p_k) / p_k; classes at least as likely as n
    bite from the start. Between kinks the integrand is smooth and is integrated
    by 20-point Gauss-Legendre panels spanning at most one e-fold of decay each;
    integration stops once it has fallen by e^-decades (the rest is smaller
    than that, as it decays at least like e^-x). Everything is computed
    relative to x = 0, so that probabilities down to 1e-30 keep their digits."""
    delta = _cap_to_delta(M, eps)
    if not real_number(decades, "decades") > 0:
        raise ValueError(f"decades must be positive, got {decades}")
    p = check_probabilities(p).to(torch.float64)
    if p.dim() != 1:
        raise ValueError(f"the reference takes one probability vector, got shape {tuple(p.shape)}")
    p = p / p.sum()
    if delta == 0.0:
        return p.clone()
    out = torch.zeros_like(p)
    for n in torch.nonzero(p > 0).flatten().tolist():
        pn = p[n]
        early = p >= pn
        late = torch.sort(p[(p > 0) & ~early], descending=True).values  # in order of their kinks
        kinks = delta * (pn - late) / late
        late_mass = torch.cat([torch.zeros(1, dtype=p.dtype), torch.cumsum(late, 0)])
        early_mass = p[early].sum()
        log_start = delta * (1.0 - p[early] / pn).sum()  # log of the integrand at x = 0 (<= 0)

        def log_rel(x: torch.Tensor) -> torch.Tensor:
            """log integrand(x) - log integrand(0)."""
            c = torch.searchsorted(kinks, x, right=False)  # late factors active at x
            m = late_mass[c]
            return delta * c.to(x.dtype) - (delta + x) * m / pn - x * early_mass / pn

        end = (kinks.max() if kinks.numel() else torch.tensor(0.0, dtype=p.dtype)) + decades * pn / early_mass
        edges = torch.unique(torch.cat([torch.zeros(1, dtype=p.dtype), kinks, end.reshape(1)]))
        drop = -log_rel(edges)
        keep = int((drop < decades).sum())  # edges before the integrand has fallen by e^-decades
        edges = edges[: keep + 1].clone()
        if keep < drop.numel() and drop[keep] > decades:  # end the last piece where it does
            lo, hi = edges[-2].item(), edges[-1].item()
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if mid in (lo, hi):
                    break
                if -log_rel(torch.tensor([mid], dtype=p.dtype)).item() > decades:
                    hi = mid
                else:
                    lo = mid
            edges[-1] = hi
        left, right = edges[:-1], edges[1:]
        folds = (log_rel(left) - log_rel(right)).clamp(min=0)
        panels = torch.ceil(folds).clamp(min=1).long()
        piece = torch.repeat_interleave(torch.arange(left.numel()), panels)
        first = torch.cumsum(panels, 0) - panels
        j = torch.arange(piece.numel()) - first[piece]
        width = (right - left)[piece] / panels[piece]
        a = left[piece] + j * width
        nodes = a[:, None] + 0.5 * width[:, None] * (_GL_NODES[None, :] + 1.0)
        vals = torch.exp(log_rel(nodes.flatten())).view_as(nodes)
        integral = (vals * _GL_WEIGHTS[None, :] * 0.5 * width[:, None]).sum()
        out[n] = math.exp(log_start.item()) * integral
    return out
