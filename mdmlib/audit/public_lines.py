"""The categorical sampling lines that masked-diffusion code actually runs, and their laws.

Each line is written here in the project's own code, in the arithmetic of its source
(named on the line: repository, file, function), and takes (probs or logits, generator).
A line declares, through `sampling_line`, what it takes, in which dtype, and the exact
law it samples where the project can compute it; `mdmlib.audit.core` then uses that law and
needs Monte Carlo only to confirm it.

What the sources do, as read (PyTorch 2.x; CPU unless said):
- MDLM (`_sample_categorical`) and SEDD (`sample_categorical`): argmax(p / (1e-10 -
  log(rand_like(p) + 1e-10))) in the dtype of p, float32 in practice. Law: the race on
  the generator's grid (`argmax_law`), the paper's line.
- LLaDA (`add_gumbel_noise`, then argmax in `generate`): logits cast to float64,
  argmax(exp(logits) / (-log u) ** T), u = rand_like(float64); at T = 1 a race with
  E = -log u, u = k 2^-53. Law: the closed form truncated at float64's eps, 2^-53.
- torch.multinomial(p, 1) (aten/src/ATen/native/Distributions.cpp, `multinomial_out`):
  for one sample, with or without replacement, argmax(p / q) with q =
  empty_like(p).exponential_(); on the CPU exponential_ draws a float64 uniform u =
  k 2^-53 and returns -log1p(-u) rounded to the dtype of p (DistributionTemplates.h,
  TransformationHelper.h), so even in float32 the race sees exponentials down to 2^-53.
  Law: the closed form at eps = 2^-53. On CUDA exponential_ takes a float32 uniform and
  returns eps/2 = 2^-24 for u >= 1 - 2^-24: a float32-truncated race (Monte Carlo here).
- torch.distributions.Categorical(probs | logits).sample() (torch/distributions/
  categorical.py): probs / probs.sum(), or softmax(logits - logsumexp), then
  torch.multinomial(probs, 1, True): the same law as multinomial.
- MaskGIT's `gumbel_sample` (lucidrains/muse-maskgit-pytorch): argmax(logits + g),
  g = -log(-log u) with each log guarded by clamp(min=1e-20), u uniform in the dtype of
  the logits. Law: Gumbel-max on the generator's grid (`argmax_law`); in bfloat16 the
  grid has 2,304 values and u = 0 comes out with probability 2^-9.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import torch

from mdmlib.precision.argmax_law import law_of_grid_line
from mdmlib.precision.categorical import exponential_race, gumbel_max, inverse_cdf, race_score, truncated_race
from mdmlib.precision.grid_law import rand_grid
from mdmlib.precision.formats import as_dtype, float_format
from mdmlib.precision.truncation import truncated_law

TAKES = ("probs", "logits")


@dataclass(frozen=True)
class Source:
    repository: str
    file: str
    function: str

    def __str__(self) -> str:
        return f"{self.repository}, {self.file}, {self.function}"


@dataclass(frozen=True)
class ExactLaw:
    """The law of the winning block of a probe, and how it was computed. `unresolved`
    bounds the probability of events the computation left out (0 when complete)."""

    law: torch.Tensor
    unresolved: float
    how: str


@dataclass(frozen=True)
class LineSpec:
    name: str
    takes: str
    dtype: torch.dtype
    law: Callable | None = None  # law(categories float64 (B,), copies (B,), device) -> ExactLaw
    sources: tuple[Source, ...] = ()
    note: str = ""


def sampling_line(*, takes: str = "probs", dtype=torch.float32, law=None, sources=(), note: str = "", name: str | None = None):
    """Declare what a sampling line f(probs_or_logits, generator) takes, in which dtype,
    and (optionally) its exact law; the declaration is read by `mdmlib.audit.core`."""
    if takes not in TAKES:
        raise ValueError(f"takes must be one of {TAKES}, got {takes!r}")
    dtype = as_dtype(dtype)

    def declare(f):
        f.sampling_line = LineSpec(name or f.__name__, takes, dtype, law, tuple(sources), note)
        return f

    return declare


def line_input(categories: torch.Tensor, takes: str, dtype) -> torch.Tensor:
    """What a line receives for float64 categories: the probabilities, or their logs,
    rounded to its dtype. Declared laws start from the same numbers."""
    if takes not in TAKES:
        raise ValueError(f"takes must be one of {TAKES}, got {takes!r}")
    categories = categories.to(torch.float64)
    return (categories if takes == "probs" else torch.log(categories)).to(as_dtype(dtype))


# ---- exact laws -------------------------------------------------------------------------

class LawUnavailable(NotImplementedError):
    """The project cannot compute this line's law here (for example on CUDA's grid)."""


def generator_grid(dtype, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, int]:
    """The values of torch.rand(dtype) on `device` with integer counts over a power-of-two
    denominator (so that the sweep's cumulative sums are exact). Do not modify them: they
    are cached."""
    return _generator_grid(as_dtype(dtype), torch.device(device).type)


@lru_cache(maxsize=None)
def _generator_grid(dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    if device == "cpu":
        values, probs = rand_grid(dtype)
    else:
        try:
            values, probs = rand_grid(dtype, device=device)
        except TypeError:
            raise LawUnavailable(
                f"the grid of torch.rand on {device} is not in mdmlib.precision.grid_law yet: audit this line on {device} by Monte Carlo"
            ) from None
    for bits in range(24, 54):
        counts = probs * 2.0**bits
        if torch.equal(counts, counts.round()):
            return values.cpu(), counts.round().to(torch.int64).cpu(), 1 << bits
    raise ValueError("the grid's probabilities are not multiples of a power of two")


def grid_line_law(noise_of, combine, takes: str, dtype, how: str):
    """Declare the law of a line argmax combine(x, noise_of(u)) with u = torch.rand(dtype):
    x is the line's input (`line_input`), combine(x, noise) must be non-decreasing along the
    ascending grid of u and reproduce the line's arithmetic (the same torch operations in
    the same dtype). Returns law(categories, copies, device) for `sampling_line`."""
    dtype = as_dtype(dtype)

    def law(categories, copies, device="cpu") -> ExactLaw:
        values, counts, denominator = generator_grid(dtype, device)
        g = law_of_grid_line(line_input(categories, takes, dtype), noise_of(values), counts, denominator, combine, copies)
        if g.unresolved > 1e-3:  # the sweep stopped at its size limit: too many tokens reach the mask
            raise LawUnavailable(f"the exact law of this line needs too many grid values at these probabilities ({how})")
        return ExactLaw(g.law, g.unresolved, f"{how} on the {torch.device(device).type.upper()} grid of torch.rand({dtype})")

    return law


def _expanded(categories, copies) -> tuple[torch.Tensor, torch.Tensor]:
    copies = torch.as_tensor(copies, dtype=torch.int64)
    owner = torch.repeat_interleave(torch.arange(categories.numel()), copies)
    return categories[owner], owner


def _closed_form(eps: float, held: Callable[[torch.Tensor], torch.Tensor], how: str, devices=("cpu", "cuda")):
    """The closed form truncated at eps, for the probabilities `held` as the line holds them."""

    def law(categories, copies, device="cpu") -> ExactLaw:
        if torch.device(device).type not in devices:
            raise LawUnavailable(f"the closed form is not this line's law on {device}")
        full, owner = _expanded(categories, copies)
        per_class = truncated_law(held(full), eps=eps)
        return ExactLaw(torch.zeros(categories.numel(), dtype=torch.float64).index_add_(0, owner, per_class), 0.0, how)

    return law


def _held(takes: str, dtype):
    """float64 probabilities as a line holds them after rounding its input to `dtype`."""
    return lambda c: torch.exp(line_input(c, "logits", dtype).to(torch.float64)) if takes == "logits" else line_input(c, "probs", dtype).to(torch.float64)


F64_EPS = float_format(torch.float64).gap_below_one  # 2^-53
F32_EPS = float_format(torch.float32).gap_below_one  # 2^-24


def _race_noise(u):
    return 1e-10 - torch.log(u + 1e-10)  # MDLM/SEDD's exponential, in the dtype of u


def _guarded_gumbel(u):
    def log(t):
        return torch.log(t.clamp(min=1e-20))

    return -log(-log(u))  # MaskGIT's gumbel_noise


def _log_minus_log(u):
    return torch.log(-torch.log(u))  # mdmlib.precision.categorical.gumbel_score's noise term


race_float32_law = grid_line_law(_race_noise, lambda p, e: p / e, "probs", torch.float32, "exponential race")

# ---- the lines --------------------------------------------------------------------------

MDLM = Source("kuleshov-group/mdlm", "diffusion.py", "_sample_categorical")
SEDD = Source("louaaron/Score-Entropy-Discrete-Diffusion", "catsample.py", "sample_categorical")
LLADA = Source("ML-GSAI/LLaDA", "generate.py", "add_gumbel_noise (then argmax in generate)")
MULTINOMIAL = Source("pytorch/pytorch", "aten/src/ATen/native/Distributions.cpp", "multinomial_out (exponential_: cpu/DistributionTemplates.h)")
CATEGORICAL = Source("pytorch/pytorch", "torch/distributions/categorical.py", "Categorical.sample")
MASKGIT = Source("lucidrains/muse-maskgit-pytorch", "muse_maskgit_pytorch/muse_maskgit_pytorch.py", "gumbel_sample")
PROJECT = Source("this project", "mdmlib/precision/categorical.py", "")


@sampling_line(takes="probs", dtype=torch.float32, law=race_float32_law, sources=(MDLM, SEDD),
               note="the paper's line; MDLM and SEDD write the same arithmetic")
def mdlm_sedd_race(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return race_score(probs, u).argmax(dim=-1)


@sampling_line(takes="logits", dtype=torch.float32, law=_closed_form(F64_EPS, _held("logits", torch.float32), "closed form at eps = 2^-53"),
               sources=(LLADA,), note="temperature 1; float32 logits as MDLM-style networks return them")
def llada_gumbel_float64(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    logits = logits.to(torch.float64)
    noise = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
    return (logits.exp() / (-torch.log(noise)) ** 1.0).argmax(dim=-1)


def _multinomial(probs, generator):
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(probs.shape[:-1])


@sampling_line(takes="probs", dtype=torch.float32, law=_closed_form(F64_EPS, _held("probs", torch.float32), "closed form at eps = 2^-53", ("cpu",)),
               sources=(MULTINOMIAL,), note="one sample: argmax(p / exponential_()); on the CPU from a 53-bit uniform")
def torch_multinomial_float32(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _multinomial(probs, generator)


@sampling_line(takes="probs", dtype=torch.float64, law=_closed_form(F64_EPS, _held("probs", torch.float64), "closed form at eps = 2^-53"),
               sources=(MULTINOMIAL,), note="one sample: argmax(p / exponential_())")
def torch_multinomial_float64(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _multinomial(probs, generator)


def _categorical(generator: torch.Generator, **params) -> torch.Tensor:
    """torch.distributions.Categorical(...).sample(), which draws from the global generator:
    run it unchanged on a global state seeded from `generator`, then restore that state."""
    device = next(iter(params.values())).device
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.manual_seed(seed)
        return torch.distributions.Categorical(**params, validate_args=False).sample()


def _normalised(dtype):
    return lambda c: (lambda x: (x / x.sum()).to(torch.float64))(line_input(c, "probs", dtype))


def _softmaxed(dtype):
    return lambda c: torch.softmax(line_input(c, "logits", dtype), -1).to(torch.float64)


@sampling_line(takes="probs", dtype=torch.float32, law=_closed_form(F64_EPS, _normalised(torch.float32), "closed form at eps = 2^-53", ("cpu",)),
               sources=(CATEGORICAL,), note="probs / probs.sum(), then torch.multinomial")
def torch_categorical_probs_float32(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _categorical(generator, probs=probs)


@sampling_line(takes="probs", dtype=torch.float64, law=_closed_form(F64_EPS, _normalised(torch.float64), "closed form at eps = 2^-53"),
               sources=(CATEGORICAL,), note="probs / probs.sum(), then torch.multinomial")
def torch_categorical_probs_float64(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _categorical(generator, probs=probs)


@sampling_line(takes="logits", dtype=torch.float32, law=_closed_form(F64_EPS, _softmaxed(torch.float32), "closed form at eps = 2^-53", ("cpu",)),
               sources=(CATEGORICAL,), note="softmax(logits - logsumexp), then torch.multinomial")
def torch_categorical_logits_float32(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _categorical(generator, logits=logits)


def _maskgit(logits, generator):
    # gumbel_sample at temperature 1: logits / max(1, 1e-10) is the logits themselves
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    return (logits + _guarded_gumbel(u)).argmax(dim=-1)


@sampling_line(takes="logits", dtype=torch.float32, law=grid_line_law(_guarded_gumbel, lambda x, g: x + g, "logits", torch.float32, "guarded Gumbel-max"),
               sources=(MASKGIT,), note="temperature 1; noise in the dtype of the logits")
def maskgit_gumbel_float32(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _maskgit(logits, generator)


@sampling_line(takes="logits", dtype=torch.bfloat16, law=grid_line_law(_guarded_gumbel, lambda x, g: x + g, "logits", torch.bfloat16, "guarded Gumbel-max"),
               sources=(MASKGIT,), note="temperature 1; bfloat16 logits and noise, as under autocast")
def maskgit_gumbel_bfloat16(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _maskgit(logits, generator)


# the project's own samplers (mdmlib.precision.categorical), declared
def _project(function: str) -> tuple[Source, ...]:
    return (replace(PROJECT, function=function),)


@sampling_line(takes="probs", dtype=torch.float32,
               law=grid_line_law(_log_minus_log, lambda p, n: torch.log(p) - n, "probs", torch.float32, "Gumbel-max"), sources=_project("gumbel_max"))
def project_gumbel_max_float32(probs, generator):
    return gumbel_max(probs, generator, torch.float32)


@sampling_line(takes="probs", dtype=torch.float64, law=_closed_form(F64_EPS, _held("probs", torch.float64), "closed form at eps = 2^-53", ("cpu",)),
               sources=_project("exponential_race"), note="the race in float64: the paper's fix")
def project_race_float64(probs, generator):
    return exponential_race(probs, generator, torch.float64)


@sampling_line(takes="probs", dtype=torch.float64, law=_closed_form(F32_EPS, _held("probs", torch.float64), "closed form at eps = 2^-24"),
               sources=_project("truncated_race"), note="float64 with float32's truncation: the paper's ablation")
def project_truncated_race(probs, generator):
    return truncated_race(probs, generator, F32_EPS)


def _exact(categories, copies, device="cpu") -> ExactLaw:
    mass = categories * torch.as_tensor(copies, dtype=torch.float64)
    return ExactLaw(mass / mass.sum(), 0.0, "the categorical law itself (float64 cumulative sum)")


@sampling_line(takes="probs", dtype=torch.float64, law=_exact, sources=_project("inverse_cdf"), note="exact: one float64 uniform against the cumulative sum")
def project_inverse_cdf(probs, generator):
    return inverse_cdf(probs, generator)


PUBLIC_LINES = (
    mdlm_sedd_race,
    llada_gumbel_float64,
    torch_multinomial_float32,
    torch_multinomial_float64,
    torch_categorical_probs_float32,
    torch_categorical_logits_float32,
    torch_categorical_probs_float64,
    maskgit_gumbel_float32,
    maskgit_gumbel_bfloat16,
)
PROJECT_LINES = (project_gumbel_max_float32, project_race_float64, project_truncated_race, project_inverse_cdf)
LINES = {f.sampling_line.name: f for f in PUBLIC_LINES + PROJECT_LINES}
for _name, _f in LINES.items():  # the project's laws are cached on disk under these names (audit)
    if not hasattr(_f.sampling_line.law, "key"):
        _f.sampling_line.law.key = _name
