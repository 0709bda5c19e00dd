"""Independent truth for the network tests: the published parameter list, written out
from PAPER.md section 6, and a slow reference forward pass in float64 with explicit
loops, sharing no code with mdmlib.models."""
from __future__ import annotations

import math

import torch


def published_layout(D: int, C: int, V: int, n_blocks: int, head_dim: int, kind: str = "mdlm") -> list[tuple[str, tuple]]:
    """(name, shape) in the published order. "mdlm": under backbone.; "sedd": no prefix;
    "ar": MDLM's autoregressive backbone (no sigma_map, no adaLN), under backbone."""
    prefix = "" if kind == "sedd" else "backbone."
    timed = kind != "ar"
    keys = [("vocab_embed.embedding", (V, D))]
    if timed:
        keys += [("sigma_map.mlp.0.weight", (C, 256)), ("sigma_map.mlp.0.bias", (C,)), ("sigma_map.mlp.2.weight", (C, C)), ("sigma_map.mlp.2.bias", (C,))]
    keys += [("rotary_emb.inv_freq", (head_dim // 2,))]
    for i in range(n_blocks):
        b = f"blocks.{i}."
        keys += [
            (b + "norm1.weight", (D,)),
            (b + "attn_qkv.weight", (3 * D, D)),
            (b + "attn_out.weight", (D, D)),
            (b + "norm2.weight", (D,)),
            (b + "mlp.0.weight", (4 * D, D)),
            (b + "mlp.0.bias", (4 * D,)),
            (b + "mlp.2.weight", (D, 4 * D)),
            (b + "mlp.2.bias", (D,)),
        ]
        if timed:
            keys += [(b + "adaLN_modulation.weight", (6 * D, C)), (b + "adaLN_modulation.bias", (6 * D,))]
    keys += [("output_layer.norm_final.weight", (D,)), ("output_layer.linear.weight", (V, D)), ("output_layer.linear.bias", (V,))]
    if timed:
        keys += [("output_layer.adaLN_modulation.weight", (2 * D, C)), ("output_layer.adaLN_modulation.bias", (2 * D,))]
    return [(prefix + k, s) for k, s in keys]


def random_published_state(D, C, V, n_blocks, n_heads, generator, kind="mdlm") -> dict[str, torch.Tensor]:
    """Random float32 weights in the published layout, scaled so every layer has about
    unit gain (weights ~ N(0, 1/fan_in)); LayerNorm weights near 1; inv_freq by its formula."""
    head_dim = D // n_heads
    state = {}
    for name, shape in published_layout(D, C, V, n_blocks, head_dim, kind):
        if name.endswith("inv_freq"):
            state[name] = (1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)).float()
        elif "norm" in name:
            state[name] = 1 + 0.2 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:
            state[name] = 0.2 * torch.randn(shape, generator=generator)
        else:
            state[name] = torch.randn(shape, generator=generator) / math.sqrt(shape[-1] if "embedding" not in name else 1)
    return state


def _layer_norm(x, w):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _silu(x):
    return x / (1 + torch.exp(-x))


def reference_logits(state: dict, ids: torch.Tensor, sigma, n_heads: int, *, time_conditioning=True, causal=False) -> torch.Tensor:
    """The published forward pass, one sequence, one head, one position at a time, float64.
    `state` has no prefix. Returns (B, L, V) float64."""
    S = {k: v.double() for k, v in state.items()}
    E = S["vocab_embed.embedding"]
    V, D = E.shape
    hd, half = D // n_heads, D // n_heads // 2
    n_blocks = 1 + max(int(k.split(".")[1]) for k in S if k.startswith("blocks."))
    inv_freq = S["rotary_emb.inv_freq"]
    B, L = ids.shape

    def lin(x, name, bias=True):
        y = torch.einsum("...i,oi->...o", x, S[name + ".weight"])
        return y + S[name + ".bias"] if bias else y

    out = torch.empty(B, L, V, dtype=torch.float64)
    for b in range(B):
        x = E[ids[b]].clone()
        if causal:
            c = None
        else:
            s = float(sigma[b]) if time_conditioning else 0.0
            freqs = [math.exp(-math.log(10000) * k / 128) for k in range(128)]
            emb = torch.tensor([math.cos(s * f) for f in freqs] + [math.sin(s * f) for f in freqs], dtype=torch.float64)
            c = _silu(lin(_silu(lin(emb, "sigma_map.mlp.0")), "sigma_map.mlp.2"))
        for i in range(n_blocks):
            p = f"blocks.{i}."
            if c is None:
                shift1 = scale1 = shift2 = scale2 = torch.zeros(D, dtype=torch.float64)
                gate1 = gate2 = torch.ones(D, dtype=torch.float64)
            else:
                m = lin(c, p + "adaLN_modulation")
                shift1, scale1, gate1, shift2, scale2, gate2 = (m[j * D : (j + 1) * D] for j in range(6))
            h = _layer_norm(x, S[p + "norm1.weight"]) * (1 + scale1) + shift1
            qkv = lin(h, p + "attn_qkv", bias=False)
            attended = torch.zeros(L, D, dtype=torch.float64)
            for head in range(n_heads):
                cols = slice(head * hd, (head + 1) * hd)
                q, k, v = qkv[:, cols], qkv[:, D:][:, cols], qkv[:, 2 * D :][:, cols]
                q_rot, k_rot = q.clone(), k.clone()
                for pos in range(L):
                    for j in range(half):
                        angle = pos * float(inv_freq[j])
                        cs, sn = math.cos(angle), math.sin(angle)
                        for src, dst in ((q, q_rot), (k, k_rot)):
                            a, bb = float(src[pos, j]), float(src[pos, j + half])
                            dst[pos, j], dst[pos, j + half] = a * cs - bb * sn, bb * cs + a * sn
                for pos in range(L):
                    seen = range(pos + 1) if causal else range(L)
                    scores = torch.tensor([float(q_rot[pos] @ k_rot[other]) / math.sqrt(hd) for other in seen], dtype=torch.float64)
                    weights = torch.exp(scores - scores.max())
                    weights = weights / weights.sum()
                    attended[pos, cols] = sum(w * v[other] for w, other in zip(weights, seen))
            x = x + gate1 * lin(attended, p + "attn_out", bias=False)
            h = _layer_norm(x, S[p + "norm2.weight"]) * (1 + scale2) + shift2
            x = x + gate2 * lin(_gelu_tanh(lin(h, p + "mlp.0")), p + "mlp.2")
        if c is None:
            h = _layer_norm(x, S["output_layer.norm_final.weight"])
        else:
            m = lin(c, "output_layer.adaLN_modulation")
            h = _layer_norm(x, S["output_layer.norm_final.weight"]) * (1 + m[D:]) + m[:D]
        out[b] = lin(h, "output_layer.linear")
    return out
