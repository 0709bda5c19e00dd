import math

import pytest
import torch

from mdmlib.precision import FORMATS, as_dtype, float_format, gumbel_cap, probe_rand


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


def test_gumbel_cap_is_the_gumbel_of_the_largest_uniform():
    for f in FORMATS[:3]:  # formats whose 1 - eps float64 holds exactly with room to spare
        u = torch.tensor(f.largest_below_one, dtype=torch.float64)
        assert math.isclose(-torch.log(-torch.log(u)).item(), f.gumbel_cap, rel_tol=1e-12)


@pytest.mark.parametrize("bad", ["float8", torch.int64, 3, None])
def test_unknown_dtype_is_named(bad):
    with pytest.raises(ValueError, match="unknown dtype"):
        as_dtype(bad)


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 2.0, float("nan")])
def test_eps_outside_unit_interval(eps):
    with pytest.raises(ValueError, match="eps must lie in"):
        gumbel_cap(eps)


def test_probe_sees_the_float32_grid():
    g = torch.Generator().manual_seed(0)
    probe = probe_rand(torch.float32, 1 << 26, g)
    f = float_format(torch.float32)
    assert probe.largest <= f.largest_below_one
    # 2^26 draws expect the top value 4 times: it is missed with probability e^-4; seed 0 sees it.
    assert probe.spacing_below_largest == f.gap_below_one
