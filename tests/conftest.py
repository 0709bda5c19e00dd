"""pytest settings for mdmlib's tests.

Hypothesis draws its examples from a fixed seed and keeps no example database, so
the same command gives the same examples on every machine and every run.

PyTorch runs on one thread here: the tests are many small tensor operations, and on
a shared 2-core machine a second thread mostly waits for the first (the suite took
7.3 minutes with two threads and 1.9 with one, measured side by side under load).
The notebooks run in their own kernels and keep PyTorch's default.
"""
import torch
from hypothesis import settings

settings.register_profile("mdmlib", derandomize=True, database=None)
settings.load_profile("mdmlib")
torch.set_num_threads(1)
