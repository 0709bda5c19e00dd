"""mdmlib: the library behind the notebooks accompanying Zheng et al.,
"Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit
Inaccurate Categorical Sampling" (arXiv 2409.02908).

Modules follow the paper:
  scale        quick | full | paper, read from MDMLIB_SCALE
  precision    float formats, the Gumbel cap M, what torch.rand really returns
  categorical  the categorical samplers used in practice and their validation
  truncation   the exact law of a truncated Gumbel-max sampler (Prop. 5.2)
  grid_law     the exact law of a sampler whose uniforms live on a finite grid
  stats        chi-square and z tests sized from the sample
  results      figures and json written whole, and an on-disk cache
"""
__version__ = "0.1.0"
