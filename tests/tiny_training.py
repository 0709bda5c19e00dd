"""Tiny languages, networks and setups shared by the loss, training and notebook-09 tests."""
import itertools
import math

import torch

from mdmlib.models import DiTConfig
from mdmlib.models.training import TrainSetup
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

TINY_LENGTH = 4


def tiny_language() -> MarkovLanguage:
    """Three tokens, three classes, a sticky chain: the context matters, so the masked
    counts have clearly different conditional NLLs and wrong weightings show."""
    A = torch.full((3, 3), 0.05, dtype=torch.float64) + 0.85 * torch.eye(3, dtype=torch.float64)
    B = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    return MarkovLanguage.from_matrices(A, B)


class ExactNetwork(torch.nn.Module):
    """A stand-in network whose output is the exact conditional: logits = log mu at every
    masked position, the mask's logit -inf (what a perfect MDM would output)."""

    def __init__(self, language: MarkovLanguage, length: int, kind: str = "mdlm"):
        super().__init__()
        self.language = language
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the losses a device
        self.config = DiTConfig(vocab_size=language.vocab_size + 1, model_length=length, hidden_dim=2, n_heads=1, n_blocks=1, cond_dim=1, kind=kind)
        self.denoiser = ExactDenoiser(language, torch.float64)

    def _with_mask_column(self, logp: torch.Tensor) -> torch.Tensor:
        return torch.cat([logp, torch.full((*logp.shape[:-1], 1), -math.inf, dtype=logp.dtype)], -1).float()

    def forward(self, ids, sigma=None):
        if self.config.kind == "ar":  # position l predicts token l + 1 from token l (a Markov chain)
            rows = self.language.transition_rows(ids.clamp(max=self.language.vocab_size - 1))
            rows[:, 0] = self.language.pi  # after the start id: the stationary law
            return self._with_mask_column(torch.log(rows))
        return self._with_mask_column(torch.log(self.denoiser(ids)))


def enumerated():
    """The tiny language, and E[S_n] for its exact conditionals, by enumeration: the
    expected masked NLL sum when n of the L positions (uniformly chosen) are masked."""
    language = tiny_language()
    V, L = language.vocab_size, TINY_LENGTH
    x = torch.tensor(list(itertools.product(range(V), repeat=L)))
    p = language.log_likelihood(x).exp()
    patterns = torch.tensor(list(itertools.product([False, True], repeat=L)))
    xs = x[:, None].expand(-1, len(patterns), -1)
    masked = patterns[None].expand(len(x), -1, -1)
    ids = torch.where(masked, language.mask_id, xs).reshape(-1, L)
    mu = ExactDenoiser(language, torch.float64)(ids).reshape(len(x), len(patterns), L, V)
    nll = -torch.log(mu.gather(-1, xs[..., None]).squeeze(-1))
    S = torch.where(masked, nll, 0.0).sum(-1)  # (sequences, patterns)
    n_of = patterns.sum(1)
    expected_S = torch.stack([(p[:, None] * S[:, n_of == n]).sum(0).mean() for n in range(1, L + 1)])
    entropy = float(-(p * p.log()).sum())
    return language, expected_S, entropy


TINY_SETUP = TrainSetup(
    language=LanguageSpec(vocab_size=8, num_classes=2, seed=3), length=8,
    hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8,
    batch_size=4, steps=6, learning_rate=1e-2, warmup_steps=2, dropout=0.1,
)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
