"""mdmlib: the library behind the notebooks accompanying Zheng et al.,
"Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit
Inaccurate Categorical Sampling" (arXiv 2409.02908).

Modules follow the paper:
  scale        quick | full | paper, read from MDMLIB_SCALE
  progress     progress bars, throttled, off with MDMLIB_PROGRESS=0
  precision    float formats, the Gumbel cap M, what torch.rand really returns
  categorical  the categorical samplers used in practice and their validation
  truncation   the exact law of a truncated Gumbel-max sampler (Prop. 5.2)
  grid_law     the exact law of a sampler whose uniforms live on a finite grid (CPU and CUDA generators)
  argmax_law   the same law for many classes at once, by one sweep over score values
  symbolic     SymPy forms of the law, for exact proofs
  stats        chi-square and z tests sized from the sample
  montecarlo   class counts of a sampler, in memory-sized chunks
  synthetic    a language with exact likelihood, sampling and optimal denoiser
  schedules    masking schedules and the sampler's time grid
  mdm_step     one masked-diffusion categorical step: the literal line and an O(1) sampler of its law
  literal_line the literal line of one step with a flat mu, counted at the cost of its uniforms
  sampling     ancestral (per-sequence, per-batch or no caching), fast exact,
               first-hitting and autoregressive samplers
  models       MDLM's DiT in plain PyTorch, SEDD's variant, a causal twin; checkpoints (a sub-package)
  objectives   the ELBO as a sum over masked counts, its estimators, other objectives' weights
  exact_laws   exact laws of the samplers on a language small enough to list
  cost         the paper's cost model and a network-like denoiser that times itself
  train        one training loop, four objectives (MDM with and without time, MaskGIT-style, AR); cached checkpoints
  trained_networks  trained networks against the exact language: held-out bounds, KL, sampling (notebook 09)
  metrics      sentence entropy, Gen PPL, standard errors, effective temperature
  public_lines the sampling lines of MDLM, SEDD, LLaDA, torch and MaskGIT, with their laws
  audit        the law of any sampling line in the masked-diffusion regime (python -m mdmlib.audit.core)
  experiments  the cached runs of notebooks 05 and 06
  part2_runs   the cached runs of notebooks 07 and 08
  results      figures and json written whole, and an on-disk cache
  benchmarks   speed checks that print figures (python -m mdmlib.tools.benchmarks)
  paper_scale  the paper's grid on any checkpoint and judge, sharded over GPUs, with provenance
               (python -m mdmlib.runs.paper_scale; torchrun for several GPUs)
  gpu_check    checks that need a GPU (python -m mdmlib.tools.gpu_check [--out FILE]); exits 0 without one
  bootstrap    the README's set-up command (python3 -m mdmlib.tools.bootstrap run|pytest)
  checks       argument checks shared by the public functions
  mutants      plausible bugs the tests must catch (python -m mdmlib.tools.mutants)
"""
__version__ = "0.1.0"
