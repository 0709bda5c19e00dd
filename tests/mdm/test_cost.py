import pytest
import torch

from mdmlib.infra.timing import one_thread
from mdmlib.mdm.cost import categorical_draws, model_seconds
from mdmlib.runs.sampler_timing import FullPassDenoiser, timed_sample
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage


@pytest.fixture(scope="module")
def lang():
    return MarkovLanguage(LanguageSpec(vocab_size=20, num_classes=3, seed=1))


def test_full_pass_is_the_exact_denoiser_at_every_position(lang):
    den = ExactDenoiser(lang, torch.float64)
    net = FullPassDenoiser(den)
    x = lang.sample(5, 9, torch.Generator().manual_seed(0))
    x[torch.rand(5, 9, generator=torch.Generator().manual_seed(1)) < 0.6] = lang.mask_id
    assert torch.allclose(net(x), den(x), rtol=1e-12, atol=1e-15)
    assert (net.calls, net.sequences) == (1, 5) and net.seconds > 0 and net.cpu_seconds >= 0
    assert not hasattr(net, "changed_outputs") and not hasattr(net, "outputs_at")  # a network has no shortcuts


@pytest.mark.parametrize("caching", ["per_sequence", "per_batch"])
def test_timed_sample_counts(lang, caching):
    out = timed_sample(lang, "ancestral", 3, 6, torch.Generator().manual_seed(2), steps=25, caching=caching)
    assert out["sequence_evaluations"] == int(out["nfe"].sum())
    if caching == "per_batch":
        assert out["network_calls"] == int(out["nfe"][0])  # every call takes the whole batch
    assert 0 < out["network_seconds"] < out["seconds"] and 0 <= out["network_cpu_seconds"] <= out["cpu_seconds"]
    fhs = timed_sample(lang, "first_hitting", 3, 6, torch.Generator().manual_seed(3))
    assert (fhs["nfe"] == 6).all() and fhs["network_calls"] == 6


def test_timing_runs_on_one_thread_and_restores_the_setting(lang):
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_cost_model_counts():
    assert categorical_draws("first_hitting", 1024, 50_257) == 1024 * 50_257
    assert categorical_draws("ancestral", 1024, 50_257, steps=10_000) == 10_000 * 1024 * 50_258
    assert model_seconds(nfe=10, ncs=100, t_net=2.0, t_cat=0.5) == 70.0
    with pytest.raises(ValueError, match="unknown sampler"):
        categorical_draws("gibbs", 4, 4)
    with pytest.raises(ValueError, match="steps"):
        timed_sample(MarkovLanguage(LanguageSpec(4, 2)), "ancestral", 1, 2, torch.Generator())
    with pytest.raises(ValueError, match="ExactDenoiser"):
        FullPassDenoiser(lambda x, t: x)
