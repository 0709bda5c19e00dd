"""Training on the synthetic language: one loop, four objectives.

objective      network                          loss on a batch of clean sequences x_0 (B, L)
"mdm_time"     MDLM DiT, time-conditioned       the continuous-time MDM loss (below), sigma(t) as input
"mdm_no_time"  MDLM DiT, not time-conditioned   the same loss; the network is given sigma = 0
"maskgit"      MDLM DiT, not time-conditioned   MaskGIT-style: n masked positions, n from the cosine
                                                law below; unweighted cross-entropy over them
"ar"           the causal twin                  -log p(x_l | x_<l), every position

The continuous-time MDM loss (MDLM). With m(t) the probability that a token is
masked at time t (alpha_t = 1 - m(t) in the paper), split [0, 1] into steps s < t.
A position masked at t stays masked at s with probability m(s)/m(t) and otherwise
takes a token from mu_theta; the KL term of that step, for a position masked at
t, is (m(t) - m(s)) / m(t) * -log mu_theta(x_t, t)[x_0] (zero if it was clean).
Summing over steps and letting them shrink,

    NELBO = int_0^1 w(t) E_{x_t ~ q(. | x_0)} [ sum_{l masked in x_t} -log mu_theta(x_t, t)_l[x_0,l] ] dt,
    w(t) = m'(t) / m(t)        (= -alpha'_t / (1 - alpha_t)).

MDLM's log-linear schedule m(t) = (1 - eps) t (eps = 1e-3, sigma(t) = -log(1 - m(t)))
gives w(t) = (1 - eps) / ((1 - eps) t) = 1/t, as does the linear one; the cosine
schedule m(t) = 1 - cos(pi t / 2) gives w(t) = (pi/2) sin(pi t/2) / (1 - cos(pi t/2)).
MDLM writes the same weight as sigma'(t) / expm1(sigma(t)); mdmlib.mdm.schedules has
m (mask_probability) and m' (mask_rate).

By masked count (Prop. 3.1): n of L tokens are masked at time t with probability
C(L, n) m^n (1-m)^(L-n), so the loss puts on the count n the weight
    c_n = int w(t) C(L, n) m(t)^n (1 - m(t))^(L-n) dt = (1/n) [I_{m(t1)}(n, L-n+1) - I_{m(t0)}(n, L-n+1)]
over t in [t0, t1] (I the regularised incomplete beta function; substitute y = m(t)):
exactly 1/n, the ELBO's weight, when m runs from 0 to 1. Training draws t from
[t_min, 1], as MDLM does (t_min = 1e-3: w = 1/t has infinite variance near 0), so
the loss estimates the integral over [t_min, 1]: `masked_count_weights` gives its c_n.

The time t of each sequence: t = t_min + (1 - t_min) u with u ~ U(0, 1), and the
loss carries the factor (1 - t_min) of that change of variable. With
`antithetic=True` (the default, MDLM's "antithetic sampling") the B values u are
one uniform shifted by 0, 1/B, ..., (B-1)/B modulo 1: a stratified (low-discrepancy)
draw, still U(0, 1) for each sequence. Each token is then masked independently
with probability m(t).

MaskGIT-style loss: per sequence u ~ U(0, 1), ratio r = cos(pi u / 2) (MaskGIT's
cosine schedule), n = max(1, ceil(r L)) positions chosen uniformly without
replacement are masked, so P(n = k) = (2/pi) [arccos((k-1)/L) - arccos(k/L)]
(mdmlib.mdm.objectives.count_weights("maskgit", L)); the
loss is the cross-entropy summed over all masked positions of the batch divided by
their number (MaskGIT's unweighted mean). No time input. It is not an ELBO, but
it has the ELBO's optimum (Prop. 3.2: any positive weighting of the masked counts).

Every loss is returned per sequence as (numerator, denominator), loss =
sum(numerator) / sum(denominator): MDM and AR in nats per token (denominator L),
MaskGIT per masked token (denominator n). All use MDLM's "subs" output: the mask's
logit is dropped before the softmax.

Training (`TrainingRun`, `train`): AdamW, linear warm-up then cosine decay of the
learning rate, gradients clipped at norm 1, a fixed number of steps (so a run is
reproducible; no time budget). Every random stream is seeded from the setup's
seed: the data (fresh exact samples each step, `MarkovLanguage.sample`), the
noise (times, masks), the initial weights and dropout. A run can be saved and
resumed (weights, optimizer, step, every generator's state, the loss history);
on the CPU the resumed run is bitwise the uninterrupted one (on CUDA only up to the
GPU's nondeterministic kernels, e.g. the embedding's backward, unless
torch.use_deterministic_algorithms is on). `train` keeps its checkpoints
(`save_pretrained` layout) in the cache folder, keyed by the setup, the objective,
the device type, a fingerprint of the code and the environment (PyTorch, CPU, threads:
mdmlib.infra.results.environment), and loads instead of retraining. `train_all` trains
several objectives in parallel processes on the CPU. Small networks train fastest
on one PyTorch thread per process (python -m mdmlib.tools.benchmarks train).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import special

from mdmlib.models import DiTConfig, build_network, load_pretrained, resolve_device, save_pretrained
from mdmlib.models.checkpoints import safe_torch_load
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.infra.results import write_atomically, cache_folder, save_figure, write_json
from mdmlib.infra.scale import by_scale
from mdmlib.mdm.schedules import SCHEDULES, mask_probability, mask_rate, total_noise
from mdmlib.language.synthetic import LanguageSpec, MarkovLanguage

OBJECTIVES = ("mdm_time", "mdm_no_time", "maskgit", "ar")
MASKED_OBJECTIVES = ("mdm_time", "mdm_no_time", "maskgit")
RESUME_NAME = "training_state.pt"
DATA_CHUNK = 32  # batches drawn from the language at once: its sampler loops over positions, not sequences
HISTORY_NAME = "history.json"


# --- the weights of the continuous-time loss -----------------------------------------------
def elbo_weight(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """w(t) = m'(t) / m(t), float64 (see the module docstring)."""
    return mask_rate(schedule, t) / mask_probability(schedule, t)


def masked_count_weights(schedule: str, length: int, t_min: float = 0.0) -> torch.Tensor:
    """c_n, n = 1..length: the weight the continuous-time loss over t in [t_min, 1]
    puts on the masked-count term n (the ELBO's is 1/n), float64 (length,)."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    _check_t_min(t_min)
    n = torch.arange(1, length + 1, dtype=torch.float64)
    edges = mask_probability(schedule, torch.tensor([t_min, 1.0], dtype=torch.float64))
    a, b = n.numpy(), (length - n + 1).numpy()
    upper, lower = special.betainc(a, b, float(edges[1])), special.betainc(a, b, float(edges[0]))
    return torch.as_tensor(upper - lower, dtype=torch.float64) / n


def _check_t_min(t_min: float) -> None:
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min}")


# --- the four losses, per sequence ------------------------------------------------------------
def masked_nll(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(B,) sum over masked positions of -log mu[x_0] under "subs" (mask logit dropped)."""
    vocab = logits.shape[-1] - 1
    rows = torch.nonzero(masked, as_tuple=True)[0]
    nll = F.cross_entropy(logits[masked][:, :vocab].float(), x0[masked], reduction="none")
    return torch.zeros(x0.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)


def _device_of(network) -> torch.device:
    return next(network.parameters()).device


def mdm_loss_terms(network, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "loglinear", t_min: float = 1e-3, antithetic: bool = True):
    """The continuous-time MDM loss of each sequence of x0 (B, L): (w(t) S (1 - t_min), L),
    S the masked NLL sum. The network is called as network(ids, sigma(t)); a network
    that is not time-conditioned ignores sigma."""
    _check_t_min(t_min)
    B, L = x0.shape
    u = torch.rand(1 if antithetic else B, generator=generator, dtype=torch.float64)
    if antithetic:
        u = torch.remainder(u + torch.arange(B, dtype=torch.float64) / B, 1.0)
    t = t_min + (1 - t_min) * u
    masked = torch.rand(B, L, generator=generator, dtype=torch.float64) < mask_probability(schedule, t)[:, None]
    device = _device_of(network)
    x0, masked = x0.to(device), masked.to(device)
    ids = torch.where(masked, network.config.extra_id, x0)
    logits = network(ids, total_noise(schedule, t).float().to(device))
    weight = ((1 - t_min) * elbo_weight(schedule, t)).to(device)
    numerator = weight.float() * masked_nll(logits, x0, masked)
    return numerator, torch.full((B,), L, dtype=torch.int64, device=device)


def maskgit_loss_terms(network, x0: torch.Tensor, generator: torch.Generator):
    """MaskGIT-style loss of each sequence: (S, n), n masked positions from the cosine law."""
    B, L = x0.shape
    ratio = torch.cos(0.5 * math.pi * torch.rand(B, generator=generator, dtype=torch.float64))
    n = torch.ceil(ratio * L).clamp(min=1, max=L).long()
    rank = torch.argsort(torch.rand(B, L, generator=generator), dim=1).argsort(dim=1)  # a uniform random order
    masked = rank < n[:, None]
    device = _device_of(network)
    x0, masked = x0.to(device), masked.to(device)
    ids = torch.where(masked, network.config.extra_id, x0)
    logits = network(ids, torch.zeros(B, device=device))
    return masked_nll(logits, x0, masked), n.to(device)


def ar_loss_terms(network, x0: torch.Tensor):
    """Autoregressive loss of each sequence: (sum_l -log p(x_l | x_<l), L). The causal
    twin reads the start id, then x_1..x_{L-1}."""
    B, L = x0.shape
    device = _device_of(network)
    x0 = x0.to(device)
    inputs = torch.cat([torch.full((B, 1), network.config.extra_id, dtype=torch.int64, device=device), x0[:, :-1]], 1)
    logits = network(inputs)
    nll = F.cross_entropy(logits[..., : network.config.extra_id].float().transpose(1, 2), x0, reduction="none")
    return nll.sum(1), torch.full((B,), L, dtype=torch.int64, device=device)


def loss_terms(objective: str, network, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "loglinear", t_min: float = 1e-3, antithetic: bool = True):
    """Per-sequence (numerator, denominator) of `objective`'s loss on x0 (B, L)."""
    if objective in ("mdm_time", "mdm_no_time"):
        return mdm_loss_terms(network, x0, generator, schedule=schedule, t_min=t_min, antithetic=antithetic)
    if objective == "maskgit":
        return maskgit_loss_terms(network, x0, generator)
    if objective == "ar":
        return ar_loss_terms(network, x0)
    raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")


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
        _check_t_min(self.t_min)
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


# --- cached training -----------------------------------------------------------------------------
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


def _train_in_worker(setup: TrainSetup, objective: str, threads: int) -> str:
    torch.set_num_threads(threads)  # the parent's: part of the cache key, and of the last bits
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
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    missing = [o for o in objectives if not is_trained(setup, o, device)]
    if workers > 1 and len(missing) > 1 and resolve_device(device).type == "cpu":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
        with ProcessPoolExecutor(max_workers=min(workers, len(missing)), mp_context=context) as pool:
            jobs = [pool.submit(_train_in_worker, setup, o, torch.get_num_threads()) for o in missing]
            for job in progress_bar(as_completed(jobs), total=len(jobs), desc=f"training, {workers} at a time", show=progress):
                job.result()
    return {o: train(setup, o, device=device, progress=progress) for o in objectives}


def _read_history(path: Path) -> dict:
    import json

    with open(path) as f:
        return json.load(f)


def plot_loss_curves(trained: dict, entropy_rate: float, name: str, window: int = 50):
    """The training loss of each run (a moving average over `window` steps) against the
    step, with the entropy rate, the floor of an NLL or bound per token; saved as figures/<name>.png."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, run in trained.items():
        losses = torch.tensor(run.losses, dtype=torch.float64)
        w = min(window, len(losses))
        smooth = losses.unfold(0, w, 1).mean(1)
        ax.plot(torch.arange(w, len(losses) + 1), smooth, label=label)
    ax.axhline(entropy_rate, color="black", ls=":", label="entropy rate (exact)")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (moving average of {window} steps)")
    ax.set_title("training losses (MDM, AR: nats per token; MaskGIT: per masked token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
