"""The memory an audit will hold, computed before anything is allocated, and the refusal
(MemoryError, with the figure, as the samplers do: `mdmlib.infra.memory`) of a probe that
cannot fit in the memory budget or, for a line on a GPU, in that GPU's memory."""
from __future__ import annotations

import torch

from mdmlib.audit.probes import Probe
from mdmlib.infra.memory import human_bytes, require_memory

VECTORS = 10  # float64 vectors of the probe's size held at once (mu, its categories, blocks, counts, the fits' laws)
LINE_COPIES = 2  # a chunk of the line's input, and as much again for the line's own work


def needed_bytes(probe: Probe, chunk_elems: int, dtype: torch.dtype) -> tuple[int, int]:
    """(bytes on the host, bytes on the line's device) that auditing `probe` holds at once."""
    rows = max(1, chunk_elems // probe.classes)
    return VECTORS * 8 * probe.classes, LINE_COPIES * rows * probe.classes * dtype.itemsize


def check_memory(probes: list[Probe], chunk_elems: int, dtype: torch.dtype, device) -> None:
    """Refuse, before allocating, a probe whose audit needs more memory than there is."""
    device = torch.device(device)
    for p in probes:
        host, line = needed_bytes(p, chunk_elems, dtype)
        what = f"auditing the probe {' '.join(p.label().split())} ({p.classes:,} classes)"
        require_memory(host + line if device.type == "cpu" else host, what)
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            if line > total:
                raise MemoryError(f"{what} would need at least {human_bytes(line)} on {device}, more than its {human_bytes(total)}: "
                                  "choose a smaller vocabulary (--vocab) or chunk (--chunk)")
