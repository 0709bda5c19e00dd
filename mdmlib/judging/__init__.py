"""Judges of generated text: the exact likelihood of the synthetic language, a causal
network of the project's own, or any `transformers` causal LM (GPT-2 Large at the
paper's scale), each returning per-sequence scores; and loading them. May import:
mdmlib.infra, mdmlib.precision, mdmlib.stats, mdmlib.mdm, mdmlib.language, mdmlib.models.
"""
