"""Exact laws on a language small enough to list every sequence (V^L of them).

Nothing here samples: each law is a sum over every way the sampler can go, with
the denoiser's own outputs as the factors.

language_law          p(x) for every sequence
first_hitting_law     the first-hitting sampler: an average over the L! unmasking orders
                      of the product of the denoiser's conditionals along the order
ancestral_law         the ancestral sampler with N steps and exact draws: a sum over the
                      ordered partitions of the positions into groups that unmask in
                      the same step (positions of one group are drawn independently)
posterior_by_bayes    E[e_{x_0} | x_t] at time t by Bayes' rule over all x_0, with
                      the forward process's t-dependent factors written out
per_count_losses      the population loss for each number n of masked tokens,
                      E_{x_0 ~ p} E_{x_n} [(1/n) sum_{l masked} -log mu^l(x_n)[x_0^l]]
A denoiser here is any callable x (B, L) -> (B, L, V) probabilities.
"""
from __future__ import annotations

import itertools
import math

import torch

from mdmlib.mdm.schedules import mask_probability, unmask_step_probabilities

MAX_SEQUENCES = 1_000_000  # V^L above this is not "small enough to list"


def all_sequences(vocab: int, length: int) -> torch.Tensor:
    """Every sequence (V^L, L), in the order of `sequence_index`."""
    if vocab < 1 or length < 1:
        raise ValueError(f"vocab and length must be positive, got {vocab} and {length}")
    if vocab**length > MAX_SEQUENCES:
        raise ValueError(f"{vocab}^{length} sequences is too many to list (limit {MAX_SEQUENCES:,})")
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.int64)


def sequence_index(x: torch.Tensor, vocab: int) -> torch.Tensor:
    """The row of each sequence of x (B, L) in all_sequences(vocab, L)."""
    if x.dim() != 2:
        raise ValueError(f"sequences must have shape (batch, length), got {tuple(x.shape)}")
    if ((x < 0) | (x >= vocab)).any():
        raise ValueError(f"tokens must lie in [0, {vocab})")
    weights = vocab ** torch.arange(x.shape[1] - 1, -1, -1)
    return (x * weights).sum(1)


def sequence_counts(x: torch.Tensor, vocab: int) -> torch.Tensor:
    """How often each of the V^L sequences occurs in x (B, L)."""
    return torch.bincount(sequence_index(x, vocab), minlength=vocab ** x.shape[1])


def language_law(language, length: int) -> torch.Tensor:
    """p(x) for every sequence of all_sequences (float64)."""
    return torch.exp(language.log_likelihood(all_sequences(language.vocab_size, length)))


class _Outputs:
    """The denoiser's output on every sequence of X with only the positions of a set
    revealed; computed once per set (there are 2^L of them)."""

    def __init__(self, denoiser, X: torch.Tensor):
        self.denoiser, self.X, self.memo = denoiser, X, {}

    def __call__(self, revealed: frozenset) -> torch.Tensor:
        if revealed not in self.memo:
            state = torch.full_like(self.X, self.denoiser.mask_id)
            cols = sorted(revealed)
            state[:, cols] = self.X[:, cols]
            mu = self.denoiser(state).to(torch.float64)
            self.memo[revealed] = mu / mu.sum(-1, keepdim=True)
        return self.memo[revealed]


def _chain(outputs: _Outputs, groups: list[list[int]]) -> torch.Tensor:
    """P(X | the positions unmask group by group, in this order), each group's
    tokens drawn independently from the denoiser's output before the group."""
    X = outputs.X
    rows = torch.arange(X.shape[0])
    revealed = frozenset()
    prob = torch.ones(X.shape[0], dtype=torch.float64)
    for group in groups:
        mu = outputs(revealed)
        for l in group:
            prob = prob * mu[rows, l, X[:, l]]
        revealed = revealed | set(group)
    return prob


def first_hitting_law(denoiser, vocab: int, length: int) -> torch.Tensor:
    """The law of the first-hitting sampler: a uniformly random order, one token
    at a time from the denoiser's conditional."""
    outputs = _Outputs(denoiser, all_sequences(vocab, length))
    orders = list(itertools.permutations(range(length)))
    return sum(_chain(outputs, [[l] for l in order]) for order in orders) / len(orders)


def ordered_partitions(length: int) -> list[list[list[int]]]:
    """Every ordered partition of range(length) into non-empty groups."""
    out = []
    for labels in itertools.product(range(length), repeat=length):
        k = max(labels) + 1
        if set(labels) == set(range(k)):
            out.append([[l for l in range(length) if labels[l] == j] for j in range(k)])
    return out


def partition_probability(sizes: list[int], step_probs: torch.Tensor) -> float:
    """P(the groups, of these sizes, unmask in this order, each in one step) when every
    position picks its unmask step independently with probabilities step_probs
    (in time order): the sum over steps s_1 < ... < s_k of prod_j p_{s_j}^{size_j}."""
    p = step_probs.to(torch.float64)
    f = p ** sizes[0]
    for size in sizes[1:]:
        before = torch.cumsum(f, 0) - f  # sum over strictly earlier steps
        f = before * p**size
    return float(f.sum())


def ancestral_law(denoiser, vocab: int, length: int, steps: int, schedule: str = "linear") -> torch.Tensor:
    """The law of the ancestral sampler with `steps` steps and exact categorical draws."""
    outputs = _Outputs(denoiser, all_sequences(vocab, length))
    step_probs = unmask_step_probabilities(schedule, steps)
    law = torch.zeros(outputs.X.shape[0], dtype=torch.float64)
    for groups in ordered_partitions(length):
        weight = partition_probability([len(g) for g in groups], step_probs)
        if weight > 0:
            law += weight * _chain(outputs, groups)
    return law


def several_per_step_probability(length: int, steps: int, schedule: str = "linear") -> float:
    """P(some step unmasks two or more positions). Given that none does, the ancestral
    sampler unmasks one token at a time in a uniformly random order, which is the
    first-hitting sampler's law; so this bounds their total-variation distance."""
    step_probs = unmask_step_probabilities(schedule, steps)
    singles = partition_probability([1] * length, step_probs) * math.factorial(length)
    return 1.0 - singles


def posterior_by_bayes(language, x_t: torch.Tensor, t: float, schedule: str = "linear") -> torch.Tensor:
    """E[e_{x_0^l} | x_t] (B, L, V) at time t, by Bayes' rule over every x_0: the
    forward process keeps each token with probability 1 - m(t) and masks it with
    probability m(t), independently, and both factors are kept in the sum."""
    V, L = language.vocab_size, x_t.shape[1]
    X = all_sequences(V, L)
    prior = language_law(language, L)
    m = float(mask_probability(schedule, torch.tensor(t, dtype=torch.float64)))
    masked = x_t == language.mask_id  # (B, L)
    agrees = X[None, :, :] == x_t[:, None, :]  # (B, S, L)
    factor = torch.where(masked[:, None, :], torch.tensor(m, dtype=torch.float64), torch.where(agrees, 1.0 - m, 0.0).to(torch.float64))
    joint = prior[None, :] * factor.prod(-1)  # p(x_0) q(x_t | x_0), (B, S)
    if (joint.sum(1) == 0).any():
        raise ValueError("some x_t has probability zero at this time")
    post = joint / joint.sum(1, keepdim=True)
    onehot = torch.nn.functional.one_hot(X, V).to(torch.float64)  # (S, L, V)
    return torch.einsum("bs,slv->blv", post, onehot)


def per_count_losses(language, denoiser, length: int) -> torch.Tensor:
    """(L,) the exact population loss for n = 1..L masked tokens:
    E_{x_0 ~ p} E_{x_n} [(1/n) sum_{l masked} -log mu^l(x_n)[x_0^l]], the masked set
    uniform among the C(L, n) sets of size n."""
    outputs = _Outputs(denoiser, all_sequences(language.vocab_size, length))
    X, prior = outputs.X, language_law(language, length)
    rows = torch.arange(X.shape[0])
    out = torch.zeros(length, dtype=torch.float64)
    for n in range(1, length + 1):
        sets = list(itertools.combinations(range(length), n))
        for masked in sets:
            mu = outputs(frozenset(range(length)) - set(masked))
            nll = sum(-torch.log(mu[rows, l, X[:, l]]) for l in masked) / n
            out[n - 1] += float((prior * nll).sum()) / len(sets)
    return out
