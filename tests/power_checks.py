"""How much a Monte Carlo check can see, asserted beside the check.

A check that "agrees" is worth only its power against the nearest wrong law; a
check that "differs" (p < 1e-6, or |z| > 5) must be almost sure to find the
difference it claims. Both are the chance that the check rejects when the
alternative is true, computed with mdmlib.stats.significance, printed (pytest -s shows them)
and asserted to be at least MIN_POWER.
"""
from __future__ import annotations

from mdmlib.stats.significance import z_power

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
