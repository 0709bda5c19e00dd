import pytest
import torch

from mdmlib.precision.categorical import SAMPLERS, SCORES, gumbel_score
from mdmlib.precision.grid_law import law_on_grid, rand_grid
from mdmlib.stats.montecarlo import count_classes
from mdmlib.precision.formats import float_format
from mdmlib.stats.significance import ALPHA, binomial_z, chi_square_power, chi_square_test
from mdmlib.precision.truncation import truncated_law
from power_checks import DIFFERS_ALPHA, require_power


def _top_bins(draws: torch.Tensor, values: torch.Tensor, top: int) -> torch.Tensor:
    """Counts of: each of the `top` largest values, 0, everything else."""
    high = draws[draws >= values[-top]]
    counts = torch.stack([(high == v).sum() for v in values[-top:]] + [(draws == 0).sum()])
    return torch.cat([counts, (draws.numel() - counts.sum()).reshape(1)])


def _top_model(probs: torch.Tensor, top: int) -> torch.Tensor:
    model = torch.cat([probs[-top:], probs[:1]])
    return torch.cat([model, (1 - model.sum()).reshape(1)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rand_grid_models_torch_rand(dtype):
    values, probs = rand_grid(dtype)
    assert values[0] == 0 and values[-1] < 1 and abs(probs.sum().item() - 1) < 1e-12
    n, top = 1 << 22, 32
    # The nearest wrong model: a float32 uniform that rounds up to 1.0 is clamped to the
    # largest value below 1 (as a careful generator might do) instead of becoming 0.
    up = probs[0] - 2.0**-24  # P(rounded to 1.0): the zero bin's mass beyond k = 0
    clamped = probs.clone()
    clamped[0] -= up
    clamped[-1] += up
    require_power(chi_square_power(_top_model(probs, top), _top_model(clamped, top), n), f"{dtype}: 1.0 clamped below 1, not sent to 0")
    draws = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.isin(torch.unique(draws), values).all()
    assert chi_square_test(_top_bins(draws, values, top), _top_model(probs, top)).p_value > ALPHA


def test_rand_grid_models_float32():
    values, probs = rand_grid(torch.float32)
    assert values.numel() == 1 << 24 and torch.all(probs == 2.0**-24)
    # Draws are k 2^-24: every one on the grid, the low bit of k a fair coin (a 23-bit
    # generator would never set it), and the top values each as likely as any other.
    g, chunks, top = torch.Generator().manual_seed(0), 32, 8
    n = chunks << 22
    model = _top_model(probs, top)
    coarse = torch.tensor([0.0, 2.0] * (top // 2) + [2.0], dtype=torch.float64) * 2.0**-24  # the 23-bit grid's top values and zero
    coarse = torch.cat([coarse, (1 - coarse.sum()).reshape(1)])
    require_power(chi_square_power(model, coarse, n), "float32 uniforms on a 23-bit grid (top values)")
    counts, odd = torch.zeros(top + 2, dtype=torch.int64), 0
    for _ in range(chunks):
        k = torch.rand(1 << 22, generator=g) * 2.0**24  # exact in float32: k itself
        assert torch.equal(k, k.floor())
        odd += int(torch.remainder(k, 2).sum())
        high = k[k >= 2**24 - top] - (2**24 - top)
        counts[:top] += torch.bincount(high.long(), minlength=top)
        counts[top] += int((k == 0).sum())
    counts[top + 1] = n - counts[: top + 1].sum()
    assert abs(binomial_z(odd, n, 0.5)) < 3
    assert chi_square_test(counts, model).p_value > ALPHA


# Two equal large classes: in bfloat16 their scores tie often, and argmax gives a tie to
# the first index; the small class is where the grid law and the closed form part.
GRID_P = torch.tensor([0.001, 0.009, 0.09, 0.45, 0.45], dtype=torch.float64)


@pytest.mark.parametrize("sampler", ["exponential_race", "gumbel_max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_law_on_grid_matches_the_real_sampler(sampler, dtype):
    p, n = GRID_P, 2_000_000
    law = law_on_grid(p, dtype, sampler)
    assert abs(law.sum().item() - 1) < 1e-12
    closed = truncated_law(p, eps=float_format(dtype).gap_below_one)
    require_power(chi_square_power(law, closed, n), f"{sampler} in {dtype}: the closed form at the format's cap")
    require_power(chi_square_power(closed, law, n, alpha=DIFFERS_ALPHA), f"{sampler} in {dtype}: the closed form, at the 'differs' level")
    if dtype == torch.bfloat16:  # in float16 ties are rarer and move the law by less than this test resolves
        last_index = law_on_grid(p.flip(0), dtype, sampler).flip(0)
        require_power(chi_square_power(law, last_index, n), f"{sampler} in {dtype}: ties won by the last index")
    counts = count_classes(SAMPLERS[sampler], p, n, torch.Generator().manual_seed(5), dtype=dtype)
    assert chi_square_test(counts, law).p_value > ALPHA
    assert chi_square_test(counts, closed).p_value < DIFFERS_ALPHA


def test_gumbel_max_in_bfloat16_ties_by_its_rounded_scores(monkeypatch):
    # log p + g rounded to bfloat16's 8 bits: classes a few percent apart often tie, so the
    # grid law must score in the sampler's format; scored in float64 it misses those ties.
    p = torch.tensor([0.001, 0.009, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.15], dtype=torch.float64)
    n = 3_000_000
    law = law_on_grid(p, torch.bfloat16, "gumbel_max")
    monkeypatch.setitem(SCORES, "gumbel_max in float64", lambda q, u: gumbel_score(q.double(), u.double()))
    unrounded = law_on_grid(p, torch.bfloat16, "gumbel_max in float64")  # the same grid, no rounding
    require_power(chi_square_power(law, unrounded, n), "gumbel_max in bfloat16 with its scores not rounded")
    counts = count_classes(SAMPLERS["gumbel_max"], p, n, torch.Generator().manual_seed(6), dtype=torch.bfloat16)
    assert chi_square_test(counts, law).p_value > ALPHA


def test_copies_are_blocks_of_identical_classes():
    p = torch.tensor([0.01, 0.01, 0.01, 0.5, 0.2, 0.2], dtype=torch.float64)
    full = law_on_grid(p, torch.bfloat16)
    blocks = law_on_grid(torch.tensor([0.01, 0.5, 0.2], dtype=torch.float64), torch.bfloat16, copies=[3, 1, 2])
    assert torch.allclose(blocks, torch.stack([full[:3].sum(), full[3], full[4:].sum()]), rtol=1e-12, atol=1e-15)
