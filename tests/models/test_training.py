"""Tests for mdmlib.models.training: each loss against its known answer, the ELBO weights, resuming, the cache."""
import itertools
import math

import pytest
import torch
from scipy import integrate, stats as sps

from mdmlib.models import training as tr
from mdmlib.judging.judges import Scores
from mdmlib.models import DiTConfig
from mdmlib.mdm.objectives import count_weights
from mdmlib.mdm.schedules import mask_probability
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from power_checks import require_power, require_z_power

TINY_LENGTH = 4


def tiny_language() -> MarkovLanguage:
    """Three tokens, three classes, a sticky chain: the context matters, so the masked
    counts have clearly different conditional NLLs and wrong weightings show."""
    A = torch.full((3, 3), 0.05, dtype=torch.float64) + 0.85 * torch.eye(3, dtype=torch.float64)
    B = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    return MarkovLanguage.from_matrices(A, B)


class ExactNetwork(torch.nn.Module):
    """A stand-in network whose output is the exact conditional: logits = log mu at every
    masked position, the mask's logit -inf (what a perfect MDM would output)."""

    def __init__(self, language: MarkovLanguage, length: int, kind: str = "mdlm"):
        super().__init__()
        self.language = language
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the losses a device
        self.config = DiTConfig(vocab_size=language.vocab_size + 1, model_length=length, hidden_dim=2, n_heads=1, n_blocks=1, cond_dim=1, kind=kind)
        self.denoiser = ExactDenoiser(language, torch.float64)

    def _with_mask_column(self, logp: torch.Tensor) -> torch.Tensor:
        return torch.cat([logp, torch.full((*logp.shape[:-1], 1), -math.inf, dtype=logp.dtype)], -1).float()

    def forward(self, ids, sigma=None):
        if self.config.kind == "ar":  # position l predicts token l + 1 from token l (a Markov chain)
            rows = self.language.transition_rows(ids.clamp(max=self.language.vocab_size - 1))
            rows[:, 0] = self.language.pi  # after the start id: the stationary law
            return self._with_mask_column(torch.log(rows))
        return self._with_mask_column(torch.log(self.denoiser(ids)))


def enumerated():
    """The tiny language, and E[S_n] for its exact conditionals, by enumeration: the
    expected masked NLL sum when n of the L positions (uniformly chosen) are masked."""
    language = tiny_language()
    V, L = language.vocab_size, TINY_LENGTH
    x = torch.tensor(list(itertools.product(range(V), repeat=L)))
    p = language.log_likelihood(x).exp()
    patterns = torch.tensor(list(itertools.product([False, True], repeat=L)))
    xs = x[:, None].expand(-1, len(patterns), -1)
    masked = patterns[None].expand(len(x), -1, -1)
    ids = torch.where(masked, language.mask_id, xs).reshape(-1, L)
    mu = ExactDenoiser(language, torch.float64)(ids).reshape(len(x), len(patterns), L, V)
    nll = -torch.log(mu.gather(-1, xs[..., None]).squeeze(-1))
    S = torch.where(masked, nll, 0.0).sum(-1)  # (sequences, patterns)
    n_of = patterns.sum(1)
    expected_S = torch.stack([(p[:, None] * S[:, n_of == n]).sum(0).mean() for n in range(1, L + 1)])
    entropy = float(-(p * p.log()).sum())
    return language, expected_S, entropy


@pytest.fixture(scope="module")
def tiny():
    return enumerated()


def test_enumeration_is_an_any_order_factorisation(tiny):
    # with exact conditionals the masked-count ELBO is log p exactly (Prop. 3.1), so the
    # enumeration's E[S_n] must give the language's entropy: a check of the fixture itself
    language, expected_S, entropy = tiny
    n = torch.arange(1, TINY_LENGTH + 1, dtype=torch.float64)
    assert float((expected_S / n).sum()) == pytest.approx(entropy, rel=1e-12)
    assert entropy / TINY_LENGTH == pytest.approx(language.entropy_rate(TINY_LENGTH), rel=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "loglinear", "cosine"])
@pytest.mark.parametrize("t_min", [0.0, 1e-3, 0.2])
def test_elbo_weight_integrates_to_the_masked_count_weights(schedule, t_min):
    # int_{t_min}^1 w(t) P(n of L masked at t) dt, by quadrature, against the closed form;
    # with t_min = 0 and m(1) = 1 that is the ELBO's 1/n
    L = 6
    closed = tr.masked_count_weights(schedule, L, t_min)
    m1 = float(mask_probability(schedule, torch.tensor(1.0)))
    for n in range(1, L + 1):
        def integrand(t):
            t = torch.tensor(t, dtype=torch.float64)
            return float(tr.elbo_weight(schedule, t)) * sps.binom.pmf(n, L, float(mask_probability(schedule, t)))

        value, err = integrate.quad(integrand, t_min, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200)
        assert value == pytest.approx(float(closed[n - 1]), rel=1e-8, abs=10 * err)
        if t_min == 0.0 and m1 == 1.0:
            assert float(closed[n - 1]) == pytest.approx(1 / n, rel=1e-12)


def _check_against(estimate, expected: float, alternative: float) -> None:
    """|z| < 3 against the known answer, and power >= 0.99 to see `alternative` instead."""
    z = (estimate.mean - expected) / estimate.se
    require_z_power((alternative - expected) / estimate.se, 3.0, f"the mean {alternative:.5f}")
    assert abs(z) < 3, f"{estimate} against the expected {expected} (z = {z:.2f})"


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
@pytest.mark.parametrize("antithetic", [False, True])
def test_mdm_loss_with_exact_conditionals_has_the_predicted_mean(tiny, schedule, antithetic):
    # E[loss] = (1/L) sum_n c_n E[S_n] (the factor 1 - t_min of t = t_min + (1 - t_min) u
    # makes the loss the integral over [t_min, 1], which c_n is); the alternative is the same loss with the cosine
    # weight on the log-linear masks (or the reverse): a weight for the wrong schedule.
    # (Antithetic times: the i.i.d. standard error overstates the spread, so |z| < 3 is safe.)
    language, expected_S, _ = tiny
    L, t_min = TINY_LENGTH, 1e-3
    network = ExactNetwork(language, L)
    x0 = language.sample(40_000, L, torch.Generator().manual_seed(0))
    numerator, denominator = tr.mdm_loss_terms(network, x0, torch.Generator().manual_seed(1), schedule=schedule, t_min=t_min, antithetic=antithetic)
    estimate = Scores(numerator.double(), denominator).nll()
    expected = float((tr.masked_count_weights(schedule, L, t_min) * expected_S).sum()) / L
    other = "cosine" if schedule == "loglinear" else "loglinear"
    # the wrong weight's mean: sum_n E[S_n] int w_other(t) P(n | m_schedule(t)) dt
    f64 = lambda t: torch.tensor(t, dtype=torch.float64)
    wrong = [integrate.quad(lambda t: float(tr.elbo_weight(other, f64(t))) * sps.binom.pmf(n, L, float(mask_probability(schedule, f64(t)))), t_min, 1, limit=200)[0] for n in range(1, L + 1)]
    alternative = float((torch.tensor(wrong) * expected_S).sum()) * (1 - t_min) / L
    _check_against(estimate, expected, alternative)


def test_maskgit_masked_counts_follow_the_cosine_law():
    L = 10
    law = count_weights("maskgit", L)
    assert float(law.sum()) == pytest.approx(1.0, rel=1e-12)
    network = ExactNetwork(tiny_language(), L)
    x0 = torch.zeros(20_000, L, dtype=torch.int64)
    _, n = tr.maskgit_loss_terms(network, x0, torch.Generator().manual_seed(2))
    counts = torch.bincount(n - 1, minlength=L)
    from mdmlib.stats.significance import chi_square_power, chi_square_test

    linear = torch.full((L,), 1 / L, dtype=torch.float64)  # n = ceil(u L): a uniform ratio, the nearest other law
    require_power(chi_square_power(law, linear, int(counts.sum())), "a uniform mask ratio")
    assert chi_square_test(counts, law).p_value > 1e-3


def test_maskgit_loss_with_exact_conditionals_has_the_predicted_mean(tiny):
    # pooled over masked tokens: E = sum_n P(n) E[S_n] / sum_n P(n) n; the alternative is
    # the per-sequence mean (each sequence's masked tokens weighted 1/n), sum_n P(n) E[S_n]/n
    language, expected_S, _ = tiny
    L = TINY_LENGTH
    network = ExactNetwork(language, L)
    x0 = language.sample(40_000, L, torch.Generator().manual_seed(3))
    numerator, denominator = tr.maskgit_loss_terms(network, x0, torch.Generator().manual_seed(4))
    estimate = Scores(numerator.double(), denominator).nll()
    law, n = count_weights("maskgit", L), torch.arange(1, L + 1, dtype=torch.float64)
    expected = float((law * expected_S).sum() / (law * n).sum())
    alternative = float((law * expected_S / n).sum())
    _check_against(estimate, expected, alternative)


def test_ar_loss_with_exact_conditionals_is_the_exact_nll():
    # no randomness: per sequence, the AR loss of the exact conditionals is -log p(x)
    language = MarkovLanguage(LanguageSpec(vocab_size=7, num_classes=3, seed=2))
    L = 9
    x0 = language.sample(500, L, torch.Generator().manual_seed(5))
    numerator, denominator = tr.ar_loss_terms(ExactNetwork(language, L, kind="ar"), x0)
    exact = -language.log_likelihood(x0)
    assert torch.equal(denominator, torch.full((500,), L))
    # float32 logits: each of the L terms is off by a few float32 ulps of its size
    tolerance = L * 8 * torch.finfo(torch.float32).eps * float(exact.abs().max())
    assert (numerator.double() - exact).abs().max() < tolerance


# --- training: tiny networks -----------------------------------------------------------------------
TINY_SETUP = tr.TrainSetup(
    language=LanguageSpec(vocab_size=8, num_classes=2, seed=3), length=8,
    hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8,
    batch_size=4, steps=6, learning_rate=1e-2, warmup_steps=2, dropout=0.1,
)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("objective", tr.OBJECTIVES)
def test_resuming_is_bitwise_the_uninterrupted_run(objective, tmp_path):
    straight = tr.TrainingRun(TINY_SETUP, objective, "cpu")
    straight.train_until(6, progress=False)
    first = tr.TrainingRun(TINY_SETUP, objective, "cpu")
    first.train_until(3, progress=False)
    first.save_state(tmp_path / "state.pt")
    resumed = tr.TrainingRun.resume(tmp_path / "state.pt", TINY_SETUP, objective, "cpu")
    assert resumed.step == 3
    resumed.train_until(6, progress=False)
    assert _same_state(straight.network, resumed.network)
    assert straight.losses == resumed.losses
    # and the training actually moved the weights
    assert not _same_state(straight.network, tr.TrainingRun(TINY_SETUP, objective, "cpu").network)


LEARNING_SETUP = tr.TrainSetup(
    language=LanguageSpec(vocab_size=16, num_classes=2, seed=1), length=8,
    hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8,
    batch_size=16, steps=40, learning_rate=1e-2, warmup_steps=4,
)


@pytest.mark.parametrize("objective", tr.OBJECTIVES)
def test_each_objective_lowers_its_loss_on_held_out_data(objective):
    # the objective's own loss on 512 held-out sequences with the same noise (times,
    # masks) before and after 40 steps, paired per sequence: from the untrained network's
    # near-uniform output (about log 16 nats) toward the unigram entropy and below;
    # lower by more than 5 SE
    setup = LEARNING_SETUP
    x0 = MarkovLanguage(setup.language).sample(512, setup.length, torch.Generator().manual_seed(11))
    run = tr.TrainingRun(setup, objective, "cpu")

    def per_sequence_loss():
        run.network.eval()
        with torch.no_grad():
            numerator, denominator = tr.loss_terms(objective, run.network, x0, torch.Generator().manual_seed(12), schedule=setup.schedule, t_min=setup.t_min)
        return numerator.double() / denominator

    before = per_sequence_loss()
    run.train_until(setup.steps, progress=False)
    drop = before - per_sequence_loss()
    mean, se = float(drop.mean()), float(drop.std() / math.sqrt(len(drop)))
    assert mean / se > 5, f"{objective}: the held-out loss fell by {mean:.4f} +- {se:.4f} only"


def test_training_leaves_the_global_random_state_alone():
    before = torch.get_rng_state()
    tr.TrainingRun(TINY_SETUP, "mdm_time", "cpu").train_until(2, progress=False)
    assert torch.equal(before, torch.get_rng_state())


def test_resume_refuses_another_setup(tmp_path):
    run = tr.TrainingRun(TINY_SETUP, "maskgit", "cpu")
    run.save_state(tmp_path / "state.pt")
    with pytest.raises(ValueError, match="holds a run of"):
        tr.TrainingRun.resume(tmp_path / "state.pt", TINY_SETUP, "mdm_no_time", "cpu")


def test_train_caches_the_checkpoint_and_resumes_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))
    first = tr.train(TINY_SETUP, "mdm_time", device="cpu", progress=False)
    assert (first.folder / "config.json").exists() and (first.folder / "model.safetensors").exists()
    assert len(first.losses) == TINY_SETUP.steps

    # an interrupted run: its resumable state where train() keeps it, three steps in
    other = TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "seed": 7})
    folder = tr.cache_folder("train-mdm_no_time", tr.checkpoint_params(other, "mdm_no_time", "cpu"), code="mdmlib.models.training")
    partial = tr.TrainingRun(other, "mdm_no_time", "cpu")
    partial.train_until(3, progress=False)
    partial.save_state(folder / tr.RESUME_NAME)
    resumed = tr.train(other, "mdm_no_time", device="cpu", progress=False)
    straight = tr.TrainingRun(other, "mdm_no_time", "cpu")
    straight.train_until(other.steps, progress=False)
    assert _same_state(resumed.network, straight.network)
    assert not (folder / tr.RESUME_NAME).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached checkpoint")

    monkeypatch.setattr(tr.TrainingRun, "train_until", no_training)
    again = tr.train(TINY_SETUP, "mdm_time", device="cpu", progress=False)
    assert again.folder == first.folder
    assert _same_state(first.network, again.network)
    assert again.losses == first.losses


def test_checkpoint_key_covers_setup_objective_and_code():
    base = tr.checkpoint_params(TINY_SETUP, "ar", "cpu")
    assert tr.checkpoint_params(TINY_SETUP, "maskgit", "cpu") != base
    assert tr.checkpoint_params(TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "steps": 7}), "ar", "cpu") != base


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown objective 'bert'"):
        tr.TrainingRun(TINY_SETUP, "bert", "cpu")
    with pytest.raises(ValueError, match="unknown objective"):
        tr.loss_terms("bert", None, torch.zeros(1, 1, dtype=torch.int64), torch.Generator())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "steps": 0})
    with pytest.raises(ValueError, match="learning_rate"):
        TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "learning_rate": float("nan")})
    with pytest.raises(ValueError, match="t_min must lie in"):
        TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "t_min": 1.0})
    with pytest.raises(ValueError, match="unknown schedule 'geometric'"):
        TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "schedule": "geometric"})
    with pytest.raises(ValueError, match="heads of even width"):
        TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "hidden_dim": 18})
    with pytest.raises(ValueError, match="unknown schedule"):
        tr.elbo_weight("geometric", torch.tensor(0.5))
    run = tr.TrainingRun(TINY_SETUP, "ar", "cpu")
    run.train_until(2, progress=False)
    with pytest.raises(ValueError, match="past 1"):
        run.train_until(1, progress=False)
    with pytest.raises(ValueError, match="save_every"):
        run.train_until(3, save_every=1, progress=False)
    with pytest.raises(TypeError, match="TrainSetup"):
        tr.TrainingRun({"steps": 3}, "ar", "cpu")


def test_train_all_in_worker_processes_gives_the_weights_train_gives(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))
    setup = TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "steps": 3})
    parallel = tr.train_all(setup, ("maskgit", "ar"), device="cpu", workers=2, progress=False)
    for objective, trained in parallel.items():
        straight = tr.TrainingRun(setup, objective, "cpu")
        straight.train_until(setup.steps, progress=False)
        assert _same_state(trained.network, straight.network)
        assert trained.losses == straight.losses
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        tr.train_all(setup, ("ar",), workers=0)
    with pytest.raises(ValueError, match="unknown objective 'bert'"):
        tr.train_all(setup, ("ar", "bert"))
