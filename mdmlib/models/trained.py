"""Trained networks kept in the cache: train once, load afterwards.

`train` keeps each run's checkpoint (`save_pretrained` layout: config.json +
model.safetensors) in the cache folder, keyed by the setup, the objective, the device
type, a fingerprint of the code and the environment (PyTorch, CPU, threads:
mdmlib.infra.results.environment), and loads instead of retraining; an interrupted run
resumes from the state it saved there. `train_all` trains several objectives in
parallel processes on the CPU (mdmlib.infra.pool). Small networks train fastest on one
PyTorch thread per process (python -m mdmlib.tools.benchmarks train).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mdmlib.models import load_pretrained, resolve_device, save_pretrained
from mdmlib.models.training import TrainingRun, TrainSetup
from mdmlib.infra.pool import check_workers, fill_in_workers
from mdmlib.infra.results import cache_folder, write_json
from mdmlib.mdm.losses import OBJECTIVES

RESUME_NAME = "training_state.pt"
HISTORY_NAME = "history.json"


@dataclass
class Trained:
    network: torch.nn.Module  # in eval mode
    objective: str
    losses: list[float]  # the training loss of every step
    cpu_seconds: float  # of the training itself (process CPU time, all threads)
    wall_seconds: float
    threads: int  # torch's intra-op threads during training
    folder: Path  # the checkpoint: config.json + model.safetensors


def checkpoint_params(setup: TrainSetup, objective: str, device="auto") -> dict:
    """What a checkpoint is keyed by besides the code and the environment (mdmlib.infra.results):
    the setup, the objective and the device type."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
    return {"setup": asdict(setup), "objective": objective, "device": resolve_device(device).type}


def _checkpoint_folder(setup: TrainSetup, objective: str, device) -> tuple[dict, Path]:
    params = checkpoint_params(setup, objective, device)
    return params, cache_folder(f"train-{objective}", params, code=__name__)


def is_trained(setup: TrainSetup, objective: str, device="auto") -> bool:
    """Whether `train` would load this network from the cache."""
    return (_checkpoint_folder(setup, objective, device)[1] / HISTORY_NAME).exists()


def train(setup: TrainSetup, objective: str, *, device="auto", progress: bool = True, save_every: int = 250) -> Trained:
    """The network `objective` gives after `setup.steps` steps: loaded from the cache
    if it was trained before with these parameters and this code; otherwise trained
    (resuming a run that was interrupted) and saved there."""
    params, folder = _checkpoint_folder(setup, objective, device)
    history = folder / HISTORY_NAME
    if history.exists():  # written last: the checkpoint beside it is complete
        stored = _read_history(history)
        return Trained(load_pretrained(folder, device), objective, stored["losses"], stored["cpu_seconds"], stored["wall_seconds"], stored["threads"], folder)
    state_path = folder / RESUME_NAME
    run = TrainingRun.resume(state_path, setup, objective, device) if state_path.exists() else TrainingRun(setup, objective, device)
    run.train_until(setup.steps, save_every=save_every, state_path=state_path, progress=progress)
    save_pretrained(run.network, folder)
    record = {"params": params, "losses": run.losses, "cpu_seconds": run.cpu_seconds, "wall_seconds": run.wall_seconds, "threads": torch.get_num_threads()}
    write_json(record, history)
    state_path.unlink(missing_ok=True)
    run.network.eval()
    return Trained(run.network, objective, run.losses, run.cpu_seconds, run.wall_seconds, torch.get_num_threads(), folder)


def _train_in_worker(setup: TrainSetup, objective: str) -> str:
    train(setup, objective, device="cpu", progress=False)
    return objective


def train_all(setup: TrainSetup, objectives=OBJECTIVES, *, device="auto", workers: int = 1, progress: bool = True) -> dict[str, Trained]:
    """`train` for each objective. On the CPU, the networks not in the cache yet are
    trained `workers` at a time in separate processes (each on this process's number of
    threads, so the weights are those `train` gives here), then loaded from the cache:
    on 2 cores, 2 one-thread runs take about the time of one."""
    objectives = tuple(objectives)
    for objective in objectives:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
    check_workers(workers)
    missing = [o for o in objectives if not is_trained(setup, o, device)]
    on_cpu = resolve_device(device).type == "cpu"
    fill_in_workers(_train_in_worker, [(setup, o) for o in missing] if on_cpu else [], workers=workers, desc="training", progress=progress)
    return {o: train(setup, o, device=device, progress=progress) for o in objectives}


def _read_history(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
