"""The paper's cost model of sampling (App. J.3).

    time = NFE x t_net + NCS x t_cat

NFE: network evaluations (per sequence); NCS: numbers drawn by categorical
sampling. MDLM's ancestral line draws |V| + 1 exponential-race numbers at every
one of the L positions at every one of the N steps (NCS = N L |V| per sequence);
the first-hitting sampler draws |V| per unmasked token (NCS = L |V|). The measured
t_net and t_cat come from mdmlib.runs.sampler_timing.
"""
from __future__ import annotations

SAMPLERS = ("first_hitting", "ancestral")


def categorical_draws(sampler: str, length: int, vocab: int, steps: int | None = None) -> int:
    """NCS per sequence in the paper's accounting: N L (|V| + 1) for MDLM's ancestral
    line (every position, every step, the mask included), L |V| for first hitting."""
    if sampler == "first_hitting":
        return length * vocab
    if sampler == "ancestral":
        return steps * length * (vocab + 1)
    raise ValueError(f"unknown sampler {sampler!r}: expected one of {SAMPLERS}")


def model_seconds(nfe: float, ncs: float, t_net: float, t_cat: float) -> float:
    """The cost model: NFE x t_net + NCS x t_cat."""
    return nfe * t_net + ncs * t_cat
