"""Commands that run the project rather than the paper: the set-up (bootstrap,
standard library only), executing the notebooks, the book, the student copies and
grading, the mutation check, the benchmarks, the GPU checks and the paper-scale command
line. May import: anything in mdmlib; nothing imports it.
"""
