"""The experiments behind the notebooks, cached on disk: one module per part of the
book or notebook (precision: notebooks 03-06; time_agnostic: 07-08; trained_networks:
09; paper_scale: 10; sampler_timing: the measurements behind the cost model). Each
returns per-sequence values so that means and standard errors are formed afterwards.
May import: every idea package (infra, precision, stats, mdm, language, models,
judging, audit); never mdmlib.tools or mdmlib.exercises.
"""
