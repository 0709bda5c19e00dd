"""Samplers for masked diffusion models, and an autoregressive sampler.

A denoiser is any callable `denoiser(x, t) -> (B, L, V)` probabilities over the
V tokens at every position of x (B, L), where the mask token is id V and t (B,)
is the current time (time-agnostic denoisers ignore it). A time-agnostic
denoiser may also offer `changed_outputs(x_old, x_new) -> (rows, cols, outputs)`,
the masked positions of x_new whose output differs from that for x_old; the
samplers then update their cached output in place (they read masked positions only).
It may also offer `outputs_at(x, rows, cols) -> (n, V)`, its output at the listed
masked positions alone; the first-hitting sampler, which reads one position per
sequence per event, then asks for that position only (one NFE per sequence).

ancestral_sample     the ancestral sampler of MDLM and SEDD: N steps on the grid
                     t_n = n/N; every masked position draws from [mu (m_t - m_s), m_s]
                     with the chosen arithmetic (mdm_step.PRECISIONS); unmasked tokens
                     are kept. The denoiser output is cached (`caching`, below).
exact_sample         the same sampler with exact categorical draws, run fast: in the
                     exact sampler a masked position unmasks in step n with
                     probability (m_t - m_s)/m_t whatever mu is, so every position's
                     unmask step is drawn up front; the denoiser is then called only
                     at steps where some token of that sequence unmasks (per-sequence
                     caching), and a token is drawn from mu only for the positions
                     that unmask.
first_hitting_sample the first-hitting sampler (Prop. 4.1): the exact times at which
                     one more token unmasks, one token per event, L denoiser calls.
ar_sample            left-to-right sampling at a temperature, from a Markov model
                     (first-token probabilities `pi`, `transition_rows(prev)`) or
                     any model with `next_token_probabilities(prefix)`.

Caching (CACHING), valid for time-agnostic denoisers, whose output changes only
when x changes (a denoiser that reads t declares `time_conditioned = True`, as the
network denoisers of mdmlib.models do when their network is time-conditioned; the
ancestral sampler then refuses a caching other than "none", which would reuse its
outputs at stale times, unless called with `allow_stale_time=True`):
  "per_sequence"  a sequence is evaluated again only after one of its tokens
                  unmasked: E[NFE] = N (1 - (1 - 1/N)^L) for the linear schedule;
  "per_batch"     MDLM's rule: the whole batch is evaluated again after any of its
                  tokens unmasked: E[NFE] = N (1 - (1 - 1/N)^(B L));
  "none"          every sequence still being sampled is evaluated at every step
                  (for time-conditioned denoisers): NFE = N but for early finishes.
`expected_nfe` gives both expectations for any schedule, `nfe_standard_deviation`
their spread.
NFE counts denoiser evaluations per sequence.

Every output is checked when the sampler receives it (mdmlib.mdm.denoiser_outputs: its
shape, and at the masked positions no NaN, no negative or infinite value, rows summing
to 1 within 2 V eps), and each sampler counts the memory its arguments ask for before
allocating (mdmlib.infra.memory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mdmlib.precision.categorical import exponential_race, inverse_cdf, truncated_race
from mdmlib.infra.checks import real_number, whole_number
from mdmlib.infra.memory import require_memory
from mdmlib.mdm.denoiser_outputs import check_laws, check_output_shape, row_statistics
from mdmlib.mdm.step import FLOAT32_GAP_BELOW_ONE, PRECISIONS, dense_step, draw_sparse
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.mdm.schedules import mask_probability, mask_time, time_grid, unmask_step_probabilities

CACHING = ("per_sequence", "per_batch", "none")


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, L)
    nfe: torch.Tensor  # (B,) denoiser evaluations per sequence


def _received(mu, shape: tuple, masked: torch.Tensor | None, where) -> tuple[torch.Tensor, torch.Tensor]:
    """A denoiser's output and its maxima over tokens, if it has the expected shape and
    is a law at every masked position (`masked` (rows,) bool; None: every row)."""
    mu = check_output_shape(mu, shape)
    total, low, high = row_statistics(mu)
    check_laws(total, low, mu.dtype, shape[-1], read=masked, where=where)
    return mu, high


def _time_conditioned(denoiser) -> bool:
    return bool(getattr(denoiser, "time_conditioned", False))


class _Cache:
    """The denoiser's output per sequence, kept between steps and brought up to date
    by the rule `caching` (see CACHING in the module docstring). A time-conditioned
    denoiser is refused a caching other than "none" unless `allow_stale_time`: its
    cached output would be read at later times than it was computed for."""

    def __init__(self, denoiser, x: torch.Tensor, caching: str = "per_sequence", *, allow_stale_time: bool = False):
        if caching not in CACHING:
            raise ValueError(f"unknown caching {caching!r}: expected one of {CACHING}")
        if not isinstance(allow_stale_time, bool):
            raise TypeError(f"allow_stale_time must be True or False, got {allow_stale_time!r}")
        self.time_conditioned = _time_conditioned(denoiser)
        if self.time_conditioned and caching != "none" and not allow_stale_time:
            raise ValueError(
                f"caching {caching!r} reuses a denoiser output at later steps, but this denoiser is time-conditioned "
                "(time_conditioned = True): its cached outputs would be reused at stale times, which changes the sampler's law "
                "(per-sequence and per-batch caching are valid for time-agnostic networks only). Use caching='none', "
                "or pass allow_stale_time=True to cache anyway"
            )
        self.denoiser, self.caching = denoiser, caching
        self.x_seen = x.clone()
        self.mu = None
        self.mu_max = None
        self.stale = torch.ones(x.shape[0], dtype=torch.bool)
        self.nfe = torch.zeros(x.shape[0], dtype=torch.int64)

    def update(self, x: torch.Tensor, rows: torch.Tensor, t) -> None:
        """Bring the output of sequences `rows` up to date with x, at time t (a number,
        or one per row); counts one NFE for each sequence evaluated."""
        B = x.shape[0]
        V = self.denoiser.mask_id
        if self.caching == "per_batch":
            if self.mu is not None and not self.stale.any():
                return
            if torch.as_tensor(t).numel() != 1:
                raise ValueError("per-batch caching evaluates the whole batch at one time t")
            rows = torch.arange(B)  # MDLM evaluates the whole batch, finished sequences too
        t = torch.as_tensor(t, dtype=torch.float64).expand(rows.shape)
        if self.caching == "per_sequence":
            keep = self.stale[rows]
            rows, t = rows[keep], t[keep]
        if rows.numel() == 0:
            return
        if self.mu is None:  # the first call: every sequence is all masks
            if rows.numel() != B:
                raise ValueError("the first evaluation must cover every sequence")
            t_all = torch.empty(B, dtype=torch.float64)
            t_all[rows] = t
            self.mu, self.mu_max = _received(self.denoiser(x, t_all), (*x.shape, V), None, _at_sequence(torch.arange(B)))
            self.nfe[:] += 1
            self.stale[:] = False
            self.x_seen = x.clone()
            return
        if hasattr(self.denoiser, "changed_outputs") and self.caching != "none" and not self.time_conditioned:
            r, c, out = self.denoiser.changed_outputs(self.x_seen[rows], x[rows])
            out, out_max = _received(out, (r.numel(), V), None, lambda i: f"sequence {int(rows[r[i[0]]])}, position {int(c[i[0]])}")
            self.mu[rows[r], c] = out
            self.mu_max[rows[r], c] = out_max
        else:
            mu, mu_max = _received(self.denoiser(x[rows], t), (rows.numel(), *x.shape[1:], V), x[rows] == V, _at_sequence(rows))
            self.mu[rows] = mu
            self.mu_max[rows] = mu_max
        self.x_seen[rows] = x[rows]
        self.nfe[rows] += 1
        self.stale[rows] = False


def _at_sequence(rows: torch.Tensor):
    """Names row index (i, l) of an output for sequences `rows` by its sequence in the batch."""
    return lambda i: f"sequence {int(rows[i[0]])}, position {i[1]}"


def _validated(denoiser, batch: int, length: int) -> tuple[int, int, int]:
    batch, length = whole_number(batch, "batch"), whole_number(length, "length")
    if not callable(denoiser) or not hasattr(denoiser, "mask_id"):
        raise TypeError("a denoiser is a callable (x, t) -> (B, L, V) with an attribute mask_id = V")
    return batch, length, whole_number(denoiser.mask_id, "the denoiser's mask_id")


def _output_bytes(denoiser) -> int:
    """Bytes per entry of the denoiser's output: its `dtype` if it states one, else float32's."""
    dtype = getattr(denoiser, "dtype", None)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else 4


def _require(denoiser, call: str, positions: int, per_position: int, cached: bool, steps: int = 0, per_step: int = 0) -> None:
    """Refuse a run whose arrays exceed the memory budget (mdmlib.infra.memory). Each sampler
    counts, as lower bounds, `per_step` bytes a step, `per_position` bytes a position of
    the batch, and the cached output (V entries a position in the denoiser's dtype)."""
    V = denoiser.mask_id
    needed = per_step * steps + positions * (per_position + (V * _output_bytes(denoiser) if cached else 0))
    require_memory(needed, f"{call} with V = {V:,}")


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
    caching: str = "per_sequence",
    allow_stale_time: bool = False,
    progress: bool = True,
) -> Samples:
    """The ancestral sampler (MDLM's and SEDD's) with the denoiser output cached by
    the rule `caching` (CACHING). `implementation` "dense" runs the literal
    categorical line; "sparse" draws from the same law in O(1) per position.
    A time-conditioned denoiser needs caching="none", or allow_stale_time=True to
    cache its outputs anyway (then reused at later times than they were made for).
    Memory: at least 8 bytes a step (the time grid) and 16 bytes a position plus
    the cached output."""
    if implementation not in ("sparse", "dense"):
        raise ValueError(f"implementation must be 'sparse' or 'dense', got {implementation!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    batch, length, V = _validated(denoiser, batch, length)
    steps = whole_number(steps, "steps")
    _require(denoiser, f"ancestral_sample(batch={batch:,}, length={length:,}, steps={steps:,})", batch * length, 16, True, steps + 1, 8)
    x = torch.full((batch, length), V, dtype=torch.int64)
    cache = _Cache(denoiser, x, caching, allow_stale_time=allow_stale_time)
    grid = time_grid(steps)
    move = mask_probability(schedule, grid)
    for n in progress_bar(range(steps), desc=f"{precision} {implementation}, {steps} steps", leave=False, show=progress):
        rows, cols = torch.nonzero(x == V, as_tuple=True)
        if rows.numel() == 0:
            break
        cache.update(x, torch.unique(rows), float(grid[n]))
        if implementation == "dense":
            new = dense_step(cache.mu[rows, cols], float(move[n]), float(move[n + 1]), precision, generator, eps)
        else:
            new = draw_sparse(cache.mu, cache.mu_max, rows, cols, float(move[n]), float(move[n + 1]), precision, generator, eps)
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
    at most `length` rounds, whatever the number of steps.

    Exact for time-conditioned denoisers too: a sequence is evaluated at every step where
    one of its tokens unmasks, at that step's time, and its output is read only then.
    Memory: at least 24 bytes a step (the step law, its cumulative sum and the time
    grid, float64) and 32 bytes a position plus the cached output."""
    batch, length, V = _validated(denoiser, batch, length)
    steps = whole_number(steps, "steps")
    _require(denoiser, f"exact_sample(batch={batch:,}, length={length:,}, steps={steps:,})", batch * length, 32, True, steps, 24)
    x = torch.full((batch, length), V, dtype=torch.int64)
    cache = _Cache(denoiser, x, allow_stale_time=True)  # never stale here (above)
    probs = unmask_step_probabilities(schedule, steps)  # step index 0 is n = steps
    step_of = inverse_cdf(probs, generator, (batch, length))
    ordered, order = torch.sort(step_of, dim=1, stable=True)
    new_step = torch.ones_like(ordered, dtype=torch.bool)
    new_step[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = torch.empty_like(step_of).scatter_(1, order, torch.cumsum(new_step, 1) - 1)  # which round
    grid = time_grid(steps)
    for r in progress_bar(range(int(rank.max()) + 1), desc=f"exact, {steps} steps", leave=False, show=progress):
        rows, cols = torch.nonzero(rank == r, as_tuple=True)
        seqs = torch.unique(rows)
        cache.update(x, seqs, grid[step_of[seqs, cols[torch.searchsorted(rows, seqs)]]])
        x[rows, cols] = inverse_cdf(cache.mu[rows, cols].to(torch.float64), generator)
        cache.stale[rows] = True
    return Samples(x, cache.nfe)


FHS_PRECISIONS = PRECISIONS + ("exact",)


@dataclass
class FirstHittingSamples(Samples):
    times: torch.Tensor  # (B, L) float64: the time at which each position unmasked


def draw_tokens(mu: torch.Tensor, precision: str, generator: torch.Generator, eps: float = FLOAT32_GAP_BELOW_ONE) -> torch.Tensor:
    """One token from each row of mu (n, V), with the arithmetic `precision`:
    "float32" / "float64" the exponential race of MDLM and SEDD in that dtype, as a
    sampler written in practice draws it; "float64+trunc" its truncated form;
    "exact" the float64 inverse CDF. Each row must be a law (mdmlib.mdm.denoiser_outputs)."""
    if not isinstance(mu, torch.Tensor) or mu.dim() != 2 or not mu.is_floating_point():
        raise ValueError(f"mu must be a floating (n, V) tensor of denoiser outputs, got {type(mu).__name__} {tuple(getattr(mu, 'shape', ()))}")
    total, low, _ = row_statistics(mu)
    check_laws(total, low, mu.dtype, mu.shape[-1], what="mu", where=lambda i: f"row {i[0]}")
    return _draw(mu, precision, generator, eps)


def _draw(mu: torch.Tensor, precision: str, generator: torch.Generator, eps: float) -> torch.Tensor:
    if precision == "exact":
        return inverse_cdf(mu, generator)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {FHS_PRECISIONS}")
    if precision == "float64+trunc":
        return truncated_race(mu, generator, eps)
    return exponential_race(mu, generator, torch.float32 if precision == "float32" else torch.float64)


def first_hitting_sample(
    denoiser,
    batch: int,
    length: int,
    precision: str,
    generator: torch.Generator,
    *,
    schedule: str = "linear",
    eps: float = FLOAT32_GAP_BELOW_ONE,
    progress: bool = True,
) -> FirstHittingSamples:
    """The first-hitting sampler (Prop. 4.1). With n tokens masked at time tau_n
    (tau_L = 1), each keeps its mask until s with probability m(s)/m(tau_n), so the
    next unmasking time has m(tau_{n-1}) = u^(1/n) m(tau_n), u ~ U(0, 1); a masked
    position chosen uniformly then takes a token from mu(x, tau_{n-1}). One token per
    event, L events, so exactly L denoiser calls per sequence. The law is that of the
    ancestral sampler with exact draws in the limit of infinitely many steps.

    Times are float64 whatever `precision` is: they reach the result only through a
    time-conditioned denoiser. `precision` is that of the token draw (draw_tokens):
    the exponential race is what a practical sampler runs, so its 32-bit form shows
    what truncation does under token-by-token decoding; "exact" is the reference.

    Exact for time-conditioned denoisers too: every sequence is evaluated at each event's
    time (`outputs_at`, a time-agnostic shortcut, is not used for them). Memory: at least
    32 bytes a position, plus the cached output unless the denoiser has `outputs_at`."""
    if precision not in FHS_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {FHS_PRECISIONS}")
    batch, length, V = _validated(denoiser, batch, length)
    at_positions = None if _time_conditioned(denoiser) else getattr(denoiser, "outputs_at", None)
    _require(denoiser, f"first_hitting_sample(batch={batch:,}, length={length:,})", batch * length, 32, at_positions is None)
    x = torch.full((batch, length), V, dtype=torch.int64)
    rows = torch.arange(batch)
    order = torch.argsort(torch.rand(batch, length, generator=generator), dim=1)  # a uniformly random order
    m = mask_probability(schedule, torch.ones(batch, dtype=torch.float64))
    times = torch.empty(batch, length, dtype=torch.float64)
    cache = _Cache(denoiser, x, allow_stale_time=True)  # every sequence is evaluated afresh at each event
    for k in progress_bar(range(length), desc=f"first hitting, {precision}", leave=False, show=progress):
        n = length - k  # tokens still masked
        m = m * torch.rand(batch, generator=generator, dtype=torch.float64) ** (1.0 / n)
        tau = mask_time(schedule, m)
        cols = order[:, k]
        if at_positions is not None:  # a time-agnostic denoiser, asked for the one position each sequence needs
            mu, _ = _received(at_positions(x, rows, cols), (batch, V), None, lambda i: f"sequence {i[0]}, position {int(cols[i[0]])}")
            cache.nfe += 1
        else:
            cache.update(x, rows, tau)  # every sequence changed at the last event
            cache.stale[:] = True
            mu = cache.mu[rows, cols]
        x[rows, cols] = _draw(mu, precision, generator, eps)  # mu checked when received
        times[rows, cols] = tau
    return FirstHittingSamples(x, cache.nfe, times)


def expected_nfe(steps: int, tokens: int, schedule: str = "linear") -> float:
    """The expected number of steps (out of `steps`) in which at least one of `tokens`
    independent positions unmasks: the NFE of a cached ancestral sampler (exact
    draws), with tokens = L for per-sequence and B * L for per-batch caching:
    sum_n 1 - (1 - p_n)^T, p_n the chance of unmasking in step n; for the linear
    schedule N (1 - (1 - 1/N)^T)."""
    if tokens < 1:
        raise ValueError(f"tokens must be positive, got {tokens}")
    p = unmask_step_probabilities(schedule, steps)
    return float(steps - torch.exp(tokens * torch.log1p(-p)).sum())


def nfe_standard_deviation(steps: int, tokens: int, schedule: str = "linear") -> float:
    """The standard deviation of that number, from P(steps n and k both empty) =
    (1 - p_n - p_k)^T (O(steps^2) work)."""
    if tokens < 1:
        raise ValueError(f"tokens must be positive, got {tokens}")
    p = unmask_step_probabilities(schedule, steps)
    empty = torch.exp(tokens * torch.log1p(-p))  # P(step n empty)
    second = 0.0  # E[(number of empty steps)^2]
    for start in range(0, steps, 1024):
        both = torch.exp(tokens * torch.log1p(-(p[start : start + 1024, None] + p[None, :]).clamp(max=1.0)))
        idx = torch.arange(start, min(start + 1024, steps))
        both[idx - start, idx] = empty[idx]
        second += float(both.sum())
    return max(second - float(empty.sum()) ** 2, 0.0) ** 0.5


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
