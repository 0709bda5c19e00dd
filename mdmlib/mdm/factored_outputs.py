"""Denoiser outputs held as class posteriors times emissions, never as a (B, L, V) tensor.

For a language whose tokens are split into K classes (each token v in one class c(v),
emitted with probability e_v within it; mdmlib.language.clustered), the exact denoiser's
output at a masked position is

    mu[v] = w[c(v)] * e_v,

w the posterior over the class of that position: K numbers instead of V. FactoredOutputs
holds w (B, L, K) for a batch and gives what a sampler reads, each entry computed by one
formula, fl(w[c(v)] * e_v) in float64, then rounded to `dtype`:

  rows(r, c)           whole rows (n, V)
  entries(r, c, tok)   single entries (n,)
  row_max(r, c)        the rows' maxima, exactly: max_h fl(w_h * max_{v in h} e_v), since
                       rounding is monotone
  outputs[r, c], outputs[r, c, tok]   the same through indexing, so that
                       mdmlib.mdm.step.draw_sparse, which reads mu only by these two
                       indexings, runs on it unchanged.

`factored_rows` is the formula itself, for a denoiser that hands rows to a sampler.

Laws: with each class's emissions summing to 1 (checked once, check_emissions) a row sums
to sum_h w_h up to one rounding per entry, so checking w (finite, non-negative, summing to 1
within 2 K eps of float64: mdmlib.mdm.denoiser_outputs' rule) checks every row.

Memory: 8 K bytes a position for w; rows are built only where asked: n V bytes in `dtype`,
with float64 temporaries of at most CHUNK_BYTES, refused before allocation when they do
not fit the budget (mdmlib.infra.memory).
"""
from __future__ import annotations

import torch

from mdmlib.mdm.denoiser_outputs import check_laws, row_statistics, sum_tolerance
from mdmlib.infra.memory import require_memory

CHUNK_BYTES = 32 * 2**20  # float64 temporaries of a row build, at most


def check_emissions(token_class: torch.Tensor, emission: torch.Tensor, num_classes: int) -> None:
    """token_class (V,) ids in [0, K) and emission (V,) float64 with every class's
    emissions a law: non-negative, finite, summing to 1 within 2 V eps."""
    if not (isinstance(token_class, torch.Tensor) and isinstance(emission, torch.Tensor)) or token_class.dim() != 1 or token_class.shape != emission.shape:
        raise ValueError("token_class and emission must be 1-D tensors with one entry per token")
    if token_class.is_floating_point() or token_class.dtype == torch.bool or emission.dtype != torch.float64:
        raise ValueError(f"token_class must be integer and emission float64, got {token_class.dtype} and {emission.dtype}")
    if token_class.numel() and (token_class.min() < 0 or token_class.max() >= num_classes):
        raise ValueError(f"token classes must lie in [0, {num_classes})")
    if not bool(torch.isfinite(emission).all()) or bool((emission < 0).any()):
        raise ValueError("emission probabilities must be finite and non-negative")
    totals = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, token_class, emission)
    worst = int((totals - 1).abs().argmax())
    if abs(float(totals[worst]) - 1) > sum_tolerance(emission.numel(), torch.float64):
        raise ValueError(f"the emissions of class {worst} sum to {float(totals[worst]):.6g}, not 1: each class must emit a law over its tokens")


def check_posteriors(w: torch.Tensor, where=lambda i: f"position {i}") -> None:
    """Class posteriors (..., K), float64, each a law over the K classes."""
    if not isinstance(w, torch.Tensor) or w.dtype != torch.float64 or w.dim() < 1:
        raise ValueError(f"class posteriors must be a float64 tensor (..., K), got {getattr(w, 'dtype', type(w).__name__)}")
    if w.numel():
        total, low, _ = row_statistics(w)
        check_laws(total, low, torch.float64, w.shape[-1], what="the class posterior", where=where)


def factored_rows(w: torch.Tensor, token_class: torch.Tensor, emission: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The rows (n, V) in `dtype` of class posteriors w (n, K): fl(w[c(v)] * e_v), built in
    chunks whose float64 temporaries stay under CHUNK_BYTES; refused before allocation when
    the rows do not fit the memory budget."""
    n, V = w.shape[0], emission.numel()
    require_memory(n * V * dtype.itemsize + min(n * V * 8, CHUNK_BYTES), f"{n:,} denoiser rows of {V:,} tokens in {dtype}")
    out = torch.empty(n, V, dtype=dtype)
    chunk = max(1, CHUNK_BYTES // (8 * V))
    for start in range(0, n, chunk):
        out[start : start + chunk] = (w[start : start + chunk][:, token_class] * emission).to(dtype)
    return out


class FactoredOutputs:
    """A batch's denoiser outputs as class posteriors w (B, L, K) float64 (module docstring).
    Only the positions a sampler reads need hold laws; `update` checks what it writes."""

    def __init__(self, w: torch.Tensor, token_class: torch.Tensor, emission: torch.Tensor, dtype: torch.dtype):
        if not isinstance(w, torch.Tensor) or w.dim() != 3:
            raise ValueError(f"class posteriors must be a (B, L, K) tensor, got {getattr(w, 'shape', type(w).__name__)}")
        check_emissions(token_class, emission, w.shape[-1])
        check_posteriors(w, where=lambda i: f"sequence {i[0]}, position {i[1]}")
        self.w, self.token_class, self.emission, self.dtype = w, token_class, emission, dtype
        self.class_max = torch.zeros(w.shape[-1], dtype=torch.float64).scatter_reduce(0, token_class, emission, "amax")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.w.shape[:2], self.emission.numel())

    def update(self, rows: torch.Tensor, cols: torch.Tensor, w: torch.Tensor) -> None:
        check_posteriors(w, where=lambda i: f"sequence {int(rows[i[0]])}, position {int(cols[i[0]])}")
        self.w[rows, cols] = w

    def rows(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return factored_rows(self.w[rows, cols], self.token_class, self.emission, self.dtype)

    def entries(self, rows: torch.Tensor, cols: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return (self.w[rows, cols, self.token_class[tokens]] * self.emission[tokens]).to(self.dtype)

    def row_max(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return (self.w[rows, cols] * self.class_max).amax(-1).to(self.dtype)

    def __getitem__(self, index):
        if not (isinstance(index, tuple) and len(index) in (2, 3) and all(isinstance(i, torch.Tensor) for i in index)):
            raise TypeError("factored outputs are read by (rows, cols) or (rows, cols, tokens) index tensors")
        return self.rows(*index) if len(index) == 2 else self.entries(*index)
