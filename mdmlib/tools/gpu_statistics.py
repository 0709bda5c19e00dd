"""The GPU checks that are statistics (mdmlib.tools.gpu_check runs them): the CUDA
generator's lattice against its model in mdmlib.precision.grid_law, and the literal float32
line of one step on the GPU against the grid law and the truncation closed form."""
from __future__ import annotations

import math

import torch

from mdmlib.precision.categorical import exponential_race
from mdmlib.precision.grid_law import law_on_grid, rand_grid, zero_probability
from mdmlib.precision.formats import as_dtype, float_format
from mdmlib.stats.significance import ALPHA, binomial_z, chi_square_power, chi_square_test
from mdmlib.precision.truncation import truncated_law

_DRAWS_PER_CALL = 1 << 28
SINGLES, PAIRED = 8, 1 << 12  # top values binned one by one, then in two groups by rank parity


def _bin_of(u: torch.Tensor, top: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """Bin of each value: 0 -> 0; the i-th of the `top` values -> 1 + i; one of the
    `paired` values -> SINGLES + 1 (odd rank from the top) or SINGLES + 2 (even);
    anything else -> SINGLES + 3."""
    s = top.numel()
    pos_t = torch.searchsorted(top, u).clamp(max=s - 1)
    pos_p = torch.searchsorted(paired, u).clamp(max=paired.numel() - 1)
    on_top, on_pair = top[pos_t] == u, paired[pos_p] == u
    odd_rank = (paired.numel() - pos_p) % 2 == 1
    rest = torch.full_like(pos_t, s + 3)
    b = torch.where(on_pair, torch.where(odd_rank, s + 1, s + 2), rest)
    b = torch.where(on_top, 1 + pos_t, b)
    return torch.where(u == 0, torch.zeros_like(b), b)


def binned_lattice(values: torch.Tensor, probs: torch.Tensor, top: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """A lattice's probabilities in the bins of `_bin_of`."""
    return torch.zeros(top.numel() + 4, dtype=torch.float64).index_add_(0, _bin_of(values.double(), top, paired), probs)


def check_rand_lattice(device, draws: dict | None = None, seed: int = 0) -> dict:
    """torch.rand on `device` against the modelled CUDA lattice, per dtype."""
    draws = draws or {torch.float32: 1 << 32, torch.float16: 1 << 30, torch.bfloat16: 1 << 30}
    found, passed = {}, True
    for dtype, n in draws.items():
        dtype = as_dtype(dtype)
        values, probs = rand_grid(dtype, "cuda", top=SINGLES + PAIRED)
        top, paired = values[-SINGLES:].double(), values[:-SINGLES].double()
        p0 = zero_probability(dtype, "cuda")
        model = binned_lattice(values, probs, top, paired)
        model[0] = p0
        model[-1] = 1 - model[:-1].sum()
        cpu_values, cpu_probs = rand_grid(dtype, "cpu")
        wrong = {"CPU lattice": binned_lattice(cpu_values, cpu_probs, top, paired)}
        kept_one = model.clone()  # the same generator without the remap: its 0s are 1.0s ("rest")
        kept_one[-1] += kept_one[0]
        kept_one[0] = 0.0
        wrong["1.0 kept, not mapped to 0"] = kept_one
        counts = torch.zeros(top.numel() + 4, dtype=torch.int64)
        g = torch.Generator(device).manual_seed(seed)
        top_d, paired_d = top.to(device), paired.to(device)
        for start in range(0, n, _DRAWS_PER_CALL):
            u = torch.rand(min(_DRAWS_PER_CALL, n - start), generator=g, dtype=dtype, device=device).double()
            counts += torch.bincount(_bin_of(u, top_d, paired_d), minlength=top.numel() + 4).cpu()
        test = chi_square_test(counts, model)
        power = {name: chi_square_power(model, alt, n) for name, alt in wrong.items()}
        fmt = float_format(dtype)
        print(f"{fmt.name:9s} {n:>14,d} draws: zeros {int(counts[0]):,d} (model {n * p0:,.1f}, CPU lattice {n * float(wrong['CPU lattice'][0]):,.1f}); "
              f"largest {float(top[-1]):.10f} seen {int(counts[SINGLES]):,d} times (model {n * float(model[SINGLES]):,.1f}, "
              f"CPU {n * float(wrong['CPU lattice'][SINGLES]):,.1f}); top-bin chi-square p = {test.p_value:.3g}; power against: "
              + ", ".join(f"{k} {v:.4f}" for k, v in power.items()))
        # the nearest wrong model the sample can tell apart must be rejected with power >= 0.99
        ok = test.p_value > ALPHA and max(power.values()) >= 0.99
        passed &= ok
        found[fmt.name] = {"draws": n, "zeros": int(counts[0]), "p_value": test.p_value, "power": power, "passed": ok}
    # float64: too many values to enumerate, but the top binade's spacing tells CUDA (2^-52) from the CPU (2^-53)
    n64 = 1 << 26
    u = torch.rand(n64, generator=torch.Generator(device).manual_seed(seed + 1), dtype=torch.float64, device=device)
    high = u[u >= 0.5]
    odd = int((torch.remainder(high * 2.0**53, 2) != 0).sum())
    ok64 = odd == 0 and high.numel() > n64 // 4
    print(f"float64   {n64:>14,d} draws: {high.numel():,d} in [1/2, 1), {odd} of them odd multiples of 2^-53 "
          f"(CUDA model: none; CPU: about half); largest {float(u.max()):.17f} (model at most 1 - 2^-52)")
    found["float64"] = {"draws": n64, "top_binade": high.numel(), "odd_multiples": odd, "passed": ok64}
    found["passed"] = passed and ok64
    return found


def check_literal_line(device, n: int = 1 << 23, V: int = 10_000, leave: float = 1e-3, seed: int = 0) -> dict:
    """The literal float32 race of one masked-diffusion step (V flat tokens, then the
    mask) on `device`: its leave frequency against the grid law on the CUDA lattice,
    the CPU lattice's law, and the truncation closed form."""
    blocks = torch.tensor([leave / V, 1 - leave], dtype=torch.float64)
    grid_cuda = law_on_grid(blocks, torch.float32, copies=[V, 1], device="cuda")[0].item()
    grid_cpu = law_on_grid(blocks, torch.float32, copies=[V, 1])[0].item()
    step = torch.full((V + 1,), leave / V, dtype=torch.float64)
    step[-1] = 1 - leave
    closed = truncated_law(step, float_format(torch.float32).gumbel_cap)[:-1].sum().item()
    g = torch.Generator(device).manual_seed(seed)
    p = step.to(device=device, dtype=torch.float32)
    rows = max(1, (1 << 28) // (V + 1))
    leaves = 0
    for start in range(0, n, rows):
        leaves += int((exponential_race(p.expand(min(rows, n - start), V + 1), g, torch.float32) != V).sum())
    z = {name: binomial_z(leaves, n, q) for name, q in (("grid law, CUDA lattice", grid_cuda), ("grid law, CPU lattice", grid_cpu), ("closed form", closed))}
    expected_z = (grid_cuda - closed) * n / math.sqrt(n * closed * (1 - closed))
    print(f"literal float32 line on {device}, {V:,d} flat tokens, leave {leave:g}: {leaves:,d} leaves in {n:,d} draws = "
          f"{leaves / n / leave:.4f} of exact; grid law {grid_cuda / leave:.4f} (CUDA lattice), {grid_cpu / leave:.4f} (CPU lattice), "
          f"closed form {closed / leave:.4f}; z: " + ", ".join(f"{k} {v:+.2f}" for k, v in z.items())
          + f"; expected z against the closed form {expected_z:.1f}")
    ok = abs(z["grid law, CUDA lattice"]) < 3 and z["closed form"] > 5 and expected_z > 8
    return {"draws": n, "leaves": leaves, "z": z, "expected_z_closed": expected_z, "passed": ok}
