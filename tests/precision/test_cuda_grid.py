"""The CUDA lattice of torch.rand as modelled in mdmlib.precision.grid_law (from PyTorch's source):
its properties, brute-force recomputations of parts of it, how it differs from the CPU
lattice (the checks against real draws on a GPU: tests/tools/test_gpu_statistics.py)."""
import numpy as np
import pytest
import torch

from mdmlib.tools import gpu_statistics
from mdmlib.precision.grid_law import _lattice, law_on_grid, rand_grid, zero_probability
from mdmlib.stats.significance import chi_square_power, chi_square_test


def curand_float(x: np.ndarray) -> np.ndarray:
    """curand's float for 32-bit integers x, in float32 arithmetic step by step
    (x to float, times 2^-32, plus 2^-33), then torch's remap of 1.0 to 0."""
    u = x.astype(np.float32) * np.float32(2.0**-32) + np.float32(2.0**-33)
    return np.where(u == 1, np.float32(0), u)


def lattice_window(x0: int, x1: int):
    """The distinct values and probabilities (x 2^32, as counts) that the integers
    x0 <= x < x1 produce, by brute force."""
    values, counts = np.unique(curand_float(np.arange(x0, x1, dtype=np.int64)), return_counts=True)
    return values.astype(np.float64), counts


def model_counts(values: np.ndarray) -> np.ndarray:
    """The modelled CUDA float32 lattice's probability (x 2^32) of each given value."""
    lattice = _lattice(torch.float32, "cuda")
    lo, hi = values.min(), values.max()
    # the points are ascending: find those in [lo, hi] by bisection on the point index
    def first_at_least(v):
        a, b = 0, lattice.n
        while a < b:
            m = (a + b) // 2
            if lattice.points(torch.tensor([m]))[0].item() < v:
                a = m + 1
            else:
                b = m
        return a
    i0, i1 = first_at_least(lo), first_at_least(np.nextafter(hi, 2.0))
    v, p = lattice.points(torch.arange(i0, i1))
    v, inverse = torch.unique_consecutive(v, return_inverse=True)
    p = torch.zeros_like(v).index_add_(0, inverse, p)
    out = dict(zip(v.tolist(), (p * 2.0**32).tolist()))
    return np.array([out.get(x, 0.0) for x in values])


@pytest.mark.parametrize("x0, x1", [(1, 1 << 18), ((1 << 24) - 4096, (1 << 24) + 4096), ((1 << 23) - 999, (1 << 23) + 999), ((1 << 32) - (1 << 18), (1 << 32) - 128)])
def test_float32_lattice_matches_brute_force(x0, x1):
    # interior values only: the window's two end values also receive integers outside it
    values, counts = lattice_window(x0, x1)
    values, counts = values[1:-1], counts[1:-1]
    assert np.array_equal(model_counts(values), counts.astype(np.float64))


def test_float32_lattice_top_and_zero():
    values, counts = lattice_window((1 << 32) - (1 << 12), 1 << 32)
    # 1.0 (returned as 0) takes the top 128 integers: P(0) = 2^-25, half the CPU's 2^-24
    assert counts[0] == 128 and values[0] == 0
    assert zero_probability(torch.float32, "cuda") == 2.0**-25 and zero_probability(torch.float32) == 2.0**-24
    top_v, top_p = rand_grid(torch.float32, "cuda", top=6)
    assert top_v[-1].item() == 1 - 2.0**-24 and top_v[-1].item() == values[-1]
    assert (top_p * 2.0**32).tolist() == [257.0, 255.0] * 3  # ties to even alternate the weights
    cpu_v, cpu_p = rand_grid(torch.float32, top=6)
    assert torch.equal(cpu_v, top_v) and (cpu_p * 2.0**32).tolist() == [256.0] * 6


def test_float32_lattice_is_a_distribution():
    lattice = _lattice(torch.float32, "cuda")
    total, previous = 0.0, -1.0
    for values, probs in lattice.chunks():  # multiples of 2^-32: the float64 sum is exact
        assert values[0] >= previous and bool((values[1:] >= values[:-1]).all())
        previous = values[-1].item()
        total += probs.sum().item()
    assert total == 1.0
    assert lattice.mass_below(torch.tensor([lattice.n])).item() == 1.0
    # below 2^-8 the CUDA lattice is finer than the CPU's k 2^-24: its smallest value is 2^-33
    assert lattice.points(torch.tensor([1]))[0].item() == 2.0**-33


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_lattices_are_the_float_lattice_rounded(dtype):
    values, probs = rand_grid(dtype, "cuda")
    assert values[0] == 0 and values[-1] < 1 and abs(probs.sum().item() - 1) < 1e-12
    # an independent recomputation on a sample of integers: curand's float, cast with
    # torch's rounding, against the model (chi-square on the top values, 0 and the rest)
    rng = np.random.default_rng(0)
    n = 1 << 24
    u = torch.from_numpy(curand_float(rng.integers(0, 1 << 32, n, dtype=np.int64))).to(dtype)
    u[u == 1] = 0
    top, paired = values[-gpu_statistics.SINGLES:].double(), values[-(gpu_statistics.SINGLES + 64) : -gpu_statistics.SINGLES].double()
    model = gpu_statistics.binned_lattice(values, probs, top, paired)
    counts = torch.bincount(gpu_statistics._bin_of(u.double(), top, paired), minlength=model.numel())
    assert chi_square_test(counts, model).p_value > 1e-3
    # power against the same generator without the remap of 1.0 to 0 (zeros move to "rest")
    kept = model.clone()
    kept[-1] += kept[0]
    kept[0] = 0
    assert chi_square_power(model, kept, n) >= 0.99


def test_half_lattices_differ_from_the_cpu_only_slightly():
    for dtype in (torch.float16, torch.bfloat16):
        cuda_v, cuda_p = rand_grid(dtype, "cuda")
        cpu_v, cpu_p = rand_grid(dtype)
        # every CPU value is a CUDA value; CUDA's finer float adds bfloat16 values below 2^-16 only
        assert bool(torch.isin(cpu_v, cuda_v).all())
        shared = torch.isin(cuda_v, cpu_v)
        assert bool((cuda_v[~shared].double() < 2.0**-16).all())
        # a value's probability moves by at most one integer's worth of the CPU's 24 bits
        on_cpu = cpu_p[torch.searchsorted(cpu_v, cuda_v[shared])]
        assert (cuda_p[shared] - on_cpu).abs().max().item() <= 2.0**-24


def test_float64_is_not_enumerated():
    with pytest.raises(ValueError, match="2\\^53"):
        rand_grid(torch.float64, "cuda")


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="unknown device"):
        rand_grid(torch.float16, "tpu")
    with pytest.raises(ValueError, match="unknown device"):
        law_on_grid(torch.ones(2), torch.float16, device="mps")


def test_cuda_law_of_the_bfloat16_example_is_close_to_the_cpu_law():
    p = torch.tensor([0.001, 0.009, 0.09, 0.9], dtype=torch.float64)
    cuda_law, cpu_law = law_on_grid(p, torch.bfloat16, device="cuda"), law_on_grid(p, torch.bfloat16)
    assert abs(cuda_law.sum().item() - 1) < 1e-12
    # the lattices differ by at most 2^-23 per value, so no class moves by more than a few times that
    assert (cuda_law - cpu_law).abs().max().item() < 1e-5
