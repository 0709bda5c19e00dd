"""A language whose likelihood, samples and optimal denoiser are known exactly.

Tokens follow a Markov chain whose transition matrix has low rank H:

    x_{l+1} | x_l  ~  P[x_l, :] = A[x_l, :] @ B,

with A (V x H) sending a token to a distribution over H hidden classes and
B (H x V) sending a class to a distribution over tokens. The chain starts in
its stationary distribution pi = rho @ B (rho stationary for K = B @ A, the
class-to-class matrix). Token frequencies are heavy-tailed: every class emits
around a shared Zipf base measure (token id = frequency rank), so small
probabilities occur as in real text.

Everything is exact:
- sampling: the chain itself;
- log-likelihood: log pi[x_1] + sum_l log P[x_l, x_{l+1}];
- entropy rate: H(pi) + (L-1) sum_u pi_u H(P[u, :]), per token, with no sampling error;
- the optimal denoiser E[e_{x_l} | unmasked tokens] at every masked position l.
  Only the nearest unmasked neighbours matter: with a at distance d1 on the
  left and b at distance d2 on the right,
      mu_l(v)  ∝  (f @ B)[v] * (A @ g)[v],
      f = A[x_a] @ K^(d1-1)  (rho if there is no left neighbour),
      g = K^(d2-1) @ B[:, x_b]  (all ones if there is no right neighbour).
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from mdmlib.precision.categorical import check_probabilities, inverse_cdf
from mdmlib.infra.checks import real_number, whole_number
from mdmlib.infra.memory import require_memory
from mdmlib.precision.formats import as_dtype
from mdmlib.stats.metrics import categorical_entropy


@dataclass(frozen=True)
class LanguageSpec:
    vocab_size: int
    num_classes: int
    seed: int = 0
    zipf_exponent: float = 1.1  # base frequency of token rank r is proportional to r^-zipf_exponent
    emission_spread: float = 2.0  # log-normal spread of each class's preference around the base
    transition_spread: float = 3.0  # how concentrated each token's next-class distribution is

    def __post_init__(self):
        whole_number(self.vocab_size, "vocab_size", minimum=2)
        whole_number(self.num_classes, "num_classes")
        whole_number(self.seed, "seed", minimum=0)
        for name in ("zipf_exponent", "emission_spread", "transition_spread"):
            value = real_number(getattr(self, name), name)
            if not (math.isfinite(value) and (name == "zipf_exponent" or value >= 0)):
                raise ValueError(f"{name} must be finite{'' if name == 'zipf_exponent' else ' and non-negative'}, got {value}")


def nearest_unmasked(x: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every position of x (B, L), the index of the nearest unmasked token at or
    to its left (-1 if none) and at or to its right (L if none)."""
    L = x.shape[1]
    idx = torch.arange(L).expand_as(x)
    observed = x != mask_id
    left = torch.cummax(torch.where(observed, idx, -1), 1).values
    right = torch.flip(torch.cummin(torch.flip(torch.where(observed, idx, L), [1]), 1).values, [1])
    return left, right


def stale_positions(language: "MarkovLanguage", x_old: torch.Tensor, x_new: torch.Tensor):
    """After unmasking tokens (x_old -> x_new): the masked positions of x_new whose nearest
    unmasked neighbour on either side changed, as (rows, cols), and x_new's nearest unmasked
    neighbours (left, right). Only these positions' exact conditionals change."""
    for x in (x_old, x_new):
        language._check_partial(x)
    if x_old.shape != x_new.shape:
        raise ValueError(f"x_old and x_new differ in shape: {tuple(x_old.shape)} and {tuple(x_new.shape)}")
    (left_old, right_old), (left_new, right_new) = nearest_unmasked(x_old, language.mask_id), nearest_unmasked(x_new, language.mask_id)
    stale = (x_new == language.mask_id) & ((left_old != left_new) | (right_old != right_new))
    rows, cols = torch.nonzero(stale, as_tuple=True)
    return rows, cols, left_new, right_new


class MarkovLanguage:
    """The low-rank Markov language of a LanguageSpec. The mask token is id V."""

    def __init__(self, spec: LanguageSpec):
        if not isinstance(spec, LanguageSpec):
            raise TypeError(f"a MarkovLanguage is built from a LanguageSpec, got {type(spec).__name__}")
        self.spec = spec
        V, H = spec.vocab_size, spec.num_classes
        # A, B and a temporary of their size, float64, before anything is built
        require_memory(3 * 8 * V * H, f"a language of {V:,} tokens and {H:,} classes (24 bytes a token and class)")
        g = torch.Generator().manual_seed(spec.seed)
        base = torch.arange(1, V + 1, dtype=torch.float64) ** -spec.zipf_exponent
        emission = base * torch.exp(spec.emission_spread * torch.randn(H, V, generator=g, dtype=torch.float64))
        self.B = emission / emission.sum(1, keepdim=True)
        transition = torch.exp(spec.transition_spread * torch.randn(V, H, generator=g, dtype=torch.float64))
        self.A = transition / transition.sum(1, keepdim=True)
        self._set_derived()

    @classmethod
    def from_matrices(cls, A: torch.Tensor, B: torch.Tensor) -> "MarkovLanguage":
        """A language from explicit row-stochastic A (V x H) and B (H x V)."""
        if not (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor)) or A.dim() != 2 or B.dim() != 2 or A.shape != B.shape[::-1]:
            raise ValueError(f"A must be a V x H and B an H x V tensor, got {getattr(A, 'shape', A)!r} and {getattr(B, 'shape', B)!r}")
        for name, M in (("A", A), ("B", B)):
            check_probabilities(M)  # floating, finite, non-negative
            # each row is a law: its sum is 1 up to one rounding per term in M's own format
            err = (M.to(torch.float64).sum(1) - 1).abs().max().item()
            if err > M.shape[1] * torch.finfo(M.dtype).eps:
                raise ValueError(f"every row of {name} must sum to 1 (row-stochastic); the worst is off by {err:.3g}")
        obj = cls.__new__(cls)
        obj.spec = LanguageSpec(A.shape[0], A.shape[1])
        obj.A, obj.B = A.to(torch.float64), B.to(torch.float64)
        obj._set_derived()
        return obj

    def _set_derived(self) -> None:
        self.K = self.B @ self.A  # class -> class
        # stationary rho: the left eigenvector of K for eigenvalue 1
        evals, evecs = torch.linalg.eig(self.K.T)
        rho = evecs[:, torch.argmin((evals - 1).abs())].real
        self.rho = (rho / rho.sum()).clamp(min=0)
        self.rho /= self.rho.sum()
        self.pi = self.rho @ self.B
        self._powers = torch.eye(self.num_classes, dtype=torch.float64)[None]

    @property
    def vocab_size(self) -> int:
        return self.A.shape[0]

    @property
    def num_classes(self) -> int:
        return self.A.shape[1]

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def transition_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """P[tokens, :], shape tokens.shape + (V,)."""
        return self.A[tokens] @ self.B

    # --- exact sampling and likelihood -------------------------------------------------
    def sample(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Exact samples (batch, length): each next token through its hidden class,
        h ~ A[x_l], x_{l+1} ~ B[h], with float64 inverse-CDF draws."""
        batch, length = whole_number(batch, "batch"), whole_number(length, "length")
        cdf_B = torch.cumsum(self.B, 1)
        x = torch.empty(batch, length, dtype=torch.int64)
        x[:, 0] = inverse_cdf(self.pi, generator, (batch,))
        for l in range(1, length):
            h = inverse_cdf(self.A[x[:, l - 1]], generator)
            u = torch.rand(batch, generator=generator, dtype=torch.float64)
            for c in torch.unique(h).tolist():  # one searchsorted per class: no (batch, V) rows built
                rows = h == c
                x[rows, l] = torch.searchsorted(cdf_B[c], u[rows] * cdf_B[c, -1], right=True).clamp(max=self.vocab_size - 1)
        return x

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for each sequence of x (B, L), float64."""
        self._check_tokens(x)
        logp = torch.log(self.pi[x[:, 0]])
        if x.shape[1] > 1:
            step = (self.A[x[:, :-1]] * self.B.T[x[:, 1:]]).sum(-1)  # P[x_l, x_{l+1}]
            logp = logp + torch.log(step).sum(1)
        return logp

    def nll_per_token(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_likelihood(x) / x.shape[1]

    def entropy_rate(self, length: int, chunk: int = 1024) -> float:
        """E[-log p(x)] / L for sequences of this length: the exact expected NLL per token."""
        length, chunk = whole_number(length, "length"), whole_number(chunk, "chunk")
        rows = torch.cat([categorical_entropy(self.transition_rows(torch.arange(i, min(i + chunk, self.vocab_size)))) for i in range(0, self.vocab_size, chunk)])
        return float((categorical_entropy(self.pi) + (length - 1) * (self.pi @ rows)) / length)

    def _check_partial(self, x: torch.Tensor) -> None:
        """A batch of partly masked sequences: ids in [0, V], V the mask."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"sequences must be an integer (batch, length) tensor, got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if ((x < 0) | (x > self.mask_id)).any():
            raise ValueError(f"token ids must lie in [0, {self.mask_id}] ({self.mask_id} is the mask)")

    def _check_tokens(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"token batches must have shape (batch, length), got {getattr(x, 'shape', type(x).__name__)}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"tokens must be integers, got dtype {x.dtype}")
        if ((x < 0) | (x >= self.vocab_size)).any():
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}); masked positions have no likelihood")

    # --- the exact denoiser --------------------------------------------------------------
    def _power(self, d: torch.Tensor) -> torch.Tensor:
        """K^d for a tensor of exponents d >= 0 (powers are computed once and kept)."""
        need = int(d.max()) + 1 if d.numel() else 1
        while self._powers.shape[0] < need:
            self._powers = torch.cat([self._powers, self._powers[-1:] @ self.K])
        return self._powers[d]

    def denoise_positions(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype = torch.float64, chunk: int = 2048, *, allow_unmasked: bool = False) -> torch.Tensor:
        """The exact distribution of x[rows, cols] given every unmasked token of its
        sequence, for masked positions (rows, cols): (P, V) in `dtype`. The small
        class-space messages are always float64; the (P, V) products are done in
        `dtype`. `allow_unmasked` lets a caller that times a network-like full pass
        also compute rows at unmasked positions, whose values it then discards."""
        self._check_partial(x)
        if rows.shape != cols.shape or rows.dim() != 1:
            raise ValueError(f"rows and cols must be 1-D and of one shape, got {tuple(rows.shape)} and {tuple(cols.shape)}")
        if not allow_unmasked and rows.numel() and (x[rows, cols] != self.mask_id).any():
            raise ValueError("denoise_positions takes masked positions only")
        L = x.shape[1]
        require_memory(rows.numel() * self.vocab_size * dtype.itemsize, f"the exact denoiser's output at {rows.numel():,} positions of {self.vocab_size:,} tokens")
        left, right = nearest_unmasked(x, self.mask_id)
        out = torch.empty(rows.numel(), self.vocab_size, dtype=dtype)
        B_out, At_out = self.B.to(dtype), self.A.T.to(dtype)
        for start in range(0, rows.numel(), chunk):
            r, c = rows[start : start + chunk], cols[start : start + chunk]
            a = torch.where(c > 0, left[r, (c - 1).clamp(min=0)], -1)  # strictly left of c
            b = torch.where(c < L - 1, right[r, (c + 1).clamp(max=L - 1)], L)  # strictly right of c
            has_a, has_b = a >= 0, b < L
            start_vec = torch.where(has_a[:, None], self.A[x[r, a.clamp(min=0)].clamp(max=self.vocab_size - 1)], self.rho)
            f = torch.einsum("ph,phk->pk", start_vec, self._power(torch.where(has_a, c - a - 1, 0)))
            end_vec = self.B[:, x[r, b.clamp(max=L - 1)].clamp(max=self.vocab_size - 1)].T  # (P, H)
            g = torch.einsum("phk,pk->ph", self._power(torch.where(has_b, b - c - 1, 0)), end_vec)
            g = torch.where(has_b[:, None], g / g.sum(1, keepdim=True), torch.ones_like(g))
            mu = (f.to(dtype) @ B_out) * (g.to(dtype) @ At_out)
            out[start : start + chunk] = mu / mu.sum(1, keepdim=True)
        return out


class ExactDenoiser:
    """The optimal (time-agnostic) denoiser of a MarkovLanguage, in the interface the
    samplers use: denoiser(x) -> (B, L, V) probabilities, the exact conditional at masked
    positions and one-hot at unmasked ones (MDLM's "carry over" convention).

    `changed_outputs(x_old, x_new)` lists only the masked positions whose output
    changed, so a sampler can update a cached output instead of recomputing it."""

    def __init__(self, language: MarkovLanguage, dtype: torch.dtype = torch.float32):
        if not isinstance(language, MarkovLanguage):
            raise TypeError(f"ExactDenoiser needs a MarkovLanguage, got {type(language).__name__}")
        self.language, self.dtype = language, as_dtype(dtype)

    @property
    def vocab_size(self) -> int:
        return self.language.vocab_size

    @property
    def mask_id(self) -> int:
        return self.language.mask_id

    def __call__(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.language._check_partial(x)
        observed = x != self.mask_id
        # the output, and the rows of its masked positions made before they are copied in
        require_memory((x.numel() + int((~observed).sum())) * self.vocab_size * self.dtype.itemsize,
                       f"the exact denoiser's output for {x.shape[0]:,} x {x.shape[1]:,} positions of {self.vocab_size:,} tokens")
        mu = torch.zeros(*x.shape, self.vocab_size, dtype=self.dtype)
        mu[observed] = torch.nn.functional.one_hot(x[observed], self.vocab_size).to(self.dtype)
        rows, cols = torch.nonzero(~observed, as_tuple=True)
        mu[rows, cols] = self.language.denoise_positions(x, rows, cols, self.dtype)
        return mu

    def changed_outputs(self, x_old: torch.Tensor, x_new: torch.Tensor):
        """After unmasking tokens (x_old -> x_new), the masked positions of x_new whose
        output changed, as (rows, cols, outputs): exactly those whose nearest unmasked
        neighbour on either side changed. Every other masked position keeps its output."""
        rows, cols, _, _ = stale_positions(self.language, x_old, x_new)
        return rows, cols, self.language.denoise_positions(x_new, rows, cols, self.dtype)

    def outputs_at(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The output at masked positions (rows, cols) of x alone, (n, V): for a sampler
        that reads one position at a time (the first-hitting sampler). Chunks as large
        as about 2^21 class-matrix entries keep the number of small operations down."""
        chunk = max(2048, 2**21 // self.language.num_classes**2)
        return self.language.denoise_positions(x, rows, cols, self.dtype, chunk=chunk)
