"""The training losses of the four objectives, per sequence, and the weights of the continuous-time loss.

objective      loss on a batch of clean sequences x_0 (B, L)
"mdm_time"     the continuous-time MDM loss (below), the network given sigma(t)
"mdm_no_time"  the same loss; the network is not time-conditioned and ignores sigma
"maskgit"      MaskGIT-style: n masked positions, n from the cosine law below;
               unweighted cross-entropy over them
"ar"           -log p(x_l | x_<l), every position (the causal twin)

The networks are arguments: anything called as network(ids, sigma) (masked) or
network(ids) (AR), with a `config.extra_id` (the mask or start id) and parameters on
one device. mdmlib.models.training builds them and runs the loop.

The continuous-time MDM loss (MDLM). With m(t) the probability that a token is
masked at time t (alpha_t = 1 - m(t) in the paper), split [0, 1] into steps s < t.
A position masked at t stays masked at s with probability m(s)/m(t) and otherwise
takes a token from mu_theta; the KL term of that step, for a position masked at
t, is (m(t) - m(s)) / m(t) * -log mu_theta(x_t, t)[x_0] (zero if it was clean).
Summing over steps and letting them shrink,

    NELBO = int_0^1 w(t) E_{x_t ~ q(. | x_0)} [ sum_{l masked in x_t} -log mu_theta(x_t, t)_l[x_0,l] ] dt,
    w(t) = m'(t) / m(t)        (= -alpha'_t / (1 - alpha_t)).

MDLM's log-linear schedule m(t) = (1 - eps) t (eps = 1e-3, sigma(t) = -log(1 - m(t)))
gives w(t) = (1 - eps) / ((1 - eps) t) = 1/t, as does the linear one; the cosine
schedule m(t) = 1 - cos(pi t / 2) gives w(t) = (pi/2) sin(pi t/2) / (1 - cos(pi t/2)).
MDLM writes the same weight as sigma'(t) / expm1(sigma(t)); mdmlib.mdm.schedules has
m (mask_probability) and m' (mask_rate).

By masked count (Prop. 3.1): n of L tokens are masked at time t with probability
C(L, n) m^n (1-m)^(L-n), so the loss puts on the count n the weight
    c_n = int w(t) C(L, n) m(t)^n (1 - m(t))^(L-n) dt = (1/n) [I_{m(t1)}(n, L-n+1) - I_{m(t0)}(n, L-n+1)]
over t in [t0, t1] (I the regularised incomplete beta function; substitute y = m(t)):
exactly 1/n, the ELBO's weight, when m runs from 0 to 1. Training draws t from
[t_min, 1], as MDLM does (t_min = 1e-3: w = 1/t has infinite variance near 0), so
the loss estimates the integral over [t_min, 1]: `masked_count_weights` gives its c_n.

The time t of each sequence: t = t_min + (1 - t_min) u with u ~ U(0, 1), and the
loss carries the factor (1 - t_min) of that change of variable. With
`antithetic=True` (the default, MDLM's "antithetic sampling") the B values u are
one uniform shifted by 0, 1/B, ..., (B-1)/B modulo 1: a stratified (low-discrepancy)
draw, still U(0, 1) for each sequence. Each token is then masked independently
with probability m(t).

MaskGIT-style loss: per sequence u ~ U(0, 1), ratio r = cos(pi u / 2) (MaskGIT's
cosine schedule), n = max(1, ceil(r L)) positions chosen uniformly without
replacement are masked, so P(n = k) = (2/pi) [arccos((k-1)/L) - arccos(k/L)]
(mdmlib.mdm.objectives.count_weights("maskgit", L)); the
loss is the cross-entropy summed over all masked positions of the batch divided by
their number (MaskGIT's unweighted mean). No time input. It is not an ELBO, but
it has the ELBO's optimum (Prop. 3.2: any positive weighting of the masked counts).

Every loss is returned per sequence as (numerator, denominator), loss =
sum(numerator) / sum(denominator): MDM and AR in nats per token (denominator L),
MaskGIT per masked token (denominator n). All use MDLM's "subs" output: the mask's
logit is dropped before the softmax.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy import special

from mdmlib.mdm.schedules import mask_probability, mask_rate, total_noise

OBJECTIVES = ("mdm_time", "mdm_no_time", "maskgit", "ar")
MASKED_OBJECTIVES = ("mdm_time", "mdm_no_time", "maskgit")


# --- the weights of the continuous-time loss -----------------------------------------------
def elbo_weight(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """w(t) = m'(t) / m(t), float64 (see the module docstring)."""
    return mask_rate(schedule, t) / mask_probability(schedule, t)


def masked_count_weights(schedule: str, length: int, t_min: float = 0.0) -> torch.Tensor:
    """c_n, n = 1..length: the weight the continuous-time loss over t in [t_min, 1]
    puts on the masked-count term n (the ELBO's is 1/n), float64 (length,)."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    check_t_min(t_min)
    n = torch.arange(1, length + 1, dtype=torch.float64)
    edges = mask_probability(schedule, torch.tensor([t_min, 1.0], dtype=torch.float64))
    a, b = n.numpy(), (length - n + 1).numpy()
    upper, lower = special.betainc(a, b, float(edges[1])), special.betainc(a, b, float(edges[0]))
    return torch.as_tensor(upper - lower, dtype=torch.float64) / n


def check_t_min(t_min: float) -> None:
    """The smallest training time must lie in [0, 1)."""
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min}")


# --- the four losses, per sequence ------------------------------------------------------------
def masked_nll_of_logits(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(B,) sum over masked positions of -log mu[x_0], mu the softmax of the logits
    under "subs" (mask logit dropped)."""
    vocab = logits.shape[-1] - 1
    rows = torch.nonzero(masked, as_tuple=True)[0]
    nll = F.cross_entropy(logits[masked][:, :vocab].float(), x0[masked], reduction="none")
    return torch.zeros(x0.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)


def _device_of(network) -> torch.device:
    return next(network.parameters()).device


def mdm_loss_terms(network, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "loglinear", t_min: float = 1e-3, antithetic: bool = True):
    """The continuous-time MDM loss of each sequence of x0 (B, L): (w(t) S (1 - t_min), L),
    S the masked NLL sum. The network is called as network(ids, sigma(t)); a network
    that is not time-conditioned ignores sigma."""
    check_t_min(t_min)
    B, L = x0.shape
    u = torch.rand(1 if antithetic else B, generator=generator, dtype=torch.float64)
    if antithetic:
        u = torch.remainder(u + torch.arange(B, dtype=torch.float64) / B, 1.0)
    t = t_min + (1 - t_min) * u
    masked = torch.rand(B, L, generator=generator, dtype=torch.float64) < mask_probability(schedule, t)[:, None]
    device = _device_of(network)
    x0, masked = x0.to(device), masked.to(device)
    ids = torch.where(masked, network.config.extra_id, x0)
    logits = network(ids, total_noise(schedule, t).float().to(device))
    weight = ((1 - t_min) * elbo_weight(schedule, t)).to(device)
    numerator = weight.float() * masked_nll_of_logits(logits, x0, masked)
    return numerator, torch.full((B,), L, dtype=torch.int64, device=device)


def maskgit_loss_terms(network, x0: torch.Tensor, generator: torch.Generator):
    """MaskGIT-style loss of each sequence: (S, n), n masked positions from the cosine law."""
    B, L = x0.shape
    ratio = torch.cos(0.5 * math.pi * torch.rand(B, generator=generator, dtype=torch.float64))
    n = torch.ceil(ratio * L).clamp(min=1, max=L).long()
    rank = torch.argsort(torch.rand(B, L, generator=generator), dim=1).argsort(dim=1)  # a uniform random order
    masked = rank < n[:, None]
    device = _device_of(network)
    x0, masked = x0.to(device), masked.to(device)
    ids = torch.where(masked, network.config.extra_id, x0)
    logits = network(ids, torch.zeros(B, device=device))
    return masked_nll_of_logits(logits, x0, masked), n.to(device)


def ar_loss_terms(network, x0: torch.Tensor):
    """Autoregressive loss of each sequence: (sum_l -log p(x_l | x_<l), L). The causal
    twin reads the start id, then x_1..x_{L-1}."""
    B, L = x0.shape
    device = _device_of(network)
    x0 = x0.to(device)
    inputs = torch.cat([torch.full((B, 1), network.config.extra_id, dtype=torch.int64, device=device), x0[:, :-1]], 1)
    logits = network(inputs)
    nll = F.cross_entropy(logits[..., : network.config.extra_id].float().transpose(1, 2), x0, reduction="none")
    return nll.sum(1), torch.full((B,), L, dtype=torch.int64, device=device)


def loss_terms(objective: str, network, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "loglinear", t_min: float = 1e-3, antithetic: bool = True):
    """Per-sequence (numerator, denominator) of `objective`'s loss on x0 (B, L)."""
    if objective in ("mdm_time", "mdm_no_time"):
        return mdm_loss_terms(network, x0, generator, schedule=schedule, t_min=t_min, antithetic=antithetic)
    if objective == "maskgit":
        return maskgit_loss_terms(network, x0, generator)
    if objective == "ar":
        return ar_loss_terms(network, x0)
    raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
