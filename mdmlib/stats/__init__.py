"""Statistics sized by their power: chi-square, binomial and z tests with their power
against a named alternative, intervals and sample sizes, Monte Carlo class counts in
memory-sized chunks, and the metrics of samples (sentence entropy, Gen PPL, effective
temperature). May import: mdmlib.infra, mdmlib.precision.
"""
