"""Masking schedules: m(t), the probability that a token is masked at time t.

m(0) = 0 (clean data) and m(1) = 1 (all masked; MDLM's log-linear schedule
stops at 1 - eps). alpha_t = 1 - m(t) in the paper's notation. A sampler with
N steps walks the grid t_n = n / N from n = N down to 0; a position masked at
t_n unmasks before s = t_{n-1} with probability (m(t_n) - m(s)) / m(t_n).

Every schedule also has its inverse (the time at which the mask probability is m,
which the first-hitting sampler needs) and its rate m'(t) (the weight m'(t)/m(t)
of the continuous-time ELBO).
"""
from __future__ import annotations

import math

import torch

from mdmlib.infra.checks import whole_number
from mdmlib.infra.memory import require_memory

LOGLINEAR_EPS = 1e-3  # MDLM's default


def linear(t: torch.Tensor) -> torch.Tensor:
    return t


def loglinear(t: torch.Tensor) -> torch.Tensor:
    """MDLM: sigma(t) = -log(1 - (1 - eps) t), so m(t) = 1 - exp(-sigma(t)) = (1 - eps) t."""
    return (1 - LOGLINEAR_EPS) * t


def cosine(t: torch.Tensor) -> torch.Tensor:
    return 1 - torch.cos(0.5 * math.pi * t)


SCHEDULES = {"linear": linear, "loglinear": loglinear, "cosine": cosine}

# Inverses t(m). The cosine one uses 1 - cos(x) = 2 sin^2(x / 2), so that a small m
# (the end of first-hitting sampling) keeps its relative precision.
INVERSES = {
    "linear": lambda m: m,
    "loglinear": lambda m: m / (1 - LOGLINEAR_EPS),
    "cosine": lambda m: (4 / math.pi) * torch.asin(torch.sqrt(m / 2)),
}
RATES = {
    "linear": torch.ones_like,
    "loglinear": lambda t: torch.full_like(t, 1 - LOGLINEAR_EPS),
    "cosine": lambda t: 0.5 * math.pi * torch.sin(0.5 * math.pi * t),
}


def _known(schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {sorted(SCHEDULES)}")


def mask_probability(schedule: str, t: torch.Tensor) -> torch.Tensor:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {sorted(SCHEDULES)}")
    t = torch.as_tensor(t, dtype=torch.float64)
    if not ((t >= 0) & (t <= 1)).all():  # also rejects NaN
        raise ValueError("times must lie in [0, 1]")
    return SCHEDULES[schedule](t)


def mask_time(schedule: str, m) -> torch.Tensor:
    """The inverse of the schedule: the time t in [0, 1] at which m(t) = m (float64).
    m must lie in [0, m(1)]."""
    _known(schedule)
    m = torch.as_tensor(m, dtype=torch.float64)
    top = float(SCHEDULES[schedule](torch.tensor(1.0, dtype=torch.float64)))
    if torch.isnan(m).any() or (m < 0).any() or (m > top).any():
        raise ValueError(f"mask probabilities must lie in [0, m(1)] = [0, {top}] for the {schedule} schedule")
    return INVERSES[schedule](m).clamp(0.0, 1.0)


def time_of_mask_probability(schedule: str, m) -> torch.Tensor:
    """The t with m(t) = m, capped at t = 1 where m is beyond the schedule's m(1)
    (MDLM's log-linear schedule stops at 1 - eps), float64."""
    top = float(mask_probability(schedule, torch.tensor(1.0)))
    return mask_time(schedule, torch.as_tensor(m, dtype=torch.float64).clamp(max=top))


def mask_rate(schedule: str, t) -> torch.Tensor:
    """m'(t), the rate at which tokens are masked (float64)."""
    _known(schedule)
    t = torch.as_tensor(t, dtype=torch.float64)
    return RATES[schedule](t)


def time_grid(steps: int) -> torch.Tensor:
    """t_n = n / steps for n = steps, ..., 0 (float64)."""
    steps = whole_number(steps, "the number of steps")
    require_memory(16 * (steps + 1), f"a time grid of {steps:,} steps (16 bytes a step)")
    return torch.arange(steps, -1, -1, dtype=torch.float64) / steps


def unmask_step_probabilities(schedule: str, steps: int) -> torch.Tensor:
    """P(a position unmasks during step n), n = steps..1 in that order:
    (m(t_n) - m(t_{n-1})) / m(1). They sum to 1."""
    steps = whole_number(steps, "the number of steps")
    require_memory(24 * steps, f"the unmask-step probabilities of {steps:,} steps (24 bytes a step)")
    m = mask_probability(schedule, time_grid(steps))
    return (m[:-1] - m[1:]) / m[0]


def total_noise(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """sigma(t) = -log(1 - m(t)): the noise level a time-conditioned network is given
    (MDLM and SEDD feed sigma, not t). For "loglinear" it is -log(1 - (1 - eps) t),
    finite at t = 1; for "linear" and "cosine" it is infinite at t = 1."""
    return -torch.log1p(-mask_probability(schedule, torch.as_tensor(t)))
