"""A language whose likelihood, samples and optimal denoiser are exact (a hidden
Markov chain of classes emitting tokens), and the exact laws of the samplers on a
language small enough to list. May import: mdmlib.infra, mdmlib.precision,
mdmlib.stats, mdmlib.mdm.
"""
