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


# --- weights too large for the line's dtype -----------------------------------------------
LINES = {
    "gumbel_max float32": lambda p, g: gumbel_max(p, g, torch.float32),
    "exponential_race float32": lambda p, g: exponential_race(p, g, torch.float32),
    "exponential_race float64": lambda p, g: exponential_race(p, g, torch.float64),
    "truncated_race": lambda p, g: truncated_race(p, g, 2.0**-24),
}


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("exponent", [0, 60, 100, 103, 104, 120, 127, 128, 200, 1000, 1020])
def test_weights_are_drawn_as_their_law_states_or_refused(line, exponent):
    # Scaling the weights by a power of two is exact in floating point and scales every race
    # score by that factor (a Gumbel score shifts by k log 2, up to a rounding of log that these
    # seeded draws never meet), so the draws must be the same draw by draw, unless some score
    # overflows: then the line refuses, and only then, as its largest score tells.
    p = torch.tensor([0.5, 0.3, 0.2, 1e-3], dtype=torch.float64).expand(4000, 4)
    scaled = p * 2.0**exponent
    draw = LINES[line]
    dtype = torch.float32 if "float32" in line else torch.float64
    top_u = torch.tensor(float_format(dtype).largest_below_one * (1 - 2.0**-24 if line == "truncated_race" else 1.0), dtype=dtype)
    top = scaled.max().to(dtype)
    score = torch.log(top) - torch.log(-torch.log(top_u)) if "gumbel" in line else (top / -torch.log(top_u) if line == "truncated_race" else race_score(top, top_u))
    if torch.isfinite(score):
        assert torch.equal(draw(scaled, torch.Generator().manual_seed(0)), draw(p, torch.Generator().manual_seed(0)))
    else:
        with pytest.raises(ValueError, match="the weights overflow .* scores inf"):
            draw(scaled, torch.Generator().manual_seed(0))


def test_weights_beyond_the_dtype_would_always_give_the_first_class():
    # why the lines refuse: weights beyond float32's range are inf once cast, every score is
    # then inf, and argmax returns the first class whatever the noise (the unchecked line)
    p = torch.tensor([1e39, 3e39], dtype=torch.float64).expand(1000, 2)
    u = torch.rand(p.shape, generator=torch.Generator().manual_seed(0))
    assert (race_score(p.to(torch.float32), u).argmax(-1) == 0).all()
    for line in ("exponential_race", "gumbel_max"):
        with pytest.raises(ValueError, match=f"overflow torch.float32 in {line}"):
            LINES[f"{line} float32"](p, torch.Generator())


def test_exact_sampler_rescales_weights_whose_sum_overflows():
    p = torch.tensor([1.5, 1.0, 0.5], dtype=torch.float64)
    huge = p * 2.0**1023  # finite weights, an infinite sum
    assert torch.isinf(huge.sum())
    g = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(inverse_cdf(huge, g(), (20_000,)), inverse_cdf(p / p.max(), g(), (20_000,)))
