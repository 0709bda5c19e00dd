"""Audit a categorical sampling line in the masked-diffusion regime.

Give it a function f(probs_or_logits, generator) -> indices (your line, unchanged; a
function of the probabilities alone is run on the global generator, seeded). It feeds
the line one masked-diffusion step: a mask with probability 1 - h and tokens h * mu,
for several step sizes h, vocabularies up to GPT-2's 50,257, and mu flat, Zipf or
peaked, with the mask placed last or first. For each probe it reports

- how often the line leaves the mask, against the exact rate h: measured with a 99%
  confidence interval, an exact binomial test and its power against a relative bias
  (10% by default), or, when the line declares its exact law (`public_lines.sampling_line`),
  that law itself;
- the token it draws when it leaves: the effective temperature T at which
  softmax(log mu / T) gives the drawn tokens the same mean log mu (the maximum-likelihood
  temperature), with its interval;
- the effective truncation that best explains the leave rates: the eps of the closed
  form (`truncation.truncated_law`) or a threshold below which tokens are dropped, each
  with its 99% likelihood interval, and optionally the grid law of a known line;
- a verdict in words.

Monte Carlo sample sizes come from the power wanted; draws are made in chunks, in turn
across the probes, with a progress bar, until every probe has its sample or the time
budget is spent (the report then says what power was reached). The chunks' sizes depend
only on the audit's arguments, so the draws are the same on every run while the budget
holds; a chunk predicted (from the call before) not to fit in what is left is cut to fit,
so the budget holds within the error of one such prediction (`monte_carlo`), besides two
timed calls on 3 rows and the fits. A line whose call on 3 rows takes more than 1/20 of
the budget is refused, and so is a probe whose memory (computed before anything is
allocated: `memory`) exceeds the memory budget (MemoryError). With `kept`, the Monte
Carlo's progress is kept as it goes and a rerun of the same audit resumes from it.

This module runs the audit (`audit`); its pieces live beside it: probes (the inputs),
line (running the line), memory (what it will hold), exact_path and monte_carlo (the two
ways a probe's result is found), results (that result), fit (effective truncation), report
(the report, the verdict and the summary of several lines), cli (the command line).

Command line (`mdmlib.audit.cli`):
  python -m mdmlib.audit package.module:function [--device cuda] [--budget 60s] [--logits]
  python -m mdmlib.audit path/to/file.py:function ...
"""
from __future__ import annotations

import hashlib
import inspect
import math
import time

import torch

from mdmlib.audit.exact_path import _exact_result
from mdmlib.audit.fit import fit_eps, fit_threshold, invert_eps
from mdmlib.audit.line import AuditError, _takes_generator, run_line
from mdmlib.audit.memory import check_memory
from mdmlib.audit.monte_carlo import CHUNKS_PER_BUDGET, KeptProgress, _mc_result, _monte_carlo
from mdmlib.audit.probes import Probe, default_probes
from mdmlib.audit.public_lines import LINES, LawUnavailable, LineSpec, line_input
from mdmlib.audit.report import AuditReport
from mdmlib.audit.results import ProbeResult
from mdmlib.infra.checks import whole_number
from mdmlib.infra.fingerprint import code_fingerprint
from mdmlib.infra.provenance import environment
from mdmlib.infra.results import KeptParts
from mdmlib.precision.formats import as_dtype
from mdmlib.stats.intervals import sample_size
from mdmlib.stats.significance import binomial_power, chi_square_test


def _spec(f, takes, dtype) -> tuple[str, torch.dtype, LineSpec | None]:
    spec = getattr(f, "sampling_line", None)
    takes = takes or (spec.takes if spec else "probs")
    dtype = as_dtype(dtype if dtype is not None else (spec.dtype if spec else torch.float32))
    return takes, dtype, spec


def line_name(f) -> str:
    """The name an audit of `f` reports (its declaration's, else the function's)."""
    spec = getattr(f, "sampling_line", None)
    return spec.name if spec else getattr(f, "__name__", "line")


def _source_digest(f) -> str | None:
    """SHA-256 of the file that defines `f` (what a kept Monte Carlo is tied to); None when unknown."""
    try:
        return hashlib.sha256(open(inspect.getsourcefile(f), "rb").read()).hexdigest()
    except (TypeError, OSError):
        return None


def audit(
    f,
    *,
    probes: list[Probe] | None = None,
    takes: str | None = None,
    dtype=None,
    device: str = "cpu",
    budget: float = 60.0,
    power: float = 0.99,
    bias: float = 0.1,
    use_law: bool = True,
    confirm: list[Probe] | None = None,
    compare: tuple = (),
    seed: int = 0,
    chunk_elems: int | None = None,
    show_progress: bool = True,
    name: str | None = None,
    kept: KeptParts | None = None,
) -> AuditReport:
    """Audit the sampling line f(probs_or_logits, generator) -> indices (or f(probs)).

    takes: "probs" or "logits" (default: the line's declaration, else "probs"); dtype: what
    the inputs are rounded to (default: declared, else float32). A declared exact law is
    used when `use_law`; `confirm` probes then test it by Monte Carlo. Otherwise each
    probe gets the Monte Carlo sample that detects a relative `bias` of its leave rate with
    probability `power`, within `budget` seconds in all. `compare` lists lines with a
    declared law (names in `public_lines.LINES`, or functions declared with
    `public_lines.sampling_line`) whose exact leave rates on the CPU's generator are
    checked against the measurements. chunk_elems: the most inputs per call of the line
    (default 2^22 on a CPU, 2^26 on a GPU, where small calls waste the device); a probe's
    chunks grow to it from 1,024 rows, doubling what it has drawn.
    kept: where the Monte Carlo's progress is kept as it goes (the command line's
    OUT/audit_<name>.json.partial/); a rerun with the same line (its file's SHA-256),
    probes and parameters resumes from it."""
    takes, dtype, spec = _spec(f, takes, dtype)
    device = str(torch.device(device))
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    if not budget > 0:
        raise ValueError(f"the time budget must be positive, got {budget}")
    probes = list(default_probes() if probes is None else probes)
    if not probes:
        raise ValueError("no probes to audit")
    known = {}
    for c in compare:
        line = LINES.get(c) if isinstance(c, str) else c
        spec_c = getattr(line, "sampling_line", None)
        if spec_c is None or spec_c.law is None:
            raise ValueError(f"unknown line {c!r} to compare with: give a line with a declared law, or one of {sorted(LINES)}")
        known[spec_c.name] = spec_c.law
    name = name or line_name(f)
    chunk_elems = whole_number(chunk_elems, "chunk_elems") if chunk_elems is not None else (1 << 26 if torch.device(device).type == "cuda" else 1 << 22)
    check_memory(probes + list(confirm or []), chunk_elems, dtype, device)
    with_generator = _takes_generator(f)
    # check the contract once on a small batch before anything long
    small = line_input(probes[0].categories(), takes, dtype).to(device).expand(3, -1).clone()
    run_line(f, small, torch.Generator(device=device).manual_seed(seed), with_generator)

    law_fn = spec.law if (use_law and spec is not None and spec.law is not None) else None
    source = _source_digest(f)
    run_key = {"line": name, "source": source, "takes": takes, "dtype": str(dtype), "device": device, "seed": seed, "bias": bias, "power": power,
               "chunk_elems": chunk_elems, "code": code_fingerprint(__name__), "environment": environment()}

    def monte_carlo(part: str, probed: list[Probe], targets: list[int]):
        keep = None  # a line of unknown source cannot be matched to what was kept
        if kept is not None and source is not None:
            keep = KeptProgress(kept, part, {**run_key, "probes": [p.key() for p in probed]})
        return _monte_carlo(f, with_generator, takes, dtype, probed, targets, device, seed, budget, chunk_elems, show_progress,
                            seconds_per_input=_seconds_per_input(f, small, seed, with_generator, budget), keep=keep)

    results: list[ProbeResult] = []
    if law_fn is not None:
        try:
            results = [_exact_result(law_fn, p, device, takes, dtype) for p in probes]
        except LawUnavailable:
            law_fn = None
    seconds, out_of_time, confirmed = 0.0, False, None
    if law_fn is None:
        targets = [sample_size(p.h, bias, power) for p in probes]
        state, seconds, out_of_time = monte_carlo("monte_carlo", probes, targets)
        results = [_mc_result(p, n, k, counts, t, bias, power) for p, (n, k, counts), t in zip(probes, state, targets)]
    elif confirm:
        targets = [sample_size(p.h, bias, power) for p in confirm]
        state, seconds, out_of_time = monte_carlo("confirm", confirm, targets)
        confirmed = [_mc_result(p, n, k, counts, t, bias, power) for p, (n, k, counts), t in zip(confirm, state, targets)]
        for r in confirmed:
            _compare(r, "declared", _exact_result(law_fn, r.probe, device, takes, dtype).leave, power)
    for r in results:
        if r.method == "exact law" or r.n > 0:
            r.eps_fit = _eps_of(r)
        for c, law in known.items():
            if r.method == "monte carlo" and r.n > 0:
                _compare(r, c, _exact_result(law, r.probe, "cpu").leave, power)
    report = AuditReport(name, takes, str(dtype).replace("torch.", ""), device, results, bias, power, budget, seconds, out_of_time,
                         fit_eps(results), fit_threshold(results), confirmed, law_fn is not None)
    return report


def _seconds_per_input(f, small: torch.Tensor, seed: int, with_generator: bool, budget: float) -> float:
    """The line's time per input element, from a second call on the 3 rows of the contract
    check (the first may pay for warming up); a line whose one call on them takes more than a
    chunk's share of the budget is refused."""
    start = time.monotonic()
    run_line(f, small, torch.Generator(device=small.device).manual_seed(seed), with_generator)
    seconds = time.monotonic() - start
    if seconds > budget / CHUNKS_PER_BUDGET:
        raise AuditError(f"one call of the sampling function on 3 rows of {small.shape[1]:,} classes takes {seconds:.3g} s, more than one chunk "
                         f"of the {budget:g} s budget may take (1/{CHUNKS_PER_BUDGET} of it, {budget / CHUNKS_PER_BUDGET:.3g} s): "
                         f"raise the budget to at least {math.ceil(seconds * CHUNKS_PER_BUDGET)} s, or make the line faster")
    return seconds / small.numel()


def _eps_of(r: ProbeResult) -> tuple[float, float, float]:
    """eps of the closed form at the measured leave rate and at its interval's ends."""
    lo, hi = r.leave_ci
    return invert_eps(r.probe, r.leave), invert_eps(r.probe, hi), invert_eps(r.probe, lo)


def _compare(r: ProbeResult, name: str, leave: float, power: float) -> None:
    """Is the measured leave count consistent with a law's leave rate? z and exact binomial
    p, and the power of that test against the exact rate h (or, when the law is exact,
    against a 10% bias)."""
    n, k = r.n, r.leaves
    z = (k - n * leave) / math.sqrt(n * leave * (1 - leave)) if 0 < leave < 1 else (math.inf if k != n * leave else 0.0)
    p = chi_square_test([k, n - k], [leave, 1 - leave]).p_value if 0 < leave < 1 else float(k == round(n * leave))
    h = r.probe.h
    alternative = h if abs(leave / h - 1) > 1e-3 else h * 0.9
    pw = binomial_power(leave, alternative, n)
    r.compared[name] = {"leave": leave, "inside": r.leave_ci[0] <= leave <= r.leave_ci[1], "z": z, "p_value": p, "power": pw,
                        "alternative": f"a leave rate of {alternative / h:.3g} h"}
