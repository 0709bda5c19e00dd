"""The literal float32 line of a masked-diffusion step (MDLM's race over V + 1 uniforms,
`mdm_step.dense_step`) follows the grid law, not the truncation closed form.

The float32 grid departs from truncation only for uniforms among the top few of its
2^24 values, so each uniform the line draws carries at most about 0.13 * 2^-24 of z^2,
whatever the vocabulary: 8e9 uniforms for an expected z of 7.8. `literal_line.leaves`
draws dense_step's own uniforms and gives its outcome position by position (checked
here on the same generator), at the cost of the uniforms alone. The regime is the most
informative one: V = 1,000 flat tokens and a leave probability of V * delta / 1.5
(delta = e^-M), where the grid law leaves at 0.43 of the exact rate and the closed
form at 0.22. The float64 line is exact there, with power against float32's laws."""
import math

import pytest
import torch

from mdmlib.precision.categorical import race_score
from mdmlib.precision.grid_law import law_on_grid, rand_grid
from mdmlib.mdm.literal_line import dense_leaves, flat_step, leaves
from mdmlib.precision.formats import float_format
from mdmlib.stats.significance import binomial_power, binomial_z, chi_square_test, z_power
from mdmlib.precision.truncation import truncated_law

M32 = float_format(torch.float32).gumbel_cap
DELTA = math.exp(-M32)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("V, leave", [(10, 0.5), (100, 1e-2), (1000, 1000 * DELTA / 1.5), (3, 3e-7)])
def test_leaves_is_dense_step_position_by_position(precision, V, leave):
    n = 600_000 // V + 10_000
    fast = leaves(V, 1.0, 1.0 - leave, precision, n, torch.Generator().manual_seed(5), chunk=1 << 16)
    literal = dense_leaves(V, 1.0, 1.0 - leave, precision, n, torch.Generator().manual_seed(5))
    assert torch.equal(fast, literal)


def test_float32_race_score_never_decreases_with_u():
    # what makes the largest token uniform give the largest token score: the whole grid
    u = rand_grid(torch.float32)[0]
    for V, leave in [(1000, 1000 * DELTA / 1.5), (1000, 1000 * DELTA / 3)]:
        p = flat_step(V, 1.0, 1.0 - leave, "float32")
        for q in (p[0], p[-1]):
            score = race_score(q.expand_as(u), u)
            assert bool((score[1:] >= score[:-1]).all())


def test_literal_float32_line_follows_the_grid_law_not_the_closed_form():
    V = 1000
    leave = V * DELTA / 1.5
    step = flat_step(V, 1.0, 1.0 - leave, "float32").to(torch.float64)
    grid = law_on_grid(step[[0, -1]], torch.float32, copies=[V, 1])[0].item()
    closed = truncated_law(step, M32)[:-1].sum().item()
    n = 8_000_000
    # sized before drawing: the agreement test's power against the closed form, and the
    # expected z of the difference (z > 4 then fails with probability 7e-5)
    power = binomial_power(grid, closed, n)
    expected_z = (grid - closed) * n / math.sqrt(n * closed * (1 - closed))
    assert power >= 0.99 and 1 - z_power(expected_z, 4.0) < 1e-4
    k = int(leaves(V, 1.0, 1.0 - leave, "float32", n, torch.Generator().manual_seed(11)).sum())
    assert chi_square_test(torch.tensor([k, n - k]), torch.tensor([grid, 1 - grid])).p_value > 1e-3
    # one-sided, in the direction the grid law predicts: p < 3.2e-5 if the closed form held
    assert binomial_z(k, n, closed) > 4.0


def test_literal_float64_line_is_exact():
    # at a step where float32 leaves at 0.16 of the exact rate (grid law)
    V = 1000
    leave = V * DELTA / 3
    step32 = flat_step(V, 1.0, 1.0 - leave, "float32").to(torch.float64)
    grid32 = law_on_grid(step32[[0, -1]], torch.float32, copies=[V, 1])[0].item()
    step64 = flat_step(V, 1.0, 1.0 - leave, "float64")
    exact = (step64[:-1].sum() / step64.sum()).item()
    n = 1_500_000
    assert binomial_power(exact, grid32, n) >= 0.99
    k = int(leaves(V, 1.0, 1.0 - leave, "float64", n, torch.Generator().manual_seed(12)).sum())
    assert chi_square_test(torch.tensor([k, n - k]), torch.tensor([exact, 1 - exact])).p_value > 1e-3
