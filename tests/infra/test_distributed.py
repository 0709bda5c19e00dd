"""Sharded runs: the partition, the seeds, and two gloo processes under torchrun giving
bitwise the run of one process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdmlib.infra.distributed import TORCHRUN_VARIABLES, make_shards, run_sharded, setup, shard_seed
from mdmlib.infra.seeds import derive_seed

JOB = Path(__file__).resolve().parents[1] / "distributed_job.py"
sys.path.insert(0, str(JOB.parent))
import distributed_job  # noqa: E402


@pytest.fixture
def one_process(monkeypatch):
    for v in TORCHRUN_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each torchrun process (the reduction order may depend on it)
    yield setup("cpu")
    torch.set_num_threads(threads)


def test_shards_partition_the_samples_with_their_own_seeds():
    shards = make_shards(10, 3, seed=5)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [s.index for s in shards] == [0, 1, 2, 3] and [s.size for s in shards] == [3, 3, 3, 1]
    seeds = {shard_seed(seed, k) for seed in range(20) for k in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2**32 for s in seeds)
    assert shard_seed(5, 2) == derive_seed("shard", 5, 2)  # the project's one derivation (mdmlib.infra.seeds)
    assert [s.seed for s in make_shards(10, 3, seed=5)] == [s.seed for s in shards]  # a pure function
    a, b = (torch.rand(4, generator=s.generator()) for s in shards[:2])
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="shard_size"):
        make_shards(10, 0, seed=5)
    with pytest.raises(ValueError, match="seed"):
        shard_seed(-1, 0)


def test_one_process_without_torchrun(one_process):
    assert (one_process.rank, one_process.world_size, one_process.device) == (0, 1, torch.device("cpu"))
    results = run_sharded(lambda s: (s.index, torch.rand(s.size, generator=s.generator())), 10, 3, seed=1, info=one_process, progress=False)
    assert [r[0] for r in results] == [0, 1, 2, 3]
    assert all(torch.equal(r[1], torch.rand(s.size, generator=s.generator())) for r, s in zip(results, make_shards(10, 3, seed=1)))


def test_half_a_torchrun_environment_is_refused(monkeypatch):
    for v in TORCHRUN_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        setup("cpu")
    with pytest.raises(ValueError, match="device"):
        setup("tpu")


def test_two_gloo_processes_give_the_one_process_run(tmp_path, one_process):
    out = tmp_path / "two.pt"
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MDMLIB_PROGRESS="0")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(JOB), str(out)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out)
    one = distributed_job.job(one_process)
    assert [r["rank"] for r in two] == [0, 1, 0, 1]  # round-robin: both processes worked
    assert [r["rank"] for r in one] == [0, 0, 0, 0]
    for key in ("tokens", "nfe", "nll"):
        assert torch.equal(torch.cat([r[key] for r in two]), torch.cat([r[key] for r in one])), key
    tokens = torch.cat([r["tokens"] for r in one])
    assert tokens.shape == (distributed_job.NUM_SAMPLES, distributed_job.LENGTH)
    assert not torch.equal(tokens[:3], tokens[3:6])  # shards draw different samples
