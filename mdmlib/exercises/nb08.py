"""Checkers for the exercises of notebook 08 (the first-hitting sampler and caching)."""
from __future__ import annotations

import math

import sympy
import torch

from mdmlib.mdm.cost import categorical_draws, model_seconds
from mdmlib.language.exact_laws import several_per_step_probability
from mdmlib.mdm.schedules import mask_probability, mask_time
from mdmlib.exercises import WrongAnswer, exercise
from mdmlib.exercises.answer_types import expression, function, number, value_at

_NEXT_TIME_CASES = [
    ("linear, tau = 1, n = 4, u = 0.3", "linear", [1.0], [4], [0.3]),
    ("cosine, a batch", "cosine", [1.0, 0.8, 0.5, 0.2, 0.9], [10, 3, 1, 7, 128], [0.5, 0.9, 0.05, 0.99, 0.7]),
    ("log-linear, a batch", "loglinear", [1.0, 0.6, 0.3], [5, 2, 1], [0.2, 0.8, 0.5]),
    ("u = 1 (the next event at once)", "cosine", [0.7], [3], [1.0]),
]


@exercise("08.1")
def next_event_time(answer) -> str:
    fn = function(answer, "08.1")
    for name, schedule, tau, n, u in _NEXT_TIME_CASES:
        tau, n, u = (torch.tensor(v, dtype=torch.float64) for v in (tau, n, u))
        want = mask_time(schedule, u ** (1 / n) * mask_probability(schedule, tau))
        try:
            got = fn(tau.clone(), n.clone(), u.clone(), schedule)
        except NotImplementedError:
            raise
        except Exception as e:
            raise WrongAnswer(f"Exercise 08.1: on {name} your function raised {type(e).__name__}: {e}") from None
        got = torch.as_tensor(got, dtype=torch.float64)
        if got.shape != want.shape:
            raise WrongAnswer(f"Exercise 08.1: on {name} expected one time per sequence, shape {tuple(want.shape)}; got shape {tuple(got.shape)}")
        # float64 inverses of smooth functions at times >= 0.02: 1e-9 relative is far above their rounding
        if torch.allclose(got, want, rtol=1e-9, atol=1e-12):
            continue
        hint = ""
        if torch.allclose(got, tau * u ** (1 / n), rtol=1e-9):
            hint = " That is the linear schedule's rule; in general it is m(tau') = u^(1/n) m(tau): apply the schedule, then its inverse (mdmlib.mdm.schedules.mask_time)."
        elif torch.allclose(got, mask_time(schedule, u**n * mask_probability(schedule, tau)), rtol=1e-9):
            hint = " All n tokens stay masked with probability (m(s)/m(tau))^n; set that to u and solve: the root is u^(1/n), not u^n."
        raise WrongAnswer(f"Exercise 08.1: on {name} expected {[round(v, 10) for v in want.tolist()]}, got {[round(v, 10) for v in got.tolist()]}.{hint}")
    return "tau' = m^-1(u^(1/n) m(tau)) under the linear, cosine and log-linear schedules."


_N, _L = sympy.symbols("N L", positive=True, integer=True)
_BIRTHDAY_POINTS = [(4, 4), (8, 4), (32, 4), (1024, 4), (16384, 4), (2048, 128), (2, 4)]


@exercise("08.2")
def several_in_one_step(answer) -> str:
    expr = expression(answer, "08.2", (_N, _L))
    wrong = {
        _L * (_L - 1) / (2 * _N): "That is the first-order (union bound) approximation: pairs of tokens times 1/N. The exact value counts the ways all L steps can be distinct.",
        1 - sympy.exp(-_L * (_L - 1) / (2 * _N)): "That is the Poisson approximation; the exact value is a ratio of counts.",
        1 - (1 - 1 / _N) ** _L: "That is the chance that a given step holds at least one unmasking, not that some step holds two.",
    }
    for N, L in _BIRTHDAY_POINTS:
        want = several_per_step_probability(L, N)
        got = value_at(expr, {_N: N, _L: L}, "08.2")
        # the library's float64 value against exact rationals: 1e-9 is far above its rounding
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            hint = next((h for w, h in wrong.items() if math.isclose(got, float(w.subs({_N: N, _L: L})), rel_tol=1e-9)), "")
            if not hint and L > N:
                hint = "With more tokens than steps some step must hold two (pigeonhole): the answer should be 1 there."
            raise WrongAnswer(f"Exercise 08.2: at N = {N}, L = {L} expected {want:.10g}, got {got:.10g}. {hint}".rstrip())
    return "P(some step unmasks 2+) = 1 - N!/((N-L)! N^L), the birthday problem; it bounds TV(ancestral, first hitting)."


_V, _LENGTH, _STEPS, _NFE, _SPEEDUP = 50_257, 1_024, 10_000, 973, 17


def speedup_at(ratio: float, draws_ancestral: int | None = None) -> float:
    """The literal line's cost over FHS's in the paper's model, with t_net = ratio |V| t_cat."""
    t_cat = 1.0
    t_net = ratio * _V * t_cat
    draws_ancestral = categorical_draws("ancestral", _LENGTH, _V, _STEPS) if draws_ancestral is None else draws_ancestral
    return model_seconds(_NFE, draws_ancestral, t_net, t_cat) / model_seconds(_LENGTH, categorical_draws("first_hitting", _LENGTH, _V), t_net, t_cat)


@exercise("08.3")
def cost_ratio(answer) -> str:
    ratio = number(answer, "08.3")
    if ratio <= 0:
        raise WrongAnswer(f"Exercise 08.3: a time ratio is positive, got {ratio}")
    got = speedup_at(ratio)
    # the model is a ratio of sums of a few float64 products: 1e-9 relative is far above their rounding
    if math.isclose(got, _SPEEDUP, rel_tol=1e-9):
        return f"t_net / (|V| t_cat) = {ratio:.2f}: a network call costs as much as {ratio:.0f} full categorical draws over the vocabulary."
    hint = ""
    if math.isclose(speedup_at(ratio, _STEPS * _LENGTH * _V), _SPEEDUP, rel_tol=1e-9):
        hint = " Close: the literal line draws |V| + 1 numbers per position and step (the mask's too), N L (|V| + 1) in all."
    raise WrongAnswer(f"Exercise 08.3: at t_net / (|V| t_cat) = {ratio:.6g} the model's speedup is {got:.6g}, not {_SPEEDUP}.{hint}")
