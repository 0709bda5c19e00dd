"""The effective truncation of a line is recovered: the threshold of a line that drops small
tokens, and the eps of a truncated race, each inside its likelihood interval."""
import torch

from mdmlib.audit.core import audit
from mdmlib.audit.fit import fit_eps, fit_threshold
from mdmlib.audit.probes import Probe
from mdmlib.precision.categorical import inverse_cdf, truncated_race
from mdmlib.stats.significance import binomial_z

QUIET = dict(show_progress=False)


def _undeclared(f):
    """The same function without its declaration: the audit must measure it."""
    return lambda p, g: f(p, g)


TAU = 3e-5


def _drops_small_tokens(p, g):
    """A deliberately broken line: tokens below TAU are never drawn."""
    return inverse_cdf(torch.where(p >= TAU, p, torch.zeros_like(p)), g)


def test_threshold_of_a_broken_sampler_is_recovered():
    probes = [Probe("flat", 1e-2, 100), Probe("flat", 2e-3, 100), Probe("zipf", 1e-2, 100), Probe("peaked", 1e-2, 100)]
    report = audit(_drops_small_tokens, probes=probes, dtype="float64", budget=600, **QUIET)
    print(report.table())
    # the interval at 1 - 1e-6 rather than the report's 99%: a wrong exclusion must be negligible here
    fit = fit_threshold(report.results, confidence=1 - 1e-6)
    print("threshold interval at 1 - 1e-6:", fit)
    assert fit["low"] < TAU <= fit["high"] and fit["high"] / fit["low"] < 2
    assert report.threshold_fit["deviance_p"] > 1e-3 and report.eps_fit["deviance_p"] < 1e-6  # a threshold, not a Gumbel truncation
    dropped = report.results[1]  # 2e-5 per token: all dropped
    z = binomial_z(dropped.leaves, dropped.n, dropped.probe.h)
    print(f"flat tokens of 2e-5: {dropped.leaves} leaves in {dropped.n:,}, z = {z:.0f}")
    assert dropped.leaves == 0 and z < -20 and report.verdict.startswith("biased: leaves the mask at 0 ")


def test_eps_of_a_truncated_race_is_recovered():
    eps = 2.0**-12
    probes = [Probe("flat", 2e-2, 50), Probe("zipf", 2e-2, 50), Probe("flat", 5e-3, 50)]
    report = audit(_undeclared(lambda p, g: truncated_race(p, g, eps)), probes=probes, dtype="float64", budget=600, **QUIET)
    print(report.table())
    fit = fit_eps(report.results, confidence=1 - 1e-6)  # a wrong exclusion must be negligible
    print("eps interval at 1 - 1e-6:", fit)
    assert fit["low"] <= eps <= fit["high"] and fit["low"] > 0 and report.eps_fit["deviance_p"] > 1e-3
