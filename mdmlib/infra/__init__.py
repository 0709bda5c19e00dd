"""The machinery every other package stands on: argument checks, the scale switch, progress
bars, where results go (files written whole, the on-disk cache keyed by the code's own
fingerprint and the environment), the claims log, the provenance record, timers, seeds,
the project's folders, the output folders a tool may replace, the memory a request
needs, the process pool and sharding over GPUs. Nothing here knows the paper.
May import: nothing else from mdmlib.
"""
