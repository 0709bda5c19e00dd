"""mdmlib: the library behind the notebooks accompanying Zheng et al., "Masked Diffusion
Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate Categorical
Sampling" (arXiv 2409.02908).

Sub-packages by role, each importing only those before it (README, "The library"):

  infra      checks, scale, progress, results and the cache, claims, provenance, timing, seeds, paths, pool, sharding
  precision  float formats, categorical lines, truncation (Prop. 5.2), grid laws, SymPy forms   (the paper, Sec. 5)
  stats      tests and their power, intervals, Monte Carlo counts, metrics (entropy, Gen PPL)
  mdm        schedules, one step, the literal line, samplers, objectives and losses, cost model (the paper, Secs. 3-4)
  language   the synthetic language with exact likelihood and denoiser; exact laws of the samplers
  models     MDLM's DiT, SEDD's variant, a causal twin; checkpoints, training, loading
  judging    exact, project and transformers judges
  audit      the law of any sampling line; the public lines             (python -m mdmlib.audit)
  runs       the cached experiments of the notebooks, one module per part or notebook
  exercises  the notebooks' graded exercises
  tools      bootstrap, run_notebooks, book, student, grading, mutants, benchmarks, gpu_check, paper_scale

Each package's __init__ says what lives there and what it may import; the package
__init__ files import nothing (models re-exports its public names), so
`python3 -m mdmlib.tools.bootstrap` runs before anything is installed.
"""
__version__ = "0.1.0"
