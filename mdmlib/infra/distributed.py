"""Sampling and judging split across processes with torch.distributed.

The N samples of a run are cut into shards of a fixed size S: shard k holds samples
[k S, min((k + 1) S, N)) and draws them with its own generator, seeded from (seed, k).
Process r of W takes shards r, r + W, r + 2W, ... and process 0 gathers every shard's
result, in shard order. A shard's result depends on (seed, k, S) and its work function
only, never on which process ran it, so the gathered run is the same for any number of
processes: bitwise, on the same kind of device with the same libraries.

    from mdmlib.infra.distributed import run_sharded, setup, teardown

    info = setup()                       # reads what torchrun set; a plain process is rank 0 of 1

    def work(shard):                     # one shard: sample, then judge
        g = shard.generator(info.device)
        samples = ...                    # shard.size samples drawn with g
        return {"tokens": samples.cpu(), "nll": judge.score(samples).nll_sum}

    results = run_sharded(work, num_samples=1024, shard_size=16, seed=0, info=info)
    if results is not None:              # process 0 (or the only process)
        tokens = torch.cat([r["tokens"] for r in results])
    teardown()

Run it
    on one GPU or on the CPU:   python run.py
    on the G GPUs of one node:  torchrun --standalone --nproc_per_node=G run.py
    on several CPU processes:   torchrun --standalone --nproc_per_node=P run.py
    on several nodes:           torchrun --nnodes=M --nproc_per_node=G --rdzv_backend=c10d
                                  --rdzv_endpoint=HOST:PORT run.py   (on every node)
Under torchrun every process drives the GPU numbered by its LOCAL_RANK and the processes
talk through NCCL; on the CPU through gloo. Shards go round-robin, so a run of N samples
keeps at most ceil(N / S) processes busy: choose S so that ceil(N / S) is a multiple of
the number of processes you mean to use. Results travel to process 0 pickled: return
small things (tokens, per-sequence scores), not the network's outputs.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from mdmlib.infra.progress import progress as progress_bar
from mdmlib.infra.seeds import derive_seed

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard `index` of a run seeded `seed` (mdmlib.infra.seeds)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and shard index must be >= 0, got {seed} and {index}")
    return derive_seed("shard", seed, index)


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first sample
    stop: int  # one past the last
    seed: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def generator(self, device="cpu") -> torch.Generator:
        """This shard's generator, seeded, on `device`."""
        return torch.Generator(device=device).manual_seed(self.seed)


def make_shards(num_samples: int, shard_size: int, seed: int) -> list[Shard]:
    if num_samples < 1 or shard_size < 1:
        raise ValueError(f"need num_samples >= 1 and shard_size >= 1, got {num_samples} and {shard_size}")
    starts = range(0, num_samples, shard_size)
    return [Shard(k, s, min(s + shard_size, num_samples), shard_seed(seed, k)) for k, s in enumerate(starts)]


@dataclass(frozen=True)
class Process:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Process:
    """This process's place in the run. Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK
    set) it joins the process group: NCCL on CUDA, each process on GPU LOCAL_RANK; gloo
    on the CPU. Without them it is rank 0 of 1 and needs no process group. `device`
    "cuda" or "cpu"; by default CUDA when torch sees a GPU."""
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    present = [v for v in TORCHRUN_VARIABLES if v in os.environ]
    if not present:
        return Process(0, 1, 0, torch.device(kind))
    if len(present) < len(TORCHRUN_VARIABLES):
        raise ValueError(f"torchrun sets {TORCHRUN_VARIABLES} together; only {present} are set")
    rank, world, local = (int(os.environ[v]) for v in TORCHRUN_VARIABLES)
    if kind == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"process with LOCAL_RANK {local} has no GPU: torch sees {torch.cuda.device_count()}")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return Process(rank, world, local, torch.device(f"cuda:{local}" if kind == "cuda" else "cpu"))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _to_cpu(obj: Any) -> Any:
    """Tensors inside dicts, lists, tuples and dataclasses moved to the CPU, so that
    process 0 can unpickle them whatever GPU they were made on."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _to_cpu(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    return obj


def run_sharded(work: Callable[[Shard], Any], num_samples: int, shard_size: int, seed: int, *,
                info: Process | None = None, progress: bool = True) -> list | None:
    """Run `work(shard)` on this process's shards; return every shard's result, in shard
    order, on process 0, and None on the others."""
    info = info or setup()
    shards = make_shards(num_samples, shard_size, seed)
    mine = shards[info.rank :: info.world_size]
    done = {s.index: _to_cpu(work(s)) for s in progress_bar(mine, desc=f"shards of rank {info.rank}", show=progress and info.is_main)}
    if info.world_size == 1:
        return [done[s.index] for s in shards]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(done, gathered, dst=0)
    if not info.is_main:
        return None
    merged = {k: v for part in gathered for k, v in part.items()}
    return [merged[s.index] for s in shards]
