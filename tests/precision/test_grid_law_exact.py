"""law_on_grid (floor, top-of-lattice scoring, compression, event sums) against a slow,
obviously-correct evaluation of the same finite sum: every block scored on the whole
lattice, the product over the other blocks taken block by block."""
import pytest
import torch

from mdmlib.precision.categorical import SCORES
from mdmlib.precision.grid_law import law_on_grid, rand_grid


def direct_law(p, dtype, sampler="exponential_race", copies=None):
    """P(i) = sum_v [F_i(v)^c_i - F_i(v-)^c_i] prod_{j<i} F_j(v-)^c_j prod_{j>i} F_j(v)^c_j
    over every distinct score v of block i, with F from the whole lattice."""
    values, weights = rand_grid(dtype)
    p = p.to(dtype)
    copies = torch.ones(p.shape, dtype=torch.float64) if copies is None else torch.as_tensor(copies, dtype=torch.float64)
    laws = []
    for i in range(p.numel()):
        score = SCORES[sampler](p[i].expand_as(values), values).to(torch.float64)
        distinct, inverse = torch.unique(score, return_inverse=True)
        prob = torch.zeros_like(distinct).index_add_(0, inverse, weights)
        laws.append((distinct, torch.cumsum(prob, 0), torch.cumsum(prob, 0) - prob))  # F(v), F(v-)
    out = torch.zeros(p.numel(), dtype=torch.float64)
    for i, (v, le_i, lt_i) in enumerate(laws):
        if p[i] == 0:
            continue
        term = le_i ** copies[i] - lt_i ** copies[i]
        for j, (v_j, le_j, lt_j) in enumerate(laws):
            if j == i or p[j] == 0:
                continue
            k = torch.searchsorted(v_j, v, right=(j > i))  # blocks before i: < v; after: <= v
            F = torch.where(k > 0, le_j[(k - 1).clamp(min=0)], torch.zeros_like(v))
            term = term * F ** copies[j]
        out[i] = term.sum()
    return out


CASES = [
    ([0.001, 0.009, 0.09, 0.9], torch.bfloat16, "exponential_race", None),
    ([0.001, 0.009, 0.09, 0.9], torch.float16, "exponential_race", None),
    ([0.001, 0.009, 0.09, 0.9], torch.bfloat16, "gumbel_max", None),
    ([0.25, 0.25, 0.25, 0.25], torch.float16, "exponential_race", None),  # every block is the largest
    ([0.01, 0.5, 0.2], torch.bfloat16, "exponential_race", [3, 1, 2]),
    ([0.3, 0.0, 0.7], torch.float16, "exponential_race", None),  # a zero class never wins
    ([2e-4, 1e-3, 3e-3, 0.99], torch.float16, "exponential_race", [40, 7, 1, 1]),
    ([1e-4, 0.9999], torch.bfloat16, "exponential_race", [5, 2]),  # the largest block has copies
]


@pytest.mark.parametrize("p, dtype, sampler, copies", CASES)
def test_law_on_grid_equals_the_direct_sum(p, dtype, sampler, copies):
    p = torch.tensor(p, dtype=torch.float64)
    fast, slow = law_on_grid(p, dtype, sampler, copies), direct_law(p, dtype, sampler, copies)
    assert abs(fast.sum().item() - 1) < 1e-12
    assert torch.allclose(fast, slow, rtol=1e-11, atol=1e-15), (fast, slow)


def test_float32_masked_diffusion_step_equals_the_direct_sum():
    # the regime of notebook 03: tokens scored on a few top points, the mask compressed
    p = torch.tensor([1e-7, 0.999], dtype=torch.float64)
    fast, slow = law_on_grid(p, torch.float32, copies=[10_000, 1]), direct_law(p, torch.float32, copies=[10_000, 1])
    assert torch.allclose(fast, slow, rtol=1e-11, atol=1e-15), (fast, slow)


def test_many_distinct_blocks_agree_with_copies():
    # 2,000 tokens with 20 distinct probabilities, as 2,000 blocks and as 20 blocks of 100
    g = torch.Generator().manual_seed(0)
    levels = torch.rand(20, generator=g, dtype=torch.float64) * 1e-6
    one_by_one = torch.cat([levels.repeat_interleave(100), torch.tensor([0.999], dtype=torch.float64)])
    many = law_on_grid(one_by_one, torch.float32)
    blocks = law_on_grid(torch.cat([levels, torch.tensor([0.999], dtype=torch.float64)]), torch.float32, copies=[100] * 20 + [1])
    grouped = torch.cat([many[:-1].reshape(20, 100).sum(1), many[-1:]])
    assert torch.allclose(grouped, blocks, rtol=1e-10, atol=1e-17)


def test_cuda_lattice_law_is_a_distribution():
    p = torch.tensor([1e-7, 0.999], dtype=torch.float64)
    law = law_on_grid(p, torch.float32, copies=[10_000, 1], device="cuda")
    assert abs(law.sum().item() - 1) < 1e-12 and 0 < law[0] < 1e-3
