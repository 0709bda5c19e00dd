import math

import pytest
import torch

from mdmlib.precision.categorical import exponential_race, gumbel_max, inverse_cdf, race_score, truncated_race
from mdmlib.stats.montecarlo import count_classes
from mdmlib.precision.formats import float_format
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test
from mdmlib.precision.truncation import truncated_law
from power_checks import DIFFERS_ALPHA, require_power

SAMPLERS = [
    lambda p, g: gumbel_max(p, g, torch.float64),
    lambda p, g: exponential_race(p, g, torch.float64),
    lambda p, g: exponential_race(p, g, torch.float32),
    lambda p, g: truncated_race(p, g, 2.0**-53),
    inverse_cdf,
]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_any_batch_shape(sampler):
    p = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    idx = sampler(p, torch.Generator().manual_seed(0))
    assert idx.shape == (2, 3) and idx.dtype == torch.int64 and (idx >= 0).all() and (idx < 5).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_zero_probability_classes_are_never_drawn(sampler):
    p = torch.tensor([0.0, 1e-3, 0.0, 1.0, 0.0], dtype=torch.float64)
    idx = sampler(p.expand(200_000, 5), torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=5)
    assert counts[[0, 2, 4]].sum() == 0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_follow_pi_where_precision_does_not_matter(sampler):
    # pi >= 1e-3: float32's cap (2^-24) moves the law by ~6e-5 relative, a chi-square
    # non-centrality of ~1e-6 at this sample size; float16's cap (2^-11), the next format
    # down, moves the smallest class by a third, which the test must see.
    p = torch.tensor([0.001, 0.009, 0.09, 0.3, 0.6], dtype=torch.float64)
    n = 400_000
    assert n * float(((truncated_law(p, eps=2.0**-24) - p) ** 2 / p).sum()) < 1e-3
    require_power(chi_square_power(p, truncated_law(p, eps=float_format(torch.float16).gap_below_one), n), "a sampler capped at float16's 1 - eps")
    counts = count_classes(sampler, p, n, torch.Generator().manual_seed(3))
    assert chi_square_test(counts, p).p_value > ALPHA


def test_truncated_race_follows_the_closed_form():
    p = torch.tensor([0.02, 0.08, 0.2, 0.7], dtype=torch.float64)
    eps = 2.0**-6  # a coarse cap, so the law is far from p
    n = 100_000
    law = truncated_law(p, eps=eps)
    # nearest wrong laws: eps off by the factor 2 between the gap below and above 1, or no cap
    for name, wrong in (("eps / 2", truncated_law(p, eps=eps / 2)), ("2 eps", truncated_law(p, eps=2 * eps)), ("no truncation", p)):
        require_power(chi_square_power(law, wrong, n), f"the truncated race with {name}")
    require_power(chi_square_power(law, p, n, alpha=DIFFERS_ALPHA), "pi, at the 'differs' level")
    counts = count_classes(truncated_race, p, n, torch.Generator().manual_seed(4), eps=eps)
    assert chi_square_test(counts, law).p_value > ALPHA
    assert chi_square_test(counts, p).p_value < DIFFERS_ALPHA


def test_race_score_is_mdlm_line_at_both_ends_of_the_grid():
    # MDLM/SEDD write p / (1e-10 - log(u + 1e-10)). Its two guards decide the score at
    # u = 0 (a finite p / (1e-10 + 10 ln 10) instead of 0) and at the top of the float32
    # grid (-log(1 - 2^-24) = 5.96e-8, plus 1e-10). Expected values: float64 arithmetic,
    # then one rounding to float32; the line rounds 4 times in float32, so 4 ulp (2^-21 relative).
    for u, minus_log in ((0.0, -math.log(1e-10)), (1 - 2.0**-24, -math.log1p(-(2.0**-24)))):
        want = 0.75 / (1e-10 + minus_log)
        got = race_score(torch.tensor(0.75, dtype=torch.float32), torch.tensor(u, dtype=torch.float32)).item()
        assert abs(got - want) <= 2.0**-21 * want, (u, got, want)
