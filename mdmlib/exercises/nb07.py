"""Checkers for the exercises of notebook 07 (time-agnostic masked models)."""
from __future__ import annotations

import itertools
import math

import sympy
import torch

from mdmlib.mdm.objectives import Tempered, exact_moments
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.exercises import WrongAnswer, exercise
from mdmlib.exercises.answer_types import expression, function, number, value_at

_n, _L = sympy.symbols("n L", positive=True, integer=True)
_POINTS = [(1, 1), (1, 5), (3, 10), (10, 10), (7, 32), (200, 1024)]


@exercise("07.1")
def inverse_time_given_count(answer) -> str:
    expr = expression(answer, "07.1", (_n, _L))
    want = (_L + 1) / _n
    wrong = {
        _L / _n: "Close: given n masked tokens the time is Beta(n + 1, L - n + 1) (the prior on t adds one to each count), not Beta(n, L - n + 1).",
        (_L + 2) / (_n + 1): "That is 1 / E[t | n]; but E[1/t] is not 1 / E[t] (Jensen: it is larger).",
        1 / _n: "That drops the (L + 1): integrate t^(n-1) (1-t)^(L-n) against t^n (1-t)^(L-n) with Beta functions.",
    }
    for n, L in _POINTS:
        got, right = value_at(expr, {_n: n, _L: L}, "07.1"), float(want.subs({_n: n, _L: L}))
        # exact rationals evaluated to 30 digits: any real difference is far above 1e-12
        if not math.isclose(got, right, rel_tol=1e-12):
            hint = next((h for w, h in wrong.items() if all(math.isclose(value_at(expr, {_n: a, _L: b}, "07.1"), float(w.subs({_n: a, _L: b})), rel_tol=1e-12) for a, b in _POINTS)), "")
            raise WrongAnswer(f"Exercise 07.1: at n = {n}, L = {L} expected E[1/t | N_t = n] = {right:.10g}, got {got:.10g}. {hint}".rstrip())
    return "E[1/t | N_t = n] = (L + 1)/n, so the time estimator averaged given the mask is (L + 1)/n S."


def _count_elbo_cases():
    tiny = MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))
    exact = ExactDenoiser(tiny, torch.float64)
    small = MarkovLanguage(LanguageSpec(vocab_size=16, num_classes=4, seed=1))
    x_small = small.sample(1, 6, torch.Generator().manual_seed(7))[0]
    return [
        ("the exact denoiser of the tiny language, x0 = [2, 0, 0, 1]", exact, torch.tensor([2, 0, 0, 1]), tiny),
        ("the exact denoiser of the tiny language, x0 = [1, 1, 1, 1]", exact, torch.tensor([1, 1, 1, 1]), tiny),
        ("the tiny language's denoiser tempered at T = 0.7, x0 = [2, 0, 0, 1]", Tempered(exact, 0.7), torch.tensor([2, 0, 0, 1]), tiny),
        ("a 16-token language's denoiser tempered at T = 1.5, a sequence of length 6", Tempered(ExactDenoiser(small, torch.float64), 1.5), x_small, small),
        ("the same 16-token language, exact, length 1", ExactDenoiser(small, torch.float64), x_small[:1], small),
    ]


def _masked_sum_without_one_over_n(denoiser, x0: torch.Tensor) -> float:
    """sum_n E_{x_n}[S(x_n)], the plausible slip of dropping the 1/n."""
    L, total = x0.numel(), 0.0
    for n in range(1, L + 1):
        sets = list(itertools.combinations(range(L), n))
        for masked in sets:
            x = x0.clone()
            x[list(masked)] = denoiser.mask_id
            mu = denoiser(x[None])[0].to(torch.float64)
            total += float(sum(-torch.log(mu[l, x0[l]]) for l in masked)) / len(sets)
    return total


@exercise("07.2")
def masked_count_elbo(answer) -> str:
    fn = function(answer, "07.2")
    for name, denoiser, x0, language in _count_elbo_cases():
        want = exact_moments(denoiser, x0, "linear", [0.5])["elbo"]
        try:
            got = fn(denoiser, x0.clone())
        except NotImplementedError:
            raise
        except Exception as e:
            raise WrongAnswer(f"Exercise 07.2: on {name} your function raised {type(e).__name__}: {e}") from None
        got = number(got, "07.2")
        # float64 sums of at most 2^6 logs: 1e-10 relative is far above their rounding
        if math.isclose(got, want, rel_tol=1e-10):
            continue
        nll = float(-language.log_likelihood(x0[None])[0])
        hint = ""
        if math.isclose(got, nll, rel_tol=1e-10):
            hint = " That is -log p(x0), which only the exact denoiser attains; for any other denoiser the bound is above it."
        elif math.isclose(got, _masked_sum_without_one_over_n(denoiser, x0), rel_tol=1e-10):
            hint = " The n-th term carries the factor 1/n: it is the mean, not the sum, of the n masked tokens' losses."
        raise WrongAnswer(f"Exercise 07.2: on {name} expected -ELBO = {want:.10g}, got {got:.10g}.{hint}")
    return "the masked-count sum on 5 cases: -log p(x) for the exact denoiser, above it for tempered ones."
