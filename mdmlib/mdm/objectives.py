"""The masked diffusion objective as a sum over the number of masked tokens (Prop. 3.1).

For a sequence x_0 of length L, a schedule m(t) and a denoiser mu, with
S(x) = sum over the masked positions l of x of -log mu^l(x)[x_0^l]:

  continuous time  -ELBO = int_0^1 (m'(t) / m(t)) E_{x_t}[S(x_t)] dt,
                   each token of x_t masked independently with probability m(t);
  masked count     -ELBO = sum_{n=1}^{L} E_{x_n}[S(x_n) / n],
                   x_n with n positions masked, chosen uniformly.

They are equal: under the time integral the term with n masked tokens has weight
int (m'/m) n C(L, n) m^n (1 - m)^(L-n) dt = n C(L, n) B(n, L - n + 1) = 1, whatever
the schedule, and the normalised integrand is the Beta(n, L - n + 1) density of m:
the time at which a network sees n masked tokens has alpha = 1 - m ~ Beta(L - n + 1, n).
A time-conditioned network is called at such a time; a time-agnostic one ignores it.
(This needs m(1) = 1, as for the linear and cosine schedules. MDLM's log-linear
schedule stops at m(1) = 1 - eps: there the n-term's weight is the regularised
incomplete Beta function I_{1-eps}(n, L - n + 1) < 1, and the rest is a prior term.)

Estimators of -ELBO, one denoiser call per draw:
  time_estimates          t ~ U(0, 1):   (m'(t) / m(t)) S(x_t)
  masked_count_estimates  n ~ U{1..L}:   (L / n) S(x_n), at a time with m ~ Beta(n, L - n + 1)

`masked_count_terms` is the masked-count draw itself, (S(x_n), n) for a batch of
sequences, one draw each: masked_count_estimates for one sequence, and the held-out
bound per token S(x_n) / n of trained networks (mdmlib.runs.trained_networks). Under a
schedule that stops short of m(1) = 1 it gives the time capped at t = 1 (the bound by
masked count is still an NLL bound there; it is no longer the continuous-time ELBO).

Their exact means and second moments, for a sequence short enough to list its 2^L
masks, come from `exact_moments`: under the linear schedule the time estimator's
second moment is infinite (a single masked token at time t is weighted 1/t and
appears with probability about L t, so E[X^2] ~ int dt / t), under the cosine
schedule it is finite (m'(t)^2 / m(t) stays bounded).

Other masked-model objectives are the same sum with other positive weights w_n
in place of 1 (`count_weights` for the WEIGHTINGS, `count_weights_of_time_weighting`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate
from scipy import stats as sps

from mdmlib.mdm.schedules import mask_probability, mask_rate, mask_time, time_of_mask_probability

WEIGHTINGS = ("elbo", "maskgit", "mlm")  # of the masked counts (count_weights)
COUNT_DRAWS = ("shared", "separate")  # masked_count_draw's orders of the random draws
MLM_MASK_RATE = 0.15  # BERT's


def _top(schedule: str) -> float:
    return float(mask_probability(schedule, torch.ones((), dtype=torch.float64)))


def _check_masks_everything(schedule: str) -> None:
    if 1.0 - _top(schedule) > 1e-12:  # the cosine's 1 - cos(pi / 2) is 1 - 2^-53
        raise ValueError(f"the masked-count form needs a schedule with m(1) = 1; {schedule!r} stops below (see the module docstring)")


def _check_clean(x0: torch.Tensor, mask_id: int) -> torch.Tensor:
    if ((x0 < 0) | (x0 >= mask_id)).any():
        raise ValueError(f"x0 must hold clean tokens in [0, {mask_id})")
    return x0.to(torch.int64)


def _check_sequence(x0: torch.Tensor, mask_id: int) -> torch.Tensor:
    if x0.dim() != 1 or x0.numel() == 0:
        raise ValueError(f"x0 must be one sequence of shape (L,), got {tuple(x0.shape)}")
    return _check_clean(x0, mask_id)


def masked_nll(denoiser, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """S(x_t) for each row of xt (R, L): the sum over its masked positions of
    -log mu^l(x_t, t)[x_0^l], float64, added up in position order. x0 is one sequence
    (L,) or one per row (R, L); t (R,) the times."""
    x0 = _check_clean(x0, denoiser.mask_id)
    if xt.dim() != 2 or x0.shape not in ((xt.shape[1],), xt.shape) or x0.numel() == 0 or t.shape != (xt.shape[0],):
        raise ValueError(f"xt must be (R, L), x0 (L,) or (R, L) and t (R,), got {tuple(xt.shape)}, {tuple(x0.shape)} and {tuple(t.shape)}")
    x0 = x0.expand_as(xt)
    out = torch.zeros(xt.shape[0], dtype=torch.float64)
    at_positions = getattr(denoiser, "outputs_at", None)  # a time-agnostic denoiser, asked for masked positions only
    for start in range(0, xt.shape[0], chunk):
        x = xt[start : start + chunk]
        masked = x == denoiser.mask_id
        rows, cols = torch.nonzero(masked, as_tuple=True)
        target = x0[start : start + chunk][rows, cols]
        if at_positions is not None:
            p = at_positions(x, rows, cols).gather(1, target[:, None]).squeeze(1)
        else:
            p = denoiser(x, t[start : start + chunk])[rows, cols, target]
        p = p.to(torch.float64)
        if (p <= 0).any():
            raise ValueError("the denoiser gives probability zero to a data token: the loss is infinite")
        out[start : start + chunk] = torch.zeros(x.shape[0], dtype=torch.float64).index_add_(0, rows, -torch.log(p))
    return out


def time_estimates(denoiser, x0: torch.Tensor, draws: int, generator: torch.Generator, schedule: str = "linear") -> torch.Tensor:
    """(draws,) independent estimates of -ELBO(x0) by Monte Carlo over the time."""
    x0 = _check_sequence(x0, denoiser.mask_id)
    t = torch.rand(draws, generator=generator, dtype=torch.float64)
    m = mask_probability(schedule, t)
    masked = torch.rand(draws, x0.numel(), generator=generator, dtype=torch.float64) < m[:, None]
    xt = torch.where(masked, denoiser.mask_id, x0)
    s = masked_nll(denoiser, x0, xt, t)
    return torch.where(masked.any(1), mask_rate(schedule, t) / m * s, 0.0)  # nothing masked: the sum is empty


def uniform_subsets(n: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length) bool: for each row, n[row] positions chosen uniformly without replacement."""
    rank = torch.argsort(torch.rand(n.shape[0], length, generator=generator), dim=1).argsort(dim=1)
    return rank < n[:, None]


def _beta(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Beta(a, b) draws for whole a, b >= 1 from a seeded generator: the a-th smallest
    of a + b - 1 uniforms."""
    width = int((a + b - 1).max())
    u = torch.rand(a.shape[0], width, generator=generator, dtype=torch.float64)
    u = torch.where(torch.arange(width) < (a + b - 1)[:, None], u, torch.inf)
    return u.sort(dim=1).values.gather(1, (a - 1)[:, None]).squeeze(1)


def masked_count_draw(rows: int, length: int, generator: torch.Generator, draw: str = "shared") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One draw per row of the masked-count estimator: n ~ U{1..L}, the n masked positions
    (uniformly chosen: (rows, L) bool) and m ~ Beta(n, L - n + 1), the mask probability of
    the time the denoiser is called at, independent of which positions are masked. Two
    orders of the random draws with the same law (each notebook's numbers are its own):
      "shared"    L float64 uniforms, then n: the n smallest uniforms are masked and m is
                  the n-th smallest (exchangeability; notebook 07's draw);
      "separate"  n; then 1 - m ~ Beta(L - n + 1, n), from L uniforms of its own; then the
                  masked positions, from the ranks of L more (float32) uniforms
                  (notebook 09's draw)."""
    if draw not in COUNT_DRAWS:
        raise ValueError(f"unknown draw {draw!r}: expected one of {COUNT_DRAWS}")
    if draw == "separate":
        n = torch.randint(1, length + 1, (rows,), generator=generator)
        m = 1 - _beta(length - n + 1, n, generator)
        return n, m, uniform_subsets(n, length, generator)
    u = torch.rand(rows, length, generator=generator, dtype=torch.float64)
    n = torch.randint(1, length + 1, (rows,), generator=generator)
    sorted_u, order = torch.sort(u, dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(length).expand(rows, -1))
    return n, sorted_u[torch.arange(rows), n - 1], rank < n[:, None]


def masked_count_terms(denoiser, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "linear", draw: str = "shared") -> tuple[torch.Tensor, torch.Tensor]:
    """(S(x_n), n) for each row of x0 (B, L), one masked-count draw each (`masked_count_draw`):
    S float64, the NLL summed over the n masked positions, the denoiser called at the time
    t with m(t) = m (capped at t = 1 where m is beyond the schedule's m(1)). The same
    generator state gives the same n, masks and times to every denoiser, so the values of
    two denoisers are paired. -ELBO(x0) is estimated by L S / n, the bound per token by S / n."""
    if x0.dim() != 2:
        raise ValueError(f"x0 must have shape (batch, length), got {tuple(x0.shape)}")
    n, m, masked = masked_count_draw(x0.shape[0], x0.shape[1], generator, draw)
    t = time_of_mask_probability(schedule, m)
    xt = torch.where(masked, denoiser.mask_id, x0)
    return masked_nll(denoiser, x0, xt, t), n


def masked_count_estimates(denoiser, x0: torch.Tensor, draws: int, generator: torch.Generator, schedule: str = "linear") -> torch.Tensor:
    """(draws,) independent estimates of -ELBO(x0) by Monte Carlo over the number of
    masked tokens, (L / n) S(x_n) (`masked_count_terms`, "shared" draws: each position
    gets a uniform u; the n smallest are masked, and m = the n-th smallest u ~
    Beta(n, L - n + 1), independent of which positions those are (exchangeability), so
    t = m^{-1}(that value) is the ELBO's time)."""
    _check_masks_everything(schedule)
    x0 = _check_sequence(x0, denoiser.mask_id)
    s, n = masked_count_terms(denoiser, x0.expand(draws, -1), generator, schedule=schedule, draw="shared")
    return x0.numel() / n.to(torch.float64) * s


MAX_EXACT_LENGTH = 20  # 2^20 masks
_GAUSS_NODES, _GAUSS_WEIGHTS = (torch.tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(64))


def exact_moments(denoiser, x0: torch.Tensor, schedule: str, t_mins) -> dict:
    """Exact moments for a time-agnostic denoiser and a short x0, from S on every one
    of the 2^L masks (grouped by their number k of masked tokens):
      elbo           -ELBO as the masked-count sum, sum_k (sum of S over k-masks) / (k C(L, k));
      elbo_time      the continuous-time integral of E[(m'/m) S(x_t) | t] over [0, 1];
      count_second   E[Y^2] of masked_count_estimates;
      time_second    [E[X^2 ; t > t_min] for t_min in t_mins] of time_estimates (the
                     integral over [t_min, 1]), infinite as t_min -> 0 under the linear schedule;
      one_masked_square_sum  sum over l of S(x_0 with only l masked)^2: the rate
                     at which time_second grows with log(1 / t_min) under the linear schedule.
    Integrals run decade by decade in t (64-point Gauss-Legendre on each), so a small
    t_min keeps its accuracy; each t_min must be positive, and m(t_min) must not round
    to 0 (the cosine schedule's 1 - cos(pi t / 2) does below t ~ 1e-8)."""
    x0 = _check_sequence(x0, denoiser.mask_id)
    L = x0.numel()
    if L > MAX_EXACT_LENGTH:
        raise ValueError(f"2^{L} masks is too many to list (length at most {MAX_EXACT_LENGTH})")
    t_mins = [float(t) for t in t_mins]
    if not all(0.0 < t < 1.0 for t in t_mins):
        raise ValueError(f"every t_min must lie in (0, 1), got {t_mins}")
    masks = (torch.arange(2**L)[:, None] >> torch.arange(L)) & 1 == 1
    s = masked_nll(denoiser, x0, torch.where(masks, denoiser.mask_id, x0), torch.zeros(2**L, dtype=torch.float64))
    k = masks.sum(1)
    sums = torch.zeros(L + 1, dtype=torch.float64).index_add_(0, k, s)
    squares = torch.zeros(L + 1, dtype=torch.float64).index_add_(0, k, s**2)
    ks = torch.arange(1, L + 1, dtype=torch.float64)
    choose = torch.tensor([math.comb(L, j) for j in range(1, L + 1)], dtype=torch.float64)
    elbo = float((sums[1:] / (ks * choose)).sum())
    count_second = float((squares[1:] / choose * (L / ks) ** 2).sum() / L)

    def integral(power: int, per_k: torch.Tensor, lo: float) -> float:
        # int_lo^1 (m'/m)^power sum_k m^k (1 - m)^(L - k) per_k dt, decade by decade in t
        # (Gauss-Legendre on each: the integrand is smooth there, 1/t at worst)
        edges = [1.0]
        while edges[-1] / 10 > max(lo, 1e-300):
            edges.append(edges[-1] / 10)
        edges.append(lo)
        b, a = torch.tensor(edges[:-1], dtype=torch.float64), torch.tensor(edges[1:], dtype=torch.float64)
        t = ((b - a)[:, None] * _GAUSS_NODES + (b + a)[:, None]).flatten() / 2
        w = ((b - a)[:, None] * _GAUSS_WEIGHTS).flatten() / 2
        m, rate = mask_probability(schedule, t), mask_rate(schedule, t)
        if power == 2 and (m == 0).any():
            raise ValueError(f"m(t) rounds to 0 at t = {float(t[m == 0].max()):.3g} under the {schedule} schedule: use a larger t_min")
        terms = m[:, None] ** (ks - power) * (1 - m[:, None]) ** (L - ks) * per_k[1:]  # m^k / m^power written out
        return float((w * rate**power * terms.sum(1)).sum())

    return {
        "elbo": elbo,
        "elbo_time": integral(1, sums, 0.0),
        "count_second": count_second,
        "time_second": [integral(2, squares, t) for t in t_mins],
        "one_masked_square_sum": float(squares[1]),
    }


def masking_times(batch: int, length: int, generator: torch.Generator, schedule: str = "linear") -> torch.Tensor:
    """(batch, L) the times at which the forward process masks its 1st, 2nd, ..., L-th
    token, simulated event by event: with k tokens masked at time t, each clean token
    stays clean until s with probability (1 - m(s)) / (1 - m(t)), so the next masking
    time has 1 - m(s) = (1 - m(t)) u^(1 / (L - k)). The n-th has 1 - m ~ Beta(L - n + 1, n)."""
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be positive, got {batch} and {length}")
    _check_masks_everything(schedule)
    clean = torch.ones(batch, dtype=torch.float64)  # 1 - m(t)
    times = torch.empty(batch, length, dtype=torch.float64)
    for k in range(length):
        clean = clean * torch.rand(batch, generator=generator, dtype=torch.float64) ** (1.0 / (length - k))
        times[:, k] = time_of_mask_probability(schedule, 1.0 - clean)
    return times


def elbo_count_weights(length: int, schedule: str = "linear") -> tuple[torch.Tensor, torch.Tensor]:
    """The weight of the n-masked-token term in the continuous-time ELBO,
    int_0^1 (m'(t)/m(t)) n P(n of L tokens masked at t) dt, by numerical integration
    over t with the schedule's own m and m' (n = 1..L), and quad's error estimates.
    The derivation says every weight is 1."""
    def integrand(t: float, n: int) -> float:
        m = float(mask_probability(schedule, torch.tensor(t, dtype=torch.float64)))
        rate = float(mask_rate(schedule, torch.tensor(t, dtype=torch.float64)))
        return rate / m * n * sps.binom.pmf(n, length, m) if m > 0 else 0.0

    values, errors = zip(*(integrate.quad(integrand, 0.0, 1.0, args=(n,), limit=200, epsabs=1e-13, epsrel=1e-11) for n in range(1, length + 1)))
    return torch.tensor(values, dtype=torch.float64), torch.tensor(errors, dtype=torch.float64)


def count_weights(weighting: str, length: int) -> torch.Tensor:
    """(L,) weights w_n (n = 1..L) such that the objective's expected value is
    sum_n w_n E_{x_n}[S(x_n) / n]:
      "elbo"     1 for every n (its value is -ELBO);
      "maskgit"  MaskGIT: mask ratio cos(pi u / 2), u ~ U(0, 1), n = ceil(ratio L), loss
                 averaged over the masked tokens: w_n = P(n);
      "mlm"      BERT: each token masked with probability 0.15, loss averaged over the
                 masked tokens: w_n = Binomial(n; L, 0.15)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}: expected one of {WEIGHTINGS}")
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    n = torch.arange(1, length + 1, dtype=torch.float64)
    if weighting == "elbo":
        return torch.ones(length, dtype=torch.float64)
    if weighting == "maskgit":  # P((n-1)/L < cos(pi u / 2) <= n/L)
        return (2 / math.pi) * (torch.acos((n - 1) / length) - torch.acos(n / length))
    return torch.tensor(sps.binom.pmf(n.numpy(), length, MLM_MASK_RATE), dtype=torch.float64)


def count_weights_of_time_weighting(weight, length: int, schedule: str = "linear") -> torch.Tensor:
    """(L,) the weights w_n of the time-weighted loss int_0^1 weight(t) (m'/m) E[S(x_t)] dt:
    w_n = E[weight(t)] with m(t) ~ Beta(n, L - n + 1). A positive weight(t) gives
    positive w_n, hence (every term being minimised by the true conditionals) the
    same minimiser as the ELBO."""
    _check_masks_everything(schedule)

    def weight_at_m(m: float) -> float:
        return float(weight(float(mask_time(schedule, torch.tensor(m, dtype=torch.float64)))))

    return torch.tensor([sps.beta(n, length - n + 1).expect(weight_at_m) for n in range(1, length + 1)], dtype=torch.float64)


class Tempered:
    """A denoiser's output raised to the power 1/T and renormalised: a family of
    denoisers through the optimum (T = 1), for showing where an objective is minimised."""

    def __init__(self, denoiser, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.denoiser, self.temperature, self.mask_id = denoiser, float(temperature), denoiser.mask_id

    def __call__(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        mu = self.denoiser(x, t).to(torch.float64) ** (1.0 / self.temperature)
        return mu / mu.sum(-1, keepdim=True)
