"""Checkers for the exercises of notebook 06 (Gen PPL against entropy)."""
from __future__ import annotations

import math

import torch

from mdmlib.stats.metrics import gen_ppl
from mdmlib.exercises import WrongAnswer, exercise
from mdmlib.exercises.answer_types import function, number


def _entropy_cases() -> list[tuple[str, torch.Tensor]]:
    zipf = torch.arange(1, 1001, dtype=torch.float64) ** -1.1
    return [
        ("the uniform law on 5 tokens", torch.full((5,), 0.2, dtype=torch.float64)),
        ("[0.7, 0.2, 0.1]", torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)),
        ("[0.5, 0.5, 0] (a token of probability 0)", torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)),
        ("[0.99, 0.01]", torch.tensor([0.99, 0.01], dtype=torch.float64)),
        ("Zipf(1.1) on 1,000 tokens", zipf / zipf.sum()),
    ]


def _log_moments(p: torch.Tensor) -> tuple[float, float, float]:
    """E_p[-log p] (the entropy), E_p[(log p)^2] and Var_p[log p], over the support."""
    p = p[p > 0]
    logp = p.log()
    entropy = float(-(p * logp).sum())
    second = float((p * logp**2).sum())
    return entropy, second, second - entropy**2


@exercise("06.1")
def entropy_slope(answer) -> str:
    fn = function(answer, "06.1")
    for name, p in _entropy_cases():
        entropy, second, want = _log_moments(p)
        try:
            got = fn(p.clone())
        except NotImplementedError:
            raise
        except Exception as e:
            raise WrongAnswer(f"Exercise 06.1: on {name} your function raised {type(e).__name__}: {e}") from None
        try:
            got = number(got, "06.1")
        except WrongAnswer as e:
            zeros = " Tokens of probability 0 stay at 0 for every T and add nothing (0 log 0 = 0): leave them out." if (p == 0).any() else ""
            raise WrongAnswer(f"{e} (on {name}).{zeros}") from None
        # 1e-6 relative: a closed form is exact to float64 rounding; a central difference with a small step passes too
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        hints = {
            entropy: "That is the entropy itself, not its rate of change with T.",
            -want: "The sign: raising T flattens the law, so the entropy grows.",
            second: "Centre it: the slope is a variance, E[(log p)^2] - (E[log p])^2.",
            want / math.log(2) ** 2: "Those are bits: use natural logs.",
        }
        hint = next((h for v, h in hints.items() if abs(v - want) > 1e-9 and math.isclose(got, v, rel_tol=1e-6)), "")
        if not hint and name.startswith("[0.5, 0.5, 0]"):
            hint = "Tokens of probability 0 stay at 0 for every T and add nothing (0 log 0 = 0)."
        raise WrongAnswer(f"Exercise 06.1: for {name} expected dH/dT at T = 1 of {want:.10g}, got {got:.10g}. {hint}".rstrip())
    return "dH(p_T)/dT at T = 1 is Var_p[log p], on 5 laws (uniform: 0; zeros in the support)."


def _ppl_cases() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(6)
    return [
        ("64 sequences around 4.8 nats", 4.8 + 0.2 * torch.randn(64, generator=g, dtype=torch.float64)),
        ("8 sequences with a wide spread", 3.0 + 2.0 * torch.rand(8, generator=g, dtype=torch.float64)),
        ("two sequences, 4.0 and 5.0", torch.tensor([4.0, 5.0], dtype=torch.float64)),
    ]


@exercise("06.2")
def gen_ppl_with_se(answer) -> str:
    fn = function(answer, "06.2")
    for name, nll in _ppl_cases():
        want = gen_ppl(nll)
        try:
            out = fn(nll.clone())
            ppl, se = (number(v, "06.2") for v in out)
        except (WrongAnswer, NotImplementedError):
            raise
        except (TypeError, ValueError):
            raise WrongAnswer("Exercise 06.2: return two numbers, (Gen PPL, its standard error)") from None
        except Exception as e:
            raise WrongAnswer(f"Exercise 06.2: on {name} your function raised {type(e).__name__}: {e}") from None
        n, sd = nll.numel(), float(nll.std())
        # float64 means and standard deviations of at most 64 values: 1e-9 relative is far above their rounding
        if not math.isclose(ppl, want.mean, rel_tol=1e-9):
            hint = ""
            if math.isclose(ppl, float(nll.exp().mean()), rel_tol=1e-9):
                hint = " That averages each sequence's own perplexity; Gen PPL is exp of the mean NLL per token (and by Jensen's inequality the mean of exps is larger)."
            raise WrongAnswer(f"Exercise 06.2: on {name} expected Gen PPL {want.mean:.10g}, got {ppl:.10g}.{hint}")
        if not math.isclose(se, want.se, rel_tol=1e-9):
            hints = {
                sd / math.sqrt(n): "That is the standard error of the mean NLL; by the delta method, multiply it by d exp(m)/dm = Gen PPL.",
                want.mean * sd: "That uses the standard deviation of one sequence's NLL; the mean of n sequences has it divided by sqrt(n).",
                want.mean * float(nll.std(correction=0)) / math.sqrt(n): "Use the sample standard deviation (divide by n - 1).",
            }
            hint = next((h for v, h in hints.items() if math.isclose(se, v, rel_tol=1e-9)), "")
            raise WrongAnswer(f"Exercise 06.2: on {name} expected a standard error of {want.se:.10g}, got {se:.10g}. {hint}".rstrip())
    return "Gen PPL = exp(mean NLL per token), SE = Gen PPL x SE(mean NLL), on 3 samples."
