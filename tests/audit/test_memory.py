"""What an audit will hold is computed before anything is allocated: a probe too large for
the memory budget (MDMLIB_MEMORY_BUDGET here, so the test does not depend on the machine)
is refused with the figure it would need."""
import pytest
import torch

from mdmlib.audit import memory
from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe


def test_needed_bytes_grow_with_the_vocabulary_and_the_chunk():
    small, large = Probe("flat", 0.1, 1_000), Probe("flat", 0.1, 10**9)
    host, line = memory.needed_bytes(small, 1 << 22, torch.float32)
    assert host == memory.VECTORS * 8 * 1_001 and line == memory.LINE_COPIES * (4_194_304 // 1_001) * 1_001 * 4
    assert memory.needed_bytes(large, 1 << 22, torch.float32)[1] == memory.LINE_COPIES * (10**9 + 1) * 4  # one row at least


def test_a_probe_beyond_the_budget_is_refused_before_allocation(monkeypatch):
    monkeypatch.setenv("MDMLIB_MEMORY_BUDGET", "1e9")
    calls = []
    with pytest.raises(MemoryError, match=r"V=100,000,000 .*would need at least 8\.8 GB, more than 1\.0 GB, the budget MDMLIB_MEMORY_BUDGET"):
        audit(lambda p, g: calls.append(1), probes=[Probe("flat", 0.1, 10**8)], show_progress=False)
    assert calls == []  # the line never ran: nothing was allocated for it
    memory.check_memory([Probe("flat", 0.1, 10**6)], 1 << 22, torch.float32, "cpu")  # 80 MB and the chunk: fits
    with pytest.raises(MemoryError, match="V=20,000,000 "):  # the probe that does not fit is named
        memory.check_memory([Probe("flat", 0.1, 10**6), Probe("flat", 0.1, 2 * 10**7), Probe("flat", 0.1, 10)], 1 << 22, torch.float32, "cpu")
