"""The sampling experiments of notebooks 05 and 06, and the one-step laws of notebooks
03 and 04, cached on disk.

Each run returns per-sequence values (exact NLL per token, sentence entropy,
NFE) so that means and standard errors can be formed afterwards. Runs are
cached under .cache/ keyed by every parameter plus a fingerprint of the
library code they depend on, so a change to a sampler invalidates them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import asdict, dataclass

import torch

from mdmlib.precision.grid_law import law_on_grid
from mdmlib.mdm.step import step_categories
from mdmlib.stats.metrics import sentence_entropy
from mdmlib.infra.results import cached
from mdmlib.infra.seeds import derive_seed
from mdmlib.mdm.samplers import ancestral_sample, ar_sample, exact_sample
from mdmlib.infra.scale import by_scale
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

MDM_SAMPLERS = ("float32", "float64", "float64+trunc", "exact")


@dataclass(frozen=True)
class Setup:
    language: LanguageSpec
    length: int  # sequence length
    batch: int  # samples per setting
    data_samples: int  # exact samples for the data's sentence entropy


SETUPS = {
    "quick": Setup(LanguageSpec(vocab_size=2048, num_classes=32), length=128, batch=128, data_samples=4000),
    "full": Setup(LanguageSpec(vocab_size=4096, num_classes=64), length=512, batch=64, data_samples=4000),
}


def current_setup() -> Setup:
    """The setup of the current scale (the paper scale, on the synthetic language, is the full one)."""
    return by_scale(quick=SETUPS["quick"], full=SETUPS["full"])


def ablation_setup() -> Setup:
    """The blog's 2,048-step ablation: the current setup with more samples, enough to
    resolve float32 from 64-bit + truncation (notebook 05, check 4)."""
    setup = current_setup()
    return dataclasses.replace(setup, batch=by_scale(quick=512, full=3 * setup.batch))


def _params(setup: Setup, **kw) -> dict:
    return {"setup": asdict(setup), **kw}


def _per_sequence(language: MarkovLanguage, x: torch.Tensor) -> dict:
    return {"nll": language.nll_per_token(x), "entropy": sentence_entropy(x)}


def data_reference(setup: Setup) -> dict:
    """The data's reference values: the exact entropy rate (expected NLL per token, no
    sampling error) and exact samples' per-sequence NLL and sentence entropy."""

    def compute():
        language = MarkovLanguage(setup.language)
        x = language.sample(setup.data_samples, setup.length, torch.Generator().manual_seed(derive_seed("data")))
        return {"entropy_rate": language.entropy_rate(setup.length), **_per_sequence(language, x)}

    return cached("data", _params(setup), compute)


def run_mdm(setup: Setup, steps: int, sampler: str, progress: bool = True) -> dict:
    """Sample setup.batch sequences with an MDM sampler and the exact denoiser."""
    if sampler not in MDM_SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {MDM_SAMPLERS}")

    def compute():
        language = MarkovLanguage(setup.language)
        denoiser = ExactDenoiser(language)
        generator = torch.Generator().manual_seed(derive_seed("mdm", sampler, steps))
        start = time.perf_counter()
        if sampler == "exact":
            out = exact_sample(denoiser, setup.batch, setup.length, steps, generator, progress=progress)
        else:
            out = ancestral_sample(denoiser, setup.batch, setup.length, steps, sampler, generator, progress=progress)
        return {**_per_sequence(language, out.tokens), "nfe": out.nfe, "seconds": time.perf_counter() - start}

    return cached("mdm", _params(setup, steps=steps, sampler=sampler), compute)


def run_ar(setup: Setup, temperature: float) -> dict:
    """Sample setup.batch sequences left to right from the true conditionals at a temperature."""

    def compute():
        language = MarkovLanguage(setup.language)
        x = ar_sample(language, setup.batch, setup.length, temperature, torch.Generator().manual_seed(derive_seed("ar", temperature)))
        return _per_sequence(language, x)

    return cached("ar", _params(setup, temperature=temperature), compute)


def step_grid_law(mu: torch.Tensor, h: float, device: str = "cpu") -> torch.Tensor:
    """The law of the real float32 line in one masked-diffusion step with denoiser output
    mu (V tokens) and step h = (t - s) / t: the categories [mu h, 1 - h] formed in float32
    as the line forms them, then `law_on_grid` on `device`'s generator. Returns V + 1
    probabilities (tokens, then the mask), cached on disk by mu, h, device and the code (mdmlib.infra.results)."""
    mu = torch.as_tensor(mu, dtype=torch.float64)
    params = {"mu": hashlib.sha256(mu.numpy().tobytes()).hexdigest()[:16], "V": mu.numel(), "h": float(h), "device": device}

    def compute():
        categories = step_categories(mu[None], 1.0, 1.0 - float(h), "float32")[0].to(torch.float64)
        return {"law": law_on_grid(categories, torch.float32, device=device)}

    return torch.tensor(cached("step_grid_law", params, compute)["law"], dtype=torch.float64)
