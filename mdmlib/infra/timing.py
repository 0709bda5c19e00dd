"""Timing that measures the work, not the neighbours.

Timers run on one intra-op thread and count the CPU time of this process: on a machine
shared with other work, wall time measures the neighbours too (two threads that wait
for each other on a busy machine made small-tensor work ten times slower), while the
CPU time of one thread measures the work done.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch


@contextmanager
def one_thread():
    """Run the block on one intra-op thread (the setting before it is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_seconds(fn, repeats: int, clock=time.perf_counter) -> float:
    """The median time of fn() by `clock` over `repeats` runs, after a warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def median_cpu_seconds(fn, repeats: int) -> float:
    """The median CPU time of fn() over `repeats` runs on one thread, after a warm-up run."""
    with one_thread():
        return median_seconds(fn, repeats, time.process_time)
