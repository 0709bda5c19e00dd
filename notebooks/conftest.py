"""pytest settings for the notebook tests (nbval).

nbval reads a cell's messages only after the cell has finished, and ZeroMQ drops
what overflows its queue, the kernel's final "idle" included; so the notebooks
run here without progress bars, which are most of those messages. The
notebook runner (`python -m mdmlib.tools.run_notebooks`) reads as it goes and shows them.
"""
import os

os.environ.setdefault("MDMLIB_PROGRESS", "0")
