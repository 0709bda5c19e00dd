import pytest
import torch

from mdmlib.categorical import SAMPLERS
from mdmlib.grid_law import law_on_grid, rand_grid
from mdmlib.montecarlo import count_classes
from mdmlib.precision import float_format
from mdmlib.stats import chi_square_test
from mdmlib.truncation import truncated_law


def _top_bins(draws: torch.Tensor, values: torch.Tensor, probs: torch.Tensor, top: int):
    """Observed and model counts for: the `top` largest values, 0, everything else."""
    high = draws[draws >= values[-top]]
    counts = torch.stack([(high == v).sum() for v in values[-top:]] + [(draws == 0).sum()])
    model = torch.cat([probs[-top:], probs[:1]])
    n = draws.numel()
    return torch.cat([counts, (n - counts.sum()).reshape(1)]), torch.cat([model, (1 - model.sum()).reshape(1)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rand_grid_models_torch_rand(dtype):
    values, probs = rand_grid(dtype)
    assert values[0] == 0 and values[-1] < 1 and abs(probs.sum().item() - 1) < 1e-12
    draws = torch.rand(1 << 24, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.isin(torch.unique(draws), values).all()
    counts, model = _top_bins(draws, values, probs, top=32)
    assert chi_square_test(counts, model).p_value > 1e-3


def test_rand_grid_models_float32():
    values, probs = rand_grid(torch.float32)
    assert values.numel() == 1 << 24 and torch.all(probs == 2.0**-24)
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([torch.rand(1 << 25, generator=g) for _ in range(8)])  # 2^28 draws: ~16 per value
    counts, model = _top_bins(draws, values, probs, top=4)
    assert chi_square_test(counts, model).p_value > 1e-3


@pytest.mark.parametrize("sampler", ["exponential_race", "gumbel_max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_law_on_grid_matches_the_real_sampler(sampler, dtype):
    p = torch.tensor([0.001, 0.009, 0.09, 0.9], dtype=torch.float64)
    law = law_on_grid(p, dtype, sampler)
    assert abs(law.sum().item() - 1) < 1e-12
    counts = count_classes(SAMPLERS[sampler], p, 2_000_000, torch.Generator().manual_seed(5), dtype=dtype)
    assert chi_square_test(counts, law).p_value > 1e-3
    # ...and it is not the continuous closed form at this format's cap: at 2e6 draws the
    # chi-square non-centrality between the two laws is over 100 (3 degrees of freedom).
    assert chi_square_test(counts, truncated_law(p, eps=float_format(dtype).gap_below_one)).p_value < 1e-6


def test_copies_are_blocks_of_identical_classes():
    p = torch.tensor([0.01, 0.01, 0.01, 0.5, 0.2, 0.2], dtype=torch.float64)
    full = law_on_grid(p, torch.bfloat16)
    blocks = law_on_grid(torch.tensor([0.01, 0.5, 0.2], dtype=torch.float64), torch.bfloat16, copies=[3, 1, 2])
    assert torch.allclose(blocks, torch.stack([full[:3].sum(), full[3], full[4:].sum()]), rtol=1e-12, atol=1e-15)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2\\^53"):
        rand_grid(torch.float64)
    with pytest.raises(ValueError, match="unknown sampler"):
        law_on_grid(torch.ones(2), torch.float16, "inverse_cdf")
    with pytest.raises(ValueError, match="positive integers"):
        law_on_grid(torch.ones(2), torch.float16, copies=[1, 0])
    with pytest.raises(ValueError, match="one probability vector"):
        law_on_grid(torch.ones(2, 2), torch.float16)
