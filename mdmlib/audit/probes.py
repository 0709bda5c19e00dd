"""The inputs of an audit: one masked-diffusion step (`Probe`) with a denoiser output mu
that is flat, Zipf or peaked, and the default set of probes, from h = 1e-2 to 1e-4 and
vocabularies up to GPT-2's."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

MUS = ("flat", "zipf", "peaked")
GPT2_VOCAB = 50_257
ZIPF_EXPONENT = 1.1
PEAK = 0.9


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
