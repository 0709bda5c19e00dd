"""Filling the on-disk cache from a pool of worker processes.

A caller lists the cache entries it still misses, has `fill_in_workers` compute them
side by side in fresh ("spawn") processes, each on the parent's number of PyTorch
threads (part of the cache key, and of the last bits of a result), then loads every
entry in its own process as it would without the pool. On 2 cores, 2 one-thread
processes take about the time of one.
"""
from __future__ import annotations

from typing import Callable, Sequence

from mdmlib.infra.progress import progress as progress_bar


def _with_threads(threads: int, worker: Callable, args: tuple):
    import torch

    torch.set_num_threads(threads)
    return worker(*args)


def check_workers(workers) -> int:
    """The number of worker processes, a positive integer (checked before the caller
    looks up what its cache misses)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers


def fill_in_workers(worker: Callable, tasks: Sequence[tuple], *, workers: int, threads: int | None = None, desc: str = "computing", progress: bool = True) -> list | None:
    """worker(*task) for each task, `workers` spawn-context processes at a time, each set
    to `threads` PyTorch threads (None: this process's number); the results in the order
    of `tasks`. `worker` must be a module-level function (the processes import it). With
    fewer than two tasks or one worker nothing runs and the answer is None: the caller
    computes what is missing in its own process as it loads."""
    check_workers(workers)
    tasks = [tuple(task) for task in tasks]
    if workers == 1 or len(tasks) < 2:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        jobs = [pool.submit(_with_threads, threads, worker, task) for task in tasks]
        for job in progress_bar(as_completed(jobs), total=len(jobs), desc=f"{desc}, {workers} at a time", show=progress):
            job.result()
    return [job.result() for job in jobs]
