"""The DiT backbone of MDLM and SEDD, and its causal twin, in plain PyTorch.

Parameter names and shapes are those of the published checkpoints (PAPER.md
section 6), registered in the published order, which is also the order of an
EMA's list of shadow parameters. The forward pass, for ids (B, L) and noise
levels sigma (B,), with D = hidden_dim, C = cond_dim:

  x = vocab_embed.embedding[ids]                                      (B, L, D)
  c = silu(sigma_map.mlp(e)), e = [cos(sigma f), sin(sigma f)],        (B, C)
      f_k = exp(-ln(10000) k / 128), k = 0..127 (a 256-wide embedding)
  each block, with shift1, scale1, gate1, shift2, scale2, gate2 = adaLN_modulation(c) in that order:
      h = LN(x) (1 + scale1) + shift1;  q, k, v = h attn_qkv^T split as (3, heads, head_dim)
      q, k rotated (rotate-half form: dims i and i + head_dim/2 turn by the angle
      position * inv_freq[i], inv_freq[i] = 10000^(-2i/head_dim)); v is not
      x = x + gate1 * attn_out(softmax(q k^T / sqrt(head_dim)) v)
      x = x + gate2 * mlp(LN(x) (1 + scale2) + shift2),  mlp = Linear(D, 4D), GELU (tanh), Linear(4D, D)
  shift, scale = output_layer.adaLN_modulation(c); logits = output_layer.linear(LN(x) (1 + scale) + shift)

LN is a LayerNorm without bias computed in float32. Dropout acts on the two
residual branches in training mode only (never inside attention). A network
that is not time-conditioned is given sigma = 0. On CUDA the blocks and the
output layer run under bfloat16 autocast, as the public code does; the
LayerNorms, the time embedding and the residual stream stay float32, and the
logits are returned in float32.

The causal twin (CausalTransformer) is MDLM's autoregressive backbone: the same
blocks with a causal attention mask and without time input, hence without
sigma_map and without any adaLN_modulation (shift = scale = 0, gate = 1).

architecture_of reads the sizes back from a checkpoint's names and shapes alone (blocks
counted, vocabulary and widths from the shapes), so a config can be checked before a
network is built.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from mdmlib.models.config import DiTConfig

FREQUENCY_EMBEDDING_SIZE = 256  # width of the sinusoidal embedding of sigma
ROTARY_BASE = 10_000
MAX_PERIOD = 10_000  # of the sinusoidal embedding of sigma


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, always in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.float(), (x.shape[-1],)) * self.weight


def timestep_embedding(sigma: torch.Tensor, dim: int = FREQUENCY_EMBEDDING_SIZE) -> torch.Tensor:
    """[cos(sigma f), sin(sigma f)] with f_k = exp(-ln(MAX_PERIOD) k / (dim/2)): (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
    angles = sigma.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, cond_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_EMBEDDING_SIZE, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(sigma))


class Rotary(nn.Module):
    """Rotary position embedding; inv_freq is a (saved) buffer, as in the published checkpoints."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / ROTARY_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))

    def cos_sin(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles, (length, head_dim): the half-width table repeated twice."""
        angles = torch.outer(torch.arange(length, dtype=torch.float32, device=self.inv_freq.device), self.inv_freq.float())
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half form: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), in x's dtype."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


def _modulate(x: torch.Tensor, shift, scale) -> torch.Tensor:
    return x if shift is None else x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """One block. conditioned=False drops adaLN_modulation (the causal twin's block)."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, dropout: float, conditioned: bool, causal: bool):
        super().__init__()
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        if conditioned:
            self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if c is None:
            shift1 = scale1 = shift2 = scale2 = None
            gate1 = gate2 = 1.0
        else:
            shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        B, L, _ = x.shape
        qkv = self.attn_qkv(_modulate(self.norm1(x), shift1, scale1))
        q, k, v = qkv.view(B, L, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # each (B, heads, L, head_dim)
        attended = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, is_causal=self.causal)
        attended = attended.transpose(1, 2).reshape(B, L, -1)
        x = x + gate1 * F.dropout(self.attn_out(attended), self.dropout, self.training)
        branch = self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return x + gate2 * F.dropout(branch, self.dropout, self.training)


class EmbeddingLayer(nn.Module):
    """A bare (vocab_size, D) parameter indexed by token id."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class FinalLayer(nn.Module):
    def __init__(self, dim: int, vocab_size: int, cond_dim: int, conditioned: bool):
        super().__init__()
        self.norm_final = LayerNorm(dim)
        self.linear = nn.Linear(dim, vocab_size)
        if conditioned:
            self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        shift, scale = (None, None) if c is None else self.adaLN_modulation(c)[:, None].chunk(2, dim=-1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class _Backbone(nn.Module):
    """What the bidirectional and the causal network share: embedding, rotary, blocks, output."""

    conditioned = True

    def __init__(self, config: DiTConfig):
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise TypeError(f"expected a DiTConfig, got {type(config).__name__}")
        self.config = config
        D, causal = config.hidden_dim, not self.conditioned
        # registration order = the published parameter order
        self.vocab_embed = EmbeddingLayer(config.vocab_size, D)
        if self.conditioned:
            self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.rotary_emb = Rotary(config.head_dim)
        self.blocks = nn.ModuleList(
            DiTBlock(D, config.n_heads, config.cond_dim, config.dropout, self.conditioned, causal) for _ in range(config.n_blocks)
        )
        self.output_layer = FinalLayer(D, config.vocab_size, config.cond_dim, self.conditioned)
        # None: bfloat16 autocast on CUDA only (as the public code); True/False force it on/off
        self.bf16_autocast: bool | None = None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The public initialisation: embedding Kaiming-uniform (a = sqrt 5), linear
        layers PyTorch's default, adaLN and the output projection zero (adaLN-Zero)."""
        nn.init.kaiming_uniform_(self.vocab_embed.embedding, a=math.sqrt(5))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
            elif isinstance(module, LayerNorm):
                module.weight.fill_(1.0)
        zero = [self.output_layer.linear] + [m.adaLN_modulation for m in [*self.blocks, self.output_layer] if hasattr(m, "adaLN_modulation")]
        for module in zero:
            module.weight.zero_()
            module.bias.zero_()

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor (batch, length), got {ids.dtype} {tuple(ids.shape)}")
        if ids.shape[1] > self.config.model_length:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the network's model_length {self.config.model_length}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")

    def _trunk(self, ids: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self.vocab_embed(ids).float()
        cos, sin = self.rotary_emb.cos_sin(ids.shape[1])
        use_bf16 = self.bf16_autocast if self.bf16_autocast is not None else ids.device.type == "cuda"
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for block in self.blocks:
                x = block(x, cos, sin, c)
            logits = self.output_layer(x, c)
        return logits.float()


class DiT(_Backbone):
    """MDLM's (kind "mdlm") or SEDD's (kind "sedd") bidirectional DiT: forward(ids, sigma) -> raw logits."""

    def __init__(self, config: DiTConfig):
        if config.kind == "ar":
            raise ValueError("kind 'ar' is the causal twin: build it with CausalTransformer (or build_network)")
        super().__init__(config)

    def forward(self, ids: torch.Tensor, sigma) -> torch.Tensor:
        """ids (B, L) int64, sigma (B,) or a number -> logits (B, L, vocab_size) float32."""
        self._check_ids(ids)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=ids.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(ids.shape[0])
        if sigma.shape != (ids.shape[0],):
            raise ValueError(f"sigma must be a number or have shape ({ids.shape[0]},), got {tuple(sigma.shape)}")
        if not self.config.time_conditioning:
            sigma = torch.zeros_like(sigma)
        c = F.silu(self.sigma_map(sigma))
        return self._trunk(ids, c)


class CausalTransformer(_Backbone):
    """The causal twin (kind "ar"): forward(ids) -> logits whose position l sees ids[:, :l+1] only."""

    conditioned = False

    def __init__(self, config: DiTConfig):
        if config.kind != "ar":
            raise ValueError(f"CausalTransformer is for kind 'ar', got {config.kind!r}")
        super().__init__(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self._check_ids(ids)
        return self._trunk(ids, None)


def build_network(config: DiTConfig) -> _Backbone:
    """The network a config describes, with the public initialisation."""
    return CausalTransformer(config) if config.kind == "ar" else DiT(config)


def shape_of(value) -> tuple[int, ...]:
    """A tensor's shape, or a shape given as it is."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def architecture_of(state: dict) -> dict:
    """The sizes a (prefix-free) state dict implies, from its names and shapes (tensors, or
    shapes as tuples): n_blocks always (0 without blocks), the others where a tensor shows them."""
    shapes = {k: shape_of(v) for k, v in state.items()}
    found = {}
    for name in ("vocab_embed.embedding", "output_layer.linear.weight"):  # both are [vocab_size, hidden_dim]
        if len(shapes.get(name, ())) == 2:
            found.setdefault("vocab_size", shapes[name][0])
            found.setdefault("hidden_dim", shapes[name][1])
    if len(shapes.get("sigma_map.mlp.0.weight", ())) == 2:
        found["cond_dim"] = shapes["sigma_map.mlp.0.weight"][0]
    inv_freq = shapes.get("rotary_emb.inv_freq", ())
    if len(inv_freq) == 1 and inv_freq[0] and "hidden_dim" in found:
        found["n_heads"] = found["hidden_dim"] // (2 * inv_freq[0])
    blocks = {int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))}
    found["n_blocks"] = max(blocks) + 1 if blocks else 0
    return found
