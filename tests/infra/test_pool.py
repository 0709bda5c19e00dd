"""Tests for mdmlib.infra.pool: tasks run in other processes, on the threads asked, results in task order."""
import os

import pytest

from mdmlib.infra.pool import fill_in_workers


def _report(value: int) -> tuple[int, int, int]:
    import torch

    return os.getpid(), torch.get_num_threads(), 2 * value


def test_tasks_run_in_worker_processes_on_the_threads_asked():
    # 3 threads: neither this process's 1 (tests/conftest.py) nor a fresh process's default on 2 cores
    results = fill_in_workers(_report, [(1,), (2,), (3,)], workers=2, threads=3, progress=False)
    assert [value for _, _, value in results] == [2, 4, 6]
    assert all(pid != os.getpid() for pid, _, _ in results)
    assert {threads for _, threads, _ in results} == {3}


def test_nothing_runs_without_two_tasks_and_two_workers():
    def never(*args):
        raise AssertionError("ran a task that the caller computes itself")

    assert fill_in_workers(never, [(1,), (2,)], workers=1) is None
    assert fill_in_workers(never, [(1,)], workers=2) is None
    assert fill_in_workers(never, [], workers=2) is None
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            fill_in_workers(never, [], workers=bad)
