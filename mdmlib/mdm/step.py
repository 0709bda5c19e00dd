"""One categorical step of a masked diffusion model, in the arithmetic that matters.

A masked position with denoiser output mu (V tokens), stepping from t to s,
draws from the unnormalised categories [mu * (m_t - m_s), m_s] (tokens, then the
mask), exactly as MDLM writes it. The draw is made in one of three ways:

  "float32"        MDLM/SEDD's line, argmax(p / (1e-10 - log(u + 1e-10))), in float32
  "float64"        the same line in float64 (the paper's fix)
  "float64+trunc"  float64 with uniforms scaled into [0, 1 - eps] (the paper's ablation)

Two implementations of each, with the same law:

`dense_step` is the literal line: V + 1 uniforms per position per step.

`sparse_step` draws only what can change the outcome. First the mask's own
uniform u_M, hence its score s_M. A token can only reach s_M if its uniform
lies among the top J values of the generator's grid (J from the largest token
probability, with a safety margin), and each token lands there independently
with probability J / 2^b. So the number of such candidate tokens is
Binomial(V, J / 2^b), they are a uniformly random set of tokens, and their
uniforms are uniform over those top J grid values; their scores are computed
with the literal arithmetic. The winner is the first index of the maximal
score, as `argmax` has it. Positions where J is a large part of the grid (near
the end of sampling) fall back to drawing all V token uniforms, keeping u_M.
The cost per position is O(1) instead of O(V). The grid is that of PyTorch's
CPU generator (k * 2^-24 in float32, k * 2^-53 in float64; mdmlib.precision.grid_law).

The law is exact for any upper bound on the largest token probability: a larger bound
only widens the window (more candidates, each still scored by the literal arithmetic),
so `sparse_step` accepts a `mu_max` at or above mu's maxima and refuses one below them
(a token above the bound could win from outside the window: the position would leave
the mask too rarely, or never). Both steps refuse rows of mu that are not laws
(mdmlib.mdm.denoiser_outputs): one pass over mu per call.
"""
from __future__ import annotations

import torch

from mdmlib.precision.categorical import exponential_race, race_score, truncated_race
from mdmlib.infra.checks import real_number
from mdmlib.infra.memory import require_memory
from mdmlib.mdm.denoiser_outputs import check_laws, row_statistics
from mdmlib.precision.formats import float_format

PRECISIONS = ("float32", "float64", "float64+trunc")
# 2^-24, float32's gap below one (the paper's epsilon; torch.finfo's eps is 2^-23):
# the default truncation of "float64+trunc"
FLOAT32_GAP_BELOW_ONE = float_format(torch.float32).gap_below_one


def _check(precision: str, eps: float, move_t: float, move_s: float) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    if not 0.0 < real_number(eps, "eps") < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    for name, m in (("move_t", move_t), ("move_s", move_s)):
        if not 0.0 <= real_number(m, name) <= 1.0:  # also rejects NaN
            raise ValueError(f"{name} is a mask probability and must lie in [0, 1], got {m}")
    if float(move_s) > float(move_t):
        raise ValueError(f"move_s ({move_s}) exceeds move_t ({move_t}): a step goes from t to an earlier s, so m(s) <= m(t)")


def _dtype(precision: str) -> torch.dtype:
    return torch.float32 if precision == "float32" else torch.float64


def _mask_probabilities(move_t: float, move_s: float, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """m_t and m_s as the sampler holds them: rounded to its dtype."""
    dtype = _dtype(precision)
    return tuple(torch.tensor(m, dtype=torch.float64).to(dtype) for m in (move_t, move_s))


def _check_rows(mu) -> None:
    if not isinstance(mu, torch.Tensor) or mu.dim() != 2 or not mu.is_floating_point():
        raise ValueError(f"mu must be a floating (n, V) tensor of denoiser outputs, got {_describe(mu)}")


def step_categories(mu: torch.Tensor, move_t: float, move_s: float, precision: str) -> torch.Tensor:
    """The (n, V+1) unnormalised categories of a step, in the sampler's dtype."""
    _check_rows(mu)
    m_t, m_s = (m.to(mu.device) for m in _mask_probabilities(move_t, move_s, precision))  # mu may live on a GPU
    return torch.cat([mu.to(m_t.dtype) * (m_t - m_s), m_s.expand(mu.shape[0], 1)], 1)


def dense_step(mu: torch.Tensor, move_t: float, move_s: float, precision: str, generator: torch.Generator, eps: float = FLOAT32_GAP_BELOW_ONE) -> torch.Tensor:
    """The literal step for n masked positions, mu (n, V), each row a law over the V
    tokens. Returns (n,) new tokens, V where the position stays masked."""
    _check(precision, eps, move_t, move_s)
    _check_rows(mu)
    total, low, _ = row_statistics(mu)
    check_laws(total, low, mu.dtype, mu.shape[-1], what="mu", where=lambda i: f"row {i[0]}")
    n, V = mu.shape
    if mu.device.type == "cpu":  # the categories, their uniforms and their scores, held at once
        require_memory(3 * n * (V + 1) * _dtype(precision).itemsize, f"dense_step on {n:,} positions of {V:,} tokens in {precision}")
    probs = step_categories(mu, move_t, move_s, precision)
    if precision == "float64+trunc":
        return truncated_race(probs, generator, eps)
    return exponential_race(probs, generator, _dtype(precision))


def _bits(precision: str) -> int:
    return 24 if precision == "float32" else 53


def _uniform_from_index(k: torch.Tensor, precision: str, eps: float) -> torch.Tensor:
    """The generator's uniform with integer index k: exactly what torch.rand returns
    for k (times 1 - eps for the truncated sampler, in truncated_race's order)."""
    u = k.to(torch.float64) * 2.0 ** -_bits(precision)
    if precision == "float32":
        return u.to(torch.float32)
    if precision == "float64+trunc":
        return u * (1.0 - eps)
    return u


def _score(p: torch.Tensor, u: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "float64+trunc":
        return p / -torch.log(u)  # truncated_race's score
    return race_score(p, u)


def _uniform_int_below(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform integers in [0, high) for a tensor of bounds 1 <= high <= 2^53, by rejection."""
    out = torch.empty_like(high)
    todo = torch.arange(high.numel())
    limit = (2**62 // high) * high  # largest multiple of high below 2^62
    while todo.numel():
        r = torch.randint(0, 2**62, (todo.numel(),), generator=generator)
        ok = r < limit[todo]
        out[todo[ok]] = r[ok] % high[todo[ok]]
        todo = todo[~ok]
    return out


def _distinct_tokens(owner: torch.Tensor, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """For candidates grouped by `owner` (sorted), tokens uniform in [0, vocab),
    distinct within each owner (a uniformly random subset of each owner's size)."""
    tok = torch.randint(0, vocab, owner.shape, generator=generator)
    while True:
        key = owner * vocab + tok
        order = torch.argsort(key, stable=True)
        dup = torch.zeros_like(key, dtype=torch.bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not dup.any():
            return tok
        tok[dup] = torch.randint(0, vocab, (int(dup.sum()),), generator=generator)


def candidate_window(p_max: torch.Tensor, s_mask: torch.Tensor, precision: str) -> torch.Tensor:
    """J (float64, at most 2^bits): a token of probability p <= p_max can tie or beat
    the mask's score s_mask only if its uniform is one of the top J grid values.
    It needs p_max / E(u) >= s_mask, i.e. -log u <= E* = p_max / s_mask; the window
    covers that with a 1e-4 relative and an 8-point absolute margin for the rounding
    of the literal scores (tests/test_mdm_step.py checks it by brute force)."""
    bits = _bits(precision)
    e_star = p_max.to(torch.float64) / s_mask.to(torch.float64)
    top = torch.floor(-torch.expm1(-e_star * (1 + 1e-4)) * 2.0**bits) + 8
    return torch.where(torch.isfinite(top), top, torch.tensor(2.0**bits, dtype=torch.float64)).clamp(max=2.0**bits)


def _describe(x) -> str:
    return f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_positions(mu, mu_max, rows, cols) -> None:
    if not isinstance(mu, torch.Tensor) or mu.dim() != 3 or not mu.is_floating_point():
        raise ValueError(f"mu must be a floating (B, L, V) tensor of denoiser outputs, got {_describe(mu)}")
    if not isinstance(mu_max, torch.Tensor) or tuple(mu_max.shape) != tuple(mu.shape[:2]):
        raise ValueError(f"mu_max must be mu's maxima over tokens, shape {tuple(mu.shape[:2])}, got {_describe(mu_max)}")
    for name, idx, size in (("rows", rows, mu.shape[0]), ("cols", cols, mu.shape[1])):
        if not isinstance(idx, torch.Tensor) or idx.dim() != 1 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D integer tensor of positions, got {_describe(idx)}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"{name} must lie in [0, {size}), got values from {int(idx.min())} to {int(idx.max())}")
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have one entry per masked position, got shapes {tuple(rows.shape)} and {tuple(cols.shape)}")


def _check_read(mu: torch.Tensor, mu_max: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """The rows of mu the step reads are laws, and mu_max bounds them from above
    (module docstring). One pass over mu's stored rows."""
    mu_max_read = mu_max[rows, cols]
    if torch.isnan(mu_max_read).any() or (mu_max_read < 0).any() or torch.isinf(mu_max_read).any():
        raise ValueError("mu_max is NaN, infinite or negative at a masked position (check mu and its maxima)")
    total, low, high = row_statistics(mu)
    read = torch.zeros(mu.shape[:2], dtype=torch.bool, device=mu.device)
    read[rows, cols] = True
    check_laws(total, low, mu.dtype, mu.shape[-1], read=read, what="mu")
    under = read & ~(mu_max.to(torch.float64) >= high.to(torch.float64))
    if bool(under.any()):
        b, l = torch.nonzero(under)[0].tolist()
        raise ValueError(f"mu_max at sequence {b}, position {l} is {float(mu_max[b, l]):.6g}, below the row's maximum {float(high[b, l]):.6g}: "
                         "it must be the maximum or an upper bound, else tokens above it are never candidates and the position leaves the mask too rarely")


def sparse_step(
    mu: torch.Tensor,
    mu_max: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    move_t: float,
    move_s: float,
    precision: str,
    generator: torch.Generator,
    eps: float = FLOAT32_GAP_BELOW_ONE,
    dense_fraction: float = 1 / 8,
) -> torch.Tensor:
    """The same law as `dense_step(mu[rows, cols], ...)`, drawing O(1) numbers per
    position. mu: (B, L, V) denoiser outputs; mu_max: (B, L) their maxima over tokens
    (or upper bounds of them: the same law); rows, cols: the masked positions. Returns
    (n,) new tokens, V where it stays masked. The rows read are checked to be laws, and
    mu_max to bound them, in one pass over mu (a sampler that checked its cache when
    the denoiser filled it calls `draw_sparse`, which does not repeat that pass)."""
    _check_positions(mu, mu_max, rows, cols)
    _check_read(mu, mu_max, rows, cols)
    return draw_sparse(mu, mu_max, rows, cols, move_t, move_s, precision, generator, eps, dense_fraction)


def draw_sparse(mu, mu_max, rows, cols, move_t, move_s, precision, generator, eps=FLOAT32_GAP_BELOW_ONE, dense_fraction=1 / 8) -> torch.Tensor:
    """sparse_step without the pass over mu: for a caller whose mu rows are laws and
    whose mu_max bounds them (the samplers' cache, checked when it is filled)."""
    _check(precision, eps, move_t, move_s)
    if not 0.0 < dense_fraction <= 1.0:
        raise ValueError(f"dense_fraction must lie in (0, 1], got {dense_fraction}")
    dtype, bits = _dtype(precision), _bits(precision)
    V, n = mu.shape[-1], rows.numel()
    m_t, m_s = _mask_probabilities(move_t, move_s, precision)
    scale = m_t - m_s
    new = torch.full((n,), V, dtype=torch.int64)
    if n == 0:
        return new
    mu_max_read = mu_max[rows, cols]
    # the mask's score, and the window of top grid values a token must reach
    u_mask = _uniform_from_index(torch.randint(0, 2**bits, (n,), generator=generator), precision, eps)
    s_mask = _score(m_s.expand(n), u_mask, precision)
    p_max = (mu_max_read.to(dtype) * scale).to(torch.float64)
    J = candidate_window(p_max, s_mask, precision)
    dense = J > dense_fraction * 2.0**bits

    # positions near the end of sampling: all V token uniforms, the mask's kept
    if dense.any():
        d = torch.nonzero(dense).flatten()
        p = mu[rows[d], cols[d]].to(dtype) * scale
        u = torch.rand(p.shape, generator=generator, dtype=dtype)
        if precision == "float64+trunc":
            u = u * (1.0 - eps)
        score = torch.where(p > 0, _score(p, u, precision), -torch.inf)
        best, arg = score.max(-1)  # max returns the first maximal index, as argmax
        new[d] = torch.where(best >= s_mask[d], arg, V)

    # all other positions: only the candidate tokens
    s = torch.nonzero(~dense).flatten()
    if s.numel():
        counts = torch.binomial(torch.full((s.numel(),), float(V), dtype=torch.float64), J[s] / 2.0**bits, generator=generator).long()
        owner = torch.repeat_interleave(s, counts)
        if owner.numel():
            tok = _distinct_tokens(owner, V, generator)
            j = _uniform_int_below(J[owner].long(), generator) + 1  # 1..J: the j-th grid value from the top
            u = _uniform_from_index(2**bits - j, precision, eps)
            p = mu[rows[owner], cols[owner], tok].to(dtype) * scale
            score = torch.where(p > 0, _score(p, u, precision), -torch.inf).to(torch.float64)
            wins = score >= s_mask[owner].to(torch.float64)
            best = torch.full((n,), -torch.inf, dtype=torch.float64).scatter_reduce(0, owner[wins], score[wins], "amax")
            top_tok = torch.full((n,), V, dtype=torch.int64).scatter_reduce(
                0, owner[wins], torch.where(score[wins] == best[owner[wins]], tok[wins], V), "amin"
            )
            new[s] = top_tok[s]
    return new
