"""Masked diffusion itself: masking schedules and the sampler's time grid, one categorical
step (the literal line and an O(1) sampler of its law), the literal line counted at the
cost of its uniforms, the samplers (ancestral with its caching modes, fast exact, first
hitting, autoregressive; and the ancestral and exact samplers for a factored denoiser,
whose cache holds class posteriors instead of V-wide rows), the checks of the denoiser
outputs they read, the objectives and training losses, and the paper's cost model (App.
J.3). May import: mdmlib.infra, mdmlib.precision, mdmlib.stats.
"""
