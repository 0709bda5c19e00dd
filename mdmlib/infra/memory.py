"""Requests whose memory is known in advance, refused before anything is allocated.

A sampler's arrays are sized by its arguments (steps, batch, length, vocabulary), so what
a call will hold can be counted before it starts: `require_memory` compares that count
with the budget and raises MemoryError with both figures, human-readable, instead of
letting the allocation take the machine's memory (or fail halfway through a run).

The budget: MDMLIB_MEMORY_BUDGET (bytes, e.g. 8e9) if set, else the memory this machine
has available now (MemAvailable in /proc/meminfo; elsewhere the free physical pages).
Where neither is known nothing is refused. Requests under SMALL (64 MiB) are let through
without reading the budget: every machine that runs this has that, and a denoiser called
thousands of times should not read /proc at each call. The counts are lower bounds (the
arrays surely held at one time), so a refusal means the call cannot fit.
"""
from __future__ import annotations

import os

BUDGET_VARIABLE = "MDMLIB_MEMORY_BUDGET"
SMALL = 64 * 2**20


def human_bytes(n: float) -> str:
    """n bytes in decimal units: '24.0 GB'."""
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def _available() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget() -> tuple[float | None, str]:
    """(bytes, where the figure comes from): the override, or the memory available now."""
    value = os.environ.get(BUDGET_VARIABLE, "").strip()
    if value:
        try:
            budget = float(value)
        except ValueError:
            raise ValueError(f"{BUDGET_VARIABLE} must be a number of bytes (e.g. 8e9), got {value!r}") from None
        if not budget > 0:
            raise ValueError(f"{BUDGET_VARIABLE} must be a positive number of bytes, got {value!r}")
        return budget, f"the budget {BUDGET_VARIABLE}"
    return _available(), f"this machine's available memory (set {BUDGET_VARIABLE} to choose another budget)"


def require_memory(needed: float, what: str) -> None:
    """Raise MemoryError if `what` would need more than the budget: `needed` bytes at least."""
    if needed < SMALL:
        return
    budget, source = memory_budget()
    if budget is not None and needed > budget:
        raise MemoryError(f"{what} would need at least {human_bytes(needed)}, more than {human_bytes(budget)}, {source}: "
                          "ask for less (fewer steps, a smaller batch, length or vocabulary)")
