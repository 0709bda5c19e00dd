"""The exact-law path: a declared law gives the leave rate of an independent algorithm."""
import pytest
import torch

from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe
from mdmlib.audit.public_lines import grid_line_law, sampling_line
from mdmlib.precision.categorical import exponential_race
from mdmlib.precision.grid_law import law_on_grid

QUIET = dict(show_progress=False)


def _race_noise(u):
    return 1e-10 - torch.log(u + 1e-10)


@sampling_line(takes="probs", dtype=torch.bfloat16, law=grid_line_law(_race_noise, lambda p, e: p / e, "probs", torch.bfloat16, "race"))
def bfloat16_race(p, g):
    return exponential_race(p, g, torch.bfloat16)


@pytest.mark.parametrize("mask", ["last", "first"])
def test_declared_law_gives_the_exact_leave_rate(mask):
    """The audit's exact path against law_on_grid, an independent algorithm."""
    probe = Probe("peaked", 0.05, 30, mask)
    r = audit(bfloat16_race, probes=[probe], **QUIET).results[0]
    p, copies, _, mask_block = probe.blocks()
    reference = 1 - float(law_on_grid(p, torch.bfloat16, copies=copies)[mask_block])
    assert r.method == "exact law" and abs(r.leave - reference) < 1e-12
