"""The runs of notebooks 07 and 08 (time-agnostic masked models), cached on disk.

Keyed, like mdmlib.runs.precision, by every parameter and a fingerprint of the code
they depend on: the code of notebooks 05-06's runs plus this part's modules.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import torch

from mdmlib.runs.sampler_timing import categorical_seconds_per_number, network_seconds_per_sequence, timed_sample
from mdmlib.infra.seeds import derive_seed
from mdmlib.runs.precision import Setup, _per_sequence
from mdmlib.mdm.objectives import masked_count_estimates, time_estimates
from mdmlib.infra.results import cached
from mdmlib.mdm.samplers import first_hitting_sample
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

ESTIMATORS = ("masked_count", "time_linear", "time_cosine")


def _params(**kw) -> dict:
    return {**{k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in kw.items()}}


def elbo_estimates(spec: LanguageSpec, length: int, sequences: int, draws: int) -> dict:
    """Exact samples x_0 and their exact log p(x_0), and for each estimator of -ELBO
    (ESTIMATORS) `draws` independent draws per sequence, with the exact denoiser."""

    def compute():
        language = MarkovLanguage(spec)
        denoiser = ExactDenoiser(language, torch.float64)
        x0 = language.sample(sequences, length, torch.Generator().manual_seed(derive_seed("elbo", "data")))
        out = {"tokens": x0, "log_p": language.log_likelihood(x0)}
        for name in ESTIMATORS:
            g = torch.Generator().manual_seed(derive_seed("elbo", name))
            if name == "masked_count":
                est = [masked_count_estimates(denoiser, x, draws, g) for x in x0]
            else:
                est = [time_estimates(denoiser, x, draws, g, name.removeprefix("time_")) for x in x0]
            out[name] = torch.stack(est)
        return out

    return cached("elbo", _params(language=spec, length=length, sequences=sequences, draws=draws), compute)


def fhs_run(setup: Setup, precision: str, batch: int) -> dict:
    """`batch` sequences of the first-hitting sampler with the exact denoiser:
    per-sequence exact NLL per token, sentence entropy, NFE, and the wall time."""

    def compute():
        language = MarkovLanguage(setup.language)
        generator = torch.Generator().manual_seed(derive_seed("fhs", precision, batch))
        start = time.perf_counter()
        out = first_hitting_sample(ExactDenoiser(language), batch, setup.length, precision, generator)
        return {**_per_sequence(language, out.tokens), "nfe": out.nfe, "seconds": time.perf_counter() - start}

    return cached("fhs", _params(setup=setup, precision=precision, batch=batch), compute)


def timed_run(spec: LanguageSpec, sampler: str, batch: int, length: int, steps: int | None = None, caching: str = "per_sequence") -> dict:
    """mdmlib.runs.sampler_timing.timed_sample with the network-like exact denoiser (float64 draws),
    seeded by the run's parameters only, so the two caching modes sample alike."""

    def compute():
        generator = torch.Generator().manual_seed(derive_seed("timed", sampler, batch, length, steps))
        return timed_sample(MarkovLanguage(spec), sampler, batch, length, generator, steps=steps, caching=caching)

    return cached("timed", _params(language=spec, sampler=sampler, batch=batch, length=length, steps=steps, caching=caching), compute)


def cost_constants(spec: LanguageSpec, batch: int, length: int) -> dict:
    """The cost model's constants on this machine: t_net, the network-like denoiser's time
    per sequence on a (batch, length) all-masked input, and t_cat, the float64
    exponential race's time per number drawn (512 rows of the vocabulary). Cached like
    the timed runs, and measured next to them."""

    def compute():
        language = MarkovLanguage(spec)
        g = torch.Generator().manual_seed(derive_seed("t_cat"))
        return {"t_net": network_seconds_per_sequence(language, batch, length), "t_cat": categorical_seconds_per_number(spec.vocab_size, 512, torch.float64, g)}

    return cached("cost", _params(language=spec, batch=batch, length=length), compute)
