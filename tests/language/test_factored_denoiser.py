"""The factored exact denoiser: the same outputs as ExactDenoiser, the laws the samplers
check, the incremental update, and requests refused before they are allocated."""
import pytest
import torch

from mdmlib.language.clustered import ClusteredLanguage, ClusteredSpec
from mdmlib.language.factored_denoiser import FactoredDenoiser
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.mdm.denoiser_outputs import check_laws, row_statistics
from mdmlib.infra.memory import BUDGET_VARIABLE


@pytest.fixture(scope="module")
def language():
    return ClusteredLanguage(ClusteredSpec(vocab_size=97, num_classes=5, seed=3, zipf_exponent=1.0, emission_spread=1.8, transition_spread=2.5))


def _partial(language, batch=6, length=40, masked=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = language.sample(batch, length, g)
    x_old = torch.where(torch.rand(truth.shape, generator=g) < masked, language.mask_id, truth)
    x_old[0] = language.mask_id  # one sequence all masks: no neighbour on either side
    x_new = torch.where(torch.rand(truth.shape, generator=g) < 0.2, truth, x_old)
    return x_old, x_new


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 3e-7)])
def test_outputs_equal_exact_denoisers(language, dtype, tol):
    x_old, x_new = _partial(language)
    ours, theirs = FactoredDenoiser(language, dtype), ExactDenoiser(language, dtype)
    mu = ours(x_new)
    assert mu.dtype == dtype
    assert torch.allclose(mu.double(), theirs(x_new).double(), atol=tol, rtol=0)
    (r1, c1, o1), (r2, c2, o2) = ours.changed_outputs(x_old, x_new), theirs.changed_outputs(x_old, x_new)
    assert torch.equal(r1, r2) and torch.equal(c1, c2) and r1.numel() > 0
    assert torch.allclose(o1.double(), o2.double(), atol=tol, rtol=0)
    rows, cols = torch.nonzero(x_new == language.mask_id, as_tuple=True)
    assert torch.allclose(ours.outputs_at(x_new, rows, cols).double(), theirs.outputs_at(x_new, rows, cols).double(), atol=tol, rtol=0)


def test_class_posteriors_give_the_rows(language):
    x_old, x_new = _partial(language, seed=1)
    den = FactoredDenoiser(language, torch.float64)
    w = den.class_posteriors(x_new)
    masked = x_new == language.mask_id
    assert torch.allclose(den.rows(w[masked]), den(x_new)[masked], atol=0, rtol=0)
    # unmasked positions hold their token's class as a point mass
    assert torch.equal(w[~masked].argmax(1), language.token_class[x_new[~masked]]) and torch.equal(w[~masked].max(1).values, torch.ones(int((~masked).sum()), dtype=torch.float64))


def test_the_update_brings_the_cache_to_a_fresh_call(language):
    x_old, x_new = _partial(language, seed=2)
    den = FactoredDenoiser(language, torch.float64)
    w = den.class_posteriors(x_old)
    rows, cols, changed = den.changed_class_posteriors(x_old, x_new)
    w[rows, cols] = changed
    masked = x_new == language.mask_id
    assert torch.allclose(w[masked], den.class_posteriors(x_new)[masked], atol=1e-15, rtol=0)
    assert 0 < rows.numel() < int(masked.sum())  # some posteriors were kept, not recomputed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_pass_the_samplers_check_at_a_large_vocabulary(dtype):
    lang = ClusteredLanguage(ClusteredSpec(vocab_size=20_000, num_classes=32, seed=0))
    den = FactoredDenoiser(lang, dtype)
    x_old, x_new = _partial(lang, batch=2, length=64)
    rows, cols = torch.nonzero(x_new == lang.mask_id, as_tuple=True)
    for mu in (den.changed_outputs(x_old, x_new)[2], den.outputs_at(x_new, rows, cols)):
        total, low, _ = row_statistics(mu)
        check_laws(total, low, dtype, lang.vocab_size)


def test_refusals(monkeypatch, language):
    with pytest.raises(TypeError, match="ClusteredLanguage"):
        FactoredDenoiser(MarkovLanguage(LanguageSpec(10, 2)))
    den = FactoredDenoiser(language)
    x = torch.full((1, 5), language.mask_id)
    with pytest.raises(ValueError, match="token ids must lie"):
        den.class_posteriors(x + 1)
    with pytest.raises(ValueError, match="masked positions only"):
        den.outputs_at(torch.zeros(1, 5, dtype=torch.int64), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="differ in shape"):
        den.changed_class_posteriors(x, x[:, :3])
    monkeypatch.setenv(BUDGET_VARIABLE, "1e8")
    big = torch.full((1, 1), language.mask_id).expand(10**6, 4)  # 4 million masked positions, a view
    with pytest.raises(MemoryError, match=r"whole output for 1,000,000 x 4 positions of 97 tokens in torch.float32 .* would need at least 1.6 GB"):
        den(big)
    rows = torch.zeros(10**6, dtype=torch.int64)
    with pytest.raises(MemoryError, match="1,000,000 denoiser rows of 97 tokens"):
        den.outputs_at(big, rows, rows)
    den.class_posteriors(big[:1000])  # the factored output of the same positions fits: 40 bytes a position
