"""The literal line of one masked-diffusion step, counted at the speed of its uniforms.

`mdm_step.dense_step` draws V + 1 uniforms per masked position (V tokens, then the
mask) with torch.rand and returns the first index of the largest score
p / (1e-10 - log(u + 1e-10)). A position leaves the mask iff the largest token
score reaches the mask's (tokens come first, so a tie goes to a token). With a flat
mu every token has the same p, and the score does not decrease as u grows, so the
largest token score is the score of the largest token uniform. `leaves` draws
exactly dense_step's uniforms (the same torch.rand call, shape and generator) and
compares two scores per position with the line's own arithmetic (`leaves`): the same outcome as
dense_step, position by position (tests/test_literal_line.py checks it on the same
generator), at the cost of drawing the uniforms rather than of the race over them.

The float32 grid departs from truncation only for uniforms among the top few of its
2^24 values, so a Monte Carlo of the literal line needs billions of uniforms to see
it; this is what makes that affordable on a CPU.
"""
from __future__ import annotations

import torch

from mdmlib.precision.categorical import race_score
from mdmlib.mdm.step import dense_step, step_categories
from mdmlib.infra.progress import progress

_PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def flat_step(V: int, move_t: float, move_s: float, precision: str) -> torch.Tensor:
    """The categories of a step with a flat mu over V tokens, exactly as dense_step forms
    them: V equal token probabilities, then the mask's (in the sampler's dtype)."""
    if not isinstance(V, int) or V < 1:
        raise ValueError(f"V must be a positive integer, got {V!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"leave_count runs the literal line in {sorted(_PRECISIONS)}, got {precision!r}")
    return step_categories(torch.full((1, V), 1.0 / V), move_t, move_s, precision)[0]


def leaves(V: int, move_t: float, move_s: float, precision: str, n: int, generator: torch.Generator, *, chunk: int = 1 << 23, desc: str | None = None) -> torch.Tensor:
    """Which of n masked positions with a flat mu over V tokens leave the mask in one
    step of dense_step (same uniforms, same outcome): a bool tensor (n,). The uniforms
    are drawn in chunks of about `chunk`, which torch's CPU generator hands out in the
    same order as one call."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    step = flat_step(V, move_t, move_s, precision)
    dtype = _PRECISIONS[precision]
    p_token, p_mask = step[0], step[-1]
    rows = max(1, chunk // (V + 1))
    out = torch.empty(n, dtype=torch.bool)
    with progress(total=n, desc=desc, unit="position", unit_scale=True, show=desc is not None) as bar:
        for start in range(0, n, rows):
            m = min(rows, n - start)
            u = torch.rand((m, V + 1), generator=generator, dtype=dtype)  # dense_step's call
            token = race_score(p_token, u[:, :V].max(1).values)
            out[start : start + m] = token >= race_score(p_mask, u[:, V])
            bar.update(m)
    return out


def dense_leaves(V: int, move_t: float, move_s: float, precision: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """dense_step itself on n positions with a flat mu: True where a position leaves."""
    mu = torch.full((n, V), 1.0 / V)
    return dense_step(mu, move_t, move_s, precision, generator) != V
