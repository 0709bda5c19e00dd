"""The factored samplers return what the samplers of mdmlib.mdm.samplers return from the
same seed (so they have those samplers' laws); the factored cache reads as the rows it
stands for; bad denoisers and requests are refused."""
import pytest
import torch

from mdmlib.language.clustered import ClusteredLanguage, ClusteredSpec
from mdmlib.language.factored_denoiser import FactoredDenoiser
from mdmlib.mdm.factored_outputs import FactoredOutputs, check_emissions, check_posteriors
from mdmlib.mdm.factored_samplers import factored_ancestral_sample, factored_exact_sample
from mdmlib.infra.memory import BUDGET_VARIABLE
from mdmlib.mdm.samplers import ancestral_sample, exact_sample
from mdmlib.mdm.step import PRECISIONS


@pytest.fixture(scope="module")
def language():
    return ClusteredLanguage(ClusteredSpec(vocab_size=300, num_classes=6, seed=2, zipf_exponent=1.1, emission_spread=2.0, transition_spread=2.0))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ancestral_equals_the_samplers_ancestral(language, precision, dtype):
    den = FactoredDenoiser(language, dtype)
    # few steps: many tokens unmask per step and the last steps fall back to whole rows
    for steps in (7, 200):
        ours = factored_ancestral_sample(den, 5, 48, steps, precision, torch.Generator().manual_seed(steps), progress=False)
        theirs = ancestral_sample(den, 5, 48, steps, precision, torch.Generator().manual_seed(steps), progress=False)
        assert torch.equal(ours.tokens, theirs.tokens) and torch.equal(ours.nfe, theirs.nfe)
        assert (ours.tokens < language.vocab_size).all()


def test_exact_equals_the_samplers_exact(language):
    den = FactoredDenoiser(language, torch.float64)
    for steps in (5, 1000):
        ours = factored_exact_sample(den, 5, 48, steps, torch.Generator().manual_seed(1), progress=False)
        theirs = exact_sample(den, 5, 48, steps, torch.Generator().manual_seed(1), progress=False)
        assert torch.equal(ours.tokens, theirs.tokens) and torch.equal(ours.nfe, theirs.nfe)


def test_the_cache_reads_as_its_rows(language):
    den = FactoredDenoiser(language, torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.where(torch.rand(3, 20, generator=g) < 0.6, language.mask_id, language.sample(3, 20, g))
    out = FactoredOutputs(den.class_posteriors(x), den.token_class, den.emission, torch.float32)
    assert out.shape == (3, 20, 300)
    rows, cols = torch.nonzero(x == language.mask_id, as_tuple=True)
    full = den(x)[rows, cols]
    assert torch.equal(out[rows, cols], full)
    tok = torch.randint(0, 300, rows.shape, generator=g)
    assert torch.equal(out[rows, cols, tok], full[torch.arange(rows.numel()), tok])
    assert torch.equal(out.row_max(rows, cols), full.amax(1))  # exact, not a bound
    with pytest.raises(TypeError, match="index tensors"):
        out[0, 1]


def test_bad_posteriors_and_emissions_are_refused(language):
    den = FactoredDenoiser(language, torch.float64)
    w = den.class_posteriors(torch.full((1, 4), language.mask_id))
    out = FactoredOutputs(w.clone(), den.token_class, den.emission, torch.float64)
    r, c = torch.tensor([0]), torch.tensor([2])
    for bad, match in ((w[0, :1] * 2, "sums to 2"), (w[0, :1] * float("nan"), "NaN"), (w[0, :1] - 1, "negative")):
        with pytest.raises(ValueError, match=match):
            out.update(r, c, bad)
    with pytest.raises(ValueError, match="float64"):
        check_posteriors(w.float())
    e = den.emission.clone()
    e[den.token_class == 3] *= 1.01
    with pytest.raises(ValueError, match="class 3 sum to 1.01"):
        check_emissions(den.token_class, e, 6)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        check_emissions(den.token_class, den.emission, 5)


def test_bad_denoisers_and_requests_are_refused(monkeypatch, language):
    den = FactoredDenoiser(language)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(TypeError, match="lacks"):
        factored_ancestral_sample(object(), 1, 4, 4, "float32", g)
    den.time_conditioned = True
    with pytest.raises(ValueError, match="time-conditioned"):
        factored_exact_sample(den, 1, 4, 4, g)
    del den.time_conditioned
    with pytest.raises(ValueError, match="unknown precision"):
        factored_ancestral_sample(den, 1, 4, 4, "float16", g)
    monkeypatch.setenv(BUDGET_VARIABLE, "1e9")
    with pytest.raises(MemoryError, match=r"factored_ancestral_sample\(batch=100,000, length=1,024, steps=2,048\) with 6 classes would need at least 8.2 GB"):
        factored_ancestral_sample(den, 100_000, 1024, 2048, "float32", g)
