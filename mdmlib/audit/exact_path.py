"""A probe's result from the line's declared exact law: its leave rate (with the mass the
law leaves unresolved) and the temperature of its tokens, cached per law and probe, and
the exact leave rate of the input as the line receives it."""
from __future__ import annotations

import math

import torch

from mdmlib.audit.probes import Probe, mu_of
from mdmlib.audit.public_lines import line_input
from mdmlib.audit.results import ProbeResult
from mdmlib.infra.results import cached
from mdmlib.precision.argmax_law import one_thread
from mdmlib.stats.metrics import temperature_of_mean


def _law_summary(law_fn, probe: Probe, device: str) -> dict:
    """Leave probability and token statistics of a declared law at a probe (cached)."""

    def compute() -> dict:
        p, copies, log_mu, mask_block = probe.blocks()
        with one_thread():  # see argmax_law.one_thread
            exact = law_fn(p, copies, device)
        tokens = torch.ones_like(exact.law, dtype=torch.bool)
        tokens[mask_block] = False
        token_mass = float(exact.law[tokens].sum())
        mean = float((exact.law[tokens] * log_mu[tokens]).sum() / token_mass) if token_mass > 0 else math.nan
        return {"leave": token_mass, "unresolved": exact.unresolved, "mean_log_mu": mean, "how": exact.how}

    key = getattr(law_fn, "key", None)
    if key is None:  # an undeclared function of the user's: not cached
        return compute()
    return cached("audit_law", {"law": key, "probe": probe.key(), "device": torch.device(device).type, "torch": torch.__version__}, compute)


def input_leave(probe: Probe, takes: str, dtype) -> float:
    """The exact leave rate of the categories as the line receives them (rounded to its dtype)."""
    x = line_input(probe.categories(), takes, dtype).to(torch.float64)
    p = x / x.sum() if takes == "probs" else torch.softmax(x, -1)
    return 1.0 - float(p[probe.mask_index])


def _exact_result(law_fn, probe: Probe, device: str, takes: str = "probs", dtype=torch.float64) -> ProbeResult:
    s = _law_summary(law_fn, probe, device)
    r = ProbeResult(probe, "exact law", s["leave"], (s["leave"], s["leave"] + s["unresolved"]), law_how=s["how"], unresolved=s["unresolved"])
    r.input_leave = input_leave(probe, takes, dtype)
    if probe.mu != "flat" and math.isfinite(s["mean_log_mu"]):
        log_mu = torch.log(mu_of(probe.mu, probe.vocab))
        r.temperature = temperature_of_mean(log_mu, s["mean_log_mu"])
        r.temperature_ci = (r.temperature, r.temperature)
    return r
