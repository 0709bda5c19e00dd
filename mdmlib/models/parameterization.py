"""Networks as denoisers for mdmlib's samplers: MDLM's "subs" and SEDD's score.

A sampler calls `denoiser(x, t)` with x (B, L) holding tokens 0..V-1 and the mask
id V, and t (B,) the time; it wants (B, L, V) probabilities over the V tokens
(mdmlib.mdm.samplers). The network sees the noise level sigma(t) = -log(1 - m(t))
of the schedule it was trained with (mdmlib.mdm.schedules.total_noise; MDLM and SEDD:
"loglinear", m(t) = (1 - 1e-3) t); a network that is not time-conditioned is
given sigma = 0, so t does not matter.

MDLM, "subs" (PAPER.md section 6): the network's logits over V + 1 ids get -inf
at the mask id, a softmax over the rest gives mu at masked positions, and an
unmasked position is one-hot on its own token ("carry over").

SEDD: the network's output is a log score. SEDD's forward subtracts
log(expm1(sigma)) and log(V) (with scale_by_sigma; V + 1 ids, so V = ids - 1)
and sets the entry of the position's own id to 0. For the absorbing process the
exact score of a masked position l is
    s_y = p_sigma(x with y at l) / p_sigma(x) = e^-sigma / (1 - e^-sigma) * p_0(y | unmasked tokens)
        = p_0(y | unmasked tokens) / expm1(sigma),
so mu = expm1(sigma) * s over the V tokens, and exactly so mu = softmax(log s)
over the V tokens (the exact score sums to 1 / expm1(sigma)). A learned score
need not sum to that, so we normalise: softmax over the tokens, which keeps the
ratios the network states and returns a distribution. The mask's own entry is
dropped; unmasked positions are one-hot, as in "subs".

`time_conditioned` tells the samplers whether the output depends on t (the network's
config.time_conditioning; always so for SEDD): they then refuse to reuse a cached output
at a later step unless asked (mdmlib.mdm.samplers, allow_stale_time).
"""
from __future__ import annotations

import math

import torch

from mdmlib.infra.memory import require_memory
from mdmlib.mdm.schedules import total_noise
from mdmlib.models.dit import DiT


def _one_hot_where_unmasked(probs: torch.Tensor, x: torch.Tensor, mask_id: int) -> torch.Tensor:
    observed = x != mask_id
    probs[observed] = torch.nn.functional.one_hot(x[observed], probs.shape[-1]).to(probs.dtype)
    return probs


def subs_probabilities(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, L, V + 1) raw logits -> (B, L, V) probabilities: no mask, carry over unmasked tokens."""
    mask_id = logits.shape[-1] - 1
    probs = torch.softmax(logits[..., :mask_id].float(), dim=-1)  # the same as setting the mask logit to -inf
    return _one_hot_where_unmasked(probs, x, mask_id)


def sedd_log_score(output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, scale_by_sigma: bool = True) -> torch.Tensor:
    """SEDD's log score from its network's raw output (B, L, V + 1), as SEDD's forward computes it."""
    if scale_by_sigma:
        output = output - torch.log(torch.expm1(sigma.to(output.dtype)))[:, None, None] - math.log(output.shape[-1] - 1)
    return output.scatter(-1, x[..., None], 0.0)


def score_to_probabilities(log_score: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, L, V + 1) log scores -> (B, L, V) probabilities: softmax over the tokens at
    masked positions (see the module docstring), one-hot at unmasked ones."""
    mask_id = log_score.shape[-1] - 1
    probs = torch.softmax(log_score[..., :mask_id].float(), dim=-1)
    return _one_hot_where_unmasked(probs, x, mask_id)


class _NetworkDenoiser:
    def __init__(self, network: DiT, schedule: str = "loglinear", max_batch: int = 64):
        if not isinstance(network, DiT):
            raise TypeError(f"expected a DiT (kind 'mdlm' or 'sedd'), got {type(network).__name__}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self.network, self.schedule, self.max_batch = network, schedule, max_batch
        total_noise(schedule, torch.zeros(1))  # an unknown schedule fails here, not mid-sampling

    @property
    def mask_id(self) -> int:
        return self.network.config.extra_id

    @property
    def vocab_size(self) -> int:
        return self.mask_id

    @property
    def time_conditioned(self) -> bool:
        """True when the network reads the noise level: its output then depends on t."""
        return bool(self.network.config.time_conditioning)

    def sigma(self, t, batch: int) -> torch.Tensor:
        """(batch,) float64 noise levels for times t (a number or (batch,))."""
        if t is None:
            if self.network.config.time_conditioning:
                raise ValueError("this network is time-conditioned: the denoiser needs t")
            return torch.zeros(batch, dtype=torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64).cpu()
        t = t.expand(batch) if t.dim() == 0 else t
        if t.shape != (batch,):
            raise ValueError(f"t must be a number or have shape ({batch},), got {tuple(t.shape)}")
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must lie in [0, 1]")
        sigma = total_noise(self.schedule, t)
        if self.network.config.time_conditioning and not torch.isfinite(sigma).all():
            raise ValueError(f"sigma(t) is infinite at t = 1 for the {self.schedule!r} schedule; MDLM and SEDD networks use 'loglinear'")
        return sigma

    def _output(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, t=None) -> torch.Tensor:
        """x (B, L) -> (B, L, V) float32 probabilities, on x's device."""
        if x.dim() != 2:
            raise ValueError(f"x must have shape (batch, length), got {tuple(x.shape)}")
        sigma = self.sigma(t, x.shape[0])
        require_memory(4 * x.numel() * self.mask_id, f"the network's float32 output for {x.shape[0]:,} x {x.shape[1]:,} positions of {self.mask_id:,} tokens")
        device = self.network.vocab_embed.embedding.device
        was_training = self.network.training
        if was_training:  # switching walks every module: a cost per call that samplers pay thousands of times
            self.network.eval()
        try:
            with torch.no_grad():
                out = [
                    self._output(x[i : i + self.max_batch].to(device), sigma[i : i + self.max_batch].to(device)).to(x.device)
                    for i in range(0, x.shape[0], self.max_batch)
                ]
        finally:
            if was_training:
                self.network.train()
        return torch.cat(out)


class SubsDenoiser(_NetworkDenoiser):
    """An MDLM network (kind "mdlm") with the "subs" parameterisation."""

    def __init__(self, network: DiT, schedule: str = "loglinear", max_batch: int = 64):
        super().__init__(network, schedule, max_batch)
        if network.config.kind != "mdlm":
            raise ValueError(f"SubsDenoiser needs an MDLM network, got kind {network.config.kind!r} (SEDD: ScoreDenoiser)")

    def _output(self, x, sigma):
        return subs_probabilities(self.network(x, sigma.float()), x)


class ScoreDenoiser(_NetworkDenoiser):
    """A SEDD network (kind "sedd"): its log score turned into probabilities."""

    def __init__(self, network: DiT, schedule: str = "loglinear", max_batch: int = 64):
        super().__init__(network, schedule, max_batch)
        if network.config.kind != "sedd":
            raise ValueError(f"ScoreDenoiser needs a SEDD network, got kind {network.config.kind!r} (MDLM: SubsDenoiser)")

    def sigma(self, t, batch):
        sigma = super().sigma(t, batch)
        if (sigma <= 0).any():
            raise ValueError("SEDD's score is undefined at sigma = 0 (t = 0)")
        return sigma

    def log_score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """SEDD's forward: the log score (B, L, V + 1) at noise levels sigma (B,)."""
        return sedd_log_score(self.network(x, sigma.float()), x, sigma, self.network.config.scale_by_sigma)

    def _output(self, x, sigma):
        return score_to_probabilities(self.log_score(x, sigma), x)
