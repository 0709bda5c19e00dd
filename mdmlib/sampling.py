"""Samplers for masked diffusion models, and an autoregressive sampler.

A denoiser is any callable `denoiser(x, t) -> (B, L, V)` probabilities over the
V tokens at every position of x (B, L), where the mask token is id V and t (B,)
is the current time (time-agnostic denoisers ignore it). A time-agnostic
denoiser may also offer `changed_outputs(x_old, x_new) -> (rows, cols, outputs)`,
the masked positions of x_new whose output differs from that for x_old; the
samplers then update their cached output in place (they read masked positions only).

ancestral_sample   MDLM's sampler: N steps on the grid t_n = n/N; every masked
                   position draws from [mu (m_t - m_s), m_s] with the chosen
                   arithmetic (mdm_step.PRECISIONS); unmasked tokens are kept; the
                   denoiser output is cached per sequence and recomputed only
                   after that sequence changed.
exact_sample       the same sampler with exact categorical draws, run fast: in the
                   exact sampler a masked position unmasks in step n with
                   probability (m_t - m_s)/m_t whatever mu is, so every position's
                   unmask step is drawn up front; the denoiser is then called only
                   at steps where some token of that sequence unmasks, and a
                   token is drawn from mu only for the positions that unmask.
ar_sample          left-to-right sampling at a temperature, from a Markov model
                   (first-token probabilities `pi`, `transition_rows(prev)`) or
                   any model with `next_token_probabilities(prefix)`.
NFE counts denoiser evaluations per sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .categorical import inverse_cdf
from .checks import real_number, whole_number
from .mdm_step import FLOAT32_GAP_BELOW_ONE, PRECISIONS, dense_step, sparse_step
from .progress import progress as progress_bar
from .schedules import mask_probability, time_grid, unmask_step_probabilities


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, L)
    nfe: torch.Tensor  # (B,) denoiser evaluations per sequence


def _checked(mu: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A denoiser's output, if it has the expected shape and holds probabilities."""
    if tuple(mu.shape) != tuple(shape):
        raise ValueError(f"the denoiser returned shape {tuple(mu.shape)}, expected {tuple(shape)} (batch, length, mask_id)")
    if not mu.is_floating_point() or torch.isnan(mu).any() or (mu < 0).any():
        raise ValueError("the denoiser returned NaN, negative or non-floating probabilities")
    return mu


class _Cache:
    """The denoiser's output per sequence, recomputed only for sequences that changed."""

    def __init__(self, denoiser, x: torch.Tensor):
        self.denoiser = denoiser
        self.x_seen = x.clone()
        self.mu = None
        self.mu_max = None
        self.stale = torch.ones(x.shape[0], dtype=torch.bool)
        self.nfe = torch.zeros(x.shape[0], dtype=torch.int64)

    def update(self, x: torch.Tensor, rows: torch.Tensor, t) -> None:
        """Bring the output of sequences `rows` up to date with x, at time t (a number,
        or one per row); counts one NFE for each sequence evaluated."""
        t = torch.as_tensor(t, dtype=torch.float64).expand(rows.shape)
        keep = self.stale[rows]
        rows, t = rows[keep], t[keep]
        if rows.numel() == 0:
            return
        if self.mu is None:  # the first call: every sequence is all masks
            mu = _checked(self.denoiser(x, torch.full((x.shape[0],), float(t[0]), dtype=torch.float64)), (*x.shape, self.denoiser.mask_id))
            self.mu = mu
            self.mu_max = mu.max(-1).values
            self.nfe[:] += 1
            self.stale[:] = False
            self.x_seen = x.clone()
            return
        if hasattr(self.denoiser, "changed_outputs"):
            r, c, out = self.denoiser.changed_outputs(self.x_seen[rows], x[rows])
            self.mu[rows[r], c] = _checked(out, (r.numel(), self.mu.shape[-1]))
            self.mu_max[rows[r], c] = out.max(-1).values
        else:
            mu = _checked(self.denoiser(x[rows], t), (rows.numel(), *x.shape[1:], self.mu.shape[-1]))
            self.mu[rows] = mu
            self.mu_max[rows] = mu.max(-1).values
        self.x_seen[rows] = x[rows]
        self.nfe[rows] += 1
        self.stale[rows] = False


def _initial(denoiser, batch: int, length: int) -> torch.Tensor:
    batch, length = whole_number(batch, "batch"), whole_number(length, "length")
    if not callable(denoiser) or not hasattr(denoiser, "mask_id"):
        raise TypeError("a denoiser is a callable (x, t) -> (B, L, V) with an attribute mask_id = V")
    return torch.full((batch, length), whole_number(denoiser.mask_id, "the denoiser's mask_id"), dtype=torch.int64)


def ancestral_sample(
    denoiser,
    batch: int,
    length: int,
    steps: int,
    precision: str,
    generator: torch.Generator,
    *,
    schedule: str = "linear",
    eps: float = FLOAT32_GAP_BELOW_ONE,
    implementation: str = "sparse",
    progress: bool = True,
) -> Samples:
    """MDLM's ancestral sampler with caching. `implementation` "dense" runs the
    literal categorical line; "sparse" draws from the same law in O(1) per position."""
    if implementation not in ("sparse", "dense"):
        raise ValueError(f"implementation must be 'sparse' or 'dense', got {implementation!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    x = _initial(denoiser, batch, length)
    V = denoiser.mask_id
    grid = time_grid(steps)
    move = mask_probability(schedule, grid)
    cache = _Cache(denoiser, x)
    for n in progress_bar(range(steps), desc=f"{precision} {implementation}, {steps} steps", leave=False, show=progress):
        rows, cols = torch.nonzero(x == V, as_tuple=True)
        if rows.numel() == 0:
            break
        cache.update(x, torch.unique(rows), float(grid[n]))
        if implementation == "dense":
            new = dense_step(cache.mu[rows, cols], float(move[n]), float(move[n + 1]), precision, generator, eps)
        else:
            new = sparse_step(cache.mu, cache.mu_max, rows, cols, float(move[n]), float(move[n + 1]), precision, generator, eps)
        unmasked = new != V
        x[rows[unmasked], cols[unmasked]] = new[unmasked]
        cache.stale[rows[unmasked]] = True
    return Samples(x, cache.nfe)


def exact_sample(
    denoiser,
    batch: int,
    length: int,
    steps: int,
    generator: torch.Generator,
    *,
    schedule: str = "linear",
    progress: bool = True,
) -> Samples:
    """The ancestral sampler with exact categorical draws (the law of the float64
    sampler), visiting only the steps where something unmasks. Sequences are
    independent, so round r handles the r-th such step of every sequence at once:
    at most `length` rounds, whatever the number of steps."""
    x = _initial(denoiser, batch, length)
    probs = unmask_step_probabilities(schedule, steps)  # step index 0 is n = steps
    step_of = inverse_cdf(probs, generator, (batch, length))
    ordered, order = torch.sort(step_of, dim=1, stable=True)
    new_step = torch.ones_like(ordered, dtype=torch.bool)
    new_step[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = torch.empty_like(step_of).scatter_(1, order, torch.cumsum(new_step, 1) - 1)  # which round
    grid = time_grid(steps)
    cache = _Cache(denoiser, x)
    for r in progress_bar(range(int(rank.max()) + 1), desc=f"exact, {steps} steps", leave=False, show=progress):
        rows, cols = torch.nonzero(rank == r, as_tuple=True)
        seqs = torch.unique(rows)
        cache.update(x, seqs, grid[step_of[seqs, cols[torch.searchsorted(rows, seqs)]]])
        x[rows, cols] = inverse_cdf(cache.mu[rows, cols].to(torch.float64), generator)
        cache.stale[rows] = True
    return Samples(x, cache.nfe)


def ar_sample(model, batch: int, length: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Left-to-right sampling with every conditional raised to the power 1/temperature
    and renormalised. `model` provides either `next_token_probabilities(prefix)`
    ((B, l) -> (B, V), l = 0..L-1) or, for a Markov chain, `pi` (V,) and
    `transition_rows(prev)` (..., V)."""
    if not 0 < real_number(temperature, "temperature") < math.inf:
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    batch, length = whole_number(batch, "batch"), whole_number(length, "length")
    markov = hasattr(model, "pi") and callable(getattr(model, "transition_rows", None))
    if not (markov or callable(getattr(model, "next_token_probabilities", None))):
        raise TypeError("the model needs `next_token_probabilities(prefix)`, or first-token probabilities `pi` and `transition_rows(prev)`")

    def tempered(p: torch.Tensor) -> torch.Tensor:
        logp = torch.log(p.clamp(min=0))
        return torch.exp((logp - logp.max(-1, keepdim=True).values) / temperature)

    def conditional(l: int) -> torch.Tensor:
        if hasattr(model, "next_token_probabilities"):
            return model.next_token_probabilities(x[:, :l])
        return model.pi.expand(batch, -1) if l == 0 else model.transition_rows(x[:, l - 1])

    x = torch.empty(batch, length, dtype=torch.int64)
    for l in range(length):
        x[:, l] = inverse_cdf(tempered(conditional(l)), generator)
    return x
