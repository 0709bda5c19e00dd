"""Exercises of notebook 10: what the paper's scale costs, and how Gen PPL pools sequences."""
from __future__ import annotations

import math

import torch

from mdmlib.judging.judges import Scores
from mdmlib.runs.paper_scale import Setting, estimated_seconds
from mdmlib.mdm.samplers import expected_nfe
from mdmlib.exercises import WrongAnswer, exercise

_NFE_CASES = ((2048, 1024), (100, 1024), (10_000, 1024), (16, 64), (5_000, 64))


@exercise("10.1")
def calls_per_sample(nfe) -> str:
    """nfe(steps, length): the expected number of network calls one sample costs under the
    ancestral sampler with per-sequence caching (linear or log-linear schedule)."""
    if not callable(nfe):
        raise WrongAnswer("answer with a function nfe(steps, length) -> float")
    for steps, length in _NFE_CASES:
        want, got = expected_nfe(steps, length), float(nfe(steps, length))
        if not math.isclose(got, want, rel_tol=1e-6):
            hint = ""
            if math.isclose(got, steps, rel_tol=1e-9):
                hint = " That is one call per step: a step in which no token unmasks leaves x, hence the network's output, as it was."
            elif math.isclose(got, min(steps, length), rel_tol=1e-9):
                hint = " Several tokens can unmask in one step, and a step can unmask none: count the steps in which at least one does."
            raise WrongAnswer(f"nfe({steps}, {length}) = {got:.4f}, expected {want:.4f}.{hint} Each of the L positions unmasks in step n "
                              "with probability 1/N, independently.")
    return f"one sample at 2,048 steps and length 1,024 costs {expected_nfe(2048, 1024):.0f} calls, not 2,048."


@exercise("10.2")
def pooled_gen_ppl(gen_ppl) -> str:
    """gen_ppl(nll_sum, count): MDLM's Gen PPL from per-sequence NLL sums and token counts."""
    if not callable(gen_ppl):
        raise WrongAnswer("answer with a function gen_ppl(nll_sum, count) -> float")
    g = torch.Generator().manual_seed(10)
    count = torch.randint(200, 1025, (16,), generator=g)
    nll_sum = count * (2.5 + torch.rand(16, generator=g, dtype=torch.float64) * 2)
    want = Scores(nll_sum, count).gen_ppl().mean
    got = float(gen_ppl(nll_sum.clone(), count.clone()))
    if math.isclose(got, want, rel_tol=1e-9):
        return f"pooled over tokens: {want:.3f} here; a mean of per-sequence perplexities would give {float(torch.exp(nll_sum / count).mean()):.3f}."
    if math.isclose(got, float(torch.exp(nll_sum / count).mean()), rel_tol=1e-9):
        raise WrongAnswer("that is the mean of per-sequence perplexities; MDLM pools: exp(total NLL / total tokens)")
    if math.isclose(got, float(torch.exp((nll_sum / count).mean())), rel_tol=1e-9):
        raise WrongAnswer("that weighs every sequence alike; MDLM weighs every token alike: exp(total NLL / total tokens)")
    raise WrongAnswer(f"got {got:.4f}, expected {want:.4f}: exp(total NLL / total scored tokens)")


@exercise("10.3")
def paper_grid_hours(hours) -> str:
    """hours(seconds_per_call, seconds_per_step): the sampling time, in hours on one process,
    of the paper's grid: float32 and float64 at 100, 500, 1,000, 2,048, 5,000 and 10,000 steps,
    float64 + truncation at 2,048; 64 samples of length 1,024 in shards of 8; every shard runs
    every step (seconds_per_step) and each sequence calls the network E[NFE] times
    (seconds_per_call a call)."""
    if not callable(hours):
        raise WrongAnswer("answer with a function hours(seconds_per_call, seconds_per_step) -> float")
    steps = (100, 500, 1000, 2048, 5000, 10000)
    grid = [Setting(p, n) for p in ("float32", "float64") for n in steps] + [Setting("float64+trunc", 2048)]
    for call, step in ((0.01, 0.0), (0.0, 0.02), (0.012, 0.03)):
        want = estimated_seconds(grid, samples=64, length=1024, seconds_per_call=call, seconds_per_step=step, shard_size=8) / 3600
        got = float(hours(call, step))
        if not math.isclose(got, want, rel_tol=1e-6):
            part = "the network calls" if step == 0 else "the categorical steps" if call == 0 else "the sum"
            raise WrongAnswer(f"hours({call}, {step}) = {got:.4f}, expected {want:.4f}: check {part}. Calls: 64 samples x E[NFE] per "
                              "setting; steps: 8 shards x N per setting.")
    return "the grid's cost is mostly network calls at the larger step counts, each nearly L of them per sample."
