"""The paper's Section 5 in isolation: float formats and what `torch.rand` really
returns, the categorical sampling lines used in practice, the exact law of a truncated
Gumbel-max sampler (Prop. 5.2) and of a sampler whose uniforms live on a finite grid
(CPU and CUDA generators), the same law for many classes at once, and SymPy forms of
it for exact proofs. May import: mdmlib.infra.
"""
