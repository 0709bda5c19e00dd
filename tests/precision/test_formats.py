import math

import pytest
import torch

from mdmlib.precision.grid_law import rand_grid
from mdmlib.precision.formats import FORMATS, float_format, probe_rand
from mdmlib.stats.significance import binomial_z
from power_checks import require_z_power


def test_fraction_bits_and_eps():
    bits = {f.name: f.fraction_bits for f in FORMATS}
    assert bits == {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}
    for f in FORMATS:
        # 1 - eps is the largest value below 1: representable, and the next one up is 1
        one_minus = torch.tensor(f.largest_below_one, dtype=torch.float64).to(f.dtype)
        assert float(one_minus) == f.largest_below_one
        assert torch.nextafter(one_minus, torch.tensor(2.0, dtype=f.dtype)).item() == 1.0


def test_gumbel_cap_matches_the_paper_values():
    # The paper quotes M ~ 16.6355 (float32) and ~ 36.7368 (float64) to 4 decimals.
    assert abs(float_format(torch.float32).gumbel_cap - 16.6355) < 5e-5
    assert abs(float_format(torch.float64).gumbel_cap - 36.7368) < 5e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gumbel_cap_is_the_largest_gumbel_the_generator_gives(dtype):
    # 2^20 draws include the largest uniform (about 2^20 / 2^(f+2) >= 256 times): its Gumbel
    # -log(-log u), computed in float64, is the cap M (log vs log1p: a few ulp apart)
    u = torch.rand(1 << 20, generator=torch.Generator().manual_seed(1), dtype=dtype).double()
    g = -torch.log(-torch.log(u[u > 0]))
    assert math.isclose(g.max().item(), float_format(dtype).gumbel_cap, rel_tol=4 * 2.0**-52)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_probe_sees_the_half_precision_grids(dtype):
    # 2^20 draws hit each of the top values about 2^20 / 2^(f+2) >= 256 times: none is missed
    # (chance e^-256), so the probe must report the format's gap below one exactly; and 0 comes
    # out with the probability of the grid's zero (k = 0, plus every uniform that rounds to 1.0).
    f, n = float_format(dtype), 1 << 20
    probe = probe_rand(dtype, n, torch.Generator().manual_seed(0))
    assert probe.largest == f.largest_below_one and probe.spacing_below_largest == f.gap_below_one
    p_zero = rand_grid(dtype)[1][0].item()
    # nearest wrong model: a generator that never rounds up to 1.0 (0 only from k = 0)
    require_z_power((2.0**-24 - p_zero) * n / math.sqrt(n * p_zero * (1 - p_zero)), 3, f"{dtype}: zeros only from k = 0")
    assert abs(binomial_z(probe.zeros, n, p_zero)) < 3


def test_probe_sees_the_float32_grid():
    # 2^26 draws expect each grid value 4 times. The two largest distinct values seen are
    # k 2^-24 apart only if the k - 1 values between them were all missed (chance e^-4(k-1)):
    # at most 5 grid steps apart but with chance e^-16; never above 1 - 2^-24.
    f = float_format(torch.float32)
    probe = probe_rand(torch.float32, 1 << 26, torch.Generator().manual_seed(0))
    assert probe.largest <= f.largest_below_one
    steps = probe.spacing_below_largest / f.gap_below_one
    assert steps == round(steps) and 1 <= steps <= 5
