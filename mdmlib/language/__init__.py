"""A language whose likelihood, samples and optimal denoiser are exact (a hidden
Markov chain of classes emitting tokens), and the exact laws of the samplers on a
language small enough to list; a clustered language (each token in one class) whose
exact statistics cost K x K at GPT-2's vocabulary, its calibration to a target Gen PPL
and sentence entropy, and its factored exact denoiser (class posteriors times emissions). May import: mdmlib.infra, mdmlib.precision,
mdmlib.stats, mdmlib.mdm.
"""
