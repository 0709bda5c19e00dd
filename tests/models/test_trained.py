"""Tests for mdmlib.models.trained: the cache of checkpoints, resuming there, training in worker processes."""
import pytest

from mdmlib.infra.results import cache_folder
from mdmlib.models import trained as tt
from mdmlib.models.training import TrainingRun
from tiny_training import TINY_SETUP, same_state


def test_train_caches_the_checkpoint_and_resumes_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))
    first = tt.train(TINY_SETUP, "mdm_time", device="cpu", progress=False)
    assert (first.folder / "config.json").exists() and (first.folder / "model.safetensors").exists()
    assert len(first.losses) == TINY_SETUP.steps

    # an interrupted run: its resumable state where train() keeps it, three steps in
    other = TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "seed": 7})
    folder = cache_folder("train-mdm_no_time", tt.checkpoint_params(other, "mdm_no_time", "cpu"), code="mdmlib.models.trained")
    partial = TrainingRun(other, "mdm_no_time", "cpu")
    partial.train_until(3, progress=False)
    partial.save_state(folder / tt.RESUME_NAME)
    resumed = tt.train(other, "mdm_no_time", device="cpu", progress=False)
    straight = TrainingRun(other, "mdm_no_time", "cpu")
    straight.train_until(other.steps, progress=False)
    assert same_state(resumed.network, straight.network)
    assert not (folder / tt.RESUME_NAME).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached checkpoint")

    monkeypatch.setattr(TrainingRun, "train_until", no_training)
    again = tt.train(TINY_SETUP, "mdm_time", device="cpu", progress=False)
    assert again.folder == first.folder
    assert same_state(first.network, again.network)
    assert again.losses == first.losses


def test_checkpoint_key_covers_setup_objective_and_code():
    base = tt.checkpoint_params(TINY_SETUP, "ar", "cpu")
    assert tt.checkpoint_params(TINY_SETUP, "maskgit", "cpu") != base
    assert tt.checkpoint_params(TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "steps": 7}), "ar", "cpu") != base


def test_train_all_in_worker_processes_gives_the_weights_train_gives(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))
    setup = TINY_SETUP.__class__(**{**TINY_SETUP.__dict__, "steps": 3})
    parallel = tt.train_all(setup, ("maskgit", "ar"), device="cpu", workers=2, progress=False)
    for objective, trained in parallel.items():
        straight = TrainingRun(setup, objective, "cpu")
        straight.train_until(setup.steps, progress=False)
        assert same_state(trained.network, straight.network)
        assert trained.losses == straight.losses
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        tt.train_all(setup, ("ar",), workers=0)
    with pytest.raises(ValueError, match="unknown objective 'bert'"):
        tt.train_all(setup, ("ar", "bert"))
