import inspect

import pytest
import torch

from mdmlib.audit.probes import Probe
from mdmlib.precision.grid_law import rand_grid
from mdmlib.audit.public_lines import LINES, PROJECT_LINES, PUBLIC_LINES, LawUnavailable, generator_grid, line_input
from mdmlib.stats.intervals import sample_size
from mdmlib.stats.significance import chi_square_power, chi_square_test

PROBE = Probe("zipf", 0.05, 20)  # 21 classes: cheap to sample, and bfloat16 is already far off here


def _inputs(f, probe=PROBE, rows=7):
    spec = f.sampling_line
    return line_input(probe.categories(), spec.takes, spec.dtype).expand(rows, -1).clone()


@pytest.mark.parametrize("name", sorted(LINES))
def test_lines_keep_the_contract(name):
    f = LINES[name]
    x = _inputs(f)
    a = f(x, torch.Generator().manual_seed(3))
    assert a.shape == (7,) and a.dtype == torch.int64 and int(a.min()) >= 0 and int(a.max()) < x.shape[-1]
    assert torch.equal(a, f(x, torch.Generator().manual_seed(3)))  # seeded: the same draws


def test_public_lines_name_their_sources():
    for f in PUBLIC_LINES:
        spec = f.sampling_line
        assert spec.sources and all(s.repository and s.file and s.function for s in spec.sources), spec.name
        assert spec.law is not None, spec.name
    for f in PROJECT_LINES:
        assert f.sampling_line.sources[0].file.startswith("mdmlib/")


@pytest.mark.parametrize("name", sorted(LINES))
@pytest.mark.parametrize("mask", ["last", "first"])
def test_declared_laws_are_distributions(name, mask):
    p, copies, _, _ = Probe("peaked", 1e-3, 1_000, mask).blocks()
    law = LINES[name].sampling_line.law(p, copies)
    assert (law.law >= 0).all()
    assert abs(float(law.law.sum()) - 1) <= 1e-12 + law.unresolved


def _counts(f, row: torch.Tensor, n: int, generator: torch.Generator, chunk: int = 1 << 22) -> torch.Tensor:
    counts = torch.zeros(row.numel(), dtype=torch.int64)
    done = 0
    while done < n:
        m = min(n - done, chunk // row.numel())
        counts += torch.bincount(f(row.expand(m, -1).clone(), generator), minlength=row.numel())
        done += m
    return counts


@pytest.mark.parametrize("name", sorted(LINES))
def test_declared_laws_match_monte_carlo(name):
    """Each line's draws against its declared law, over all classes, with power >= 0.99
    against the nearest wrong law we name: the declared one with its leave rate 10% lower.
    The float32 grid laws are swept at h = 2e-3 (at h = 0.05 their tokens reach a fifth of
    the grid, and the sweep is slow); bfloat16's MaskGIT line at h = 0.05, where its law
    is already far from exact (0.61 of the exact leave rate) and the check has power
    against exact too."""
    f = LINES[name]
    spec = f.sampling_line
    probe = PROBE if name == "maskgit_gumbel_bfloat16" else Probe("zipf", 2e-3, 20)
    p, copies, _, mask_block = probe.blocks()
    assert copies.max() == 1  # blocks are single classes
    law = spec.law(p, copies).law
    tokens = torch.arange(law.numel()) != mask_block
    wrong = law.clone()
    wrong[tokens] *= 0.9
    wrong[mask_block] = 1 - wrong[tokens].sum()
    n = sample_size(probe.h, 0.1, 0.99)  # enough for the binomial test of the leave rate;
    while chi_square_power(law, wrong, n) < 0.99:  # the test over all classes needs more
        n = int(n * 1.25)
    counts = _counts(f, line_input(probe.categories(), spec.takes, spec.dtype), n, torch.Generator().manual_seed(11))
    test = chi_square_test(counts, law)
    power = chi_square_power(law, wrong, n)
    print(f"{name}: {n:,} draws, p = {test.p_value:.3f}, power against a 10% lower leave rate {power:.4f}")
    assert test.p_value > 1e-3 and power >= 0.99
    if name == "maskgit_gumbel_bfloat16":
        assert abs(float(law[tokens].sum()) / probe.h - 0.61) < 0.01
        assert chi_square_power(law, probe.categories(), n) >= 0.99


def test_multinomial_is_a_race_against_exponentials_from_53_bit_uniforms():
    """The reading of PyTorch's source behind the declared laws of torch.multinomial and
    Categorical on the CPU: one sample is argmax(p / q), q = empty_like(p).exponential_(),
    and exponential_ rounds -log1p(-u) of a float64 uniform u to the dtype of p."""
    p = torch.rand(500, 64, generator=torch.Generator().manual_seed(1))
    for replacement in (False, True):
        drawn = torch.multinomial(p, 1, replacement, generator=torch.Generator().manual_seed(7)).squeeze(-1)
        q = torch.empty_like(p).exponential_(generator=torch.Generator().manual_seed(7))
        assert torch.equal(drawn, (p / q).argmax(-1))
    for dtype in (torch.float32, torch.float64):
        e = torch.empty(100_000, dtype=dtype).exponential_(generator=torch.Generator().manual_seed(3))
        u = torch.rand(100_000, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        expected = (-torch.log1p(-u)).to(dtype)
        # float64: torch's vectorised log1p may differ from the scalar one in the last bit
        assert torch.allclose(e, expected, rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert float(e.min()) < 2.0**-24 * 100  # far below float32's uniform grid: the draws reach u ~ 1 - 1e-6


def test_categorical_lines_leave_the_global_generator_alone():
    f = LINES["torch_categorical_probs_float32"]
    x = _inputs(f, rows=50)
    before = torch.get_rng_state()
    a = f(x, torch.Generator().manual_seed(5))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, f(x, torch.Generator().manual_seed(5)))


def test_line_input():
    c = PROBE.categories()
    assert torch.equal(line_input(c, "probs", torch.float32), c.to(torch.float32))
    assert torch.equal(line_input(c, "logits", "bfloat16"), torch.log(c).to(torch.bfloat16))
    with pytest.raises(ValueError, match="takes"):
        line_input(c, "scores", torch.float32)


def test_generator_grid_is_exact_in_integers():
    values, counts, denominator = generator_grid(torch.bfloat16)
    assert denominator == 2**24 and int(counts.sum()) == denominator
    assert torch.equal(counts.to(torch.float64) / denominator, rand_grid(torch.bfloat16)[1])


@pytest.mark.skipif("device" in inspect.signature(rand_grid).parameters, reason="grid_law knows CUDA's grid")
def test_cuda_grid_is_not_available_yet():
    with pytest.raises(LawUnavailable, match="Monte Carlo"):
        generator_grid(torch.float32, "cuda")
