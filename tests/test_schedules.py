import math

import torch

from mdmlib.schedules import LOGLINEAR_EPS, mask_probability, time_grid, unmask_step_probabilities

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
