"""Monte Carlo frequencies of a sampler, drawn in memory-sized chunks."""
from __future__ import annotations

import torch

from mdmlib.precision.categorical import check_probabilities
from mdmlib.infra.checks import whole_number
from mdmlib.infra.progress import progress


def count_classes(sampler, p, n: int, generator: torch.Generator, *, chunk: int = 1 << 23, desc: str | None = None, **kwargs) -> torch.Tensor:
    """Draw `n` samples from `sampler(p, generator, **kwargs)` for one probability
    vector p (K classes) and return how often each class came out (int64, K).
    Draws are made in chunks of about `chunk` uniforms, with a progress bar."""
    p = check_probabilities(p)
    if p.dim() != 1:
        raise ValueError(f"p must be one probability vector, got shape {tuple(p.shape)}")
    n, chunk = whole_number(n, "n"), whole_number(chunk, "chunk")
    if not callable(sampler):
        raise TypeError(f"sampler must be a function (p, generator) -> class indices, got {type(sampler).__name__}")
    K = p.numel()
    rows = max(1, chunk // K)
    counts = torch.zeros(K, dtype=torch.int64)
    with progress(total=n, desc=desc, unit="draw", unit_scale=True, show=desc is not None) as bar:
        done = 0
        while done < n:
            m = min(rows, n - done)
            idx = sampler(p.expand(m, K), generator, **kwargs)
            counts += torch.bincount(idx.flatten().cpu(), minlength=K)
            done += m
            bar.update(m)
    return counts
