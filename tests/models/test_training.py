"""Tests for mdmlib.models.training: the setup, resuming bit for bit, learning, the random state."""
import math

import pytest
import torch

from mdmlib.models import training as tr
from mdmlib.mdm.losses import OBJECTIVES, loss_terms
from mdmlib.language.synthetic import LanguageSpec, MarkovLanguage
from tiny_training import TINY_SETUP, same_state


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_resuming_is_bitwise_the_uninterrupted_run(objective, tmp_path):
    straight = tr.TrainingRun(TINY_SETUP, objective, "cpu")
    straight.train_until(6, progress=False)
    first = tr.TrainingRun(TINY_SETUP, objective, "cpu")
    first.train_until(3, progress=False)
    first.save_state(tmp_path / "state.pt")
    resumed = tr.TrainingRun.resume(tmp_path / "state.pt", TINY_SETUP, objective, "cpu")
    assert resumed.step == 3
    resumed.train_until(6, progress=False)
    assert same_state(straight.network, resumed.network)
    assert straight.losses == resumed.losses
    # and the training actually moved the weights
    assert not same_state(straight.network, tr.TrainingRun(TINY_SETUP, objective, "cpu").network)


LEARNING_SETUP = tr.TrainSetup(
    language=LanguageSpec(vocab_size=16, num_classes=2, seed=1), length=8,
    hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8,
    batch_size=16, steps=40, learning_rate=1e-2, warmup_steps=4,
)


@pytest.mark.parametrize("objective", OBJECTIVES)
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
            numerator, denominator = loss_terms(objective, run.network, x0, torch.Generator().manual_seed(12), schedule=setup.schedule, t_min=setup.t_min)
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


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown objective 'bert'"):
        tr.TrainingRun(TINY_SETUP, "bert", "cpu")
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
    run = tr.TrainingRun(TINY_SETUP, "ar", "cpu")
    run.train_until(2, progress=False)
    with pytest.raises(ValueError, match="past 1"):
        run.train_until(1, progress=False)
    with pytest.raises(ValueError, match="save_every"):
        run.train_until(3, save_every=1, progress=False)
    with pytest.raises(TypeError, match="TrainSetup"):
        tr.TrainingRun({"steps": 3}, "ar", "cpu")
