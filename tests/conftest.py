"""pytest settings for mdmlib's tests.

Hypothesis draws its examples from a fixed seed and keeps no example database, so
the same command gives the same examples on every machine and every run.
"""
from hypothesis import settings

settings.register_profile("mdmlib", derandomize=True, database=None)
settings.load_profile("mdmlib")
