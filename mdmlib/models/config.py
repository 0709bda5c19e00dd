"""What a network is made of: one frozen dataclass for every size and kind.

kind     what it is                                         parameter names
"mdlm"   MDLM's DiT: bidirectional, adaLN on sigma           backbone.<name> in a checkpoint
"sedd"   SEDD's DiT: the same blocks, always on sigma,       <name> (no prefix)
         its output read as a log score
"ar"     the causal twin: MDLM's autoregressive backbone     backbone.<name>
         (the same attention and MLP, a causal mask, no
         time input, so no sigma_map and no adaLN)

vocab_size counts every id the network embeds: the tokens plus one extra id,
vocab_size - 1, which is the mask (MDLM), the absorbing state (SEDD) or the
start-of-sequence input (the causal twin). The published sizes are in
PAPER.md section 6; MDLM_OWT and SEDD_SMALL spell them out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KINDS = ("mdlm", "sedd", "ar")


@dataclass(frozen=True)
class DiTConfig:
    vocab_size: int  # tokens + 1 (mask / absorbing state / start id = vocab_size - 1)
    model_length: int = 1024  # longest sequence the network is meant for
    hidden_dim: int = 768
    n_heads: int = 12
    n_blocks: int = 12
    cond_dim: int = 128  # width of the time embedding c (unused by "ar")
    time_conditioning: bool = False  # "mdlm" only: if False the network is given sigma = 0
    dropout: float = 0.1  # on the two residual branches, in training mode only
    kind: str = "mdlm"
    scale_by_sigma: bool = True  # "sedd" only: subtract log(expm1(sigma)) + log(vocab_size - 1)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown network kind {self.kind!r}: expected one of {KINDS}")
        for name in ("vocab_size", "model_length", "hidden_dim", "n_heads", "n_blocks", "cond_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size counts the tokens plus the extra id, so it must be at least 3, got {self.vocab_size}")
        if self.hidden_dim % self.n_heads or (self.hidden_dim // self.n_heads) % 2:
            raise ValueError(f"hidden_dim {self.hidden_dim} must split into {self.n_heads} heads of even width (rotary pairs)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.kind == "sedd" and not self.time_conditioning:
            raise ValueError("SEDD networks are always conditioned on sigma: set time_conditioning=True")
        if self.kind == "ar" and self.time_conditioning:
            raise ValueError("the causal twin has no time input: time_conditioning must be False")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.n_heads

    @property
    def extra_id(self) -> int:
        """The id after the tokens: the mask (MDLM), absorbing state (SEDD) or start input (AR)."""
        return self.vocab_size - 1

    def replace(self, **changes) -> "DiTConfig":
        return dataclasses.replace(self, **changes)


# kuleshov-group/mdlm-owt: GPT-2's 50,257 tokens + the mask id 50,257
MDLM_OWT = DiTConfig(vocab_size=50_258, model_length=1024, hidden_dim=768, n_heads=12, n_blocks=12, cond_dim=128, time_conditioning=False, dropout=0.1)
# louaaron/sedd-small: the same sizes, absorbing state 50,257, always on sigma
SEDD_SMALL = MDLM_OWT.replace(kind="sedd", time_conditioning=True, scale_by_sigma=True)
