"""A probe's result measured by Monte Carlo: the line drawn in chunks, in turn across the
probes, within a time budget, and the counts turned into a leave rate with its exact
interval, test and power, and an effective temperature with its interval.

Chunks double the rows a probe has drawn, from FIRST_ROWS up to chunk_elems inputs, so that
their sizes, and so the draws, depend on nothing but the audit's arguments: the same on every
run and machine while the budget holds. Before each chunk its time is predicted from the time
per input of the call before (before the first chunk, from a timed call on 3 rows); a chunk
predicted not to fit in what is left of the budget is cut to fit, and when not one row fits
the run stops and says so. The budget so holds within the error of one such prediction: for a
line whose time is proportional to its input, a few percent (tests/audit/test_monte_carlo.py).
A line whose call on 3 rows already takes more than 1/CHUNKS_PER_BUDGET of the budget is
refused before the run (audit.core). The progress can be kept (`KeptProgress`) at the end
of each round and on an interrupt, and a rerun of the same audit resumes from it."""
from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass

import torch
from scipy import stats as sps

from mdmlib.audit.line import run_line
from mdmlib.audit.probes import Probe, mu_of
from mdmlib.audit.public_lines import line_input
from mdmlib.audit.results import CONFIDENCE, ProbeResult
from mdmlib.infra.progress import progress
from mdmlib.infra.results import KeptParts
from mdmlib.stats.intervals import clopper_pearson, detectable_bias
from mdmlib.stats.metrics import mean_log_mu, temperature_of_mean
from mdmlib.stats.significance import binomial_power, chi_square_test

CHUNKS_PER_BUDGET = 20  # a line whose 3-row call takes more than this share of the budget is refused
FIRST_ROWS = 1024  # rows of a probe's first chunk; each later chunk doubles what it has drawn
SAVE_EVERY = 10.0  # seconds between two saves of the progress


@dataclass
class KeptProgress:
    """Where the Monte Carlo's progress is kept: part `part` of `kept`, under the run's key `run`."""

    kept: KeptParts
    part: str
    run: dict

    def save(self, state: list, generator: torch.Generator, seconds: float) -> None:
        self.kept.put(self.part, self.run, {"n": [s[0] for s in state], "leaves": [s[1] for s in state], "counts": [s[2] for s in state],
                                            "generator": base64.b64encode(generator.get_state().numpy().tobytes()).decode(), "seconds": seconds})

    def load(self, probes: list[Probe], generator: torch.Generator) -> tuple[list, float] | None:
        """The kept state (per-probe n, leaves, counts) and seconds spent, the generator set
        where it was; None when nothing usable is kept."""
        kept = self.kept.get(self.part, self.run)
        if kept is None:
            return None
        state = [[int(n), int(k), torch.tensor(c, dtype=torch.int64)] for n, k, c in zip(kept["n"], kept["leaves"], kept["counts"])]
        if len(state) != len(probes) or any(s[2].shape != (p.classes,) for s, p in zip(state, probes)):
            return None
        generator.set_state(torch.frombuffer(bytearray(base64.b64decode(kept["generator"])), dtype=torch.uint8))
        return state, float(kept["seconds"])


def _monte_carlo(f, with_generator, takes, dtype, probes, targets, device, seed, budget, chunk_elems, show, *,
                 seconds_per_input: float = 0.0, keep: KeptProgress | None = None) -> tuple[list, float, bool]:
    """Draw each probe's target sample in chunks, in turn, until done or out of time.
    Returns per-probe (n, leaves, token counts), the time spent, and whether it ran out.
    `seconds_per_input`: a first estimate of the line's time per input element."""
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = [line_input(p.categories(), takes, dtype).to(device) for p in probes]
    state = [[0, 0, torch.zeros(p.classes, dtype=torch.int64)] for p in probes]
    spent = 0.0
    resumed = keep.load(probes, generator) if keep is not None else None
    if resumed is not None:
        state, spent = resumed
        done = sum(s[0] >= t for s, t in zip(state, targets))
        print(f"resuming the Monte Carlo kept in {keep.kept.folder}: {done} of {len(probes)} probes finished, "
              f"{sum(s[0] for s in state):,} draws and {spent:.0f} s of the budget reused", flush=True)
    start = time.monotonic() - spent
    out_of_time, saved_at = False, time.monotonic()
    snapshot = _snapshot(state, generator) if keep is not None else None
    try:
        with progress(total=sum(targets), initial=min(sum(s[0] for s in state), sum(targets)), desc="audit", unit="draw", unit_scale=True, show=show) as bar:
            while True:
                todo = [i for i, p in enumerate(probes) if state[i][0] < targets[i]]
                if not todo:
                    break
                for i in todo:
                    left = budget - (time.monotonic() - start)
                    row_seconds = seconds_per_input * probes[i].classes
                    if left <= 0 or row_seconds > left:
                        out_of_time = True
                        break
                    # The chunk's size follows from the rows drawn so far (it doubles them, from
                    # FIRST_ROWS up to chunk_elems inputs), never from the clock, so the draws are the
                    # same on every run; only a chunk predicted not to fit in what is left is cut.
                    n = state[i][0]
                    m = min(targets[i] - n, max(1, chunk_elems // probes[i].classes), max(FIRST_ROWS, n))
                    if m * row_seconds > left:
                        m = int(left / row_seconds)
                    called = time.monotonic()
                    idx = run_line(f, rows[i].expand(m, -1).clone(), generator, with_generator)
                    seconds_per_input = (time.monotonic() - called) / (m * probes[i].classes)
                    counts = torch.bincount(idx.cpu(), minlength=probes[i].classes)
                    state[i][0] += m
                    state[i][1] += m - int(counts[probes[i].mask_index])
                    state[i][2] += counts
                    bar.update(m)
                if keep is not None:  # a round ended: the progress so far is consistent
                    snapshot = _snapshot(state, generator)
                    if time.monotonic() - saved_at > SAVE_EVERY:
                        keep.save(*snapshot, time.monotonic() - start)
                        saved_at = time.monotonic()
                if out_of_time:
                    break
    except BaseException:  # an interrupt or a failing line: what the last full round drew is kept
        if keep is not None:
            keep.save(*snapshot, time.monotonic() - start)
        raise
    seconds = time.monotonic() - start
    if keep is not None:
        keep.save(state, generator, seconds)
    return state, seconds, out_of_time


def _snapshot(state: list, generator: torch.Generator) -> tuple[list, torch.Generator]:
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return [[n, k, counts.clone()] for n, k, counts in state], copy


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
