"""A probe's result measured by Monte Carlo: the line drawn in chunks, in turn across the
probes, within a time budget, and the counts turned into a leave rate with its exact
interval, test and power, and an effective temperature with its interval."""
from __future__ import annotations

import math
import time

import torch
from scipy import stats as sps

from mdmlib.audit.line import run_line
from mdmlib.audit.probes import Probe, mu_of
from mdmlib.audit.public_lines import line_input
from mdmlib.audit.results import CONFIDENCE, ProbeResult
from mdmlib.infra.progress import progress
from mdmlib.stats.intervals import clopper_pearson, detectable_bias
from mdmlib.stats.metrics import mean_log_mu, temperature_of_mean
from mdmlib.stats.significance import binomial_power, chi_square_test


def _monte_carlo(f, with_generator, takes, dtype, probes, targets, device, seed, budget, chunk_elems, show) -> tuple[list, float, bool]:
    """Draw each probe's target sample in chunks, in turn, until done or out of time.
    Returns per-probe (n, leaves, token counts), the time spent, and whether it ran out."""
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = [line_input(p.categories(), takes, dtype).to(device) for p in probes]
    state = [[0, 0, torch.zeros(p.classes, dtype=torch.int64)] for p in probes]
    start = time.monotonic()
    out_of_time = False
    with progress(total=sum(targets), desc="audit", unit="draw", unit_scale=True, show=show) as bar:
        while True:
            todo = [i for i, p in enumerate(probes) if state[i][0] < targets[i]]
            if not todo:
                break
            for i in todo:
                if time.monotonic() - start > budget:
                    out_of_time = True
                    break
                m = min(targets[i] - state[i][0], max(1, chunk_elems // probes[i].classes))
                idx = run_line(f, rows[i].expand(m, -1).clone(), generator, with_generator)
                counts = torch.bincount(idx.cpu(), minlength=probes[i].classes)
                state[i][0] += m
                state[i][1] += m - int(counts[probes[i].mask_index])
                state[i][2] += counts
                bar.update(m)
            if out_of_time:
                break
    return state, time.monotonic() - start, out_of_time


def _mc_result(probe: Probe, n: int, leaves: int, counts: torch.Tensor, target: int, bias: float, power: float) -> ProbeResult:
    h = probe.h
    if n == 0:
        return ProbeResult(probe, "monte carlo", math.nan, (0.0, 1.0), target_n=target, power=0.0, detectable=math.inf)
    r = ProbeResult(probe, "monte carlo", leaves / n, clopper_pearson(leaves, n, CONFIDENCE), n=n, leaves=leaves, target_n=target)
    r.p_value = chi_square_test([leaves, n - leaves], [h, 1 - h]).p_value
    r.power = min(binomial_power(h, h * (1 - bias), n), binomial_power(h, min(1.0, h * (1 + bias)), n))
    r.detectable = detectable_bias(h, n, power)
    r.token_counts = counts
    tokens = counts[probe.token_slice()].to(torch.float64)
    if probe.mu != "flat" and tokens.sum() >= 2:
        log_mu = torch.log(mu_of(probe.mu, probe.vocab))
        k = float(tokens.sum())
        mean = float((tokens * log_mu).sum() / k)
        exact_mean = mean_log_mu(log_mu, 1.0)
        if probe.mu == "peaked":  # two values of log mu: the mean is the share of the peak, with an exact interval
            top = int(tokens[0])
            lo_share, hi_share = clopper_pearson(top, int(k), CONFIDENCE)
            ends = [float(s * log_mu[0] + (1 - s) * log_mu[1]) for s in (hi_share, lo_share)]
            share = float(mu_of("peaked", probe.vocab)[0])
            se = math.sqrt(share * (1 - share) / k) * float(log_mu[0] - log_mu[1])  # under T = 1
        else:
            sd = math.sqrt(max(float((tokens * (log_mu - mean) ** 2).sum() / (k - 1)), 0.0))
            se = sd / math.sqrt(k)
            z99 = float(sps.norm.isf((1 - CONFIDENCE) / 2))
            ends = [mean + z99 * se, mean - z99 * se]
        r.temperature = temperature_of_mean(log_mu, mean)
        r.temperature_ci = (temperature_of_mean(log_mu, ends[0]), temperature_of_mean(log_mu, ends[1]))
        r.temperature_z = (mean - exact_mean) / se if se > 0 else math.nan
    return r
