"""The exact denoiser of a clustered language, factored: class posteriors times emissions.

In a ClusteredLanguage (mdmlib.language.clustered) the class of a token is known from the
token and the classes form a Markov chain with matrix T. At a masked position l whose
nearest unmasked neighbours are x_a at distance d1 on the left and x_b at distance d2 on
the right, the class h of x_l has the posterior

    w(h)  ∝  T^d1[c(x_a), h] * T^d2[h, c(x_b)]      (rho(h) without a left neighbour,
                                                     1 without a right one),

and the output is mu[v] = w(c(v)) e_v: the same law as ExactDenoiser's
(f @ B)[v] (A @ g)[v] (mdmlib.language.synthetic), since there B[h, v] = e_v for h = c(v)
and A[v] = T[c(v)]. A position costs O(K) once the powers T^d (d <= L, (L + 1) K^2
float64 numbers, built once per length) are kept, against O(K V) for ExactDenoiser and
no V x V matrix anywhere.

Two ways in, one formula (mdmlib.mdm.factored_outputs):

- factored, for mdmlib.mdm.factored_samplers: `class_posteriors(x)` (B, L, K) and
  `changed_class_posteriors(x_old, x_new)`, the masked positions whose nearest unmasked
  neighbour on either side changed, with their new posteriors; `token_class` and
  `emission` turn posteriors into rows where a sampler reads them;
- the samplers' protocol (mdmlib.mdm.samplers): `__call__` (B, L, V), `changed_outputs`,
  `outputs_at`, with the rows built from the posteriors.

Memory bound: the factored path holds 8 K bytes a position (256 at K = 32) plus the
powers; V-wide rows are built only where asked, n V bytes in `dtype` (with float64
temporaries of at most 32 MB). The whole (B, L, V) output of `__call__` (B L V bytes in
`dtype`: 412 MB a sequence at V = 50,257, L = 1,024 in float64) is built only if it fits
the memory budget (MDMLIB_MEMORY_BUDGET, else the memory available), and a request that
does not fit is refused before anything is allocated, naming the bytes it needs.
"""
from __future__ import annotations

import torch

from mdmlib.language.clustered import ClusteredLanguage
from mdmlib.language.synthetic import ExactDenoiser, nearest_unmasked, stale_positions
from mdmlib.mdm.factored_outputs import factored_rows
from mdmlib.infra.memory import require_memory


class FactoredDenoiser(ExactDenoiser):
    """The optimal (time-agnostic) denoiser of a ClusteredLanguage (module docstring): an
    ExactDenoiser whose outputs are computed through the K classes; outputs in `dtype`,
    class posteriors in float64."""

    def __init__(self, language: ClusteredLanguage, dtype: torch.dtype = torch.float32):
        if not isinstance(language, ClusteredLanguage):
            raise TypeError(f"FactoredDenoiser needs a ClusteredLanguage, got {type(language).__name__}")
        super().__init__(language, dtype)
        self.token_class, self.emission = language.token_class, language.emissions.probability
        self._powers = torch.eye(language.num_classes, dtype=torch.float64)[None]  # T^0, T^1, ...
        self._powers_t = self._powers  # the same, each transposed: rows of T^d[:, j] contiguous

    @property
    def num_classes(self) -> int:
        return self.language.num_classes

    def _power_table(self, length: int) -> None:
        """Keep T^d for every d <= length."""
        have = self._powers.shape[0]
        if have > length:
            return
        require_memory(16 * (length + 1) * self.num_classes**2, f"the powers of a {self.num_classes}-class chain up to {length:,}")
        powers = [self._powers]
        last = self._powers[-1]
        for _ in range(have, length + 1):
            last = last @ self.language.transition
            powers.append(last[None])
        self._powers = torch.cat(powers)
        self._powers_t = self._powers.transpose(1, 2).contiguous()

    def _posteriors(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """w (n, K) at masked positions (rows, cols), given nearest_unmasked(x)."""
        L = x.shape[1]
        self._power_table(L)
        a = torch.where(cols > 0, left[rows, (cols - 1).clamp(min=0)], -1)  # strictly left of the position
        b = torch.where(cols < L - 1, right[rows, (cols + 1).clamp(max=L - 1)], L)  # strictly right
        has_a, has_b = (a >= 0)[:, None], (b < L)[:, None]
        class_a = self.token_class[x[rows, a.clamp(min=0)].clamp(max=self.vocab_size - 1)]
        class_b = self.token_class[x[rows, b.clamp(max=L - 1)].clamp(max=self.vocab_size - 1)]
        f = torch.where(has_a, self._powers[(cols - a).clamp(max=L), class_a], self.language.rho)
        g = torch.where(has_b, self._powers_t[(b - cols).clamp(max=L), class_b], 1.0)
        w = f * g
        return w / w.sum(1, keepdim=True)

    def class_posteriors_at(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """w (n, K) at the masked positions (rows, cols) of x."""
        self.language._check_partial(x)
        if rows.shape != cols.shape or rows.dim() != 1:
            raise ValueError(f"rows and cols must be 1-D and of one shape, got {tuple(rows.shape)} and {tuple(cols.shape)}")
        if rows.numel() and (x[rows, cols] != self.mask_id).any():
            raise ValueError("class posteriors are asked at masked positions only")
        return self._posteriors(x, rows, cols, *nearest_unmasked(x, self.mask_id))

    def class_posteriors(self, x: torch.Tensor, t=None) -> torch.Tensor:
        """w (B, L, K) at every position: the posterior at masked ones, the token's own
        class (a point mass) at unmasked ones."""
        self.language._check_partial(x)
        require_memory(8 * x.numel() * self.num_classes, f"class posteriors for {x.shape[0]:,} x {x.shape[1]:,} positions")
        masked = x == self.mask_id
        w = torch.nn.functional.one_hot(self.token_class[x.clamp(max=self.vocab_size - 1)], self.num_classes).to(torch.float64)
        rows, cols = torch.nonzero(masked, as_tuple=True)
        w[rows, cols] = self._posteriors(x, rows, cols, *nearest_unmasked(x, self.mask_id))
        return w

    def changed_class_posteriors(self, x_old: torch.Tensor, x_new: torch.Tensor):
        """After unmasking tokens (x_old -> x_new): (rows, cols, w) for exactly the masked
        positions of x_new whose nearest unmasked neighbour on either side changed."""
        rows, cols, left, right = stale_positions(self.language, x_old, x_new)
        return rows, cols, self._posteriors(x_new, rows, cols, left, right)

    def rows(self, w: torch.Tensor) -> torch.Tensor:
        """The output rows (n, V) in `dtype` of class posteriors w (n, K)."""
        return factored_rows(w, self.token_class, self.emission, self.dtype)

    # --- the samplers' protocol (mdmlib.mdm.samplers) -----------------------------------
    def __call__(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V): the exact conditional at masked positions, one-hot at unmasked ones."""
        self.language._check_partial(x)
        require_memory(x.numel() * self.vocab_size * self.dtype.itemsize,
                       f"the exact denoiser's whole output for {x.shape[0]:,} x {x.shape[1]:,} positions of {self.vocab_size:,} tokens "
                       f"in {self.dtype} (the factored path, class_posteriors, needs {8 * self.num_classes} bytes a position)")
        observed = x != self.mask_id
        mu = torch.zeros(*x.shape, self.vocab_size, dtype=self.dtype)
        mu[observed] = torch.nn.functional.one_hot(x[observed], self.vocab_size).to(self.dtype)
        rows, cols = torch.nonzero(~observed, as_tuple=True)
        left, right = nearest_unmasked(x, self.mask_id)
        chunk = max(1, 2**22 // self.vocab_size)  # rows built a few MB at a time, written in place
        for start in range(0, rows.numel(), chunk):
            r, c = rows[start : start + chunk], cols[start : start + chunk]
            mu[r, c] = self.rows(self._posteriors(x, r, c, left, right))
        return mu

    def changed_outputs(self, x_old: torch.Tensor, x_new: torch.Tensor):
        """changed_class_posteriors with the rows built: (rows, cols, outputs (n, V))."""
        rows, cols, w = self.changed_class_posteriors(x_old, x_new)
        return rows, cols, self.rows(w)

    def outputs_at(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The output rows (n, V) at masked positions (rows, cols) of x alone."""
        return self.rows(self.class_posteriors_at(x, rows, cols))
