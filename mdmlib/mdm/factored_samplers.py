"""The ancestral and exact samplers of mdmlib.mdm.samplers, for a denoiser whose output is
class posteriors times emissions: a cache of B x L x K numbers instead of B x L x V.

mdmlib.mdm.samplers caches the denoiser's whole output, (B, L, V) in its dtype: at GPT-2's
V = 50,257 and L = 1,024 that is 412 MB a sequence in float64, 26 GB for a batch of 64,
and every update writes V numbers at every position it touches. For a denoiser of a
clustered language (mdmlib.language.factored_denoiser) the output at a position is
w[c(v)] e_v, so these samplers keep w (B, L, K) (mdmlib.mdm.factored_outputs) and build
V-wide rows only where a draw reads them:

factored_ancestral_sample  ancestral_sample with the O(1) sparse step and per-sequence
                           caching: draw_sparse reads the cache by indexing alone (the
                           candidate tokens' entries; whole rows only at positions that
                           fall back to the dense draw near the end), and the row maxima
                           it needs come exactly from K numbers a position;
factored_exact_sample      exact_sample: whole rows only at the positions that unmask, one
                           round at a time (L V numbers a sequence over the whole run).

Each makes the same calls on the generator, in the same order, with the same numbers, as
its model in mdmlib.mdm.samplers does with the rows of the same denoiser (which
`FactoredDenoiser.changed_outputs` builds by the same formula), so both return the same
tokens and NFE from the same seed: the laws are those samplers' laws, not copies of them
(tests/mdm/test_factored_samplers.py). The first-hitting sampler needs no such path: it
asks for one row per sequence per event through `outputs_at`.

The factored protocol a denoiser offers: `mask_id` (V), `dtype` (of its rows),
`token_class` (V,) and `emission` (V,) float64 (mu[v] = w[c(v)] e_v),
`class_posteriors(x)` (B, L, K) float64 and `changed_class_posteriors(x_old, x_new)` ->
(rows, cols, w), the masked positions whose output changed. Time-agnostic only: the cache
is reused across steps (a time-conditioned denoiser is refused).

Memory: at least 8 K + 32 bytes a position (w, its row maxima, tokens and their copy),
8 bytes a step, and the rows drawn from at one time; refused beforehand if over budget.
"""
from __future__ import annotations

import torch

from mdmlib.infra.checks import whole_number
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.mdm.factored_outputs import FactoredOutputs
from mdmlib.infra.memory import require_memory
from mdmlib.mdm.samplers import Samples
from mdmlib.mdm.schedules import mask_probability, time_grid, unmask_step_probabilities
from mdmlib.mdm.step import FLOAT32_GAP_BELOW_ONE, PRECISIONS, draw_sparse
from mdmlib.precision.categorical import inverse_cdf

PROTOCOL = ("mask_id", "dtype", "token_class", "emission", "class_posteriors", "changed_class_posteriors")


def _validated(denoiser, batch: int, length: int, steps: int, call: str) -> tuple[int, int, int, int]:
    missing = [name for name in PROTOCOL if not hasattr(denoiser, name)]
    if missing:
        raise TypeError(f"{call} needs a factored denoiser (mdmlib.mdm.factored_samplers' protocol); this one lacks {missing}")
    if getattr(denoiser, "time_conditioned", False):
        raise ValueError(f"{call} caches the denoiser's output across steps: a time-conditioned denoiser needs mdmlib.mdm.samplers")
    batch, length, steps = whole_number(batch, "batch"), whole_number(length, "length"), whole_number(steps, "steps")
    V = whole_number(denoiser.mask_id, "the denoiser's mask_id")
    K = int(denoiser.token_class.max()) + 1
    require_memory(batch * length * (8 * K + 32) + 24 * steps, f"{call}(batch={batch:,}, length={length:,}, steps={steps:,}) with {K} classes")
    return batch, length, steps, V


class _FactoredCache:
    """The class posteriors of every sequence and their row maxima, brought up to date
    per sequence after one of its tokens unmasked (samplers' "per_sequence" caching)."""

    def __init__(self, denoiser, x: torch.Tensor):
        self.denoiser = denoiser
        self.outputs = FactoredOutputs(denoiser.class_posteriors(x), denoiser.token_class, denoiser.emission, denoiser.dtype)
        B, L = x.shape
        rows, cols = torch.arange(B).repeat_interleave(L), torch.arange(L).repeat(B)
        self.mu_max = self.outputs.row_max(rows, cols).reshape(B, L)
        self.x_seen = x.clone()
        self.nfe = torch.ones(B, dtype=torch.int64)  # the first evaluation covers every sequence
        self.stale = torch.zeros(B, dtype=torch.bool)

    def update(self, x: torch.Tensor, rows: torch.Tensor) -> None:
        """Bring sequences `rows` up to date with x (only the stale ones are evaluated)."""
        rows = rows[self.stale[rows]]
        if rows.numel() == 0:
            return
        r, c, w = self.denoiser.changed_class_posteriors(self.x_seen[rows], x[rows])
        self.outputs.update(rows[r], c, w)
        self.mu_max[rows[r], c] = self.outputs.row_max(rows[r], c)
        self.x_seen[rows] = x[rows]
        self.nfe[rows] += 1
        self.stale[rows] = False


def factored_ancestral_sample(denoiser, batch: int, length: int, steps: int, precision: str, generator: torch.Generator, *,
                              schedule: str = "linear", eps: float = FLOAT32_GAP_BELOW_ONE, progress: bool = True) -> Samples:
    """ancestral_sample(denoiser, ..., implementation="sparse", caching="per_sequence") on
    the factored cache (module docstring): the same tokens and NFE from the same seed."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    batch, length, steps, V = _validated(denoiser, batch, length, steps, "factored_ancestral_sample")
    x = torch.full((batch, length), V, dtype=torch.int64)
    cache = _FactoredCache(denoiser, x)  # the first evaluation, which the samplers' cache makes in step 0
    move = mask_probability(schedule, time_grid(steps))
    for n in progress_bar(range(steps), desc=f"{precision} factored, {steps} steps", leave=False, show=progress):
        rows, cols = torch.nonzero(x == V, as_tuple=True)
        if rows.numel() == 0:
            break
        cache.update(x, torch.unique_consecutive(rows))
        new = draw_sparse(cache.outputs, cache.mu_max, rows, cols, float(move[n]), float(move[n + 1]), precision, generator, eps)
        unmasked = new != V
        x[rows[unmasked], cols[unmasked]] = new[unmasked]
        cache.stale[rows[unmasked]] = True
    return Samples(x, cache.nfe)


def factored_exact_sample(denoiser, batch: int, length: int, steps: int, generator: torch.Generator, *,
                          schedule: str = "linear", progress: bool = True) -> Samples:
    """exact_sample(denoiser, ...) on the factored cache (module docstring): every
    position's unmask step drawn up front, then round r unmasks the r-th such step of
    every sequence, drawing from whole rows built for those positions only."""
    batch, length, steps, V = _validated(denoiser, batch, length, steps, "factored_exact_sample")
    x = torch.full((batch, length), V, dtype=torch.int64)
    cache = _FactoredCache(denoiser, x)
    probs = unmask_step_probabilities(schedule, steps)
    step_of = inverse_cdf(probs, generator, (batch, length))
    ordered, order = torch.sort(step_of, dim=1, stable=True)
    new_step = torch.ones_like(ordered, dtype=torch.bool)
    new_step[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = torch.empty_like(step_of).scatter_(1, order, torch.cumsum(new_step, 1) - 1)  # which round
    # every round's positions in row-major order (as torch.nonzero lists them), found once
    by_round = torch.sort(rank.flatten(), stable=True)
    sizes = torch.bincount(by_round.values).tolist()
    for flat in progress_bar(torch.split(by_round.indices, sizes), desc=f"exact factored, {steps} steps", leave=False, show=progress):
        rows, cols = flat // length, flat % length
        cache.update(x, torch.unique_consecutive(rows))  # round 0: the first evaluation, made above
        x[rows, cols] = inverse_cdf(cache.outputs.rows(rows, cols).to(torch.float64), generator)
        cache.stale[rows] = True
    return Samples(x, cache.nfe)
