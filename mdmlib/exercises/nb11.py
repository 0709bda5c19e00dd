"""Checks for the exercises of notebook 11 (auditing a sampling line)."""
from __future__ import annotations

import math

import torch

from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe
from mdmlib.precision.grid_law import rand_grid
from mdmlib.audit.public_lines import _guarded_gumbel
from mdmlib.exercises import WrongAnswer, exercise

# float16 probabilities at a 1/100 step: the float16 race leaves a flat position at 0.07 of the exact rate
_PROBES = [Probe("flat", 1e-2, 100), Probe("zipf", 1e-2, 100)]


@exercise("11.1")
def exact_line(answer) -> str:
    """answer(probs, generator) -> indices: a line that samples float16 probabilities exactly."""
    if not callable(answer):
        raise WrongAnswer("Exercise 11.1 asks for a function: line(probs, generator) -> indices")
    try:
        report = audit(answer, takes="probs", dtype="float16", probes=_PROBES, budget=60, use_law=False, show_progress=False, name="your line")
    except Exception as error:
        raise WrongAnswer(f"the audit could not run your line: {type(error).__name__}: {error}") from error
    if report.verdict.startswith(("biased", "inconclusive", "no draws")):
        cast = " Draw the uniforms in float64 and divide float64 probabilities by their exponentials: the uniforms' dtype is what matters."
        raise WrongAnswer(f"the audit finds: {report.verdict}.{cast}")
    worst = min(r.p_value for r in report.results)
    return f"the audit finds no bias (smallest p = {worst:.2g} over {sum(r.n for r in report.results):,} draws; {report.verdict.split(': ', 1)[-1]})."


@exercise("11.2")
def bfloat16_noise(answer) -> str:
    """answer = (number of distinct values, largest, smallest) of MaskGIT's Gumbel noise
    computed in bfloat16 from torch.rand's bfloat16 uniforms."""
    try:
        count, largest, smallest = int(answer[0]), float(answer[1]), float(answer[2])
    except (TypeError, ValueError, IndexError) as error:
        raise WrongAnswer("Exercise 11.2 asks for (number of distinct values, largest value, smallest value)") from error
    uniforms, _ = rand_grid(torch.bfloat16)
    noise = _guarded_gumbel(uniforms)  # in bfloat16, as the line computes it
    values = torch.unique(noise)
    if count != values.numel():
        hint = (f" {uniforms.numel():,} is the number of bfloat16 uniforms; the noise is rounded to bfloat16 after each log, "
                "and many uniforms give the same noise") if count == uniforms.numel() else ""
        raise WrongAnswer(f"the noise takes {'more' if values.numel() > count else 'fewer'} than {count:,} distinct values.{hint}")
    for name, got, want in (("largest", largest, values.max().item()), ("smallest", smallest, values.min().item())):
        if got != want:
            exact = _guarded_gumbel(uniforms.double())
            hint = (" That is the value in exact arithmetic; the line computes the noise in bfloat16" if abs(got - (exact.max() if name == "largest" else exact.min()).item()) < 1e-3
                    else " Look at the largest uniform, 1 - 2^-8, and at u = 0 (where the clamp at 1e-20 takes over)")
            raise WrongAnswer(f"the {name} noise value is not {got!r}.{hint}")
    return (f"{values.numel()} values in [{values.min().item():g}, {values.max().item():g}]: no noise can close a logit gap wider than "
            f"{values.max().item() - values.min().item():g}, and a flat token at h = 1e-3 over GPT-2's vocabulary sits "
            f"{math.log(1 - 1e-3) - math.log(1e-3 / 50_257):.1f} below the mask.")
