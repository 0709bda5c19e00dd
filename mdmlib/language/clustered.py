"""A Markov language whose tokens fall into classes, so that everything exact costs K x K.

The V tokens are split into K classes (each token v in exactly one class c(v)), and the
class of the next token depends only on the class of the current one:

    c_{l+1} | x_l  ~  T[c(x_l), :],        x_{l+1} | c_{l+1} = h  ~  e restricted to class h,

with T (K x K) row-stochastic and e_v the probability of v within its class (each
class's e sums to 1). It is a MarkovLanguage (A = T[c(u), :], B[h, v] = e_v if c(v) = h,
else 0), so its exact denoiser, likelihood and samplers are those of
mdmlib.language.synthetic. Because the class of every token is known from the token, the
class sequence is itself a Markov chain with matrix T, and every exact quantity goes
through it instead of through V x V transition rows:

- entropy rate, per token:  (H(pi) + (L-1) [sum_c rho_c H(T[c]) + sum_h rho_h H(e_h)]) / L,
  H(pi) = H(rho) + sum_h rho_h H(e_h), with rho stationary for T (the class of every
  token is distributed as rho, so each emission adds rho . H(e)): O(V + K^3);
- log-likelihood: log pi[x_1] + sum_l log T[c(x_l), c(x_{l+1})] + log e[x_{l+1}]: O(B L);
- sampling: the class path (a K-state chain), then every token from its class.

(MarkovLanguage.entropy_rate forms all V rows of A @ B: V x V entries, 2.5e9 logarithms at
V = 50,257, hence its minutes.)

The parameters (ClusteredSpec) make tokens heavy-tailed as text is: within a class, token v
(id = frequency rank) has weight (v+1)^-zipf_exponent times a log-normal factor of spread
emission_spread; the rows of T are softmax(transition_spread * z), z standard normal, so
transition_spread sets how predictable the next token's class is. Classes are a balanced
random partition of the tokens. The standard normals (ChainNoise) are drawn once per seed
and rescaled by the parameters, so that mdmlib.language.calibration can search the
parameters with everything else fixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mdmlib.infra.checks import real_number, whole_number
from mdmlib.language.synthetic import MarkovLanguage
from mdmlib.infra.memory import require_memory


@dataclass(frozen=True)
class ClusteredSpec:
    vocab_size: int
    num_classes: int = 32
    seed: int = 0
    zipf_exponent: float = 1.2  # within a class, token rank r weighs r^-zipf_exponent
    emission_spread: float = 2.0  # log-normal spread of each token's weight around that
    transition_spread: float = 3.0  # larger: the next token's class is more predictable

    def __post_init__(self):
        whole_number(self.vocab_size, "vocab_size", minimum=2)
        whole_number(self.num_classes, "num_classes")
        whole_number(self.seed, "seed", minimum=0)
        if self.num_classes > self.vocab_size:
            raise ValueError(f"num_classes ({self.num_classes}) cannot exceed vocab_size ({self.vocab_size}): every class needs a token")
        for name in ("zipf_exponent", "emission_spread", "transition_spread"):
            value = real_number(getattr(self, name), name)
            if not math.isfinite(value) or (name != "zipf_exponent" and value < 0):
                raise ValueError(f"{name} must be finite{'' if name == 'zipf_exponent' else ' and non-negative'}, got {value}")


@dataclass(frozen=True)
class ChainNoise:
    """The random draws of a language, before its parameters scale them."""
    token_class: torch.Tensor  # (V,) int64: the class of each token
    emission: torch.Tensor  # (V,) standard normals
    transition: torch.Tensor  # (K, K) standard normals


def chain_noise(vocab_size: int, num_classes: int, seed: int) -> ChainNoise:
    g = torch.Generator().manual_seed(seed)
    token_class = torch.randperm(vocab_size, generator=g) % num_classes  # balanced: sizes differ by at most one
    emission = torch.randn(vocab_size, generator=g, dtype=torch.float64)
    transition = torch.randn(num_classes, num_classes, generator=g, dtype=torch.float64)
    return ChainNoise(token_class, emission, transition)


def entropies_of_rows(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1)


def stationary(T: torch.Tensor) -> torch.Tensor:
    """rho with rho T = rho, sum 1: the left eigenvector for eigenvalue 1 (as MarkovLanguage)."""
    evals, evecs = torch.linalg.eig(T.T)
    rho = evecs[:, torch.argmin((evals - 1).abs())].real
    rho = (rho / rho.sum()).clamp(min=0)
    return rho / rho.sum()


@dataclass(frozen=True)
class Emissions:
    """e_v, each token's probability within its class, and per class its entropy and maximum."""
    token_class: torch.Tensor  # (V,) int64
    probability: torch.Tensor  # (V,) float64
    entropy: torch.Tensor  # (K,) float64
    largest: torch.Tensor  # (K,) float64

    @property
    def num_classes(self) -> int:
        return self.entropy.numel()


def emissions(noise: ChainNoise, zipf_exponent: float, emission_spread: float) -> Emissions:
    cls, K = noise.token_class, noise.transition.shape[0]
    log_w = -zipf_exponent * torch.log(torch.arange(1, cls.numel() + 1, dtype=torch.float64)) + emission_spread * noise.emission
    top = torch.full((K,), -torch.inf, dtype=torch.float64).scatter_reduce(0, cls, log_w, "amax")
    w = torch.exp(log_w - top[cls])  # each class's largest weight is 1: nothing underflows to a zero class
    e = w / torch.zeros(K, dtype=torch.float64).index_add_(0, cls, w)[cls]
    entropy = torch.zeros(K, dtype=torch.float64).index_add_(0, cls, -e * torch.log(torch.where(e > 0, e, torch.ones_like(e))))
    largest = torch.zeros(K, dtype=torch.float64).scatter_reduce(0, cls, e, "amax")
    return Emissions(cls, e, entropy, largest)


def transitions(noise: ChainNoise, transition_spread: float) -> torch.Tensor:
    return torch.softmax(transition_spread * noise.transition, 1)


def chain_entropy_rate(T: torch.Tensor, rho: torch.Tensor, emission: Emissions, length: int) -> float:
    """The exact entropy rate E[-log p(x)] / L of the class chain T (stationary rho) with
    these emissions, for sequences of `length` tokens (module docstring)."""
    emitted = rho @ emission.entropy  # every token's class is distributed as rho (stationary)
    first = entropies_of_rows(rho) + emitted
    per_step = rho @ entropies_of_rows(T) + emitted
    return float((first + (length - 1) * per_step) / length)


def sample_chain(T: torch.Tensor, rho: torch.Tensor, emission: Emissions, u_class: torch.Tensor, u_token: torch.Tensor) -> torch.Tensor:
    """Sequences (B, L) from uniforms u_class and u_token (B, L), float64: the class path by
    inverse CDF of rho then of T's rows, each token by inverse CDF within its class. The
    same uniforms under other parameters give the other language's sequences (for the search)."""
    B, L = u_class.shape
    K = T.shape[0]
    classes = torch.empty(B, L, dtype=torch.int64)
    cdf_rho, cdf_T = torch.cumsum(rho, 0), torch.cumsum(T, 1)
    classes[:, 0] = torch.searchsorted(cdf_rho, u_class[:, 0] * cdf_rho[-1], right=True).clamp(max=K - 1)
    for l in range(1, L):
        rows = cdf_T[classes[:, l - 1]]
        classes[:, l] = torch.searchsorted(rows, (u_class[:, l] * rows[:, -1]).unsqueeze(1), right=True).squeeze(1).clamp(max=K - 1)
    x = torch.empty(B, L, dtype=torch.int64)
    for h in range(K):  # one search per class: no (B L, V) rows are built
        members = torch.nonzero(emission.token_class == h).flatten()
        cdf = torch.cumsum(emission.probability[members], 0)
        at = classes == h
        x[at] = members[torch.searchsorted(cdf, u_token[at] * cdf[-1], right=True).clamp(max=members.numel() - 1)]
    return x


class ClusteredLanguage(MarkovLanguage):
    """The class-chain language of a ClusteredSpec (module docstring); the mask is id V.
    Sampling, likelihood and entropy rate go through the K classes; everything else
    (the exact denoiser of mdmlib.language.synthetic included) is MarkovLanguage's."""

    def __init__(self, spec: ClusteredSpec):
        if not isinstance(spec, ClusteredSpec):
            raise TypeError(f"a ClusteredLanguage is built from a ClusteredSpec, got {type(spec).__name__}")
        V, K = spec.vocab_size, spec.num_classes
        # A and B (V x K each, float64) and the draws, before anything is built
        require_memory(2 * 8 * V * K + 24 * V, f"a clustered language of {V:,} tokens and {K:,} classes (16 bytes a token and class)")
        self.spec = spec
        noise = chain_noise(V, K, spec.seed)
        self.emissions = emissions(noise, spec.zipf_exponent, spec.emission_spread)
        self.transition = transitions(noise, spec.transition_spread)
        cls = self.emissions.token_class
        self.A = self.transition[cls]
        self.B = torch.zeros(K, V, dtype=torch.float64)
        self.B[cls, torch.arange(V)] = self.emissions.probability
        self._set_derived()
        self.K = self.transition  # B @ A is T up to rounding; keep T itself
        self.rho = stationary(self.transition)
        self.pi = self.rho[cls] * self.emissions.probability

    @classmethod
    def from_matrices(cls, A, B):
        raise TypeError("a ClusteredLanguage is built from a ClusteredSpec; MarkovLanguage.from_matrices builds a general one")

    @property
    def token_class(self) -> torch.Tensor:
        return self.emissions.token_class

    def sample(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Exact samples (batch, length), drawn through the class path (sample_chain)."""
        batch, length = whole_number(batch, "batch"), whole_number(length, "length")
        u_class = torch.rand(batch, length, generator=generator, dtype=torch.float64)
        u_token = torch.rand(batch, length, generator=generator, dtype=torch.float64)
        return sample_chain(self.transition, self.rho, self.emissions, u_class, u_token)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for each sequence of x (B, L), float64, through the classes."""
        self._check_tokens(x)
        c = self.token_class[x]
        logp = torch.log(self.pi[x[:, 0]])
        if x.shape[1] > 1:
            logp = logp + (torch.log(self.transition[c[:, :-1], c[:, 1:]]) + torch.log(self.emissions.probability[x[:, 1:]])).sum(1)
        return logp

    def entropy_rate(self, length: int, chunk: int = 1024) -> float:
        """E[-log p(x)] / L for sequences of this length, exactly, through the class chain
        (`chunk` is MarkovLanguage's and unused here)."""
        return chain_entropy_rate(self.transition, self.rho, self.emissions, whole_number(length, "length"))
