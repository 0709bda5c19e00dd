"""How much a Monte Carlo check can see, asserted beside the check.

A check that "agrees" is worth only its power against the nearest wrong law; a
check that "differs" (p < 1e-6, or |z| > 5) must be almost sure to find the
difference it claims. Both are the chance that the check rejects when the
alternative is true, computed with mdmlib.stats.significance, printed (pytest -s shows them)
and asserted to be at least MIN_POWER.
"""
from __future__ import annotations

import torch

from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test, z_power

MIN_POWER = 0.99
DIFFERS_ALPHA = 1e-6  # "differs" means p below this
DIFFERS_Z = 5.0  # or |z| above this


def require_power(power: float, against: str) -> float:
    print(f"power {power:.6f} against {against}")
    assert power >= MIN_POWER, f"power {power:.4f} against {against} is below {MIN_POWER}: the check cannot see it"
    return power


def require_z_power(expected_z: float, threshold: float, against: str) -> float:
    """Power of a |z| < threshold ('agrees') or |z| > threshold ('differs') check
    whose expected z under the alternative is `expected_z`."""
    return require_power(z_power(expected_z, threshold), f"{against} (expected z {expected_z:+.1f})")


def check_sampling_follows_the_chain(language, n: int = 20_000, seed: int = 2) -> None:
    """A Markov language's samples of length 6 follow its chain: the first token from the
    stationary law pi, each pair from pi times the transition rows. Nearest wrong laws: a
    chain started from the classes' average emission, and the chain run backwards (pairs
    transposed; not reversible with three or more classes)."""
    V = language.vocab_size
    joint = (language.pi[:, None] * language.transition_rows(torch.arange(V))).flatten()
    require_power(chi_square_power(language.pi, language.B.mean(0), n), "a chain not started in its stationary law")
    require_power(chi_square_power(joint, joint.reshape(V, V).T.flatten(), n), "the chain run backwards")
    x = language.sample(n, 6, torch.Generator().manual_seed(seed))
    assert chi_square_test(torch.bincount(x[:, 0], minlength=V), language.pi).p_value > ALPHA
    assert chi_square_test(torch.bincount(x[:, 2] * V + x[:, 3], minlength=V * V), joint).p_value > ALPHA
