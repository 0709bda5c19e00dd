"""The measurements behind the cost model (notebook 08, the benchmarks).

`FullPassDenoiser` stands in for the network: it is the exact denoiser of
mdmlib.language.synthetic evaluated at every position of every sequence it is given, as a
network's forward pass is (a fixed cost per sequence, no incremental updates), and
it times its own calls. `timed_sample` runs a sampler with it and reports the
time, the time spent inside the network and the counts. Timing runs on one thread and
counts CPU time (mdmlib.infra.timing); wall time is reported beside it.
"""
from __future__ import annotations

import time

import torch

from mdmlib.infra.timing import median_cpu_seconds, one_thread
from mdmlib.language.synthetic import ExactDenoiser
from mdmlib.mdm.cost import SAMPLERS
from mdmlib.mdm.samplers import ancestral_sample, first_hitting_sample
from mdmlib.precision.categorical import exponential_race


class FullPassDenoiser:
    """The exact denoiser computed at all L positions of each sequence (one-hot at
    unmasked ones), with the time spent in it: `cpu_seconds` (this process's CPU
    time), `seconds` (wall), `calls`, `sequences`."""

    def __init__(self, denoiser: ExactDenoiser):
        if not isinstance(denoiser, ExactDenoiser):
            raise ValueError(f"FullPassDenoiser wraps an ExactDenoiser, got {type(denoiser).__name__}")
        self.inner = denoiser
        self.mask_id = denoiser.mask_id
        self.cpu_seconds, self.seconds, self.calls, self.sequences = 0.0, 0.0, 0, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        cpu, wall = time.process_time(), time.perf_counter()
        B, L = x.shape
        rows, cols = torch.arange(B).repeat_interleave(L), torch.arange(L).repeat(B)
        mu = self.inner.language.denoise_positions(x, rows, cols, self.inner.dtype, allow_unmasked=True).reshape(B, L, -1)
        observed = x != self.mask_id
        mu[observed] = torch.nn.functional.one_hot(x[observed], self.mask_id).to(mu.dtype)
        self.cpu_seconds += time.process_time() - cpu
        self.seconds += time.perf_counter() - wall
        self.calls += 1
        self.sequences += B
        return mu


def timed_sample(language, sampler: str, batch: int, length: int, generator: torch.Generator, *, steps: int | None = None, caching: str = "per_sequence", precision: str = "float64") -> dict:
    """Run `sampler` ("first_hitting", or "ancestral" with `steps` and `caching`) with a
    FullPassDenoiser as the network, on one thread. Returns the CPU and wall time, the
    network's share of each, its calls and sequence evaluations, the NFE per sequence
    and the tokens."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {SAMPLERS}")
    if sampler == "ancestral" and steps is None:
        raise ValueError("the ancestral sampler needs a number of steps")
    network = FullPassDenoiser(ExactDenoiser(language))
    with one_thread():
        cpu, wall = time.process_time(), time.perf_counter()
        if sampler == "first_hitting":
            out = first_hitting_sample(network, batch, length, precision, generator, progress=False)
        else:
            out = ancestral_sample(network, batch, length, steps, precision, generator, caching=caching, progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_seconds": cpu,
        "network_cpu_seconds": network.cpu_seconds,
        "seconds": wall,
        "network_seconds": network.seconds,
        "network_calls": network.calls,
        "sequence_evaluations": network.sequences,
        "nfe": out.nfe,
        "tokens": out.tokens,
    }


def network_seconds_per_sequence(language, batch: int, length: int, repeats: int = 5) -> float:
    """t_net: the FullPassDenoiser's CPU time per sequence on an all-masked batch."""
    network = FullPassDenoiser(ExactDenoiser(language))
    x = torch.full((batch, length), language.mask_id)
    return median_cpu_seconds(lambda: network(x), repeats) / batch


def categorical_seconds_per_number(vocab: int, rows: int, dtype: torch.dtype, generator: torch.Generator, repeats: int = 5) -> float:
    """t_cat: the exponential race's CPU time per number drawn, on (rows, vocab) probabilities."""
    p = torch.softmax(torch.randn(rows, vocab, generator=generator, dtype=torch.float64), -1).to(dtype)
    return median_cpu_seconds(lambda: exponential_race(p, generator, dtype), repeats) / (rows * vocab)
