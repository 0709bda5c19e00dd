import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mdmlib.mdm.schedules import (
    LOGLINEAR_EPS,
    SCHEDULES,
    mask_probability,
    mask_rate,
    mask_time,
    time_grid,
    time_of_mask_probability,
    unmask_step_probabilities,
)

EPS64 = torch.finfo(torch.float64).eps


def _top(name):
    return float(mask_probability(name, torch.ones((), dtype=torch.float64)))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@given(fraction=st.floats(0.0, 1.0))
def test_mask_time_inverts_the_schedule(name, fraction):
    # m -> t -> m: the forward's own rounding (1 - cos loses digits near 0) is a few ulp of 1
    m = torch.tensor(fraction * _top(name), dtype=torch.float64)
    t = mask_time(name, m)
    assert 0.0 <= float(t) <= 1.0
    assert abs(float(mask_probability(name, t)) - float(m)) <= 4 * EPS64


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_mask_time_endpoints_and_order(name):
    assert float(mask_time(name, 0.0)) == 0.0
    assert abs(float(mask_time(name, _top(name))) - 1.0) <= 4 * EPS64
    m = torch.linspace(0, _top(name), 1001, dtype=torch.float64)
    assert (torch.diff(mask_time(name, m)) > 0).all()


def test_time_of_mask_probability_inverts_the_schedule_and_caps_at_one():
    t = torch.tensor([0.0, 0.25, 0.999, 1.0], dtype=torch.float64)
    m = mask_probability("loglinear", t)
    assert torch.allclose(time_of_mask_probability("loglinear", m), t, rtol=1e-15, atol=0)
    # beyond MDLM's m(1) = 1 - 1e-3: the last time it was trained at
    assert float(time_of_mask_probability("loglinear", torch.tensor(0.9999))) == 1.0
    assert math.isclose(float(time_of_mask_probability("cosine", mask_probability("cosine", torch.tensor(0.3, dtype=torch.float64)))), 0.3, rel_tol=1e-12)
    with pytest.raises(ValueError, match="unknown schedule 'geometric'"):
        time_of_mask_probability("geometric", torch.tensor(0.5))


def test_cosine_inverse_keeps_relative_precision_for_small_m():
    # t = (4 / pi) asin(sqrt(m / 2)) ~ (2 / pi) sqrt(2 m): no cancellation as m -> 0
    m = torch.tensor([1e-300, 1e-100, 1e-20], dtype=torch.float64)
    expected = (2 / math.pi) * torch.sqrt(2 * m)
    assert torch.allclose(mask_time("cosine", m), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_mask_rate_is_the_derivative(name):
    # central differences: error h^2 m'''/6 + eps/h, about 1e-10 at h = 1e-5
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-5
    numeric = (mask_probability(name, t + h) - mask_probability(name, t - h)) / (2 * h)
    assert torch.allclose(mask_rate(name, t), numeric, rtol=0, atol=1e-9)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown schedule"):
        mask_time("sigmoid", 0.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        mask_rate("sigmoid", 0.5)
    with pytest.raises(ValueError, match=r"\[0, m\(1\)\]"):
        mask_time("linear", -0.1)
    with pytest.raises(ValueError, match=r"\[0, m\(1\)\]"):
        mask_time("loglinear", 0.9995)  # above m(1) = 1 - 1e-3
    with pytest.raises(ValueError, match=r"\[0, m\(1\)\]"):
        mask_time("cosine", float("nan"))


DEFINITIONS = {
    "linear": lambda t: t,
    "loglinear": lambda t: (1 - LOGLINEAR_EPS) * t,  # MDLM: 1 - exp(-sigma(t)), sigma(t) = -log(1 - (1 - eps) t)
    "cosine": lambda t: 1 - math.cos(0.5 * math.pi * t),
}


def test_time_grid_walks_from_one_to_zero_in_equal_steps():
    assert time_grid(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert time_grid(1).tolist() == [1.0, 0.0]


def test_mask_probabilities_and_unmask_steps_match_their_definitions():
    # float64 evaluations of the same formula in another order: a few ulp of values <= 1
    steps = 7
    for name, m in DEFINITIONS.items():
        want = [m(n / steps) for n in range(steps, -1, -1)]
        got = mask_probability(name, time_grid(steps)).tolist()
        assert all(abs(a - b) <= 4 * 2.0**-52 for a, b in zip(got, want)), name
        # P(unmask during step n) = (m(t_n) - m(t_{n-1})) / m(1), n = steps..1; they sum to 1
        q = unmask_step_probabilities(name, steps).tolist()
        assert all(abs(a - (want[i] - want[i + 1]) / want[0]) <= 16 * 2.0**-52 for i, a in enumerate(q)), name
        assert abs(sum(q) - 1) <= steps * 2.0**-52
    assert mask_probability("loglinear", torch.tensor([1.0])).item() == 1 - LOGLINEAR_EPS
