"""Training on the synthetic language: the setup of a run and one loop for the four objectives.

objective      network                          loss (mdmlib.mdm.losses)
"mdm_time"     MDLM DiT, time-conditioned       the continuous-time MDM loss, sigma(t) as input
"mdm_no_time"  MDLM DiT, not time-conditioned   the same loss; the network is given sigma = 0
"maskgit"      MDLM DiT, not time-conditioned   MaskGIT-style, n masked positions from the cosine law
"ar"           the causal twin                  -log p(x_l | x_<l), every position

The losses, their weights by masked count and the draws of times and masks are
derived in mdmlib.mdm.losses.

Training (`TrainingRun`): AdamW, linear warm-up then cosine decay of the
learning rate, gradients clipped at norm 1, a fixed number of steps (so a run is
reproducible; no time budget). Every random stream is seeded from the setup's
seed: the data (fresh exact samples each step, `MarkovLanguage.sample`), the
noise (times, masks), the initial weights and dropout. A run can be saved and
resumed (weights, optimizer, step, every generator's state, the loss history);
on the CPU the resumed run is bitwise the uninterrupted one (on CUDA only up to the
GPU's nondeterministic kernels, e.g. the embedding's backward, unless
torch.use_deterministic_algorithms is on). Cached training (checkpoints kept and
loaded instead of retrained, several objectives in parallel processes) is
mdmlib.models.trained.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mdmlib.models import DiTConfig, build_network, resolve_device
from mdmlib.models.checkpoints import CorruptCheckpointError, safe_torch_load
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.infra.results import write_atomically
from mdmlib.infra.scale import by_scale
from mdmlib.mdm.losses import OBJECTIVES, check_t_min, loss_terms
from mdmlib.mdm.schedules import SCHEDULES
from mdmlib.language.synthetic import LanguageSpec, MarkovLanguage

DATA_CHUNK = 32  # batches drawn from the language at once: its sampler loops over positions, not sequences


# --- the setup of a run --------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSetup:
    language: LanguageSpec
    length: int  # sequence length L
    hidden_dim: int
    n_heads: int
    n_blocks: int
    cond_dim: int
    batch_size: int
    steps: int
    learning_rate: float
    warmup_steps: int
    dropout: float = 0.0
    grad_clip: float = 1.0  # the largest gradient norm (MDLM's), inf for none
    seed: int = 0
    schedule: str = "loglinear"  # of the MDM losses
    t_min: float = 1e-3
    antithetic: bool = True

    def __post_init__(self):
        for name in ("length", "batch_size", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: expected one of {sorted(SCHEDULES)}")
        check_t_min(self.t_min)
        self.network_config("mdm_time")  # sizes the network cannot take fail here

    def network_config(self, objective: str) -> DiTConfig:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
        return DiTConfig(
            vocab_size=self.language.vocab_size + 1,  # the tokens and the mask (MDM) or start id (AR)
            model_length=self.length,
            hidden_dim=self.hidden_dim,
            n_heads=self.n_heads,
            n_blocks=self.n_blocks,
            cond_dim=self.cond_dim,
            time_conditioning=objective == "mdm_time",
            dropout=self.dropout,
            kind="ar" if objective == "ar" else "mdlm",
        )

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up over warmup_steps, then cosine decay to 0 at `steps`."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# The quick scale (notebook 09 explains the choice): 1,024 Zipf-distributed tokens whose
# classes overlap (emission_spread 2: broad conditionals, many small probabilities, which
# the collapse needs) and 8 hidden classes that each token's successor follows closely
# (transition_spread 5: context worth learning, and learnable in a thousand steps).
QUICK_LANGUAGE = LanguageSpec(vocab_size=1024, num_classes=8, emission_spread=2.0, transition_spread=5.0)
SETUPS = {
    "quick": TrainSetup(
        language=QUICK_LANGUAGE, length=64, hidden_dim=64, n_heads=4, n_blocks=3, cond_dim=32,
        batch_size=32, steps=1000, learning_rate=3e-3, warmup_steps=100,
    ),
    "full": TrainSetup(
        language=QUICK_LANGUAGE, length=64, hidden_dim=128, n_heads=4, n_blocks=4, cond_dim=64,
        batch_size=64, steps=8000, learning_rate=2e-3, warmup_steps=400,
    ),
}


def current_setup() -> TrainSetup:
    return by_scale(quick=SETUPS["quick"], full=SETUPS["full"])


# --- the loop ------------------------------------------------------------------------------------
def _seeded_network(config: DiTConfig, seed: int, device: torch.device):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(config)
    return network.to(device)


class TrainingRun:
    """One training run: network, optimizer, step and random streams, all resumable."""

    def __init__(self, setup: TrainSetup, objective: str, device="auto"):
        if not isinstance(setup, TrainSetup):
            raise TypeError(f"expected a TrainSetup, got {type(setup).__name__}")
        config = setup.network_config(objective)
        self.setup, self.objective, self.device = setup, objective, resolve_device(device)
        self.language = MarkovLanguage(setup.language)
        # separate streams, so that e.g. a change of objective leaves the data the same
        self.data_generator = torch.Generator().manual_seed(setup.seed)
        self.noise_generator = torch.Generator().manual_seed(setup.seed + 1)
        self.network = _seeded_network(config, setup.seed + 2, self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(setup.seed + 3)
            self.dropout_state = torch.get_rng_state()  # the global stream dropout draws from
        self.cuda_dropout_state = None
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=setup.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
        self.data = torch.empty(0, setup.length, dtype=torch.int64)  # drawn, not yet used
        self.step = 0
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0

    def _params(self) -> dict:
        return {"setup": asdict(self.setup), "objective": self.objective}

    def train_step(self) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = self.setup.learning_rate_at(self.step)
        x0 = self.next_batch()
        self.network.train()
        numerator, denominator = loss_terms(
            self.objective, self.network, x0, self.noise_generator,
            schedule=self.setup.schedule, t_min=self.setup.t_min, antithetic=self.setup.antithetic,
        )
        loss = numerator.sum() / denominator.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.setup.grad_clip)))
        self.optimizer.step()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def next_batch(self) -> torch.Tensor:
        """The next batch of the data stream: fresh exact samples, drawn DATA_CHUNK batches at a time."""
        B = self.setup.batch_size
        if self.data.shape[0] < B:
            self.data = self.language.sample(DATA_CHUNK * B, self.setup.length, self.data_generator)
        batch, self.data = self.data[:B], self.data[B:]
        return batch

    def train_until(self, step: int, *, save_every: int | None = None, state_path=None, progress: bool = True) -> None:
        """Train up to `step` (absolute), saving the resumable state every `save_every` steps."""
        if step < self.step:
            raise ValueError(f"the run is at step {self.step}, past {step}")
        if save_every is not None and (save_every < 1 or state_path is None):
            raise ValueError("save_every needs a positive number of steps and a state_path")
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.set_rng_state(self.dropout_state)
            if cuda and self.cuda_dropout_state is None:
                torch.cuda.manual_seed(self.setup.seed + 3)
            elif cuda:
                torch.cuda.set_rng_state(self.cuda_dropout_state, self.device)
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            bar = progress_bar(range(self.step, step), desc=f"training {self.objective}", leave=False, show=progress)
            for _ in bar:
                self.train_step()
                if self.step % 50 == 0:
                    bar.set_postfix(loss=f"{sum(self.losses[-50:]) / len(self.losses[-50:]):.3f}", refresh=False)
                if save_every and self.step % save_every == 0 and self.step < step:
                    self._keep_rng(cuda)
                    self._account(cpu_start, wall_start)
                    cpu_start, wall_start = time.process_time(), time.perf_counter()
                    self.save_state(state_path)
            self._keep_rng(cuda)
            self._account(cpu_start, wall_start)

    def _keep_rng(self, cuda: bool) -> None:
        self.dropout_state = torch.get_rng_state()
        if cuda:
            self.cuda_dropout_state = torch.cuda.get_rng_state(self.device)

    def _account(self, cpu_start: float, wall_start: float) -> None:
        self.cpu_seconds += time.process_time() - cpu_start
        self.wall_seconds += time.perf_counter() - wall_start

    def state(self) -> dict:
        return {
            "params": self._params(),
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "data_generator": self.data_generator.get_state(),
            "data": self.data.clone(),  # not the whole chunk it is a view of
            "noise_generator": self.noise_generator.get_state(),
            "dropout_state": self.dropout_state,
            "cuda_dropout_state": self.cuda_dropout_state,
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "seconds": torch.tensor([self.cpu_seconds, self.wall_seconds], dtype=torch.float64),
        }

    def save_state(self, path) -> Path:
        """Everything needed to resume, written whole or not at all."""
        return write_atomically(Path(path), lambda tmp: torch.save(self.state(), tmp))

    @classmethod
    def resume(cls, path, setup: TrainSetup, objective: str, device="auto") -> "TrainingRun":
        """The run saved at `path`, which must be a run of this setup and objective."""
        state = safe_torch_load(path)
        if not isinstance(state, dict):
            raise CorruptCheckpointError(f"{path} holds a {type(state).__name__}, not a training state")
        run = cls(setup, objective, device)
        if state.get("params") != run._params():
            raise ValueError(f"{path} holds a run of {state.get('params')}, not of {run._params()}")
        run.network.load_state_dict(state["network"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.step = int(state["step"])
        run.data_generator.set_state(state["data_generator"])
        run.data = state["data"]
        run.noise_generator.set_state(state["noise_generator"])
        run.dropout_state = state["dropout_state"]
        run.cuda_dropout_state = state["cuda_dropout_state"] if run.device.type == "cuda" else None
        run.losses = state["losses"].tolist()
        run.cpu_seconds, run.wall_seconds = state["seconds"].tolist()
        return run
