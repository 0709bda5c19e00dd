"""Sample quality measures, each with its standard error.

sentence_entropy   the paper's diversity measure: per sequence, the entropy (nats) of
                   its own token histogram, -sum_k p_k log p_k with p_k = count_k / L
gen_ppl            exp of the mean per-token NLL under an evaluator; here the evaluator
                   is the synthetic language itself, so the NLL is exact
Standard errors come from the spread across sequences (sequences are independent).
The effective temperature of a sampler is the T at which softmax(log mu / T) has the
entropy of its draws (`temperature_with_entropy`) or their mean log mu
(`temperature_of_mean`, the maximum-likelihood temperature).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mdmlib.precision.categorical import check_probabilities
from mdmlib.infra.checks import real_number
from mdmlib.stats.significance import mean_and_se

_LOG_MAX = math.log(torch.finfo(torch.float64).max)  # exp of anything above overflows


def sentence_entropy(x: torch.Tensor) -> torch.Tensor:
    """(B,) entropies of each sequence's token histogram, float64."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"token batches must be a non-empty tensor of shape (batch, length), got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"tokens must be integers, got dtype {x.dtype}")
    if (x < 0).any():
        raise ValueError("tokens must be non-negative ids")
    B, L = x.shape
    counts = torch.zeros(B, int(x.max()) + 1, dtype=torch.float64).scatter_add_(1, x, torch.ones_like(x, dtype=torch.float64))
    return categorical_entropy(counts)


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


def estimate(values: torch.Tensor) -> Estimate:
    return Estimate(*mean_and_se(values))


def gen_ppl(nll_per_token: torch.Tensor) -> Estimate:
    """exp(mean NLL per token) with its delta-method standard error."""
    m = estimate(nll_per_token)
    if m.mean > _LOG_MAX or not math.isfinite(math.exp(m.mean) * m.se):
        raise OverflowError(f"Gen PPL = exp({m.mean:.4g}) (or its standard error) overflows float64: compare NLL per token instead")
    ppl = math.exp(m.mean)
    return Estimate(ppl, ppl * m.se)


def summarize(run: dict) -> dict:
    """Mean and SE of NLL per token, Gen PPL and sentence entropy (and NFE where
    present) from a run's per-sequence values, as mdmlib.runs.precision returns them."""
    missing = [k for k in ("nll", "entropy") if k not in run]
    if missing:
        raise ValueError(f"a run needs per-sequence values for {missing}; it has {sorted(run)}")
    per_sequence = {k: torch.as_tensor(run[k], dtype=torch.float64).flatten() for k in ("nll", "entropy", "nfe") if k in run}
    sizes = {k: v.numel() for k, v in per_sequence.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"a run's per-sequence values must have one entry per sequence each, got {sizes}")
    out = {"nll": estimate(per_sequence["nll"]), "gen_ppl": gen_ppl(per_sequence["nll"]), "entropy": estimate(per_sequence["entropy"])}
    if "nfe" in per_sequence:
        out["nfe"] = estimate(per_sequence["nfe"])
    return out


def categorical_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of probability vectors along the last dimension (normalised first)."""
    p = check_probabilities(p).to(torch.float64)
    p = p / p.sum(-1, keepdim=True)
    return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1)


def temperature_with_entropy(mu: torch.Tensor, entropy: float, lo: float = 1e-3, hi: float = 10.0) -> float:
    """The temperature T at which softmax(log mu / T) has the given entropy: the
    temperature a biased sampler effectively runs at. Entropy grows with T, so
    bisection (60 halvings) finds it to float64 precision."""
    mu = check_probabilities(mu).to(torch.float64)
    if mu.dim() != 1:
        raise ValueError(f"mu must be one probability vector, got shape {tuple(mu.shape)}")
    if not 0 < real_number(lo, "lo") < real_number(hi, "hi") < math.inf:
        raise ValueError(f"need 0 < lo < hi < inf, got lo={lo}, hi={hi}")
    if not math.isfinite(real_number(entropy, "entropy")):
        raise ValueError(f"entropy must be finite, got {entropy}")
    logmu = torch.log(mu[mu > 0])

    def entropy_at(T: float) -> float:
        return float(categorical_entropy(torch.softmax(logmu / T, -1)))

    if not entropy_at(lo) <= entropy <= entropy_at(hi):
        raise ValueError(f"entropy {entropy} is not reached for temperatures in [{lo}, {hi}]")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if entropy_at(mid) < entropy else (lo, mid)
    return 0.5 * (lo + hi)


def mean_log_mu(log_mu, T: float) -> float:
    """E[log mu] under softmax(log mu / T); in numpy, as it runs many times on one vector."""
    x = np.asarray(log_mu, dtype=np.float64)
    w = np.exp((x - x.max()) / T)
    return float((w * x).sum() / w.sum())


def temperature_of_mean(log_mu: torch.Tensor, mean: float) -> float:
    """T at which softmax(log mu / T) has E[log mu] = mean (the maximum-likelihood
    temperature of draws with that mean); E[log mu] falls as T rises."""
    lo, hi = math.log(1e-3), math.log(1e3)
    if mean >= float(log_mu.max()) - 1e-12:
        return 0.0  # only the likeliest tokens: the limit T -> 0
    if mean >= mean_log_mu(log_mu, math.exp(lo)):
        return math.exp(lo)
    if mean <= mean_log_mu(log_mu, math.exp(hi)):
        return math.exp(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_log_mu(log_mu, math.exp(mid)) > mean else (lo, mid)
    return math.exp(0.5 * (lo + hi))
