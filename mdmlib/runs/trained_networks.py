"""Trained networks against the exact language: the measurements and figures of notebook 09.

masked_count_bound   the held-out NLL bound of a masked model, Prop. 3.1's ELBO by
                     masked count, estimated per sequence (mdmlib.mdm.objectives.masked_count_terms)
masked_kl            KL(exact conditional || a denoiser) at masked positions
ar_judge             the trained AR network as a learned judge (nll_per_token, as the language has)
heldout_bounds, exact_bound, kl_by_ratio, time_dependence, sample_with, sample_all, data_judged
                     the notebook's runs, cached on disk by the checkpoints they use
                     (whose keys carry the training setup and code) and a fingerprint of
                     the code they run; sample_all runs samplers in parallel processes
plot_loss_curves     the training losses of the networks

Samplers of `sample_with`: MDLM's ancestral sampler in "float32", "float64" and
"float64+trunc" arithmetic (mdmlib.mdm.step), and "fhs", the first-hitting sampler
(Prop. 4.1) with the float32 token draw practical code runs.

The bound (Prop. 3.1, per token): with n of the L positions masked uniformly at random,
    NELBO / L = (1/L) sum_{n=1}^{L} E[(1/n) S_n] = E_{n ~ U{1..L}} [S_n / n],
    S_n = sum over masked positions l of -log mu_theta(x_n)_l[x_0,l],
so one draw of n and of the masked set per held-out sequence gives an unbiased
estimate, S_n / n, whose mean over sequences has a standard error from their spread
(the draw is masked_count_terms' "separate" one).
A time-conditioned network is averaged over its time: given n masked tokens the clean
fraction alpha is Beta(L - n + 1, n) (the law of alpha_t given n under the ELBO's
weight; one draw per sequence), and the network is given the t with m(t) = 1 - alpha,
capped at t = 1 (for MDLM's log-linear schedule, alpha below its eps = 1e-3 is beyond
anything it saw in training; that happens only with n near L).
With the exact conditionals the bound is the exact NLL (any-order autoregression), so
its expectation is the entropy rate; a network's bound lies above.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import torch

from mdmlib.stats.metrics import sentence_entropy
from mdmlib.models import AutoregressiveModel, SubsDenoiser
from mdmlib.infra.pool import check_workers, fill_in_workers
from mdmlib.infra.results import cached, is_cached, save_figure
from mdmlib.mdm.losses import MASKED_OBJECTIVES
from mdmlib.mdm.objectives import masked_count_terms, uniform_subsets
from mdmlib.mdm.samplers import ancestral_sample, first_hitting_sample
from mdmlib.mdm.schedules import time_of_mask_probability
from mdmlib.language.synthetic import ExactDenoiser, MarkovLanguage
from mdmlib.models.trained import Trained, train
from mdmlib.models.training import TrainSetup

SAMPLERS = ("float32", "float64", "float64+trunc", "fhs")
FHS_PRECISION = "float32"  # of the first-hitting sampler's token draw
HELDOUT_SEED = 1_000  # held-out samples never come from the training stream (seeds seed .. seed + 3)


def masked_count_bound(denoiser, x0: torch.Tensor, generator: torch.Generator, *, schedule: str = "loglinear") -> torch.Tensor:
    """(B,) float64 per-sequence estimates S_n / n of the masked-count bound per token
    (module docstring), for x0 (B, L) clean held-out sequences; `denoiser(x, t)` in the
    samplers' interface (probabilities over the V tokens). The same generator state gives
    the same n, masks and times to every denoiser, so bounds of two denoisers are paired."""
    s, n = masked_count_terms(denoiser, x0, generator, schedule=schedule, draw="separate")
    return s / n


def masked_kl(reference, denoiser, x: torch.Tensor, t, *, reference_t=None) -> torch.Tensor:
    """(B,) per-sequence mean over masked positions of KL(reference || denoiser), nats.
    Probabilities a float32 softmax rounds to 0 are read as its smallest normal number."""
    masked = x == denoiser.mask_id
    if not masked.any(1).all():
        raise ValueError("every sequence needs at least one masked position")
    tiny = torch.finfo(torch.float32).tiny
    p = reference(x, t if reference_t is None else reference_t)[masked].double()
    q = denoiser(x, t)[masked].double().clamp(min=tiny)
    kl = (p * (torch.log(p.clamp(min=tiny)) - torch.log(q))).sum(-1)
    rows = torch.nonzero(masked, as_tuple=True)[0]
    return torch.zeros(x.shape[0], dtype=torch.float64).index_add(0, rows, kl) / masked.sum(1)


# --- the notebook's runs -----------------------------------------------------------------------
def heldout_samples(setup: TrainSetup, batch: int) -> torch.Tensor:
    """Exact samples the networks never trained on."""
    return MarkovLanguage(setup.language).sample(batch, setup.length, torch.Generator().manual_seed(setup.seed + HELDOUT_SEED))


def _key(setup: TrainSetup, trained: dict, **kw) -> dict:
    return {"setup": asdict(setup), "checkpoints": {k: v.folder.name for k, v in sorted(trained.items())}, **kw}


def _denoisers(setup: TrainSetup, trained: dict) -> dict:
    return {name: SubsDenoiser(run.network, setup.schedule) for name, run in trained.items() if name in MASKED_OBJECTIVES}


def heldout_bounds(setup: TrainSetup, trained: dict[str, Trained], batch: int) -> dict:
    """Per held-out sequence: the masked-count bound of each masked network and of the
    exact denoiser (all on the same n, masks and times), and the AR model's NLL per token."""

    def compute():
        x0 = heldout_samples(setup, batch)
        language = MarkovLanguage(setup.language)
        denoisers = {"exact": ExactDenoiser(language, torch.float64), **_denoisers(setup, trained)}
        out = {name: masked_count_bound(d, x0, torch.Generator().manual_seed(setup.seed + HELDOUT_SEED + 1), schedule=setup.schedule) for name, d in denoisers.items()}
        if "ar" in trained:
            out["ar"] = ar_judge(trained["ar"]).nll_per_token(x0)
        out["exact_nll"] = language.nll_per_token(x0)
        return out

    return cached("09-bounds", _key(setup, trained, batch=batch), compute)


def exact_bound(setup: TrainSetup, batch: int) -> dict:
    """The masked-count bound of the exact conditionals and the exact NLL per token of
    `batch` held-out sequences: a check of the estimator on many more sequences than the
    networks are evaluated on (the exact denoiser is cheap)."""

    def compute():
        x0 = heldout_samples(setup, batch)
        language = MarkovLanguage(setup.language)
        generator = torch.Generator().manual_seed(setup.seed + HELDOUT_SEED + 4)
        bound = masked_count_bound(ExactDenoiser(language, torch.float64), x0, generator, schedule=setup.schedule)
        return {"bound": bound, "nll": language.nll_per_token(x0)}

    return cached("09-exact-bound", {"setup": asdict(setup), "batch": batch}, compute)


def kl_by_ratio(setup: TrainSetup, trained: dict[str, Trained], ratios: list[float], batch: int) -> dict:
    """For each masking ratio r: n = max(1, round(r L)) positions masked uniformly in each
    held-out sequence, the network given the t with m(t) = n / L; per sequence, the mean
    KL(exact || network) over its masked positions, for every masked network."""

    def compute():
        x0 = heldout_samples(setup, batch)
        exact = ExactDenoiser(MarkovLanguage(setup.language), torch.float64)
        denoisers = _denoisers(setup, trained)
        generator = torch.Generator().manual_seed(setup.seed + HELDOUT_SEED + 2)
        out = {}
        for r in ratios:
            n = max(1, round(r * setup.length))
            masked = uniform_subsets(torch.full((batch,), n), setup.length, generator)
            x = torch.where(masked, exact.mask_id, x0)
            t = time_of_mask_probability(setup.schedule, torch.tensor(n / setup.length))
            out[str(r)] = {name: masked_kl(exact, d, x, t) for name, d in denoisers.items()}
        return out

    return cached("09-kl-by-ratio", _key(setup, trained, ratios=ratios, batch=batch), compute)


def time_dependence(setup: TrainSetup, trained: dict[str, Trained], batch: int, quantiles=(0.05, 0.95)) -> dict:
    """How much the time-conditioned network's output moves with t, against how far it is
    from the truth and from the time-agnostic network. Per held-out sequence: n ~ U{1..L}
    masked; t_lo, t_hi the `quantiles` of t given n (alpha ~ Beta(L - n + 1, n)); per
    sequence means over masked positions of
      KL(net(t_lo) || net(t_hi)),  KL(exact || net(t_mid)),  KL(no-time net || net(t_mid)),
    t_mid the median. The time-conditioned network is under "mdm_time", the other under "mdm_no_time"."""
    from scipy import stats as sps

    def compute():
        x0 = heldout_samples(setup, batch)
        exact = ExactDenoiser(MarkovLanguage(setup.language), torch.float64)
        net, other = (SubsDenoiser(trained[k].network, setup.schedule) for k in ("mdm_time", "mdm_no_time"))
        generator = torch.Generator().manual_seed(setup.seed + HELDOUT_SEED + 3)
        L = setup.length
        n = torch.randint(1, L + 1, (batch,), generator=generator)
        x = torch.where(uniform_subsets(n, L, generator), exact.mask_id, x0)
        # quantiles of 1 - alpha ~ Beta(n, L - n + 1): the mask probability at the sequence's time
        t_at = {q: time_of_mask_probability(setup.schedule, torch.as_tensor(sps.beta.ppf(q, n.numpy(), (L - n + 1).numpy()))) for q in (*quantiles, 0.5)}
        lo, hi, mid = t_at[quantiles[0]], t_at[quantiles[1]], t_at[0.5]
        return {
            "across_t": masked_kl(net, net, x, hi, reference_t=lo),
            "exact_vs_time": masked_kl(exact, net, x, mid),
            "no_time_vs_time": masked_kl(other, net, x, mid),
            "t_lo": lo, "t_hi": hi,
        }

    return cached("09-time-dependence", _key(setup, trained, batch=batch, quantiles=list(quantiles)), compute)


def ar_judge(ar: Trained) -> AutoregressiveModel:
    """The trained AR network as a learned judge: `.nll_per_token(x)` (B,) float64, the
    same name and meaning as the exact language's (MarkovLanguage.nll_per_token)."""
    if ar.objective != "ar":
        raise ValueError(f"the judge must be the network trained with objective 'ar', got {ar.objective!r}")
    return AutoregressiveModel(ar.network, max_batch=256)


def _sampling_key(setup: TrainSetup, trained: dict, sampler: str, steps: int, batch: int, denoiser: str) -> dict:
    used = {k: trained[k] for k in (denoiser, "ar")}
    return _key(setup, used, sampler=sampler, steps=None if sampler == "fhs" else steps, batch=batch, denoiser=denoiser)


def _check_sampling(trained: dict, sampler: str, denoiser: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {SAMPLERS}")
    if denoiser not in MASKED_OBJECTIVES or denoiser not in trained or "ar" not in trained:
        raise ValueError(f"sampling needs the masked network {denoiser!r} and the AR judge 'ar' among the trained networks, got {sorted(trained)}")


def sample_with(setup: TrainSetup, trained: dict[str, Trained], sampler: str, steps: int, batch: int, *, denoiser: str = "mdm_no_time", progress: bool = True) -> dict:
    """`batch` sequences from the masked network `denoiser` with `sampler` ("float32",
    "float64", "float64+trunc": MDLM's ancestral sampler with `steps` steps and that
    arithmetic, per-sequence caching (none for a time-conditioned network); "fhs": the first-hitting sampler, which needs no
    steps, with a float32 token draw), judged per sequence by the exact likelihood
    ("nll") and by the trained AR model ("nll_ar"), with sentence entropy, NFE and the
    CPU seconds of the sampling."""
    _check_sampling(trained, sampler, denoiser)

    def compute():
        language = MarkovLanguage(setup.language)
        network = SubsDenoiser(trained[denoiser].network, setup.schedule, max_batch=256)
        generator = torch.Generator().manual_seed(setup.seed + HELDOUT_SEED + 10 + SAMPLERS.index(sampler))
        start = time.process_time()
        if sampler == "fhs":
            out = first_hitting_sample(network, batch, setup.length, FHS_PRECISION, generator, schedule=setup.schedule, progress=progress)
        else:
            caching = "none" if network.time_conditioned else "per_sequence"  # a timed network is evaluated at every step's time
            out = ancestral_sample(network, batch, setup.length, steps, sampler, generator, schedule=setup.schedule,
                                   caching=caching, progress=progress)
        seconds = time.process_time() - start
        x = out.tokens
        return {
            "nll": language.nll_per_token(x),
            "nll_ar": ar_judge(trained["ar"]).nll_per_token(x),
            "entropy": sentence_entropy(x),
            "nfe": out.nfe,
            "cpu_seconds": seconds,
        }

    return cached("09-samples", _sampling_key(setup, trained, sampler, steps, batch, denoiser), compute)


def _sample_in_worker(setup: TrainSetup, sampler: str, steps: int, batch: int, denoiser: str) -> str:
    trained = {k: train(setup, k, device="cpu", progress=False) for k in (denoiser, "ar")}  # from the cache
    sample_with(setup, trained, sampler, steps, batch, denoiser=denoiser, progress=False)
    return sampler


def sample_all(setup: TrainSetup, trained: dict[str, Trained], runs: dict[str, tuple[int, int]], *, denoiser: str = "mdm_no_time", workers: int = 1, progress: bool = True) -> dict[str, dict]:
    """`sample_with` for each sampler of `runs` ({sampler: (steps, batch)}). With networks
    on the CPU, the runs not in the cache yet go to `workers` processes at a time (each
    on this process's number of threads, loading the networks from the training cache,
    so the results are those `sample_with` gives here)."""
    for sampler in runs:
        _check_sampling(trained, sampler, denoiser)
    check_workers(workers)
    missing = [s for s, (steps, batch) in runs.items() if not is_cached("09-samples", _sampling_key(setup, trained, s, steps, batch, denoiser), code=__name__)]
    on_cpu = all(next(trained[k].network.parameters()).device.type == "cpu" for k in (denoiser, "ar"))
    tasks = [(setup, s, *runs[s], denoiser) for s in missing] if on_cpu else []
    fill_in_workers(_sample_in_worker, tasks, workers=workers, desc="sampling", progress=progress)  # threads: the parent's, part of the cache keys
    return {s: sample_with(setup, trained, s, steps, batch, denoiser=denoiser, progress=progress) for s, (steps, batch) in runs.items()}


def data_judged(setup: TrainSetup, trained: dict[str, Trained], batch: int) -> dict:
    """Held-out exact samples, judged as the samplers' outputs are."""

    def compute():
        x = heldout_samples(setup, batch)
        return {"nll": MarkovLanguage(setup.language).nll_per_token(x), "nll_ar": ar_judge(trained["ar"]).nll_per_token(x), "entropy": sentence_entropy(x)}

    return cached("09-data", _key(setup, {"ar": trained["ar"]}, batch=batch), compute)


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
