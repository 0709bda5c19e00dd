"""The effective truncation that best explains the measured leave rates: the eps of the
closed form (`truncation.truncated_law`, on a grid of half binades from 2^-8 to 2^-60) or
a threshold below which tokens are never drawn, each with its likelihood interval."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from mdmlib.audit.probes import Probe
from mdmlib.audit.results import CONFIDENCE, ProbeResult
from mdmlib.infra.results import cached
from mdmlib.precision.argmax_law import one_thread
from mdmlib.precision.truncation import truncated_law
from mdmlib.stats.intervals import binomial_deviance_p, binomial_log_likelihood, likelihood_interval

EPS_GRID = 2.0 ** -torch.arange(8, 60.25, 0.5, dtype=torch.float64)  # 2^-8 ... 2^-60, half-binade steps, for the closed-form fit


@lru_cache(maxsize=256)
def _eps_curve_cached(probe: Probe) -> tuple[float, ...]:
    def compute() -> dict:
        p, copies, _, mask_block = probe.blocks()
        full = torch.repeat_interleave(p, copies)
        with one_thread():  # many mid-sized operations: see argmax_law.one_thread
            return {"leave": [1.0 - float(truncated_law(full, eps=float(e))[probe.mask_index]) for e in EPS_GRID]}

    return tuple(cached("audit_eps_curve", {"probe": probe.key(), "eps": EPS_GRID}, compute)["leave"])


def eps_curve(probe: Probe) -> torch.Tensor:
    """P(leave) of the closed form at each eps of EPS_GRID (2^-8 ... 2^-60)."""
    return torch.tensor(_eps_curve_cached(probe), dtype=torch.float64)


def invert_eps(probe: Probe, leave: float) -> float:
    """The eps at which the closed form leaves the mask at `leave` (log-log interpolation on
    EPS_GRID; 0 when the leave rate is at least the closed form's at 2^-60, inf when below
    its rate at 2^-8)."""
    curve = eps_curve(probe)  # falls as eps grows
    if not leave > 0:
        return math.inf
    if leave >= curve[-1]:
        return 0.0
    if leave <= curve[0]:
        return math.inf
    i = int(torch.nonzero(curve < leave).max())  # curve[i] < leave <= curve[i + 1]
    x0, x1 = math.log(EPS_GRID[i]), math.log(EPS_GRID[i + 1])
    y0, y1 = math.log(max(curve[i], 1e-300)), math.log(curve[i + 1])
    return math.exp(x0 + (math.log(leave) - y0) * (x1 - x0) / (y1 - y0))


def fit_eps(results: list[ProbeResult], confidence: float = CONFIDENCE) -> dict | None:
    """The closed-form eps that best explains the measured leave counts (maximum likelihood
    on EPS_GRID, with exact sampling as eps = 0), its likelihood interval at `confidence`
    and the goodness of fit (deviance against chi-square)."""
    mc = [r for r in results if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return None
    k = np.array([r.leaves for r in mc], dtype=np.float64)
    n = np.array([r.n for r in mc], dtype=np.float64)
    curves = np.stack([np.concatenate([[r.probe.h], eps_curve(r.probe).numpy()[::-1]]) for r in mc], 1)  # rows: eps = 0, 2^-60 ... 2^-8
    eps = np.concatenate([[0.0], EPS_GRID.numpy()[::-1]])
    lls = np.array([binomial_log_likelihood(k, n, row) for row in curves])
    best, inside = likelihood_interval(lls, confidence)
    return {"eps": float(eps[best]), "low": float(eps[min(inside)]), "high": float(eps[max(inside)]),
            "deviance_p": binomial_deviance_p(k, n, curves[best]), "grid": "eps in {0} and 2^-60 ... 2^-8"}


def fit_threshold(results: list[ProbeResult], confidence: float = CONFIDENCE) -> dict | None:
    """The threshold tau below which tokens are never drawn (their mass going to the rest
    in proportion) that best explains the leave counts, with its likelihood interval at
    `confidence`. A token drawn with probability p rules out every tau > p."""
    mc = [r for r in results if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return None
    token_p = [r.probe.categories()[r.probe.token_slice()] for r in mc]
    candidates = torch.unique(torch.cat(token_p + [torch.zeros(1, dtype=torch.float64)]))  # tau = each token probability, and 0
    drawn = [tp[(r.token_counts[r.probe.token_slice()] > 0)] for tp, r in zip(token_p, mc)]
    lowest_drawn = min((float(d.min()) for d in drawn if d.numel()), default=math.inf)
    k = np.array([r.leaves for r in mc], dtype=np.float64)
    n = np.array([r.n for r in mc], dtype=np.float64)
    rates = []
    for tp, r in zip(token_p, mc):
        s, _ = torch.sort(tp, descending=True)
        kept = torch.cumsum(s, 0)  # kept mass for tau in (s[j+1], s[j]]
        # tokens with p >= tau are kept: number kept = count of s >= tau
        count = torch.searchsorted(-s, -candidates, right=True)
        mass = torch.where(count > 0, kept[(count - 1).clamp(min=0)], torch.zeros_like(candidates))
        rates.append((mass / (mass + (1 - r.probe.h))).numpy())
    rates = np.stack(rates, 1)
    lls = np.array([binomial_log_likelihood(k, n, row) if float(c) <= lowest_drawn else -math.inf for c, row in zip(candidates, rates)])
    best, inside = likelihood_interval(lls, confidence)
    tau = candidates.numpy()
    lo_i, hi_i = min(inside), max(inside)
    # tau in (tau[i-1], tau[i]] gives the same law as tau[i]: report the open lower end
    return {"tau": float(tau[best]), "low": float(tau[lo_i - 1]) if lo_i > 0 else 0.0, "high": float(tau[hi_i]),
            "deviance_p": binomial_deviance_p(k, n, rates[best]), "lowest_token_drawn": lowest_drawn}
