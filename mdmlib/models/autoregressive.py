"""The causal twin as a language model: next-token probabilities and likelihoods.

The network reads the start id S = vocab_size - 1 followed by x_1..x_{L-1}; its
output at position l is the law of x_{l+1} given x_1..x_l (position 0: the first
token). The start id is never predicted (its logit is -inf). So

    log p(x) = sum_l log softmax(logits)[l, x_l],   logits = network([S, x_1..x_{L-1}]).

`next_token_probabilities(prefix)` serves `mdmlib.mdm.samplers.ar_sample`;
`log_likelihood` / `nll_per_token` have the names and meaning of
`mdmlib.language.synthetic.MarkovLanguage`'s, so a trained model can stand in for the exact
likelihood as a (learned) judge.
"""
from __future__ import annotations

import torch

from mdmlib.models.dit import CausalTransformer


class AutoregressiveModel:
    def __init__(self, network: CausalTransformer, max_batch: int = 64):
        if not isinstance(network, CausalTransformer):
            raise TypeError(f"expected a CausalTransformer (kind 'ar'), got {type(network).__name__}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self.network, self.max_batch = network, max_batch

    @property
    def vocab_size(self) -> int:
        return self.network.config.extra_id

    @property
    def start_id(self) -> int:
        return self.network.config.extra_id

    def _check_tokens(self, x: torch.Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"token batches must have shape (batch, length), got {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size})")

    def _log_probs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Inputs starting with the start id -> (B, l, V) log-probabilities of the next token."""
        device = self.network.vocab_embed.embedding.device
        was_training = self.network.training
        if was_training:  # switching walks every module: a cost per call
            self.network.eval()
        try:
            with torch.no_grad():
                out = [
                    torch.log_softmax(self.network(inputs[i : i + self.max_batch].to(device))[..., : self.vocab_size], -1).to(inputs.device)
                    for i in range(0, inputs.shape[0], self.max_batch)
                ]
        finally:
            if was_training:
                self.network.train()
        return torch.cat(out)

    def _with_start(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full((x.shape[0], 1), self.start_id, dtype=torch.int64, device=x.device), x.long()], 1)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float32: at l, log p(. | x_<l)."""
        self._check_tokens(x)
        return self._log_probs(self._with_start(x[:, :-1]))

    def next_token_probabilities(self, prefix: torch.Tensor) -> torch.Tensor:
        """(B, V) float32: the law of the token after `prefix` (B, l), l >= 0."""
        self._check_tokens(prefix)
        return self._log_probs(self._with_start(prefix))[:, -1].exp()

    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) float64: -log p(x_l | x_<l)."""
        return -self.log_probs(x).gather(-1, x.long()[..., None]).squeeze(-1).double()

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64: log p(x) under the model."""
        return -self.token_nll(x).sum(1)

    def nll_per_token(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_likelihood(x) / x.shape[1]
