"""The GPU checks that are statistics (mdmlib.tools.gpu_statistics): the binning of the top
of the lattice, the literal line's check run on the CPU at a small size, and (on a machine
with CUDA) both checks at full size."""
import pytest
import torch

from mdmlib.tools import gpu_statistics

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_the_top_of_the_lattice_is_binned_by_value_and_rank_parity():
    top = torch.tensor([0.8, 0.9], dtype=torch.float64)  # binned one by one
    paired = torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64)  # by the parity of their rank from the top
    u = torch.tensor([0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9], dtype=torch.float64)
    # 0 -> 0; top[i] -> 1 + i; paired, odd rank (0.7, 0.5) -> 3, even (0.6) -> 4; the rest -> 5
    assert gpu_statistics._bin_of(u, top, paired).tolist() == [0, 5, 3, 4, 3, 1, 2]
    probs = torch.tensor([0.1, 0.2, 0.05, 0.15, 0.1, 0.25, 0.15], dtype=torch.float64)
    binned = gpu_statistics.binned_lattice(u, probs, top, paired)
    torch.testing.assert_close(binned, torch.tensor([0.1, 0.25, 0.15, 0.15, 0.15, 0.2], dtype=torch.float64), rtol=0, atol=1e-15)


def test_the_literal_line_check_runs_and_keeps_its_power_rule():
    found = gpu_statistics.check_literal_line(torch.device("cpu"), n=1 << 16, V=1000, leave=1e-2)
    assert found["draws"] == 1 << 16 and 0 < found["leaves"] < found["draws"]
    assert set(found["z"]) == {"grid law, CUDA lattice", "grid law, CPU lattice", "closed form"}
    assert abs(found["z"]["grid law, CPU lattice"]) < 4  # the CPU's line follows the CPU lattice's law
    # too few draws to tell the grid law from the closed form: the check does not pass on them
    assert found["expected_z_closed"] < 8 and not found["passed"]


@cuda
def test_torch_rand_on_cuda_follows_the_model():
    found = gpu_statistics.check_rand_lattice(torch.device("cuda"))
    assert found["passed"], found


@cuda
def test_literal_line_on_cuda_follows_the_cuda_grid_law():
    found = gpu_statistics.check_literal_line(torch.device("cuda"))
    assert found["passed"], found
