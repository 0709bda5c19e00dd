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
budget is spent (the report then says what power was reached).

Command line:
  python -m mdmlib.audit.core package.module:function [--device cuda] [--budget 60s] [--logits]
  python -m mdmlib.audit.core path/to/file.py:function ...
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy import stats as sps

from mdmlib.precision.argmax_law import one_thread
from mdmlib.precision.formats import as_dtype
from mdmlib.infra.progress import progress
from mdmlib.audit.public_lines import LINES, LawUnavailable, LineSpec, line_input
from mdmlib.infra.results import cached, save_figure, save_json
from mdmlib.stats.significance import ALPHA, binomial_power, chi_square_test
from mdmlib.precision.truncation import truncated_law

MUS = ("flat", "zipf", "peaked")
GPT2_VOCAB = 50_257
ZIPF_EXPONENT = 1.1
PEAK = 0.9
CONFIDENCE = 0.99  # of every interval reported
BIASED_P = 1e-6  # "differs": the project's threshold for a difference
EPS_GRID = 2.0 ** -torch.arange(8, 60.25, 0.5, dtype=torch.float64)  # 2^-8 ... 2^-60, half-binade steps, for the closed-form fit


class AuditError(ValueError):
    """The sampling function broke its contract (shape, range, dtype) or raised."""


# ---- probes ------------------------------------------------------------------------------

def mu_of(name: str, vocab: int) -> torch.Tensor:
    """The denoiser output of a probe: flat, Zipf (v^-1.1) or peaked (0.9 on token 0)."""
    if name == "flat":
        return torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
    if name == "zipf":
        w = torch.arange(1, vocab + 1, dtype=torch.float64) ** -ZIPF_EXPONENT
        return w / w.sum()
    if name == "peaked":
        if vocab < 2:
            raise ValueError("a peaked mu needs at least two tokens")
        return torch.cat([torch.tensor([PEAK], dtype=torch.float64), torch.full((vocab - 1,), (1 - PEAK) / (vocab - 1), dtype=torch.float64)])
    raise ValueError(f"unknown mu {name!r}: expected one of {MUS}")


@dataclass(frozen=True)
class Probe:
    """One masked-diffusion step: the mask with probability 1 - h, tokens h * mu."""

    mu: str
    h: float
    vocab: int
    mask: str = "last"

    def __post_init__(self):
        if self.mu not in MUS:
            raise ValueError(f"unknown mu {self.mu!r}: expected one of {MUS}")
        if not 0.0 < self.h < 1.0:
            raise ValueError(f"h must lie in (0, 1), got {self.h}")
        if not isinstance(self.vocab, int) or self.vocab < 2:
            raise ValueError(f"the vocabulary needs at least 2 tokens, got {self.vocab!r}")
        if self.mask not in ("last", "first"):
            raise ValueError(f"the mask goes 'last' or 'first', got {self.mask!r}")

    @property
    def mask_index(self) -> int:
        return self.vocab if self.mask == "last" else 0

    @property
    def classes(self) -> int:
        return self.vocab + 1

    def categories(self) -> torch.Tensor:
        tokens = self.h * mu_of(self.mu, self.vocab)
        mask = torch.tensor([1.0 - self.h], dtype=torch.float64)
        return torch.cat([tokens, mask] if self.mask == "last" else [mask, tokens])

    def token_slice(self) -> slice:
        return slice(0, self.vocab) if self.mask == "last" else slice(1, self.vocab + 1)

    def blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Runs of equal classes: (probabilities, copies, log mu of each block, mask block)."""
        mu = mu_of(self.mu, self.vocab)
        values, copies = torch.unique_consecutive(mu, return_counts=True)
        log_mu = torch.log(values)
        mask_p = torch.tensor([1.0 - self.h], dtype=torch.float64)
        if self.mask == "last":
            return torch.cat([self.h * values, mask_p]), torch.cat([copies, torch.ones(1, dtype=torch.int64)]), torch.cat([log_mu, torch.zeros(1, dtype=torch.float64)]), values.numel()
        return torch.cat([mask_p, self.h * values]), torch.cat([torch.ones(1, dtype=torch.int64), copies]), torch.cat([torch.zeros(1, dtype=torch.float64), log_mu]), 0

    def label(self) -> str:
        return f"{self.mu:6s} h={self.h:.0e} V={self.vocab:>6,} mask {self.mask}"

    def key(self) -> dict:
        return asdict(self)


def default_probes() -> list[Probe]:
    """Step sizes 1e-2, 1e-3, 1e-4; vocabularies 1,000 and GPT-2's; flat, Zipf, peaked mu;
    the mask last, and also first for the 1,000-token Zipf probes."""
    probes = [Probe(mu, h, V) for V in (1_000, GPT2_VOCAB) for h in (1e-2, 1e-3, 1e-4) for mu in MUS]
    return probes + [Probe("zipf", h, 1_000, "first") for h in (1e-2, 1e-3, 1e-4)]


# ---- running a line -----------------------------------------------------------------------

def _takes_generator(f) -> bool:
    """Whether f takes a second (generator) argument; a function of the probabilities alone
    draws from the global generator."""
    try:
        params = [p for p in inspect.signature(f).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) >= 2


def _call(f, with_generator: bool, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if with_generator:
        return f(x, generator)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=x.device.type if devices else "cuda"):
        torch.manual_seed(seed)
        return f(x)


def run_line(f, x: torch.Tensor, generator: torch.Generator, with_generator: bool | None = None) -> torch.Tensor:
    """f on a batch x (m, K); its output checked: m integer indices in [0, K)."""
    with_generator = _takes_generator(f) if with_generator is None else with_generator
    m, K = x.shape
    try:
        out = _call(f, with_generator, x, generator)
    except AuditError:
        raise
    except Exception as e:  # the user's code: any failure is reported with what it was given
        raise AuditError(f"the sampling function raised {type(e).__name__}: {e} (input: {tuple(x.shape)} {x.dtype} on {x.device})") from e
    if not isinstance(out, torch.Tensor):
        raise AuditError(f"the sampling function returned {type(out).__name__}, expected a tensor of {m} class indices")
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise AuditError(f"the sampling function returned dtype {out.dtype}, expected integer class indices")
    if tuple(out.shape) != (m,):
        hint = " (torch.multinomial returns (m, 1): squeeze the last dimension)" if tuple(out.shape) == (m, 1) else ""
        raise AuditError(f"the sampling function returned shape {tuple(out.shape)} for {m} rows of {K} classes, expected ({m},){hint}")
    if m and (int(out.min()) < 0 or int(out.max()) >= K):
        raise AuditError(f"the sampling function returned indices in [{int(out.min())}, {int(out.max())}], outside [0, {K - 1}] for {K} classes")
    return out


# ---- statistics ------------------------------------------------------------------------

def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion, from scipy."""
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def sample_size(h: float, bias: float, power: float, alpha: float = ALPHA) -> int:
    """The smallest n at which the exact binomial test of rate h detects a leave rate
    (1 - bias) h, and (1 + bias) h, each with probability >= power."""
    if not 0 < bias <= 1 or not 0 < power < 1:
        raise ValueError(f"bias must lie in (0, 1] and power in (0, 1), got {bias} and {power}")
    z = sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power)
    n = max(16, int(z * z * h * (1 - h) / (bias * h) ** 2 * 0.9))
    while min(binomial_power(h, h * (1 - bias), n, alpha), binomial_power(h, min(1.0, h * (1 + bias)), n, alpha)) < power:
        n = int(n * 1.05) + 1
    return n


def detectable_bias(h: float, n: int, power: float, alpha: float = ALPHA) -> float:
    """The smallest relative bias b such that leave rates (1 - b) h and (1 + b) h are both
    detected with probability >= power at n draws (inf when none is)."""
    if n < 1:
        return math.inf

    def ok(b: float) -> bool:
        return min(binomial_power(h, max(0.0, h * (1 - b)), n, alpha), binomial_power(h, min(1.0, h * (1 + b)), n, alpha)) >= power

    hi = 1.0
    while not ok(hi):
        hi *= 2
        if hi > 1 / h:
            return math.inf
    lo = 0.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _mean_log_mu(log_mu, T: float) -> float:
    """E[log mu] under softmax(log mu / T); in numpy, as it runs many times on one vector."""
    x = np.asarray(log_mu, dtype=np.float64)
    w = np.exp((x - x.max()) / T)
    return float((w * x).sum() / w.sum())


def temperature_of_mean(log_mu: torch.Tensor, mean: float) -> float:
    """T at which softmax(log mu / T) has E[log mu] = mean (the maximum-likelihood
    temperature of draws with that mean); E[log mu] falls as T rises."""
    lo, hi = math.log(1e-3), math.log(1e3)
    if mean >= float(log_mu.max()) - 1e-12:
        return 0.0  # only the likeliest tokens: the limit T -> 0
    if mean >= _mean_log_mu(log_mu, math.exp(lo)):
        return math.exp(lo)
    if mean <= _mean_log_mu(log_mu, math.exp(hi)):
        return math.exp(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _mean_log_mu(log_mu, math.exp(mid)) > mean else (lo, mid)
    return math.exp(0.5 * (lo + hi))


# ---- per-probe results ---------------------------------------------------------------

@dataclass
class ProbeResult:
    probe: Probe
    method: str  # "exact law" or "monte carlo"
    leave: float  # P(leave the mask), measured or from the law
    leave_ci: tuple[float, float]
    n: int = 0  # Monte Carlo draws
    leaves: int = 0
    target_n: int = 0
    p_value: float | None = None  # exact binomial test against h
    power: float | None = None  # against (1 - bias) h, at the n reached
    detectable: float | None = None  # smallest relative bias detectable at the power asked
    temperature: float | None = None
    temperature_ci: tuple[float, float] | None = None
    temperature_z: float | None = None  # (mean log mu - its exact value) / SE
    eps_fit: tuple[float, float, float] | None = None  # closed-form eps: best, low, high
    law_how: str = ""
    unresolved: float = 0.0
    compared: dict = field(default_factory=dict)  # name -> {"leave", "inside", "z"}
    input_leave: float | None = None  # exact leave rate of the input as rounded to the line's dtype
    token_counts: torch.Tensor | None = None

    @property
    def ratio(self) -> float:
        return self.leave / self.probe.h

    @property
    def ratio_ci(self) -> tuple[float, float]:
        return self.leave_ci[0] / self.probe.h, self.leave_ci[1] / self.probe.h

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("token_counts", "probe")}
        out["probe"] = self.probe.key()
        out["ratio"], out["ratio_ci"] = self.ratio, list(self.ratio_ci)
        return _finite(out)


# ---- the exact-law path ----------------------------------------------------------------

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


# ---- the Monte Carlo path --------------------------------------------------------------

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
    r = ProbeResult(probe, "monte carlo", leaves / n, clopper_pearson(leaves, n), n=n, leaves=leaves, target_n=target)
    r.p_value = chi_square_test([leaves, n - leaves], [h, 1 - h]).p_value
    r.power = min(binomial_power(h, h * (1 - bias), n), binomial_power(h, min(1.0, h * (1 + bias)), n))
    r.detectable = detectable_bias(h, n, power)
    r.token_counts = counts
    tokens = counts[probe.token_slice()].to(torch.float64)
    if probe.mu != "flat" and tokens.sum() >= 2:
        log_mu = torch.log(mu_of(probe.mu, probe.vocab))
        k = float(tokens.sum())
        mean = float((tokens * log_mu).sum() / k)
        exact_mean = _mean_log_mu(log_mu, 1.0)
        if probe.mu == "peaked":  # two values of log mu: the mean is the share of the peak, with an exact interval
            top = int(tokens[0])
            lo_share, hi_share = clopper_pearson(top, int(k))
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


# ---- effective truncation ----------------------------------------------------------------

@lru_cache(maxsize=256)
def _eps_curve_cached(probe: Probe) -> tuple[float, ...]:
    def compute() -> dict:
        p, copies, _, mask_block = probe.blocks()
        full = torch.repeat_interleave(p, copies)
        with one_thread():  # many mid-sized operations: see argmax_law.one_thread
            return {"leave": [1.0 - float(truncated_law(full, eps=float(e))[probe.mask_index]) for e in EPS_GRID]}

    return tuple(cached("audit_eps_curve", {"probe": probe.key(), "eps": EPS_GRID}, compute)["leave"])


def eps_curve(probe: Probe) -> torch.Tensor:
    """P(leave) of the closed form at each eps of EPS_GRID (2^-8 ... 2^-60)."""
    return torch.tensor(_eps_curve_cached(probe), dtype=torch.float64)


def invert_eps(probe: Probe, leave: float) -> float:
    """The eps at which the closed form leaves the mask at `leave` (log-log interpolation on
    EPS_GRID; 0 when the leave rate is at least the closed form's at 2^-60, inf when below
    its rate at 2^-8)."""
    curve = eps_curve(probe)  # falls as eps grows
    if not leave > 0:
        return math.inf
    if leave >= curve[-1]:
        return 0.0
    if leave <= curve[0]:
        return math.inf
    i = int(torch.nonzero(curve < leave).max())  # curve[i] < leave <= curve[i + 1]
    x0, x1 = math.log(EPS_GRID[i]), math.log(EPS_GRID[i + 1])
    y0, y1 = math.log(max(curve[i], 1e-300)), math.log(curve[i + 1])
    return math.exp(x0 + (math.log(leave) - y0) * (x1 - x0) / (y1 - y0))


def _binomial_ll(k: np.ndarray, n: np.ndarray, r: np.ndarray) -> float:
    r = np.clip(r, 1e-300, 1 - 1e-16)
    return float((k * np.log(r) + (n - k) * np.log1p(-r)).sum())


def _likelihood_interval(lls: np.ndarray, confidence: float) -> tuple[int, list[int]]:
    best = int(np.argmax(lls))
    inside = [i for i in range(len(lls)) if 2 * (lls[best] - lls[i]) <= sps.chi2.ppf(confidence, 1)]
    return best, inside


def fit_eps(results: list[ProbeResult], confidence: float = CONFIDENCE) -> dict | None:
    """The closed-form eps that best explains the measured leave counts (maximum likelihood
    on EPS_GRID, with exact sampling as eps = 0), its likelihood interval at `confidence`
    and the goodness of fit (deviance against chi-square)."""
    mc = [r for r in results if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return None
    k = np.array([r.leaves for r in mc], dtype=np.float64)
    n = np.array([r.n for r in mc], dtype=np.float64)
    curves = np.stack([np.concatenate([[r.probe.h], eps_curve(r.probe).numpy()[::-1]]) for r in mc], 1)  # rows: eps = 0, 2^-60 ... 2^-8
    eps = np.concatenate([[0.0], EPS_GRID.numpy()[::-1]])
    lls = np.array([_binomial_ll(k, n, row) for row in curves])
    best, inside = _likelihood_interval(lls, confidence)
    return {"eps": float(eps[best]), "low": float(eps[min(inside)]), "high": float(eps[max(inside)]),
            "deviance_p": _deviance_p(k, n, curves[best]), "grid": "eps in {0} and 2^-60 ... 2^-8"}


def _deviance_p(k: np.ndarray, n: np.ndarray, r: np.ndarray) -> float:
    sat = _binomial_ll(k, n, np.where(n > 0, k / np.maximum(n, 1), 0.5))
    dev = 2 * (sat - _binomial_ll(k, n, r))
    return float(sps.chi2.sf(max(dev, 0.0), max(len(k) - 1, 1)))


def fit_threshold(results: list[ProbeResult], confidence: float = CONFIDENCE) -> dict | None:
    """The threshold tau below which tokens are never drawn (their mass going to the rest
    in proportion) that best explains the leave counts, with its likelihood interval at
    `confidence`. A token drawn with probability p rules out every tau > p."""
    mc = [r for r in results if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return None
    token_p = [r.probe.categories()[r.probe.token_slice()] for r in mc]
    candidates = torch.unique(torch.cat(token_p + [torch.zeros(1, dtype=torch.float64)]))  # tau = each token probability, and 0
    drawn = [tp[(r.token_counts[r.probe.token_slice()] > 0)] for tp, r in zip(token_p, mc)]
    lowest_drawn = min((float(d.min()) for d in drawn if d.numel()), default=math.inf)
    k = np.array([r.leaves for r in mc], dtype=np.float64)
    n = np.array([r.n for r in mc], dtype=np.float64)
    rates = []
    for tp, r in zip(token_p, mc):
        s, _ = torch.sort(tp, descending=True)
        kept = torch.cumsum(s, 0)  # kept mass for tau in (s[j+1], s[j]]
        # tokens with p >= tau are kept: number kept = count of s >= tau
        count = torch.searchsorted(-s, -candidates, right=True)
        mass = torch.where(count > 0, kept[(count - 1).clamp(min=0)], torch.zeros_like(candidates))
        rates.append((mass / (mass + (1 - r.probe.h))).numpy())
    rates = np.stack(rates, 1)
    lls = np.array([_binomial_ll(k, n, row) if float(c) <= lowest_drawn else -math.inf for c, row in zip(candidates, rates)])
    best, inside = _likelihood_interval(lls, confidence)
    tau = candidates.numpy()
    lo_i, hi_i = min(inside), max(inside)
    # tau in (tau[i-1], tau[i]] gives the same law as tau[i]: report the open lower end
    return {"tau": float(tau[best]), "low": float(tau[lo_i - 1]) if lo_i > 0 else 0.0, "high": float(tau[hi_i]),
            "deviance_p": _deviance_p(k, n, rates[best]), "lowest_token_drawn": lowest_drawn}


# ---- the report ------------------------------------------------------------------------

@dataclass
class AuditReport:
    name: str
    takes: str
    dtype: str
    device: str
    results: list[ProbeResult]
    bias: float
    power: float
    budget: float
    seconds: float
    out_of_time: bool
    eps_fit: dict | None
    threshold_fit: dict | None
    confirm: list[ProbeResult] | None = None
    declared: bool = False

    @property
    def verdict(self) -> str:
        return verdict(self)

    def table(self) -> str:
        lines = [f"audit of {self.name}: {self.takes} in {self.dtype} on {self.device}"]
        head = f"{'probe':44s} {'leave/exact':>12s} {'99% interval':>19s} {'n':>11s} {'p-value':>9s} {'power':>6s} {'T':>6s} {'eps (closed form)':>18s}"
        lines.append(head)
        for r in self.results:
            p = "" if r.p_value is None else f"{r.p_value:9.2g}"
            pw = "" if r.power is None else f"{r.power:6.3f}"
            T = "" if r.temperature is None else f"{r.temperature:6.3f}" if r.temperature > 0 else "     0"
            eps = "" if r.eps_fit is None else _eps_interval_text(r.eps_fit)
            n = "exact law" if r.method == "exact law" else f"{r.n:,}"
            lo, hi = r.ratio_ci
            lines.append(f"{r.probe.label():44s} {r.ratio:12.4f} {f'[{lo:.4f}, {hi:.4f}]':>19s} {n:>11s} {p:>9s} {pw:>6s} {T:>6s} {eps:>18s}")
        compared = [(r, c, v) for r in self.results for c, v in r.compared.items()]
        if compared:
            lines.append("against the exact laws of known lines (on the CPU's generator):")
            for r, c, v in compared:
                lines.append(f"  {r.probe.label()} {c}: {v['leave'] / r.probe.h:.4f} of exact, "
                             f"{'inside' if v['inside'] else 'outside'} the interval, z = {v['z']:+.2f}, p = {v['p_value']:.2g}, "
                             f"power {v['power']:.3f} against {v['alternative']}")
        if self.confirm:
            lines.append("confirmation of the declared law by Monte Carlo:")
            for r in self.confirm:
                lines.append("  " + _confirm_text(r))
        for fit, label in ((self.eps_fit, "closed-form eps"), (self.threshold_fit, "token threshold tau")):
            if fit:
                key = "eps" if "eps" in fit else "tau"
                lines.append(f"best {label}: {fit[key]:.3g} (99% interval {fit['low']:.3g} .. {fit['high']:.3g}; goodness of fit p = {fit['deviance_p']:.2g})")
        spent = f"{self.seconds:.0f} s of a {self.budget:.0f} s budget" + (" (ran out: the powers above are what was reached)" if self.out_of_time else "")
        lines.append(f"Monte Carlo: {spent}" if any(r.method == "monte carlo" for r in self.results) else "")
        lines.append("verdict: " + self.verdict)
        return "\n".join(line for line in lines if line)

    def to_json(self) -> dict:
        return _finite({"name": self.name, "takes": self.takes, "dtype": self.dtype, "device": self.device, "bias": self.bias,
                "power": self.power, "budget_s": self.budget, "seconds": self.seconds, "out_of_time": self.out_of_time,
                "probes": [r.to_json() for r in self.results], "eps_fit": self.eps_fit, "threshold_fit": self.threshold_fit,
                "confirm": [r.to_json() for r in self.confirm] if self.confirm else None, "verdict": self.verdict})

    def figure(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        colors = {"flat": "tab:blue", "zipf": "tab:orange", "peaked": "tab:green"}
        markers = {1_000: "o", GPT2_VOCAB: "s"}
        for r in self.results:
            c = colors[r.probe.mu]
            m = markers.get(r.probe.vocab, "^")
            x = r.probe.h * (1.08 if r.probe.mask == "first" else 1.0)
            lo, hi = r.ratio_ci
            if math.isfinite(r.ratio):
                axes[0].errorbar([x], [r.ratio], yerr=[[max(r.ratio - lo, 0)], [max(hi - r.ratio, 0)]], fmt=m, color=c,
                                 mfc="none" if r.probe.mask == "first" else c, capsize=3)
            if r.temperature is not None:
                tlo, thi = r.temperature_ci
                axes[1].errorbar([x], [r.temperature], yerr=[[r.temperature - tlo], [thi - r.temperature]], fmt=m, color=c, capsize=3)
        for ax, label in ((axes[0], "P(leave) / h  (exact: 1)"), (axes[1], "effective temperature of the token (exact: 1)")):
            ax.axhline(1.0, color="gray", lw=0.8)
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set_xlabel("step size h")
            ax.set_ylabel(label)
        for mu, c in colors.items():
            axes[0].plot([], [], "o", color=c, label=f"{mu} mu")
        for V, m in markers.items():
            axes[0].plot([], [], m, color="k", mfc="none", label=f"V = {V:,}")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{self.name} ({self.takes}, {self.dtype}, {self.device}): 99% intervals", fontsize=10)
        fig.tight_layout()
        return fig


def _finite(obj):
    """JSON has no inf or NaN: they become None (an interval's open end, an undefined value)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _eps_interval_text(fit) -> str:
    best, lo, hi = fit
    if lo == hi:
        return _eps_text(best)
    if lo == 0:
        return "<= " + _eps_text(hi) if math.isfinite(hi) else "any"
    return f"{_eps_text(lo)} .. {_eps_text(hi)}"


def _eps_text(eps: float) -> str:
    if eps == 0:
        return "none (exact)"
    if not math.isfinite(eps):
        return "beyond 2^-8"
    return f"2^{math.log2(eps):.1f}"


def _confirm_text(r: ProbeResult) -> str:
    law = r.compared.get("declared", {})
    return (f"{r.probe.label()}: {r.leaves:,} leaves in {r.n:,} = {r.ratio:.4f} of exact; declared law {law.get('leave', math.nan) / r.probe.h:.4f}, "
            f"z = {law.get('z', math.nan):+.2f}, power {law.get('power', math.nan):.3f} against {law.get('alternative', '')}")


def verdict(report: AuditReport) -> str:
    """The conclusion in words, from the probes' leave rates and temperatures."""
    res = report.results
    if all(r.method == "exact law" for r in res):
        # the sampler is judged against the categorical law of its input as it holds it
        off = [r for r in res if abs(r.leave - r.input_leave) > 1e-6 * r.input_leave + r.unresolved]
        cold = [r for r in res if r.temperature is not None and abs(r.temperature - 1) > 1e-4]
        if not off and not cold:
            rounding = max(abs(r.input_leave / r.probe.h - 1) for r in res)
            tail = f"; rounding its input to {report.dtype} moves the leave rate by up to {rounding:.1e} of itself" if rounding > 1e-6 else ""
            return ("exact: its exact law leaves the mask at the exact rate of its input (within 1e-6) and draws tokens at "
                    f"temperature 1 at every probe{tail}")
        parts = []
        if off:
            worst = max(off, key=lambda r: abs(math.log(max(r.ratio, 1e-300))))
            where = f"at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,} (exact law)"
            parts.append(f"biased: never leaves the mask {where}" if worst.leave == 0 else
                         f"biased: leaves the mask at {worst.ratio:.3g} of the exact rate {where}")
        if cold:
            worst = min(cold, key=lambda r: (r.probe.mu != "zipf", r.temperature))
            T = "0 (only the likeliest tokens)" if worst.temperature == 0 else f"{worst.temperature:.3f}"
            parts.append(f"draws tokens at an effective temperature of {T} at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,}")
        return "; ".join(parts)
    mc = [r for r in res if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return "no draws were made: raise the time budget"
    biased = [r for r in mc if r.p_value is not None and r.p_value < BIASED_P]
    hot = [r for r in mc if r.temperature_z is not None and math.isfinite(r.temperature_z) and abs(r.temperature_z) > 5]
    if biased or hot:
        parts = []
        if biased:
            worst = max(biased, key=lambda r: abs(math.log(max(r.ratio, 1e-300))))
            lo, hi = worst.ratio_ci
            parts.append(f"biased: leaves the mask at {worst.ratio:.3g} (99% interval {lo:.3g} .. {hi:.3g}) of the exact rate at "
                         f"{worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,} (p = {worst.p_value:.2g})")
        if hot:
            worst = max(hot, key=lambda r: (r.probe.mu == "zipf", abs(r.temperature_z)))
            parts.append(f"draws tokens at an effective temperature of {worst.temperature:.3f} (99% interval {worst.temperature_ci[0]:.3f} .. "
                         f"{worst.temperature_ci[1]:.3f}, z = {worst.temperature_z:+.1f}) at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,}")
        return "; ".join(parts)
    doubtful = [r for r in mc if r.p_value is not None and r.p_value < ALPHA]
    best = min(mc, key=lambda r: r.detectable)
    if not math.isfinite(best.detectable):
        return "inconclusive: the draws made cannot detect even a doubling or a vanishing of the leave rate (raise the time budget)"
    detect = (f"no bias larger than {best.detectable:.1%} of the leave rate detectable at {report.power:.0%} power "
              f"({best.probe.mu} h = {best.probe.h:g}, V = {best.probe.vocab:,}, n = {best.n:,})")
    if doubtful:
        worst = min(doubtful, key=lambda r: r.p_value)
        return f"inconclusive: p = {worst.p_value:.2g} at {worst.probe.label().strip()} (between {BIASED_P:g} and {ALPHA:g}); {detect}"
    return f"exact within the power of the test: {detect}"


# ---- the audit ---------------------------------------------------------------------------

def _spec(f, takes, dtype) -> tuple[str, torch.dtype, LineSpec | None]:
    spec = getattr(f, "sampling_line", None)
    takes = takes or (spec.takes if spec else "probs")
    dtype = as_dtype(dtype if dtype is not None else (spec.dtype if spec else torch.float32))
    return takes, dtype, spec


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
) -> AuditReport:
    """Audit the sampling line f(probs_or_logits, generator) -> indices (or f(probs)).

    takes: "probs" or "logits" (default: the line's declaration, else "probs"); dtype: what
    the inputs are rounded to (default: declared, else float32). A declared exact law is
    used when `use_law`; `confirm` probes then test it by Monte Carlo. Otherwise each
    probe gets the Monte Carlo sample that detects a relative `bias` of its leave rate with
    probability `power`, within `budget` seconds in all. `compare` lists lines with a
    declared law (names in `public_lines.LINES`, or functions declared with
    `public_lines.sampling_line`) whose exact leave rates on the CPU's generator are
    checked against the measurements. chunk_elems: inputs per call of the line (default 2^22 on a CPU, 2^26
    on a GPU, where small calls waste the device)."""
    takes, dtype, spec = _spec(f, takes, dtype)
    device = str(torch.device(device))
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    if budget <= 0:
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
    name = name or (spec.name if spec else getattr(f, "__name__", "line"))
    chunk_elems = chunk_elems or (1 << 26 if torch.device(device).type == "cuda" else 1 << 22)
    with_generator = _takes_generator(f)
    # check the contract once on a small batch before anything long
    run_line(f, line_input(probes[0].categories(), takes, dtype).to(device).expand(3, -1).clone(), torch.Generator(device=device).manual_seed(seed), with_generator)

    law_fn = spec.law if (use_law and spec is not None and spec.law is not None) else None
    results: list[ProbeResult] = []
    if law_fn is not None:
        try:
            results = [_exact_result(law_fn, p, device, takes, dtype) for p in probes]
        except LawUnavailable:
            law_fn = None
    seconds, out_of_time, confirmed = 0.0, False, None
    if law_fn is None:
        targets = [sample_size(p.h, bias, power) for p in probes]
        state, seconds, out_of_time = _monte_carlo(f, with_generator, takes, dtype, probes, targets, device, seed, budget, chunk_elems, show_progress)
        results = [_mc_result(p, n, k, counts, t, bias, power) for p, (n, k, counts), t in zip(probes, state, targets)]
    elif confirm:
        targets = [sample_size(p.h, bias, power) for p in confirm]
        state, seconds, out_of_time = _monte_carlo(f, with_generator, takes, dtype, confirm, targets, device, seed, budget, chunk_elems, show_progress)
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


# ---- several lines side by side ---------------------------------------------------------

def summary_rows(reports: list[AuditReport]) -> list[dict]:
    """One row per audited line: leave/exact and temperature at each probe, with intervals."""
    rows = []
    for rep in reports:
        row = {"line": rep.name, "takes": rep.takes, "dtype": rep.dtype, "verdict": rep.verdict, "probes": []}
        for r in rep.results:
            row["probes"].append({"probe": r.probe.key(), "method": r.method, "how": r.law_how, "ratio": r.ratio, "ratio_ci": list(r.ratio_ci),
                                  "temperature": r.temperature, "temperature_ci": r.temperature_ci, "eps": r.eps_fit, "n": r.n})
        rows.append(_finite(row))
    return rows


def summary_table(reports: list[AuditReport]) -> str:
    """leave/exact at each probe (mask last) and the Zipf temperature, one line per report."""
    probes = [r.probe for r in reports[0].results]
    head = f"{'line':34s} {'input':15s}" + "".join(f" {p.mu[:4] + ' ' + format(p.h, '.0e'):>12s}" for p in probes)
    head += "".join(f" {'T ' + format(p.h, '.0e'):>9s}" for p in probes if p.mu == "zipf")
    lines = [head]
    for rep in reports:
        cells = []
        for r in rep.results:
            lo, hi = r.ratio_ci
            cells.append(f"{r.ratio:12.4f}" if (hi - lo) / 2 < 5e-5 else f"{f'{r.ratio:.4f}±{(hi - lo) / 2:.0e}':>12s}")
        temps = [f"{r.temperature:9.3f}" if r.temperature is not None else f"{'':9s}" for r in rep.results if r.probe.mu == "zipf"]
        lines.append(f"{rep.name:34s} {rep.takes + ' ' + rep.dtype:15s}" + " ".join([""] + cells) + " ".join([""] + temps))
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------

def parse_seconds(text: str) -> float:
    """'60', '60s', '2m', '1h' -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*", str(text))
    if not m:
        raise ValueError(f"cannot read a time budget from {text!r}: write for example 60s, 2m or 1h")
    return float(m.group(1)) * {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def load_function(target: str):
    """'package.module:function' or 'path/to/file.py:function' -> the function."""
    if ":" not in target:
        raise ValueError(f"name the function as package.module:function or path/to/file.py:function, got {target!r}")
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(f"_audited_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    f = getattr(module, attr, None)
    if f is None:
        raise ValueError(f"{where} has no attribute {attr!r}")
    if not callable(f):
        raise ValueError(f"{where}:{attr} is not a function")
    return f


def _parse_list(text: str, kind, name: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"cannot read {name} from {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.audit.core", description="Audit a categorical sampling line in the masked-diffusion regime.")
    parser.add_argument("target", help="package.module:function or path/to/file.py:function; f(probs_or_logits, generator) -> indices, or f(probs)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--budget", default="60s", help="time for Monte Carlo, e.g. 60s, 5m (default 60s)")
    parser.add_argument("--logits", action="store_true", help="the function takes logits (log-probabilities), not probabilities")
    parser.add_argument("--dtype", default=None, help="dtype of its input: float32 (default), float64, bfloat16, float16")
    parser.add_argument("--power", type=float, default=0.99, help="power wanted against the bias (default 0.99)")
    parser.add_argument("--bias", type=float, default=0.1, help="relative bias of the leave rate to detect (default 0.1)")
    parser.add_argument("--vocab", default=None, help="vocabulary sizes, e.g. 1000,50257")
    parser.add_argument("--steps", default=None, help="step sizes h, e.g. 1e-2,1e-3")
    parser.add_argument("--mu", default=None, help="denoiser outputs: flat,zipf,peaked")
    parser.add_argument("--mask", default=None, help="mask positions: last,first")
    parser.add_argument("--monte-carlo", action="store_true", help="ignore a declared exact law")
    parser.add_argument("--compare", default="", help="public lines to compare with, e.g. mdlm_sedd_race")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=None, help="inputs per call of the function (default 2^22 on cpu, 2^26 on cuda)")
    parser.add_argument("--out", default=None, help="folder for the json and figure (default: the project's figures/)")
    args = parser.parse_args(argv)
    try:
        f = load_function(args.target)
        probes = None
        if any(v is not None for v in (args.vocab, args.steps, args.mu, args.mask)):
            vocabs = _parse_list(args.vocab or "1000,50257", int, "--vocab")
            steps = _parse_list(args.steps or "1e-2,1e-3,1e-4", float, "--steps")
            mus = _parse_list(args.mu or "flat,zipf,peaked", str, "--mu")
            masks = _parse_list(args.mask or "last", str, "--mask")
            probes = [Probe(mu, h, V, m) for V in vocabs for h in steps for mu in mus for m in masks]
        takes = "logits" if args.logits else None
        compare = tuple(c for c in args.compare.split(",") if c)
        report = audit(f, probes=probes, takes=takes, dtype=args.dtype, device=args.device, budget=parse_seconds(args.budget),
                       power=args.power, bias=args.bias, use_law=not args.monte_carlo, compare=compare, seed=args.seed,
                       chunk_elems=args.chunk)
    except ValueError as e:  # AuditError is one: bad input, said plainly
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.out:
        import os

        os.environ["MDMLIB_FIGURES"] = str(Path(args.out).resolve())
    stem = "audit_" + re.sub(r"[^A-Za-z0-9_]+", "_", report.name)
    path = save_json(report.to_json(), stem)
    fig = report.figure()
    figure = save_figure(fig, stem)
    print(f"wrote {path.name} and {figure.name} in {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
